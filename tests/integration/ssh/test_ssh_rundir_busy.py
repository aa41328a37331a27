"""EMR's idle check: while a step runs on the master, its isbusy file stays fresh."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.remote.rundir import EMR_BUSY_FILE
from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd


@pytest.fixture
def busy_file() -> Iterator[Path]:
    """The file EMR's metrics collector reads, made where EMR has it (this machine plays the master)."""
    path = Path(EMR_BUSY_FILE)
    top = Path("/", path.parts[1])
    if top.exists():
        pytest.skip(f"{top} exists here: not a test machine's to change")
    path.parent.mkdir(parents=True)
    path.touch()
    os.utime(path, (1_000_000, 1_000_000))  # long idle
    try:
        yield path
    finally:
        shutil.rmtree(top)


def test_a_bash_step_keeps_the_clusters_busy_file_fresh(cli: Cli, busy_file: Path) -> None:
    step = cli.step("10_busy.sh", f"sleep 1; stat -c %Y {busy_file}\n")

    started = time.time()
    result = cli.run(step)

    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= int(started)  # touched while the step ran
    assert cli.leftovers() == []
