"""The warm local engine: one JVM per state dir that runs SQL steps through Spark's own CLI code."""
