"""Data checks over SSH: the cluster's spark-sql gives the same count and sample as the warm and cold engines."""

from __future__ import annotations

import pytest

from tests.integration.local.test_local_checks import (
    RUN_DATE,
    check_records,
    same_check_expected,
    same_check_pipeline,
)
from tests.integration.ssh.conftest import Cli

pytestmark = [pytest.mark.sshd, pytest.mark.spark]


def test_the_same_check_over_ssh(cli: Cli) -> None:
    folder = same_check_pipeline(cli.root)
    done = cli.run(folder, "--log-format", "json", "--run-date", RUN_DATE)
    assert done.returncode == 65, done.stdout.decode()[-3000:]
    assert check_records(done.stdout) == [same_check_expected()]
    # The step ran first, on the cluster, and the check after it; nothing of either is left there.
    assert b'"line": "the step ran"' in done.stdout
    assert not cli.leftovers()
    assert not any(cli.remote_dir.rglob("*.check.sql"))
