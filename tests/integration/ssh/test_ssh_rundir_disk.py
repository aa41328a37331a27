"""A remote disk that fills up while a step runs: said plainly, not taken for a step killed there."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 512 KiB tmpfs with room for the run directory, and not much else."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=512k,mode=0700", "tmpfs", str(mount_point)], check=True
    )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_disk_that_fills_during_the_step_is_named_as_the_cause(cli: Cli, small_disk: Path) -> None:
    filler = small_disk / "filler"
    step = cli.step("10_fill.sh", f"echo filling\nhead -c 1048576 /dev/zero > {filler}\necho after\n")
    argv = cli.target_args()
    argv[argv.index("--remote-dir") + 1] = str(small_disk / "runs")

    result = cli.run(step, *argv, target=False)

    assert result.returncode == 1
    errors = [line for line in result.stderr.decode().splitlines() if "error:" in line]
    (line,) = errors
    assert "the remote disk is full (" in line and f"KiB free in {small_disk}/runs/" in line
    assert "killed there" not in line
    assert result.stdout.startswith(b"filling\n")  # what fitted is relayed
    assert cli.leftovers() == []
