"""Harnesses the tests and the benchmarks share (real servers on 127.0.0.1); not part of the product."""
