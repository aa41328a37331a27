"""Deployed runs followed live from moto: step output byte for byte, state changes, summary, exit code."""

from __future__ import annotations

import signal
import threading

from runner.deployed import DeployedRequest
from runner.output import MAX_EVENT_BYTES
from tests.deployed.support import (
    Result,
    Watched,
    ctrl_c_when,
    run_cli,
    start_directly,
)
from tests.infra.moto_harness import Harness, StepScript

DATE = "2025-06-01"
LONG_LINE = b"".join(b"%07d," % n for n in range(40_000)) + b"\n"  # 320 KiB: more than one CloudWatch event
USERS = [
    ("stdout", b"users: 42 rows\n"),
    ("stderr", b"WARN spark: slow disk\n"),
    ("stdout", b"caf\xe9 in latin-1, not UTF-8\n"),
    ("stdout", b"half a line, "),
    ("stdout", b"the other half\n"),
    ("stdout", LONG_LINE),
    ("stderr", b"\xff\xfe raw bytes on stderr\n"),
    ("stdout", b"\xe2\x9c\x93 done, no newline at the end"),
]
SESSIONS = [("stdout", b"\nsessions: 7 rows\n"), ("stderr", b"INFO sessions written\n")]


def expected(chunks: list[tuple[str, bytes]], stream: str) -> bytes:
    return b"".join(data for name, data in chunks if name == stream)


def test_follow_prints_every_line_live_byte_for_byte_then_the_summary(deployed: Harness) -> None:
    assert len(LONG_LINE) > MAX_EVENT_BYTES
    # 10_users stops half-way until the console shows its first line: the follower is live,
    # not a reader of a finished run.
    users = StepScript(chunks=USERS, gate_after=2)
    deployed.faults.scripts["10_users.sql"] = users
    deployed.faults.scripts["20_sessions.hql"] = StepScript(chunks=SESSIONS)
    console = Watched(b"users: 42 rows\n", users.gate)

    result = run_cli(deployed, DeployedRequest("start", (DATE,)), stdout=console)

    assert result.code == 0, result.stderr.decode(errors="replace")[-2000:]
    assert users.reached_gate.is_set() and users.gate.is_set()
    assert result.stdout == expected(USERS, "stdout") + expected(SESSIONS, "stdout")
    assert result.step_stderr() == expected(USERS, "stderr") + expected(SESSIONS, "stderr")
    notices = result.notices
    assert notices[0] == f"run nightly-{DATE} started"
    in_order = [
        "cluster j-",
        "stage 10 started",
        "10_users.sql: started (spark-sql)",
        "10_users.sql: succeeded in",
        "10_users.sql: finished with exit code 0",
        "stage 20 started",
        "20_sessions.hql: finished with exit code 0",
        "stage 30 started",
        "terminating cluster j-",
        "run cost $",
        "run succeeded after",
    ]
    positions = [next(i for i, n in enumerate(notices) if n.startswith(prefix)) for prefix in in_order]
    assert positions == sorted(positions), notices
    assert any(n.startswith("cluster j-") and "ready after" in n for n in notices)
    table = notices[notices.index(next(n for n in notices if n.startswith("step "))) :]
    assert [row.split()[0] for row in table[1:]] == [
        "10_events.sql", "10_users.sql", "20_sessions.hql", "30_funnel.sql", "30_segments.sql",
    ]  # fmt: skip
    assert all(" succeeded " in row for row in table[1:])
    (cluster,) = deployed.clusters()
    assert cluster["Status"]["State"] == "TERMINATED"


def test_a_failing_step_gives_the_runs_exit_code_with_its_retries(deployed: Harness) -> None:
    deployed.faults.exit_codes["30_funnel.sql"] = 3
    deployed.faults.scripts["30_funnel.sql"] = StepScript(
        chunks=[("stderr", b"ERROR: table funnel is locked\n")]
    )

    result = run_cli(deployed, DeployedRequest("start", (DATE,)))

    assert result.code == 3
    # Three attempts (retries = 2), each with its own task and log stream, printed in turn.
    assert result.step_stderr() == b"ERROR: table funnel is locked\n" * 3
    notices = result.notices
    assert "30_funnel.sql: retrying (attempt 2 of 3)" in notices
    assert "30_funnel.sql: retrying (attempt 3 of 3)" in notices
    assert notices.count("30_funnel.sql: failed with exit code 3") == 3
    assert any(
        n.startswith("run failed after") and n.endswith("30_funnel.sql exited with code 3") for n in notices
    )
    rows = {
        row.split()[0]: row for row in notices if row.split()[0].endswith((".sql", ".hql")) and "  " in row
    }
    assert "failed (exit 3)" in rows["30_funnel.sql"]
    assert "succeeded" in rows["20_sessions.hql"]
    assert [c["Status"]["State"] for c in deployed.clusters()] == ["TERMINATED"]


def test_follow_without_a_date_attaches_to_the_running_run(deployed: Harness) -> None:
    users = StepScript(chunks=[("stdout", b"first\n"), ("stdout", b"second\n")], gate_after=1)
    deployed.faults.scripts["10_users.sql"] = users
    start_directly(deployed, DATE)
    assert users.reached_gate.wait(30)
    console = Watched(b"first\n", users.gate)

    result = run_cli(deployed, DeployedRequest("follow"), stdout=console)

    assert result.code == 0
    assert result.stdout == b"first\nsecond\n"
    assert result.notices[0] == f"following run nightly-{DATE}"


def test_ctrl_c_detaches_and_leaves_the_run_running(deployed: Harness) -> None:
    users = StepScript(chunks=[("stdout", b"working\n")], gate_after=1, gate_timeout=60)
    deployed.faults.scripts["10_users.sql"] = users
    arn = start_directly(deployed, DATE)
    interrupt = threading.Event()
    console = Watched(b"working\n", interrupt)

    sender = ctrl_c_when(interrupt)

    result = run_cli(deployed, DeployedRequest("follow", (DATE,)), stdout=console)
    sender.join()

    assert result.code == 130
    assert result.stdout == b"working\n"
    hint = result.notices[-1]
    assert hint.startswith(f"detached; nightly-{DATE} goes on in AWS.")
    assert f"--deployed --follow --run-date {DATE}" in hint and f"--deployed --stop --run-date {DATE}" in hint
    assert deployed.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_finished_run_is_shown_again_with_its_exit_code(deployed: Harness) -> None:
    deployed.faults.scripts["10_events.sql"] = StepScript(chunks=[("stdout", b"events loaded\n")])
    deployed.faults.failing_steps.add("20_sessions.hql")
    execution = deployed.run(DATE)
    assert execution["status"] == "FAILED"

    result: Result = run_cli(deployed, DeployedRequest("follow", (DATE,)))

    assert result.code == 1
    assert result.stdout == b"events loaded\n"
    assert result.notices[0] == f"run nightly-{DATE} failed; its output:"
    assert any("20_sessions.hql" in row and "failed (exit 1)" in row for row in result.notices)
    assert any("30_funnel.sql" in row and "not run" in row for row in result.notices)


def test_a_run_whose_cluster_never_starts_exits_69_after_its_launch_retries(deployed: Harness) -> None:
    def fail_every_launch(payload: dict, result: dict) -> None:
        deployed.fail_cluster(result["cluster_id"], "BOOTSTRAP_FAILURE", "bootstrap action 1 returned 1")

    deployed.faults.after["lambdas.create_cluster"] = fail_every_launch

    result = run_cli(deployed, DeployedRequest("start", (DATE,)))

    assert result.code == 69
    assert deployed.faults.steps_run == []
    notices = result.notices
    retried = [n for n in notices if "launch retried" in n]
    assert [n.rsplit("(", 1)[-1] for n in retried] == ["attempt 2)", "attempt 3)"]
    assert "failed to start (" in retried[0]
    (failure,) = [n for n in notices if n.startswith("run failed after")]
    assert "ClusterFailedToStart: attempt 1 (j-" in failure
    assert all(
        row.split()[2:4] == ["not", "run"] for row in notices if row.split()[0].endswith((".sql", ".hql"))
    )
    assert {c["Status"]["State"] for c in deployed.clusters()} <= {"TERMINATED", "TERMINATED_WITH_ERRORS"}
