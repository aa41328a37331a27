"""A deployed backfill on shared clusters (issue 22) through the CLI: dry run, start, follow, stop, history."""

from __future__ import annotations

import io
import json
import re
import sys
import threading
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from lambdas.shared.backfill_plan import MODEL_NEXT_DATE_SECONDS
from runner.__main__ import _check_flag_modes, build_parser, exit_code_of
from runner.dates import format_duration
from runner.deployed import DeployedRequest, _shown_path, run_deployed
from runner.deployed.cli import deployed_request
from runner.deployed.run_states import RUN_STAGES_STATE
from runner.errors import UsageError
from runner.model import Pipeline, load_pipeline
from runner.output import TextOutput
from tests.deployed.support import FAST, Watched, ctrl_c_when, pipeline_of, run_cli
from tests.infra.moto_harness import Harness, StepScript, set_moto_env
from tests.support.aws import REGION, Synthesis


def days(first: str, count: int) -> tuple[str, ...]:
    start = date.fromisoformat(first)
    return tuple((start + timedelta(days=n)).isoformat() for n in range(count))


def _shown(harness: Harness) -> str:
    return _shown_path(harness.synth.pipelines_dir / harness.pipeline)


def executions(harness: Harness) -> list[dict[str, Any]]:
    return [
        dict(e) for e in harness.sfn.list_executions(stateMachineArn=harness.state_machine_arn)["executions"]
    ]


def model_plans(harness: Harness, dates: tuple[str, ...], concurrency: int, clusters: int) -> tuple[Any, Any]:
    """backfill_plan's two plans for the pipeline, made here from its [cluster] and its stages."""
    from lambdas.shared.backfill_plan import (  # noqa: PLC0415
        ClusterShape,
        modelled_timeline,
        one_cluster_per_date,
        shared_clusters,
    )
    from lambdas.shared.cost import region_prices  # noqa: PLC0415

    pipeline = pipeline_of(harness)
    profile = pipeline.config.cluster
    shape = ClusterShape(
        profile.master_instance_type,
        profile.core_instance_types[0] if profile.core_instance_types else profile.core_instance_type,
        profile.core_instance_count,
        profile.use_spot,
    )
    timeline = modelled_timeline([(str(s.number), len(s.steps), bool(s.checks)) for s in pipeline.stages])
    prices = region_prices("us-east-1")
    return (
        one_cluster_per_date(list(dates), concurrency, timeline, shape, prices),
        shared_clusters(list(dates), clusters, timeline, shape, prices),
    )


def test_a_dry_run_of_a_range_prints_its_batches_and_both_plans_and_starts_nothing(
    deployed: Harness,
) -> None:
    """40 dates at the nightly pipeline's one run at once: MAX_BATCH_DATES (31) makes two batches of
    20, the second started when the first ends; the model's two plans side by side; nothing started."""
    dates = days("2025-05-01", 40)
    result = run_cli(deployed, DeployedRequest("start", dates, dry_run=True))

    assert result.code == 0, result.notices
    assert result.stdout == b""
    assert executions(deployed) == []
    notices = result.notices
    assert notices[:4] == [
        "dry run: nothing is started",
        "backfill of 40 dates on 2 shared clusters, at most 1 at once",
        "batch nightly-batch-2025-05-01-2025-05-20: 20 dates on one cluster,"
        " runs nightly-2025-05-01 .. nightly-2025-05-20",
        "batch nightly-batch-2025-05-21-2025-06-09: 20 dates on one cluster,"
        " runs nightly-2025-05-21 .. nightly-2025-06-09",
    ]
    assert notices[4] == (
        "by the model (m6g.xlarge + 2 x r7g.2xlarge in us-east-1; a date's timeline is stated,"
        " not measured: docs/backfill.md):"
    )
    rows = [re.split(r"\s{2,}", line.strip()) for line in notices[5:9]]
    assert rows[0] == ["clusters", "wall time", "cost"]
    assert rows[1][0] == "one cluster per date" and rows[2][0] == "shared clusters"
    today, shared = model_plans(deployed, dates, 1, 2)
    assert rows[1][1:] == ["40", format_duration(today.wall_seconds), f"${today.cost_usd:.2f}"]
    # One cluster at a time: the second batch starts when the first has ended (the CLI's poll, the
    # next start: MODEL_NEXT_DATE_SECONDS), so the wall time is both clusters' lives and that gap.
    first, second = shared.batches
    wall = first.cluster_seconds + MODEL_NEXT_DATE_SECONDS + second.cluster_seconds
    assert rows[2][1:] == ["2", format_duration(wall), f"${shared.cost_usd:.2f}"]
    assert rows[3][1:] == [f"{wall / today.wall_seconds:.2f}", f"{shared.cost_usd / today.cost_usd:.2f}"]
    assert rows[3][0] == "shared / one per date"
    assert notices[-1] == (
        f"start it: python -m runner {_shown(deployed)} --deployed --start --run-date 2025-05-01..2025-06-09"
    )
    # Spot core nodes are priced at On-Demand, and the model says so between the table and the hint.
    assert any("Spot" in line for line in notices[9:-1]), notices


def test_a_cluster_metastore_dry_run_plans_a_cluster_per_date_and_says_why(adhoc: Harness) -> None:
    """docs/backfill.md: a pipeline whose tables live in the cluster's own metastore backfills one
    cluster per date (the next date would see them); no shared plan is printed, one it cannot run."""
    result = run_cli(adhoc, DeployedRequest("start", days("2025-06-01", 3), dry_run=True))

    assert result.code == 0, result.notices
    assert executions(adhoc) == []
    notices = result.notices
    assert notices[:5] == [
        "dry run: nothing is started",
        'backfill of 3 dates, one cluster per date, at most 2 at once: metastore = "cluster" keeps the'
        " tables in the cluster's own metastore, and a shared cluster would carry one date's tables into"
        " the next",
        "2025-06-01: run adhoc-2025-06-01 on a cluster of its own",
        "2025-06-02: run adhoc-2025-06-02 on a cluster of its own",
        "2025-06-03: run adhoc-2025-06-03 on a cluster of its own",
    ]
    rows = [re.split(r"\s{2,}", line.strip()) for line in notices[6:-1]]
    assert [row[0] for row in rows] == ["clusters", "one cluster per date"]
    assert rows[1][1] == "3"
    assert not any(line.startswith(("batch", "shared")) for line in notices)
    assert notices[-1] == (
        f"start it: python -m runner {_shown(adhoc)} --deployed --start --run-date 2025-06-01..2025-06-03"
    )


def test_a_dry_run_refuses_a_date_that_already_ran_as_the_start_would(
    deployed: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dry run names the runs the start would make, so it applies the start's rules; --rerun names
    the date's next run (-r2) and is carried into the start command it prints; without the Lambdas'
    plan module (the runner image holds no lambdas/) the cost is unknown."""
    assert deployed.run("2025-06-02")["status"] == "SUCCEEDED"
    dates = days("2025-06-01", 3)

    refused = run_cli(deployed, DeployedRequest("start", dates, dry_run=True))
    assert refused.code == 4
    assert refused.notices == [
        "error: 2025-06-02 already ran (nightly-2025-06-02: succeeded); add --rerun to run it again as"
        " nightly-2025-06-02-r2"
    ]

    # Without lambdas/: today's plan is still printed, its cost unknown; shared clusters are refused.
    monkeypatch.setitem(sys.modules, "lambdas.shared.backfill_plan", None)
    today = run_cli(
        deployed, DeployedRequest("start", dates, rerun=True, dry_run=True, one_cluster_per_date=True)
    )
    assert today.code == 0, today.notices
    assert today.notices[1:] == [
        "backfill of 3 dates, one cluster per date, at most 1 at once",
        "2025-06-01: run nightly-2025-06-01 on a cluster of its own",
        "2025-06-02: run nightly-2025-06-02-r2 on a cluster of its own",
        "2025-06-03: run nightly-2025-06-03 on a cluster of its own",
        "cost unknown: no lambdas/shared/backfill_plan.py here (run from the project checkout)",
        f"start it: python -m runner {_shown(deployed)} --deployed --start --run-date 2025-06-01..2025-06-03"
        " --rerun --one-cluster-per-date",
    ]
    shared = run_cli(deployed, DeployedRequest("start", dates, rerun=True, dry_run=True))
    assert shared.code == 4
    assert shared.notices[-1] == (
        "error: shared clusters need lambdas/shared/backfill_plan.py (run from the project checkout);"
        " add --one-cluster-per-date to run a cluster per date"
    )
    assert [e["name"] for e in executions(deployed)] == ["nightly-2025-06-02"]


def _pipeline_folder(folder: Path) -> Path:
    (folder / "pipeline.toml").write_text("max_concurrent_runs = 3\n")
    (folder / "10_load.sh").write_text("true\n")
    return folder


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--start", "--run-date", "2025-06-01", "--dry-run"], "--dry-run: not with --deployed"),
        (["--follow", "--run-date", "2025-06-01..2025-06-03", "--dry-run"], "--dry-run: not with --deployed"),
        (["--one-cluster-per-date"], "--one-cluster-per-date: only when starting runs (add --start)"),
    ],
)
def test_a_deployed_dry_run_is_a_ranges_start_only(tmp_path: Path, argv: list[str], message: str) -> None:
    args = build_parser().parse_args([str(_pipeline_folder(tmp_path)), "--deployed", *argv])
    with pytest.raises(UsageError, match=f"^{re.escape(message)}"):
        _check_flag_modes(args)


def test_the_flags_of_a_shared_backfill_become_the_request(tmp_path: Path) -> None:
    folder = _pipeline_folder(tmp_path)
    argv = [str(folder), "--deployed", "--start", "--run-date", "2025-06-01..2025-06-03", "--dry-run"]
    for extra, shared in (([], True), (["--one-cluster-per-date"], False)):
        args = build_parser().parse_args([*argv, *extra])
        _check_flag_modes(args)
        request = deployed_request(args, load_pipeline(folder))
        assert (request.action, request.dry_run, request.one_cluster_per_date) == ("start", True, not shared)
        assert request.run_dates == ("2025-06-01", "2025-06-02", "2025-06-03")


@pytest.fixture
def not_executing(
    test_synth: Synthesis, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str, Pipeline]]:
    """The nightly pipeline's state machine in moto with execution off: an execution stays RUNNING and
    nothing runs, so a test sees exactly what the CLI asked Step Functions for (names, inputs)."""
    set_moto_env(monkeypatch)
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="Nightshift-nightly",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/sfn",
            tags=[
                {"key": "nightshift:stack", "value": "Nightshift"},
                {"key": "nightshift:pipeline", "value": "nightly"},
                {"key": "nightshift:runner-log-group", "value": "/nightshift/Nightshift/nightly/runner"},
            ],
        )["stateMachineArn"]
        yield sfn, arn, load_pipeline(test_synth.pipelines_dir / "nightly")


def _run(pipeline: Pipeline, request: DeployedRequest, stderr: io.BytesIO) -> tuple[int, list[str]]:
    output = TextOutput(io.BytesIO(), stderr)
    code = exit_code_of(lambda: run_deployed(pipeline, request, output, polling=FAST), output)
    text = stderr.getvalue().decode()
    return code, [
        line.removeprefix("nightshift: ") for line in text.splitlines() if line.startswith("nightshift: ")
    ]


def test_a_range_starts_one_batch_execution_per_cluster_with_every_dates_name(not_executing: Any) -> None:
    """Seven dates at three at once: three batches (3, 2, 2 dates), each one StartExecution named
    <pipeline>-batch-<first>-<last> with the contract's input (docs/backfill.md); a date that ran
    (with --rerun) gets its -r2 name, a batch name taken gets -r2. Ctrl-C detaches: the table says
    which batch each date waits in, and how to reattach and stop."""
    sfn, machine, pipeline = not_executing
    for name, given in (
        ("nightly-2025-06-02", {"run_date": "2025-06-02"}),
        ("nightly-batch-2025-06-01-2025-06-03", {"run_date": "2025-06-01"}),
    ):
        arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(given))["executionArn"]
        sfn.stop_execution(executionArn=arn)
    started = threading.Event()
    stderr = Watched(b"batch nightly-batch-2025-06-06-2025-06-07 started", started)
    user = ctrl_c_when(started)
    dates = days("2025-06-01", 7)

    code, notices = _run(
        pipeline, DeployedRequest("start", dates, rerun=True, concurrency=3, from_stage=20), stderr
    )
    user.join()

    assert code == 130, notices
    batches = {
        e["name"]: json.loads(sfn.describe_execution(executionArn=e["executionArn"])["input"])
        for e in sfn.list_executions(stateMachineArn=machine, statusFilter="RUNNING")["executions"]
    }

    def runs(*names: str) -> list[dict[str, str]]:
        return [{"run_date": name.removeprefix("nightly-")[:10], "name": name} for name in names]

    assert batches == {
        "nightly-batch-2025-06-01-2025-06-03-r2": {
            "run_date": "2025-06-01",
            "batch": {"runs": runs("nightly-2025-06-01", "nightly-2025-06-02-r2", "nightly-2025-06-03")},
            "from_stage": 20,
        },
        "nightly-batch-2025-06-04-2025-06-05": {
            "run_date": "2025-06-04",
            "batch": {"runs": runs("nightly-2025-06-04", "nightly-2025-06-05")},
            "from_stage": 20,
        },
        "nightly-batch-2025-06-06-2025-06-07": {
            "run_date": "2025-06-06",
            "batch": {"runs": runs("nightly-2025-06-06", "nightly-2025-06-07")},
            "from_stage": 20,
        },
    }
    assert notices[:4] == [
        "backfill of 7 dates on 3 shared clusters, at most 3 at once",
        "batch nightly-batch-2025-06-01-2025-06-03-r2 started: 3 dates, 2025-06-01..2025-06-03, one cluster",
        "batch nightly-batch-2025-06-04-2025-06-05 started: 2 dates, 2025-06-04..2025-06-05, one cluster",
        "batch nightly-batch-2025-06-06-2025-06-07 started: 2 dates, 2025-06-06..2025-06-07, one cluster",
    ]
    table = [re.split(r"\s{2,}", line.strip()) for line in notices[5:12]]
    assert table == [
        [d, f"waiting in {batch}", "-"]
        for d, batch in zip(
            dates,
            ["nightly-batch-2025-06-01-2025-06-03-r2"] * 3
            + ["nightly-batch-2025-06-04-2025-06-05"] * 2
            + ["nightly-batch-2025-06-06-2025-06-07"] * 2,
            strict=True,
        )
    ]
    assert notices[12] == "7 dates: 0 succeeded, 0 failed, 7 not run"
    folder = _shown_path(pipeline.folder)
    assert notices[13:] == [
        "detached; nightly-batch-2025-06-01-2025-06-03-r2, nightly-batch-2025-06-04-2025-06-05,"
        " nightly-batch-2025-06-06-2025-06-07 go on in AWS. Reattach: python -m runner"
        f" {folder} --deployed --follow --run-date 2025-06-01..2025-06-07; stop it: python -m runner {folder}"
        " --deployed --stop --run-date 2025-06-01..2025-06-07"
    ]


def test_more_dates_than_a_batch_holds_make_more_batches_started_as_a_slot_frees(not_executing: Any) -> None:
    """40 dates at one at once: MAX_BATCH_DATES (31) makes two batches of 20; the second waits for the
    first (Preflight would refuse it beside it), and a detach names its dates as not started."""
    sfn, machine, pipeline = not_executing
    started = threading.Event()
    stderr = Watched(b"batch nightly-batch-2025-05-01-2025-05-20 started", started)
    user = ctrl_c_when(started)

    code, notices = _run(pipeline, DeployedRequest("start", days("2025-05-01", 40)), stderr)
    user.join()

    assert code == 130, notices
    names = [e["name"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]]
    assert names == ["nightly-batch-2025-05-01-2025-05-20"]
    assert notices[0] == "backfill of 40 dates on 2 shared clusters, at most 1 at once"
    assert notices[-2] == "40 dates: 0 succeeded, 0 failed, 40 not run"
    assert notices[-1].endswith(
        "; not started: 2025-05-21..2025-06-09 (start: python -m runner"
        f" {_shown_path(pipeline.folder)} --deployed --start --run-date 2025-05-21..2025-06-09)"
    )
    assert "--follow --run-date 2025-05-01..2025-05-20;" in notices[-1]


def test_stop_of_a_backfill_stops_its_batches_and_their_running_dates_and_names_the_rest(
    not_executing: Any,
) -> None:
    """--stop of the range: each batch first (so it starts no next date), then its running date, then
    its cluster (Step Functions runs no Catch on a stop); the dates never started are named with the
    command that starts them. --stop --run-date D of one date of a batch stops that date only."""
    sfn, machine, pipeline = not_executing
    started = threading.Event()
    stderr = Watched(b"batch nightly-batch-2025-06-03-2025-06-04 started", started)
    user = ctrl_c_when(started)
    dates = days("2025-06-01", 4)
    code, _ = _run(pipeline, DeployedRequest("start", dates, concurrency=2), stderr)
    user.join()
    assert code == 130
    executions = machine.replace(":stateMachine:", ":execution:")
    # Each batch's first date runs, as the batch's Map starts it.
    for run_date, batch in (("2025-06-01", "2025-06-01-2025-06-02"), ("2025-06-03", "2025-06-03-2025-06-04")):
        sfn.start_execution(
            stateMachineArn=machine,
            name=f"nightly-{run_date}",
            input=json.dumps(
                {
                    "run_date": run_date,
                    "cluster": {"cluster_id": "j-1"},
                    "batch": f"{executions}:nightly-batch-{batch}",
                }
            ),
        )

    code, notices = _run(pipeline, DeployedRequest("stop", ("2025-06-03",)), io.BytesIO())
    assert (code, notices) == (
        0,
        ["run nightly-2025-06-03 stopped", "no cluster of nightly-2025-06-03 is alive"],
    )

    code, notices = _run(pipeline, DeployedRequest("stop", dates), io.BytesIO())

    assert code == 0, notices
    folder = _shown_path(pipeline.folder)
    assert notices == [
        "batch nightly-batch-2025-06-01-2025-06-02 stopped",
        "run nightly-2025-06-01 stopped",
        "no cluster of nightly-batch-2025-06-01-2025-06-02 is alive",
        f"not started: 2025-06-02 (start: python -m runner {folder} --deployed --start --run-date 2025-06-02)",
        "batch nightly-batch-2025-06-03-2025-06-04 stopped",
        "no cluster of nightly-batch-2025-06-03-2025-06-04 is alive",
        f"not started: 2025-06-04 (start: python -m runner {folder} --deployed --start --run-date 2025-06-04)",
    ]
    statuses = {e["name"]: e["status"] for e in sfn.list_executions(stateMachineArn=machine)["executions"]}
    assert set(statuses.values()) == {"ABORTED"}


def test_follow_of_a_range_reattaches_to_its_batch_and_the_dates_waiting_in_it(not_executing: Any) -> None:
    """After a detach, --follow --run-date A..B finds the running batch that holds the range: a date
    of it that ended gets its line, those still waiting in it their table row (before: the error
    `no run of nightly for 2025-06-02`, since a date waiting in a batch has no execution yet); a date outside
    the batch is its own latest run. Ctrl-C detaches again, naming the batch."""
    sfn, machine, pipeline = not_executing
    executions = machine.replace(":stateMachine:", ":execution:")
    batch = "nightly-batch-2025-06-01-2025-06-03"
    dates = days("2025-06-01", 3)
    runs = [{"run_date": d, "name": f"nightly-{d}"} for d in dates]
    sfn.start_execution(
        stateMachineArn=machine, name=batch, input=json.dumps({"run_date": dates[0], "batch": {"runs": runs}})
    )
    child = {"run_date": dates[0], "cluster": {"cluster_id": "j-1"}, "batch": f"{executions}:{batch}"}
    for name, given in (("nightly-2025-05-31", {"run_date": "2025-05-31"}), ("nightly-2025-06-01", child)):
        arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps(given))["executionArn"]
        sfn.stop_execution(executionArn=arn)
    seen = threading.Event()
    stderr = Watched(b"run date 2025-06-01", seen)
    user = ctrl_c_when(seen)

    code, notices = _run(pipeline, DeployedRequest("follow", ("2025-05-31", *dates)), stderr)
    user.join()

    assert code == 130, notices
    # (moto's Step Functions with execution off keeps no history of a stopped run: the follower, which
    # reads a run's end from its history, takes these two for ended well.)
    assert [n.split(":")[0] for n in notices[:2]] == ["run date 2025-05-31", "run date 2025-06-01"]
    table = [re.split(r"\s{2,}", line.strip()) for line in notices[3:7]]
    assert [row[0] for row in table] == ["2025-05-31", *dates]
    assert [row[1] for row in table[2:]] == [f"waiting in {batch}"] * 2
    assert notices[7] == "4 dates: 2 succeeded, 0 failed, 2 not run"
    folder = _shown_path(pipeline.folder)
    assert notices[-1] == (
        f"detached; {batch} goes on in AWS. Reattach: python -m runner {folder} --deployed --follow"
        f" --run-date 2025-05-31..2025-06-03; stop it: python -m runner {folder} --deployed --stop"
        " --run-date 2025-05-31..2025-06-03"
    )


@pytest.fixture
def recording(test_synth: Synthesis, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, Pipeline]]:
    """A state machine in moto's interpreter whose RecordRun state outputs the record its input carries:
    the records a batch and its dates leave (lambdas/shared/run_record.py), read as --history reads them."""
    set_moto_env(monkeypatch)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        sfn = boto3.client("stepfunctions", region_name=REGION)
        arn = sfn.create_state_machine(
            name="Nightshift-nightly",
            definition=json.dumps(
                {
                    "StartAt": "RecordRun",
                    "States": {
                        "RecordRun": {"Type": "Pass", "Parameters": {"run_record.$": "$.record"}, "End": True}
                    },
                }
            ),
            roleArn="arn:aws:iam::123456789012:role/sfn",
            tags=[
                {"key": "nightshift:stack", "value": "Nightshift"},
                {"key": "nightshift:pipeline", "value": "nightly"},
                {"key": "nightshift:runner-log-group", "value": "/nightshift/Nightshift/nightly/runner"},
            ],
        )["stateMachineArn"]
        yield sfn, arn, load_pipeline(test_synth.pipelines_dir / "nightly")


def test_history_shows_a_dates_share_of_its_batchs_cluster(recording: Any) -> None:
    """A date of a batch prices no cluster (its record: cluster shared_in <batch>); its row's cost is
    its share from the batch's record (own time and tasks + its part of the start), and a line after
    the table says so; a batch without a record yet says the share is to come."""
    sfn, machine, pipeline = recording
    batch = "nightly-batch-2025-06-01-2025-06-02"
    dates = [
        {"run_date": "2025-06-01", "name": "nightly-2025-06-01", "status": "SUCCEEDED", "seconds": 600.0,
         "tasks_usd": 0.02, "own_usd": 0.4, "start_share_usd": 0.35},
        {"run_date": "2025-06-02", "name": "nightly-2025-06-02", "status": "SUCCEEDED", "seconds": 500.0,
         "tasks_usd": 0.02, "own_usd": 0.3, "start_share_usd": 0.25},
    ]  # fmt: skip
    runs: list[tuple[str, dict[str, Any]]] = [
        (batch, {"failure": None, "cost": {"total_usd": 1.3}, "dates": dates}),
        (
            "nightly-2025-06-01",
            {"failure": None, "cost": {"total_usd": 0.02}, "cluster": {"shared_in": batch}},
        ),
        (
            "nightly-2025-06-02",
            {"failure": None, "cost": {"total_usd": 0.02}, "cluster": {"shared_in": batch}},
        ),
        (
            "nightly-2025-06-03",
            {
                "failure": None,
                "cost": {"total_usd": 0.02},
                "cluster": {"shared_in": "nightly-batch-2025-06-03-2025-06-04"},
            },
        ),
    ]
    for name, record in runs:
        arn = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps({"record": record}))[
            "executionArn"
        ]
        deadline = time.monotonic() + 60
        while sfn.describe_execution(executionArn=arn)["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.02)

    code, notices = _run(pipeline, DeployedRequest("history"), io.BytesIO())

    assert code == 0, notices
    rows = {cells[1]: cells for cells in (re.split(r"\s{2,}", line.strip()) for line in notices[1:5])}
    assert {name: (cells[0], cells[5]) for name, cells in rows.items()} == {
        batch: ("2025-06-01..2025-06-02", "$1.30"),
        "nightly-2025-06-01": ("2025-06-01", "$0.75"),
        "nightly-2025-06-02": ("2025-06-02", "$0.55"),
        "nightly-2025-06-03": ("2025-06-03", "-"),
    }
    assert sorted(notices[5:]) == [
        "nightly-2025-06-01: shared in nightly-batch-2025-06-01-2025-06-02: $0.40 for its own time and tasks,"
        " $0.35 its part of the cluster's start and idle time",
        "nightly-2025-06-02: shared in nightly-batch-2025-06-01-2025-06-02: $0.30 for its own time and tasks,"
        " $0.25 its part of the cluster's start and idle time",
        "nightly-2025-06-03: shared in nightly-batch-2025-06-03-2025-06-04; its share comes with the batch's"
        " record (none yet)",
    ]


def test_a_range_runs_on_one_shared_cluster_a_line_per_date(deployed: Harness) -> None:
    """End to end in moto's interpreter: three dates at the nightly pipeline's one run at once are one
    batch on one cluster, each date its own execution (its run id, its line), then the table; exit 0
    and the cluster terminated."""
    dates = days("2025-06-01", 3)

    result = run_cli(deployed, DeployedRequest("start", dates))

    assert result.code == 0, result.notices
    notices = result.notices
    assert notices[:2] == [
        "backfill of 3 dates on 1 shared cluster, at most 1 at once",
        "batch nightly-batch-2025-06-01-2025-06-03 started: 3 dates, 2025-06-01..2025-06-03, one cluster",
    ]
    ended = [n.split(": succeeded in ")[0] for n in notices if n.startswith("run date 20")]
    assert ended == [f"run date {d}" for d in dates]
    assert notices[-1] == "3 dates: 3 succeeded, 0 failed"
    names = sorted(e["name"] for e in executions(deployed))
    assert names == [
        "nightly-2025-06-01",
        "nightly-2025-06-02",
        "nightly-2025-06-03",
        "nightly-batch-2025-06-01-2025-06-03",
    ]
    clusters = deployed.clusters()
    assert [c["Status"]["State"] for c in clusters] == ["TERMINATED"]


def test_each_date_of_a_backfill_is_shown_as_a_night_from_its_one_stages_task(deployed: Harness) -> None:
    """Each date runs its stages in one `Run stages` task (docs/backfill.md). The middle date's
    30_funnel.sql fails (its SQL refused on that date only), three times with its two retries: its
    range line names that step and its exit code, as a night's line does, and the range exits 1.
    --follow of that date afterwards shows what a night shows from that one stream: its steps' output,
    each step's end, the retries, the run's failure, the table; exit 1. A date that succeeded: exit 0."""
    deployed.faults.scripts["10_users.sql"] = StepScript(chunks=[("stdout", b"users: 42 rows\n")])

    def funnel(command: list[str]) -> None:
        if command[command.index("--run-date") + 1] == "2025-06-02":
            raise RuntimeError("table funnel is locked")

    deployed.faults.step_actions["30_funnel.sql"] = funnel
    dates = days("2025-06-01", 3)

    result = run_cli(deployed, DeployedRequest("start", dates))

    assert result.code == 1, result.notices
    assert result.stdout == b""  # a range prints no step output (README): one line per date
    lines = [n for n in result.notices if n.startswith("run date 20")]
    assert [line.split(": ")[1].split(" in ")[0] for line in lines] == [
        "succeeded",
        "failed (exit 1)",
        "succeeded",
    ]
    assert lines[1].startswith("run date 2025-06-02: ") and lines[1].endswith(
        ": 30_funnel.sql failed (exit 1)"
    )
    assert result.notices[-1] == "3 dates: 2 succeeded, 1 failed"
    assert [c["Status"]["State"] for c in deployed.clusters()] == ["TERMINATED"]

    child = next(e["executionArn"] for e in executions(deployed) if e["name"] == "nightly-2025-06-02")
    assert RUN_STAGES_STATE in deployed.states_entered(child)  # one runner task, not a task per step
    failed = run_cli(deployed, DeployedRequest("follow", ("2025-06-02",)))

    assert failed.code == 1, failed.notices
    assert failed.stdout == b"users: 42 rows\n"
    notices = failed.notices
    assert notices[0] == "run nightly-2025-06-02 failed; its output:"
    in_order = [
        "stage 10 started",
        "10_users.sql: started (spark-sql)",
        "10_users.sql: finished with exit code 0",
        "stage 20 started",
        "20_sessions.hql: finished with exit code 0",
        "stage 30 started",
        "30_funnel.sql: retrying (attempt 2 of 3)",
        "30_funnel.sql: retrying (attempt 3 of 3)",
        "run failed after",
        "step ",
    ]
    positions = [next(i for i, n in enumerate(notices) if n.startswith(prefix)) for prefix in in_order]
    assert positions == sorted(positions), notices
    assert notices.count("30_funnel.sql: failed with exit code 1") == 3
    assert [n for n in notices if n.startswith("step ")] == [notices[positions[-1]]]  # not the runner's too
    (failure,) = [n for n in notices if n.startswith("run failed after")]
    assert failure.endswith(": 30_funnel.sql exited with code 1"), failure
    table = notices[positions[-1] + 1 :]
    rows = {cells[0]: cells[2] for cells in (re.split(r"\s{2,}", row.strip()) for row in table)}
    assert rows == {
        "10_events.sql": "succeeded", "10_users.sql": "succeeded", "20_sessions.hql": "succeeded",
        "30_funnel.sql": "failed (exit 1)", "30_segments.sql": "succeeded",
    }  # fmt: skip

    succeeded = run_cli(deployed, DeployedRequest("follow", ("2025-06-01",)))

    assert succeeded.code == 0, succeeded.notices
    assert succeeded.stdout == b"users: 42 rows\n"
    assert "30_funnel.sql: finished with exit code 0" in succeeded.notices


def test_stop_in_the_middle_of_a_backfill_terminates_its_cluster_and_names_the_dates_not_started(
    deployed: Harness,
) -> None:
    """The first date of a batch holds in its first step; --stop of the range stops the batch and that
    date, terminates the shared cluster and names the two dates the batch never started."""
    held = StepScript(gate_after=0, gate_timeout=600)  # opened by the test; the timeout is only a backstop
    deployed.faults.scripts["10_users.sql"] = held
    started = threading.Event()
    stderr = Watched(b"batch nightly-batch-2025-06-01-2025-06-03 started", started)
    user = ctrl_c_when(started)
    dates = days("2025-06-01", 3)
    try:
        detached = run_cli(deployed, DeployedRequest("start", dates), stderr=stderr)
        user.join()
        assert detached.code == 130, detached.notices
        assert held.reached_gate.wait(120)

        result = run_cli(deployed, DeployedRequest("stop", dates))
    finally:
        held.gate.set()

    assert result.code == 0, result.notices
    (cluster,) = deployed.clusters()
    cluster_id = cluster["Id"]
    folder = _shown(deployed)
    assert result.notices == [
        "batch nightly-batch-2025-06-01-2025-06-03 stopped",
        *(["run nightly-2025-06-01 stopped"] if "run nightly-2025-06-01 stopped" in result.notices else []),
        f"terminating cluster {cluster_id}",
        f"cluster {cluster_id} terminated",
        f"not started: 2025-06-02..2025-06-03 (start: python -m runner {folder} --deployed --start"
        " --run-date 2025-06-02..2025-06-03)",
    ]
    # StopExecution ends an execution at once on AWS; moto's interpreter ends it when the worker thread
    # of its program sees the stop: wait for that (a bound for a hang), then read what it ended as.
    deadline = time.monotonic() + 60
    while any(e["status"] == "RUNNING" for e in executions(deployed)) and time.monotonic() < deadline:
        time.sleep(0.05)
    statuses = {e["name"]: e["status"] for e in executions(deployed)}
    # Step Functions ends a stopped execution ABORTED; moto's interpreter, stopped inside the Map's
    # iteration, fails it instead (an AttributeError in its Map): either way it runs no next date.
    assert statuses.pop("nightly-batch-2025-06-01-2025-06-03") in ("ABORTED", "FAILED")
    assert statuses == {"nightly-2025-06-01": "ABORTED"}
    assert deployed.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]["State"] == "TERMINATED"
