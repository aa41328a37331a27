"""Shared test helpers: the project root and a way to run the CLI as a user does."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(
    *args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[bytes]:
    """Run `python -m runner ARGS` in a child process, capturing stdout and stderr as bytes."""
    environ = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "runner", *map(str, args)],
        cwd=cwd,
        env=environ,
        capture_output=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A fresh local warehouse/metastore folder for one test."""
    return tmp_path / "state"
