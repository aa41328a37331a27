"""Nightshift step runner: run SQL pipeline steps locally or on an EMR cluster, streaming output."""

__version__ = "0.1.0"
