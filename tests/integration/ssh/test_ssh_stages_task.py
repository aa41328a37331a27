"""A date of a batch's one runner task (`Run stages`): the whole folder over SSH with --step-retries, in JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from runner.__main__ import main
from tests.integration.ssh import test_ssh_cluster
from tests.integration.ssh.conftest import Cli
from tests.integration.ssh.test_ssh_cluster import _cluster, _publish

pytestmark = [pytest.mark.sshd, pytest.mark.spark]

#: test_ssh_cluster's fixtures: moto's EMR and SSM, the sshd as the cluster's master, main()'s signal handlers undone
aws = test_ssh_cluster.aws
master = test_ssh_cluster.master
_restore_signal_handlers = test_ssh_cluster._restore_signal_handlers

RUN_DATE = "2026-02-03"
#: fails its first attempt, succeeds its second: the retry the deployed task's --step-retries makes
FLAKY = """\
echo attempt >> {count}
if [ -e {mark} ]; then echo "second time lucky"; exit 0; fi
touch {mark}
echo "not yet" >&2
exit 3
"""
TOML = """\
[steps]
retries = 2
retry_interval_seconds = 1

[inputs]
objects = ["{missing}/${{run_date}}/_SUCCESS"]

[checks.10_some_rows]
severity = "warn"
"""


def _folder(cli: Cli) -> Path:
    folder = cli.root / "nightly"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(TOML.format(missing=cli.root / "not-there"))
    (folder / "10_flaky.sh").write_text(FLAKY.format(count=cli.root / "count", mark=cli.root / "mark"))
    (folder / "10_steady.sh").write_text("echo steady\n")
    # One check file per stage's checks is one spark-sql start on the cluster: this pipeline's only JVM.
    (folder / "10_no_rows.check.sql").write_text("SELECT id FROM VALUES (1), (2) AS t(id) WHERE id > 5\n")
    (folder / "10_some_rows.check.sql").write_text("SELECT id FROM VALUES (1), (2) AS t(id)\n")
    (folder / "20_publish.sh").write_text("echo published\n")
    return folder


def _task(cli: Cli, folder: Path, run_id: str, *more: str) -> tuple[int, list[dict[str, Any]]]:
    """The command infra/workflow.py gives the `Run stages` task (--host here for --cluster-id)."""
    done = cli.run(
        folder, "--run-date", RUN_DATE, "--run-id", run_id, "--log-format", "json", "--no-wait",
        "--step-retries", *more,
    )  # fmt: skip
    # In JSON the runner's own lines go to stdout too, for the task's one log stream.
    assert b"nightshift:" not in done.stderr, done.stderr.decode()[-2000:]
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def _ends(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["step"], r["status"], r["exit_code"], r["attempt"], r["attempts"])
        for r in records
        if r.get("event") == "step_ended"
    ]


def test_the_run_stages_task_over_ssh(cli: Cli) -> None:
    folder = _folder(cli)
    code, records = _task(cli, folder, "batch-1-2026-02-03")
    assert code == 0, [r["line"] for r in records if "line" in r][-30:]
    assert {(r["pipeline"], r["run_id"], r["run_date"]) for r in records} == {
        ("nightly", "batch-1-2026-02-03", RUN_DATE)
    }
    # Every attempt of every step ended once; the flaky one ran again after its failed attempt.
    ends = _ends(records)
    assert sorted(ends[:3]) == [
        ("10_flaky", "failed", 3, 1, 3),
        ("10_flaky", "succeeded", 0, 2, 3),
        ("10_steady", "succeeded", 0, 1, 3),
    ]
    assert ends[3:] == [("10_checks", "succeeded", 0, 1, 1), ("20_publish", "succeeded", 0, 1, 3)]
    assert len((cli.root / "count").read_text().splitlines()) == 2
    (retry,) = [r for r in records if r.get("event") == "step_retry"]
    assert (retry["step"], retry["attempt"], retry["line"]) == (
        "10_flaky",
        2,
        "10_flaky.sh: attempt 2 of 3 in 1 s",
    )
    # The checks ran on the cluster's spark-sql between their step records; a warn check failing
    # does not fail the stage's checks.
    checks = [
        (r.get("event"), r.get("check"), r.get("status"), r.get("count"))
        for r in records
        if r["stream"] == "check" or r.get("step") == "10_checks"
    ]
    assert checks == [
        ("step_started", None, None, None),
        (None, "10_no_rows.check.sql", "passed", 0),
        (None, "10_some_rows.check.sql", "warned", 2),
        ("step_ended", None, "succeeded", None),
    ]
    # Each step's output is under its step, for the follower to show it there.
    out = {(r["step"], r["line"]) for r in records if r["stream"] == "stdout"}
    assert {("10_flaky", "second time lucky"), ("10_steady", "steady"), ("20_publish", "published")} <= out
    assert ("10_flaky", "not yet") in {(r["step"], r["line"]) for r in records if r["stream"] == "stderr"}
    assert not cli.leftovers()

    # A date started again from stage 20: stage 10's steps and checks have no records at all.
    code, records = _task(cli, folder, "batch-1-2026-02-03-r2", "--from-stage", "20")
    assert code == 0
    assert _ends(records) == [("20_publish", "succeeded", 0, 1, 3)]
    assert not [r for r in records if r.get("step", "").startswith("10_") or r["stream"] == "check"]

    # Without --no-wait the missing [inputs] would have stopped the task before any step (75).
    done = cli.run(folder, "--run-date", RUN_DATE, "--log-format", "json", "--from-stage", "20")
    assert done.returncode == 75
    assert not [r for r in map(json.loads, done.stdout.splitlines()) if "event" in r]


def test_a_failed_step_ends_the_task_with_its_code_over_cluster_id(
    aws: None, master: Cli, capfdbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    """As on Fargate: --cluster-id (the master from EMR, its host key from SSM), the key in the environment."""
    monkeypatch.setenv("NIGHTSHIFT_SSH_PRIVATE_KEY", master.sshd.user_key.read_text())
    cluster_id = _cluster()
    _publish(cluster_id, master.sshd.host_public_key)
    folder = master.root / "nightly"
    folder.mkdir()
    (folder / "pipeline.toml").write_text("[steps]\nretries = 1\nretry_interval_seconds = 1\n")
    (folder / "10_load.sh").write_text("echo loaded\n")
    (folder / "20_broken.sh").write_text(
        f"echo attempt >> {master.root / 'count'}\necho 'no such table' >&2\nexit 7\n"
    )
    (folder / "30_never.sh").write_text("echo never\n")

    code = main([
        str(folder), "--cluster-id", cluster_id, "--user", master.sshd.user, "--remote-dir", str(master.remote_dir),
        "--run-date", RUN_DATE, "--run-id", "batch-2-2026-02-03", "--log-format", "json", "--no-wait",
        "--step-retries",
    ])  # fmt: skip
    records = [json.loads(line) for line in capfdbinary.readouterr().out.splitlines()]

    assert code == 7, [r.get("line") for r in records][-20:]
    assert _ends(records) == [
        ("10_load", "succeeded", 0, 1, 2),
        ("20_broken", "failed", 7, 1, 2),
        ("20_broken", "failed", 7, 2, 2),
    ]
    assert len((master.root / "count").read_text().splitlines()) == 2
    assert [r["attempt"] for r in records if r.get("event") == "step_retry"] == [2]
    # The stage after the failed one was not reached: no record of its step.
    assert not [r for r in records if r.get("step") == "30_never"]
    assert not master.leftovers()
