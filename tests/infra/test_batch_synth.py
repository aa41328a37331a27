"""A batch and its dates as synthesized (issue 22): the nested executions' states, timeouts and IAM."""

# ruff: noqa: F811 - the shared synth fixtures are imported, then named as parameters
from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from infra.workflow import ECS_TRANSIENT_ERRORS, execution_timeout_minutes, stages_task_timeout_minutes
from lambdas.shared import run_states
from runner.deployed import calls as manifest
from runner.model import load_pipeline
from tests.infra.conftest import ACCOUNT, REGION, Synthesis
from tests.infra.test_aws_iam_rules import _call, deployment_of
from tests.infra.test_catalog import example_synth  # noqa: F401 - the shared sql/ synth
from tests.infra.test_inputs_gate import gated_synth  # noqa: F401 - the shared gated synth
from tests.support.aws import base_context, definition_of, states_of


def _resolve(token: dict[str, Any]) -> str:
    pseudo = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}
    return pseudo.get(token.get("Ref", ""), "TOKEN")


def _definition(synth: Synthesis, pipeline: str = "example") -> dict[str, Any]:
    return definition_of(synth, pipeline, _resolve)


def test_a_batch_runs_each_date_as_an_execution_of_its_own_state_machine(example_synth: Synthesis) -> None:
    """`Dates` maps over the batch's runs one at a time; each `Run date` starts this same state machine
    with the date's name and waits for it (startExecution.sync:2), associated with the batch by
    AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID from the context object; a failed date is caught so
    the next one runs.

    "Start a new AWS Step Functions state machine from a running execution", AWS Step Functions
    Developer Guide: https://docs.aws.amazon.com/step-functions/latest/dg/connect-stepfunctions.html
    """
    definition = _definition(example_synth)
    states = states_of(definition)
    dates = states[run_states.DATES_STATE]
    assert dates["ItemsPath"] == "$.request.batch.runs" and dates["MaxConcurrency"] == 1
    selector = dates["ItemSelector"]
    assert selector["run.$"] == "$$.Map.Item.Value"
    assert selector["input"] == {
        "run_date.$": "$$.Map.Item.Value.run_date",
        "cluster": {"cluster_id.$": "$.cluster.cluster_id"},
        "batch.$": "$$.Execution.Id",
        "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID.$": "$$.Execution.Id",
    }
    run = states[run_states.RUN_DATE_STATE]
    assert run["Resource"] == "arn:aws:states:::states:startExecution.sync:2"
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{example_synth.stack.stack_name}-example"
    assert run["Parameters"] == {"StateMachineArn": machine, "Name.$": "$.run.name", "Input.$": "$.input"}
    assert run["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": run_states.DATE_FAILED_STATE}
    ]
    assert states[run_states.DATE_FAILED_STATE]["Parameters"]["failed"] is True
    # from_stage goes to a date only when the batch has one (a null one would be refused).
    choice = states[run_states.FROM_STAGE_CHOICE_STATE]
    assert choice["Choices"][0]["Variable"] == "$.request.from_stage"
    assert states[run_states.DATE_FROM_STAGE_STATE]["ResultPath"] == "$.input.from_stage"
    # After the dates, the cluster is terminated, the batch recorded, and failed dates named.
    assert dates["Next"] == run_states.LEAVE_OR_TERMINATE_STATE
    assert states[run_states.LEAVE_OR_TERMINATE_STATE]["Default"] == run_states.TERMINATE_CLUSTER_STATE
    assert states["BatchFailed"]["Error"] == run_states.DATES_FAILED_ERROR
    ready = [c["Next"] for c in states["ClusterReady?"]["Choices"]]
    assert ready.index(run_states.DATES_STATE) < ready.index("Stage 10?")


def test_a_date_of_a_batch_uses_its_batchs_cluster_and_leaves_it(example_synth: Synthesis) -> None:
    """A child (its input names a cluster) creates none: one ClusterStatus asks about its batch's
    cluster with the batch's execution, and its every ending path leaves the cluster to the batch."""
    states = states_of(_definition(example_synth))
    first = states[run_states.BATCH_OR_DATE_STATE]["Choices"][0]
    assert first == {
        "Variable": "$.request.cluster",
        "IsPresent": True,
        "Next": run_states.PREPARE_DATE_STATE,
    }
    prepare = states[run_states.PREPARE_DATE_STATE]["Parameters"]
    assert prepare["arn.$"] == prepare["owner.$"] == "$.request.batch"
    given = states[run_states.GIVEN_CLUSTER_STATE]
    assert given["Choices"][0]["Next"] == run_states.USE_CLUSTER_STATE and given["Default"] == "CreateCluster"
    assert states[run_states.USE_CLUSTER_STATE]["Next"] == run_states.CLUSTER_STATUS_STATE
    payload = states[run_states.CLUSTER_STATUS_STATE]["Parameters"]["Payload"]
    assert payload["execution_arn.$"] == "$.batch.owner"
    # Not ready: no stage, no launch again, no terminate.
    ready = states["ClusterReady?"]["Choices"]
    gone = [c for c in ready if c.get("Variable") == "$.request.cluster"]
    assert [c["Next"] for c in gone] == ["BatchClusterNotReady"]
    assert ready.index(gone[0]) < [c["Next"] for c in ready].index(run_states.NEXT_LAUNCH_STATE)
    leave = states[run_states.LEAVE_OR_TERMINATE_STATE]
    assert leave["Choices"] == [
        {"Variable": "$.request.cluster", "IsPresent": True, "Next": run_states.LEAVE_CLUSTER_STATE}
    ]
    assert states[run_states.LEAVE_CLUSTER_STATE]["Next"] == run_states.RECORD_RUN_STATE
    # What the Lambdas are told: a batch's dates, a child's batch (models.py's fields).
    preflight = states[run_states.PREFLIGHT_STATE]["Parameters"]["Payload"]
    assert (preflight["batch_dates.$"], preflight["batch_arn.$"]) == ("$.batch.dates", "$.batch.arn")
    record = states[run_states.RECORD_RUN_STATE]["Parameters"]  # the payload itself: response only
    assert (record["batch_runs.$"], record["batch_arn.$"]) == ("$.batch.runs", "$.batch.arn")
    # The pipeline's stages, static: what a date's stages task never ran is what its stream lacks.
    pipeline = load_pipeline(example_synth.pipelines_dir / "example")
    assert record["stages"] == [
        {"stage": stage.number, "steps": [step.name for step in stage.steps], "checks": bool(stage.checks)}
        for stage in pipeline.stages
    ]
    assert record["stages"][0] == {"stage": 10, "steps": ["10_events", "10_users"], "checks": True}
    create = states[run_states.CREATE_CLUSTER_STATE]["Parameters"]["Payload"]
    assert create["last_run_date.$"] == "$.batch.last.run_date"


def test_a_batch_may_run_max_batch_dates_nights_and_each_date_one(example_synth: Synthesis) -> None:
    """The machine's TimeoutSeconds is MAX_BATCH_DATES nights (a batch); each `Run date` has one
    night's, so a stuck date fails as a night would and its batch goes on."""
    definition = _definition(example_synth)
    pipeline = load_pipeline(example_synth.pipelines_dir / "example")
    settings = base_context()  # example_synth's own: cdk.json's start timeout and queue poll
    night = execution_timeout_minutes(
        pipeline, settings["cluster_start_timeout_minutes"], settings.get("queue_poll_seconds", 60)
    )
    assert states_of(definition)[run_states.RUN_DATE_STATE]["TimeoutSeconds"] == night * 60
    assert definition["TimeoutSeconds"] == run_states.MAX_BATCH_DATES * night * 60


def test_a_gated_date_of_a_batch_checks_its_inputs_once(gated_synth: Synthesis) -> None:
    """A child whose inputs are missing ends at once (InputsMissing), never waits: its batch's cluster
    would idle meanwhile. A batch checks none: its dates do."""
    states = states_of(definition_of(gated_synth, "gated"))
    choices = states["Inputs there?"]["Choices"]
    # Right after "ready": before the deadline's rule and the wait.
    assert choices[1] == {
        "Variable": "$.request.cluster",
        "IsPresent": True,
        "Next": run_states.DATE_INPUTS_MISSING_STATE,
    }
    assert states["InputsMissingForDate"] == {
        "Type": "Fail",
        "Error": run_states.INPUTS_MISSING_ERROR,
        "CausePath": "$.inputs.late.cause",
    }
    assert states[run_states.PREPARE_BATCH_STATE]["Next"] == run_states.PREFLIGHT_STATE
    assert states[run_states.PREPARE_DATE_STATE]["Next"] == "StartInputsCheck"


def test_the_state_machine_may_start_wait_for_and_stop_only_its_own_dates(
    request: pytest.FixtureRequest,
) -> None:
    """A .sync nested execution needs states:StartExecution on the state machine it starts,
    states:DescribeExecution and states:StopExecution on its executions, and events:PutTargets,
    PutRule and DescribeRule on the managed rule StepFunctionsGetEventsForStepFunctionsExecutionRule.
    Here the machine starts only itself: another pipeline's machine, its executions and any other
    rule are denied.

    "IAM policies for AWS Step Functions" (nested executions, Synchronous), AWS Step Functions
    Developer Guide: https://docs.aws.amazon.com/step-functions/latest/dg/stepfunctions-iam.html
    """
    deployment = deployment_of(request, manifest.STATE_MACHINE)
    stack = deployment.stack
    start = _call(manifest.STATE_MACHINE, "states:StartExecution")
    assert start.resource == "{state_machine}"
    assert deployment.decide(start).allowed
    other_machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{stack}-adhoc"
    assert not deployment.decide(replace(start, resource=other_machine)).allowed
    for action in ("states:DescribeExecution", "states:StopExecution"):
        call = _call(manifest.STATE_MACHINE, action)
        assert call.resource == "{execution}"
        assert deployment.decide(call).allowed, action
        other = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{stack}-adhoc:adhoc-2025-06-01"
        assert not deployment.decide(replace(call, resource=other)).allowed, action
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        call = _call(manifest.STATE_MACHINE, action, "StepFunctionsGetEventsForStepFunctionsExecutionRule")
        assert deployment.decide(call).allowed, action
        mine = call.resource.replace("StepFunctionsGetEventsForStepFunctionsExecutionRule", "Mine")
        assert not deployment.decide(replace(call, resource=mine)).allowed, action


def _runs_into(states: dict[str, dict[str, Any]], target: str) -> list[str]:
    """The states whose Next, Default, a Choice rule or a Catch leads to `target`."""
    found = []
    for name, state in states.items():
        nexts = [state.get("Next"), state.get("Default")]
        nexts += [rule["Next"] for rule in state.get("Choices", [])]
        nexts += [catch["Next"] for catch in state.get("Catch", [])]
        if target in nexts:
            found.append(name)
    return found


def test_a_date_of_a_batch_runs_every_stage_in_one_runner_task(example_synth: Synthesis) -> None:
    """A child that is not a checks-only run goes from ClusterReady? to `Stages command` and ONE
    `Run stages` task: the runner image on Fargate (awsvpc, the runner's task definition), its
    command the pipeline folder with the run's cluster, date and id, --no-wait --step-retries, and
    --from-stage only when the date has one (States.Format makes the number a string: ECS's Command
    is a list of strings). Retried only when ECS failed to run it (the runner retries its steps);
    any failure is caught to Leave cluster? with $.error; its TimeoutSeconds every stage's slowest
    step with its retries and each stage's checks, plus the task margin.

    "Run Amazon ECS or Fargate tasks with Step Functions" (runTask.sync, ContainerOverrides, a
    non-empty Failures field is AmazonECS.Unknown), AWS Step Functions Developer Guide:
    https://docs.aws.amazon.com/step-functions/latest/dg/connect-ecs.html
    "Intrinsic functions for JSONPath states in Step Functions" (States.Array, States.Format, nesting
    up to 10), AWS Step Functions Developer Guide:
    https://docs.aws.amazon.com/step-functions/latest/dg/intrinsic-functions.html
    """
    states = states_of(_definition(example_synth))
    ready = states["ClusterReady?"]["Choices"]
    (rule,) = [c for c in ready if c["Next"] == run_states.STAGES_COMMAND_STATE]
    conditions = rule["And"]
    assert {"Variable": "$.status.ready", "BooleanEquals": True} in conditions
    assert {"Variable": "$.request.cluster", "IsPresent": True} in conditions
    # A checks-only child (never one of a batch's: the CLI sends no checks_only in a batch) runs its
    # checks as a night does.
    assert {
        "Not": {
            "And": [
                {"Variable": "$.request.checks_only", "IsPresent": True},
                {"Variable": "$.request.checks_only", "BooleanEquals": True},
            ]
        }
    } in conditions
    order = [c["Next"] for c in ready]
    assert order.index(run_states.STAGES_COMMAND_STATE) < order.index("Stage 10?")
    assert _runs_into(states, run_states.STAGES_COMMAND_STATE) == ["ClusterReady?"]

    choice = states[run_states.STAGES_COMMAND_STATE]
    assert choice["Type"] == "Choice"
    assert choice["Choices"] == [
        {"Variable": "$.request.from_stage", "IsPresent": True, "Next": "Stages command from_stage"}
    ]
    assert choice["Default"] == "Stages command every stage"
    common = (
        "'sql/example', '--cluster-id', $.cluster.cluster_id, '--run-date', $.run_date, "
        "'--run-id', $$.Execution.Name, '--log-format', 'json', '--no-wait', '--step-retries'"
    )
    every, from_stage = states["Stages command every stage"], states["Stages command from_stage"]
    assert every["Parameters"] == {"command.$": f"States.Array({common})"}
    assert from_stage["Parameters"] == {
        "command.$": f"States.Array({common}, '--from-stage', States.Format('{{}}', $.request.from_stage))"
    }
    for command in (every, from_stage):
        assert (command["Type"], command["ResultPath"], command["Next"]) == (
            "Pass",
            "$.stages",
            run_states.RUN_STAGES_STATE,
        )

    run = states[run_states.RUN_STAGES_STATE]
    step = states["Run 20_sessions"]
    assert run["Resource"] == step["Resource"] == "arn:aws:states:::ecs:runTask.sync"
    parameters = run["Parameters"]
    assert parameters["Overrides"] == {
        "ContainerOverrides": [{"Name": "runner", "Command.$": "$.stages.command"}]
    }
    # Everything else as a step's task: the cluster, the runner's task definition, Fargate, awsvpc.
    assert {k: v for k, v in parameters.items() if k != "Overrides"} == {
        k: v for k, v in step["Parameters"].items() if k != "Overrides"
    }
    assert parameters["LaunchType"] == "FARGATE"
    assert parameters["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"]
    pipeline = load_pipeline(example_synth.pipelines_dir / "example")
    # sql/example: timeout_minutes 60, retries 1 (60 s apart), three stages, each with checks.
    assert stages_task_timeout_minutes(pipeline) == 3 * (2 * 60 + 1) + 3 * 60 + 10
    assert run["TimeoutSeconds"] == stages_task_timeout_minutes(pipeline) * 60
    assert [r["ErrorEquals"] for r in run["Retry"]] == [ECS_TRANSIENT_ERRORS]
    assert run["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": run_states.LEAVE_OR_TERMINATE_STATE}
    ]
    assert run["Next"] == run_states.LEAVE_OR_TERMINATE_STATE
    assert sorted(_runs_into(states, run_states.RUN_STAGES_STATE)) == [
        "Stages command every stage",
        "Stages command from_stage",
    ]


def test_a_nights_steps_keep_their_own_tasks_and_retries(example_synth: Synthesis) -> None:
    """A night (no $.request.cluster) never reaches `Run stages`: its stages are still one task per
    step with the state machine's States.TaskFailed retry, and one task per stage's checks."""
    states = states_of(_definition(example_synth))
    ready = states["ClusterReady?"]["Choices"]
    night = [c for c in ready if c["Next"] == "Stage 10?"]
    assert night == [{"Variable": "$.status.ready", "BooleanEquals": True, "Next": "Stage 10?"}]
    step = states["Run 10_events"]
    assert any(r["ErrorEquals"] == ["States.TaskFailed"] for r in step["Retry"])
    assert "--no-wait" not in step["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"]
    assert "Check Stage 10" in states and "Check Stage 30" in states
