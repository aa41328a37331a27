"""Data checks: queries whose rows are a stage's failures, counted and sampled through the engine."""
