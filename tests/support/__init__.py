"""Helpers and fixtures shared by more than one tier of the tests (pytest plugins, loaded from tests/conftest.py)."""
