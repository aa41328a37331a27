"""Shared test helpers: the project root and a way to run the CLI as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _cli(args: tuple[str | Path, ...], env: dict[str, str] | None) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-m", "runner", *map(str, args)], {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }


def run_cli(
    *args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m runner ARGS` in a child process, capturing stdout and stderr as bytes."""
    argv, environ = _cli(args, env)
    return subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, timeout=timeout, check=False)


def start_cli(*args: str | Path, cwd: Path = ROOT, stderr: int = subprocess.PIPE) -> subprocess.Popen[bytes]:
    """Start `python -m runner ARGS` and return at once, to watch its output while it runs."""
    argv, environ = _cli(args, None)
    return subprocess.Popen(argv, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=stderr)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A fresh local warehouse/metastore folder for one test."""
    return tmp_path / "state"
