"""One state machine per pipeline, drawn from its folder by the runner's own pipeline model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from math import ceil
from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack, Tags, Token
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from infra.cluster_lifecycle import ClusterLifecycle
from infra.contract import check_create_cluster_payload
from infra.inputs import check_inputs_payload, inputs_wait_minutes
from infra.nag import arn_finding, checkov_skip, suppress
from infra.network import Network
from infra.runner_task import CONTAINER_NAME, PipelineTask, RunnerTask
from lambdas.shared import run_states
from lambdas.shared.clusters import TAG_PIPELINE, TAG_STACK
from lambdas.shared.run_states import (
    BATCH_FAILED_STATE,
    BATCH_OR_DATE_STATE,
    CHECK_INPUTS_STATE,
    CLUSTER_GONE_ERROR,
    CLUSTER_STATUS_STATE,
    CREATE_CLUSTER_STATE,
    DATE_FAILED_STATE,
    DATE_FROM_STAGE_STATE,
    DATE_INPUTS_MISSING_STATE,
    DATES_FAILED_ERROR,
    DATES_STATE,
    FROM_STAGE_CHOICE_STATE,
    GIVEN_CLUSTER_STATE,
    INPUTS_MISSING_ERROR,
    LEAVE_CLUSTER_STATE,
    LEAVE_OR_TERMINATE_STATE,
    MAX_BATCH_DATES,
    NEXT_LAUNCH_STATE,
    PREFLIGHT_STATE,
    PREPARE_BATCH_STATE,
    PREPARE_DATE_STATE,
    RUN_DATE_STATE,
    RUN_STAGES_STATE,
    STAGES_COMMAND_STATE,
    TERMINATE_CLUSTER_STATE,
    USE_CLUSTER_STATE,
)
from runner.canary import (
    CANARY_IMAGE_PATH,
    CANARY_INPUT,
    DATABASE_VARIABLE,
    canary_applications,
    canary_database,
    canary_pipeline,
)
from runner.config import ClusterProfile
from runner.model import Pipeline, Stage, Step

# Lambda answers worth retrying; TransientAwsError is the handlers' own "AWS throttled us".
LAMBDA_TRANSIENT_ERRORS = [
    "TransientAwsError",
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
]
# RunTask throttled, ECS having a bad moment, or Fargate out of capacity (a non-empty Failures list).
ECS_TRANSIENT_ERRORS = [
    "ECS.ThrottlingException",
    "ECS.ServerException",
    "ECS.AmazonECSException",
    "AmazonECS.Unknown",
]
TERMINATE_ATTEMPTS = 3
# AWS's prefix for log groups that services deliver to ("Avoiding Amazon CloudWatch Logs resource
# policy size restrictions", Step Functions developer guide).
VENDED_LOGS_PREFIX = "/aws/vendedlogs/"
# Headroom in the execution timeout for preflight, terminate and Fargate start-ups.
EXECUTION_SLACK_MINUTES = 30
# The runner enforces timeout_minutes itself (stopping the remote step, exit 124, a clear log
# line); the task's own timeout only backs it up, after Fargate's start-up and the stop's grace.
TASK_TIMEOUT_MARGIN_MINUTES = 10
# The CLI (runner/deployed) finds a pipeline's state machine by TAG_STACK and TAG_PIPELINE (the
# clusters' own keys), and reads the steps' output from the log group this tag names.
TAG_RUNNER_LOG_GROUP = "nightshift:runner-log-group"
# The execution input's optional first stage to run (`{"run_date": ..., "from_stage": 30}`), as
# PrepareRun keeps it.
FROM_STAGE = "$.request.from_stage"
# A checks-only run (`{"run_date": ..., "checks_only": true}`, the CLI's `--deployed --checks-only`):
# the cluster as usual, no step, the checks of every stage, or with `checks_stage` of that one stage
# only (as `--checks-only --stage N` runs locally), then the cluster terminated.
CHECKS_ONLY = "$.request.checks_only"
CHECKS_STAGE = "$.request.checks_stage"
# A canary run (`{"run_date": ..., "canary": true}`, the CLI's `--deployed --canary`): the same
# Preflight, Lambdas and runner task as a night, on a master-only cluster, running the runner's
# built-in canary pipeline (runner/nightshift_canary) instead of the pipeline's stages.
CANARY = f"$.request.{CANARY_INPUT}"
# A batch (a shared-cluster backfill, docs/backfill.md): `{"run_date": <first>, "batch": {"runs":
# [{"run_date", "name"}, ...]}, "from_stage"?}`: it owns one cluster and runs each date as a child
# execution of this same state machine, one after another.
BATCH_RUNS = "$.request.batch.runs"
# A child (one date of a batch): `{"run_date", "from_stage"?, "cluster": {"cluster_id"}, "batch":
# <the batch's execution ARN>}`: it runs its stages on its batch's cluster and leaves it running.
GIVEN_CLUSTER = "$.request.cluster"
# Where `Stages command` puts a child's `Run stages` command (its task's container command).
STAGES_COMMAND = "$.stages.command"
# What PrepareRun, PrepareBatch or PrepareDate put at $.batch: the batch's dates and children's names
# (a batch), its batch (a child), and the execution whose tag the run's cluster carries.
BATCH = "$.batch"


@dataclass(frozen=True)
class WorkflowSettings:
    poll_seconds: int
    start_timeout_minutes: int
    log_retention: logs.RetentionDays
    log_uri: str
    ec2_key_name: str
    pipelines_folder: str = "sql"
    #: how often a run queued behind max_concurrent_runs asks Preflight again
    queue_poll_seconds: int = 60
    security_configuration: str | None = None
    log_key: kms.IKey | None = None


def launch_plans(
    profile: ClusterProfile, subnet_ids: list[str], *, master_only: bool = False
) -> list[dict[str, object]]:
    """The core instance type and count and the subnets of each launch attempt.

    The first launch offers EMR every subnet (instance fleets pick the one with capacity); each
    retry pins the next subnet in turn, so a retry is not sent straight back to the zone that
    just ran out, and takes the next of ``core_instance_types``. `master_only`: a canary's, no core,
    and with the applications its stages run on (hive among them) whatever the pipeline's.
    """
    applications = list(canary_applications(profile) if master_only else profile.applications)
    plans: list[dict[str, object]] = []
    for attempt in range(1, profile.launch_attempts + 1):
        subnets = subnet_ids if attempt == 1 else [subnet_ids[(attempt - 1) % len(subnet_ids)]]
        plans.append(
            {
                "core_instance_type": profile.core_instance_type_for(attempt),
                "core_instance_count": 0 if master_only else profile.core_instance_count,
                "subnet_ids": subnets,
                "applications": applications,
            }
        )
    return plans


def task_definition_family_finding(task_definition: ecs.TaskDefinition) -> str:
    """cdk-nag's spelling of the `<task definition family ARN>:*` that EcsRunTask grants RunTask on."""
    stack = Stack.of(task_definition)
    ref = json.dumps({"Ref": stack.resolve(task_definition.node.default_child.logical_id)}).replace(" ", "")  # type: ignore[union-attr]

    def part(index: int) -> str:
        return f'{{"Fn::Select":[{index},{{"Fn::Split":[":",{ref}]}}]}}'

    def name_part(index: int) -> str:
        return f'{{"Fn::Select":[{index},{{"Fn::Split":["/",{part(5)}]}}]}}'

    return f"Resource::arn:{part(1)}:{part(2)}:{part(3)}:{part(4)}:{name_part(0)}/{name_part(1)}:*"


# The states' names are the run's contract with its readers (lambdas/shared/run_states.py).
RECORD_RUN_STATE = run_states.RECORD_RUN_STATE
PREPARE_CANARY_STATE = run_states.PREPARE_CANARY_STATE


def stage_state_name(stage: Stage) -> str:
    return run_states.stage_state_name(stage.number)


def skip_state_name(stage: Stage) -> str:
    return run_states.skip_state_name(stage.number)


def step_state_name(step: Step) -> str:
    return run_states.step_state_name(step.name)


def checks_state_name(stage: Stage) -> str:
    """The Fargate task that runs a stage's data checks, after its steps and before the next stage."""
    return run_states.checks_state_name(stage.number)


def step_command(pipeline: Pipeline, step: Step, pipelines_folder: str = "sql") -> list[str]:
    """The runner's arguments for one step (the image's entrypoint is `python -m runner`)."""
    return [f"{pipelines_folder}/{pipeline.name}/{step.file_name}", *_run_arguments()]


def _run_arguments() -> list[str]:
    """Where and as which run a task runs: the run's cluster, date and id, JSON lines for CloudWatch."""
    return [
        "--cluster-id",
        sfn.JsonPath.string_at("$.cluster.cluster_id"),
        "--run-date",
        sfn.JsonPath.string_at("$.run_date"),
        "--run-id",
        sfn.JsonPath.execution_name,
        "--log-format",
        "json",
    ]


def canary_state_name() -> str:
    """The canary's runner task: the canary pipeline's one step, as the follower names a step's state."""
    return step_state_name(canary_pipeline().steps[0])


def canary_command(pipeline: Pipeline) -> list[str]:
    """The runner's arguments for the canary: its whole folder (step, then check) on the run's cluster."""
    return [CANARY_IMAGE_PATH, "--var", f"{DATABASE_VARIABLE}={canary_database(pipeline)}", *_run_arguments()]


def stages_payload(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The pipeline's stages as RecordRun reads them: each one's step names in order, and if it has checks."""
    return [
        {"stage": stage.number, "steps": [step.name for step in stage.steps], "checks": bool(stage.checks)}
        for stage in pipeline.stages
    ]


def checks_command(pipeline: Pipeline, stage: Stage, pipelines_folder: str = "sql") -> list[str]:
    """The runner's arguments for one stage's data checks: one engine call on the run's cluster."""
    return [
        f"{pipelines_folder}/{pipeline.name}",
        "--checks-only",
        "--stage",
        str(stage.number),
        *_run_arguments(),
    ]


def stages_command(
    pipeline: Pipeline, pipelines_folder: str = "sql", *, from_stage: bool = False
) -> list[str]:
    """The runner's arguments for a date of a batch: its pipeline folder, every stage (or from from_stage).

    `--no-wait`: the state machine checked the date's inputs; `--step-retries`: the runner retries a
    failed step as the state machine retries a night's step task.
    """
    command = [
        f"{pipelines_folder}/{pipeline.name}",
        *_run_arguments(),
        "--no-wait",
        "--step-retries",
    ]
    if from_stage:
        command += ["--from-stage", sfn.JsonPath.format("{}", sfn.JsonPath.string_at(FROM_STAGE))]
    return command


def _step_minutes(pipeline: Pipeline, margin_minutes: int) -> tuple[int, int]:
    """A step's attempt with `margin_minutes`, and its every attempt with the retry intervals between them."""
    policy = pipeline.config.steps
    attempt = policy.timeout_minutes + margin_minutes
    retried = (policy.retries + 1) * attempt + ceil(policy.retries * policy.retry_interval_seconds / 60)
    return attempt, retried


def stages_task_timeout_minutes(pipeline: Pipeline) -> int:
    """The longest a date's `Run stages` task may run, every stage and its checks back to back.

    Each stage: its slowest step with every retry and the intervals between them; its checks: one
    step's attempt (the runner bounds them so); then the margin a step's task has.
    """
    attempt, retried = _step_minutes(pipeline, 0)
    checks = sum(1 for stage in pipeline.stages if stage.checks) * attempt
    return len(pipeline.stages) * retried + checks + TASK_TIMEOUT_MARGIN_MINUTES


def execution_timeout_minutes(pipeline: Pipeline, start_timeout_minutes: int, queue_poll_seconds: int) -> int:
    """Longest possible run: inputs, queue, cluster start, every stage's slowest step with its retries."""
    step_minutes, per_step = _step_minutes(pipeline, TASK_TIMEOUT_MARGIN_MINUTES)
    # Each launch may take the whole start timeout before it fails and the next one starts.
    launches = pipeline.config.cluster.launch_attempts * start_timeout_minutes
    # The last Preflight that finds no slot comes up to one poll after queue_minutes.
    queue = ceil(pipeline.config.queue_minutes + queue_poll_seconds / 60)
    waits = inputs_wait_minutes(pipeline) + queue
    # A stage's checks are one task, bounded as a step's attempt is (the runner's timeout_minutes).
    checks = sum(1 for stage in pipeline.stages if stage.checks) * step_minutes
    return waits + launches + len(pipeline.stages) * per_step + checks + EXECUTION_SLACK_MINUTES


class PipelineWorkflow(Construct):
    """Preflight, create the cluster, wait until ready, run the stages, always terminate the cluster."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipeline: Pipeline,
        pipeline_id: str,
        state_machine_name: str,
        lifecycle: ClusterLifecycle,
        runner: RunnerTask,
        task: PipelineTask,
        network: Network,
        instance_profile: iam.InstanceProfile,
        settings: WorkflowSettings,
    ) -> None:
        super().__init__(scope, construct_id)
        self._pipeline = pipeline
        self._lifecycle = lifecycle
        self._runner = runner
        self._task = task
        self._network = network
        self._instance_profile = instance_profile
        self._settings = settings
        self._pipeline_id = pipeline_id
        self._plans = launch_plans(pipeline.config.cluster, network.subnet_ids)
        self._canary_plans = launch_plans(pipeline.config.cluster, network.subnet_ids, master_only=True)

        self._state_machine_name = state_machine_name
        self._night_minutes = execution_timeout_minutes(
            pipeline, settings.start_timeout_minutes, settings.queue_poll_seconds
        )
        # A batch starts its dates as executions of this same state machine: by its name, as the
        # machine's own ARN would be a reference cycle in the template.
        self._self_reference = sfn.StateMachine.from_state_machine_name(self, "Itself", state_machine_name)
        terminate = self._lambda_state(
            TERMINATE_CLUSTER_STATE, lifecycle.terminate_cluster, self._terminate_payload()
        )
        # Every path that ends a run with a cluster comes here: a child leaves its batch's cluster.
        leave = sfn.Pass(
            self, LEAVE_CLUSTER_STATE, comment="a date of a batch: its batch terminates the cluster"
        )
        self.terminate = (
            sfn.Choice(self, LEAVE_OR_TERMINATE_STATE).when(_is_child(), leave).otherwise(terminate)
        )
        terminate.add_retry(
            errors=["States.ALL"],
            max_attempts=TERMINATE_ATTEMPTS,
            interval=Duration.seconds(10),
            backoff_rate=2,
        )
        terminate.add_catch(
            sfn.Fail(
                self,
                "ClusterNotTerminated",
                error="ClusterNotTerminated",
                cause_path="$.terminate_error.Cause",
            ),
            result_path="$.terminate_error",
        )
        succeeded = sfn.Succeed(self, "Succeeded")
        # Only after RecordRun: a batch whose dates failed names them.
        failed_dates = sfn.Pass(
            self,
            "FailedDates",
            parameters={"dates": sfn.JsonPath.list_at("$.dates.runs[?(@.failed == true)].run_date")},
            result_path="$.failed_dates",
        ).next(
            sfn.Fail(
                self,
                "BatchFailed",
                error=DATES_FAILED_ERROR,
                cause_path=sfn.JsonPath.format(
                    "dates failed: {}",
                    sfn.JsonPath.json_to_string(sfn.JsonPath.list_at("$.failed_dates.dates")),
                ),
            )
        )
        batch_failed = (
            sfn.Choice(self, BATCH_FAILED_STATE)
            .when(sfn.Condition.boolean_equals("$.dates.any_failed", True), failed_dates)
            .otherwise(succeeded)
        )
        record = self._record_run(
            sfn.Choice(self, "Run failed?")
            .when(
                sfn.Condition.is_present("$.error"),
                sfn.Fail(self, "RunFailed", error_path="$.error.Error", cause_path="$.error.Cause"),
            )
            .when(sfn.Condition.is_present("$.dates"), batch_failed)
            .otherwise(succeeded)
        )
        terminate.next(record)
        leave.next(record)
        preflight = self._preflight()
        definition = self._prepare().next(self._batch_or_date(self._inputs_gate(preflight), preflight))
        self.state_machine = self._build_state_machine(state_machine_name, definition)

    def _prepare(self) -> sfn.Pass:
        # Terminate must find a cluster_id (null before CreateCluster answers); Pass drops a literal None.
        return sfn.Pass(
            self,
            "PrepareRun",
            parameters={
                "run_date": sfn.JsonPath.string_at("$.run_date"),
                # The whole input, so that optional fields (from_stage) may be absent: a path to a
                # missing field would fail this state.
                "request": sfn.JsonPath.object_at("$$.Execution.Input"),
                "cluster": {"cluster_id": sfn.JsonPath.string_to_json("null"), "polls": 0},
                "queue": {"waited_seconds": 0},
                "launch": {"attempt": 1, "plan": self._plans[0], "plans": self._plans, "failures": ""},
                # A night: no batch; PrepareBatch or PrepareDate replace it.
                "batch": {
                    "dates": sfn.JsonPath.string_to_json("null"),
                    "runs": sfn.JsonPath.string_to_json("null"),
                    "last": {"run_date": sfn.JsonPath.string_to_json("null")},
                    "arn": sfn.JsonPath.string_to_json("null"),
                    "owner": sfn.JsonPath.execution_id,
                },
            },
        )

    def _batch_or_date(self, night: sfn.IChainable, preflight: sfn.IChainable) -> sfn.Choice:
        """After PrepareRun: a batch to Preflight, a child and a night to the inputs gate, if any.

        A batch checks no inputs: each of its dates checks its own, in its child execution.
        """
        runs = sfn.JsonPath.list_at(BATCH_RUNS)
        batch = sfn.Pass(
            self,
            PREPARE_BATCH_STATE,
            parameters={
                "dates": sfn.JsonPath.list_at(f"{BATCH_RUNS}[*].run_date"),
                "runs": sfn.JsonPath.list_at(f"{BATCH_RUNS}[*].name"),
                "last": sfn.JsonPath.array_get_item(
                    runs,
                    Token.as_number(
                        sfn.JsonPath.math_add(Token.as_number(sfn.JsonPath.array_length(runs)), -1)
                    ),
                ),
                "arn": sfn.JsonPath.string_to_json("null"),
                "owner": sfn.JsonPath.execution_id,
            },
            result_path=BATCH,
        )
        date = sfn.Pass(
            self,
            PREPARE_DATE_STATE,
            parameters={
                "dates": sfn.JsonPath.string_to_json("null"),
                "runs": sfn.JsonPath.string_to_json("null"),
                "last": {"run_date": sfn.JsonPath.string_to_json("null")},
                "arn": sfn.JsonPath.string_at("$.request.batch"),
                # Its cluster is tagged with its batch's execution, not its own.
                "owner": sfn.JsonPath.string_at("$.request.batch"),
            },
            result_path=BATCH,
        )
        return (
            sfn.Choice(self, BATCH_OR_DATE_STATE)
            .when(_is_child(), date.next(night))
            .when(sfn.Condition.is_present(BATCH_RUNS), batch.next(preflight))
            .otherwise(night)
        )

    def _inputs_gate(self, then: sfn.IChainable) -> sfn.IChainable:
        """Wait for the pipeline's [inputs] before `then` (Preflight): checks and Wait states, no cluster.

        Past the deadline the run fails as InputsLate, naming what is missing, before anything was
        created (so straight to a Fail, like a refused preflight). No [inputs]: no states at all.
        """
        inputs = self._pipeline.config.inputs
        if inputs is None:
            return then
        function, declared = self._lifecycle.check_inputs_function(self._pipeline_id, self._pipeline)
        # Whole seconds for the Wait state; the deadline counts in polls, as the cluster start does.
        poll_seconds = max(1, round(inputs.poll_minutes * 60))
        max_polls = ceil(inputs.wait_minutes * 60 / poll_seconds)
        start = sfn.Pass(self, "StartInputsCheck", parameters={"polls": 0}, result_path="$.inputs")
        check = self._lambda_state(
            CHECK_INPUTS_STATE,
            function,
            {
                **check_inputs_payload(self._pipeline, declared),
                "run_date": sfn.JsonPath.string_at("$.run_date"),
                "execution_arn": sfn.JsonPath.execution_id,
            },
            result_selector={
                "ready": sfn.JsonPath.string_at("$.Payload.ready"),
                "summary": sfn.JsonPath.string_at("$.Payload.summary"),
            },
            result_path="$.inputs.check",
        )
        late = sfn.Pass(
            self,
            "InputsMissing",
            parameters={
                "cause": sfn.JsonPath.format(
                    f"inputs still missing after {inputs.wait_minutes:g} minutes"
                    f" ({max_polls + 1} checks): {{}}",
                    sfn.JsonPath.string_at("$.inputs.check.summary"),
                )
            },
            result_path="$.inputs.late",
        ).next(sfn.Fail(self, "InputsLate", error="InputsLate", cause_path="$.inputs.late.cause"))
        count = sfn.Pass(
            self,
            "CountInputsPoll",
            parameters={"polls": sfn.JsonPath.math_add(sfn.JsonPath.number_at("$.inputs.polls"), 1)},
            result_path="$.inputs",
        )
        wait = sfn.Wait(self, "WaitForInputs", time=sfn.WaitTime.duration(Duration.seconds(poll_seconds)))
        # A date of a batch checks once and never waits: its batch's cluster would idle meanwhile.
        missing = sfn.Pass(
            self,
            DATE_INPUTS_MISSING_STATE,
            parameters={
                "cause": sfn.JsonPath.format(
                    "inputs missing (a date of a batch checks them once, without waiting): {}",
                    sfn.JsonPath.string_at("$.inputs.check.summary"),
                )
            },
            result_path="$.inputs.late",
        ).next(
            sfn.Fail(
                self, "InputsMissingForDate", error=INPUTS_MISSING_ERROR, cause_path="$.inputs.late.cause"
            )
        )
        start.next(check).next(
            sfn.Choice(self, "Inputs there?")
            .when(sfn.Condition.boolean_equals("$.inputs.check.ready", True), then)
            .when(_is_child(), missing)
            .when(sfn.Condition.number_greater_than_equals("$.inputs.polls", max_polls), late)
            .otherwise(count.next(wait).next(check))
        )
        # The state machine's role invokes the function's versions too (function:*), as for the others.
        suppress(
            self,
            "AwsSolutions-IAM5",
            "Generated by CDK for the Lambda integration: the invoked function's versions (function:*).",
            applies_to=[arn_finding(function, ":*")],
        )
        return start

    def _preflight(self) -> sfn.IChainable:
        preflight = self._lambda_state(
            PREFLIGHT_STATE,
            self._lifecycle.preflight,
            {
                "pipeline": self._pipeline.name,
                "execution_arn": sfn.JsonPath.execution_id,
                "state_machine_arn": sfn.JsonPath.state_machine_id,
                "run_date": sfn.JsonPath.string_at("$.run_date"),
                "max_concurrent_runs": self._pipeline.config.max_concurrent_runs,
                "queue_minutes": self._pipeline.config.queue_minutes,
                "waited_seconds": sfn.JsonPath.number_at("$.queue.waited_seconds"),
                "batch_dates": sfn.JsonPath.list_at(f"{BATCH}.dates"),
                "batch_arn": sfn.JsonPath.string_at(f"{BATCH}.arn"),
            },
            result_selector={
                "proceed": sfn.JsonPath.string_at("$.Payload.proceed"),
                "reason": sfn.JsonPath.string_at("$.Payload.reason"),
                "wait": sfn.JsonPath.string_at("$.Payload.wait"),
            },
            result_path="$.preflight",
        )
        refused = sfn.Fail(self, "Refused", error="PreflightRefused", cause_path="$.preflight.reason")
        # The CLI checks the stage number; here only what the stage Choices need: a number.
        bad_from_stage = sfn.Fail(
            self,
            "InvalidFromStage",
            error="InvalidInput",
            cause="from_stage must be a number, the first stage to run (absent: every stage)",
        )
        bad_checks_only = sfn.Fail(
            self,
            "InvalidChecksOnly",
            error="InvalidInput",
            cause="checks_only must be true or false, and checks_stage a stage's number"
            " (absent: every stage's checks)",
        )
        bad_canary = sfn.Fail(
            self, "InvalidCanary", error="InvalidInput", cause="canary must be true or false (absent: false)"
        )
        create = self._create_cluster()
        canary = sfn.Pass(
            self,
            PREPARE_CANARY_STATE,
            comment="a canary run: the same launches, master-only",
            parameters={
                "attempt": 1,
                "plan": self._canary_plans[0],
                "plans": self._canary_plans,
                "failures": "",
            },
            result_path="$.launch",
        ).next(create)
        proceed = (
            sfn.Choice(self, "Proceed?")
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present(FROM_STAGE),
                    sfn.Condition.not_(sfn.Condition.is_numeric(FROM_STAGE)),
                ),
                bad_from_stage,
            )
            .when(
                sfn.Condition.or_(
                    sfn.Condition.and_(
                        sfn.Condition.is_present(CHECKS_ONLY),
                        sfn.Condition.not_(sfn.Condition.is_boolean(CHECKS_ONLY)),
                    ),
                    sfn.Condition.and_(
                        sfn.Condition.is_present(CHECKS_STAGE),
                        sfn.Condition.not_(sfn.Condition.is_numeric(CHECKS_STAGE)),
                    ),
                ),
                bad_checks_only,
            )
            .when(
                sfn.Condition.and_(
                    sfn.Condition.is_present(CANARY), sfn.Condition.not_(sfn.Condition.is_boolean(CANARY))
                ),
                bad_canary,
            )
            .when(
                sfn.Condition.and_(sfn.Condition.boolean_equals("$.preflight.proceed", True), _is_canary()),
                canary,
            )
            .when(sfn.Condition.boolean_equals("$.preflight.proceed", True), self._given_cluster(create))
        )
        if self._pipeline.config.queue_minutes > 0:
            # Every slot taken (max_concurrent_runs): queue without a cluster; Preflight says when
            # the run has waited queue_minutes, and refuses it then.
            poll = self._settings.queue_poll_seconds
            count = sfn.Pass(
                self,
                "CountSlotWait",
                parameters={
                    "waited_seconds": sfn.JsonPath.math_add(
                        sfn.JsonPath.number_at("$.queue.waited_seconds"), poll
                    )
                },
                result_path="$.queue",
            )
            wait = sfn.Wait(self, "WaitForSlot", time=sfn.WaitTime.duration(Duration.seconds(poll)))
            proceed.when(
                sfn.Condition.boolean_equals("$.preflight.wait", True), count.next(wait).next(preflight)
            )
        return preflight.next(proceed.otherwise(refused))

    def _given_cluster(self, create: sfn.IChainable) -> sfn.Choice:
        """A child uses its batch's cluster (one ClusterStatus, no wait); any other run creates one."""
        use = sfn.Pass(
            self,
            USE_CLUSTER_STATE,
            parameters={"cluster_id": sfn.JsonPath.string_at(f"{GIVEN_CLUSTER}.cluster_id"), "polls": 0},
            result_path="$.cluster",
        )
        use.next(self._cluster_status)
        return sfn.Choice(self, GIVEN_CLUSTER_STATE).when(_is_child(), use).otherwise(create)

    def _create_cluster_payload(self) -> dict[str, object]:
        profile = self._pipeline.config.cluster
        catalog = self._pipeline.config.catalog
        network = self._network
        payload: dict[str, object] = {
            "pipeline": self._pipeline.name,
            "run_id": sfn.JsonPath.execution_name,
            "run_date": sfn.JsonPath.string_at("$.run_date"),
            "execution_arn": sfn.JsonPath.execution_id,
            "attempt": sfn.JsonPath.number_at("$.launch.attempt"),
            # A batch's last date (null otherwise): its cluster's tags hold its whole range.
            "last_run_date": sfn.JsonPath.string_at(f"{BATCH}.last.run_date"),
            "cluster": {
                "release_label": profile.release_label,
                # The plan's: a canary's cluster always has what its stages run on.
                "applications": sfn.JsonPath.list_at("$.launch.plan.applications"),
                "master_instance_type": profile.master_instance_type,
                "core_instance_type": sfn.JsonPath.string_at("$.launch.plan.core_instance_type"),
                "core_instance_count": sfn.JsonPath.number_at("$.launch.plan.core_instance_count"),
                "use_spot": profile.use_spot,
                "idle_timeout_minutes": profile.idle_timeout_minutes,
                "step_concurrency_level": profile.step_concurrency_level,
                "ebs_volume_gb": profile.ebs_volume_gb,
                "metastore": profile.metastore,
                "configurations": [configuration.as_emr() for configuration in profile.configurations],
                **({"warehouse": catalog.warehouse} if catalog is not None else {}),
            },
            "network": {
                "subnet_ids": sfn.JsonPath.list_at("$.launch.plan.subnet_ids"),
                "master_security_group": network.master_security_group.security_group_id,
                "core_security_group": network.core_security_group.security_group_id,
                "service_access_security_group": network.service_access_security_group.security_group_id,
                "ec2_key_name": self._settings.ec2_key_name,
            },
            "roles": {
                "service_role": self._lifecycle.service_role.role_name,
                "instance_profile": self._instance_profile.instance_profile_name,
            },
            "log_uri": self._settings.log_uri,
            "bootstrap_script_uri": self._lifecycle.bootstrap_script.s3_object_url,
        }
        if self._settings.security_configuration is not None:
            payload["security_configuration"] = self._settings.security_configuration
        self._check_payload(payload)
        return payload

    def _check_payload(self, payload: dict[str, object]) -> None:
        """Every launch attempt's payload, as the run will send it, passes the Lambda's own model."""
        profile = self._pipeline.config.cluster
        renamed = {"core_instance_type": "core_instance_types"} if profile.core_instance_types else {}
        # A night's launches, and a canary's (master-only).
        for plans in (self._plans, self._canary_plans):
            for attempt, plan in enumerate(plans, start=1):
                cluster = dict(
                    payload["cluster"],  # type: ignore[call-overload]
                    core_instance_type=plan["core_instance_type"],
                    core_instance_count=plan["core_instance_count"],
                    applications=plan["applications"],
                )
                network = dict(payload["network"], subnet_ids=plan["subnet_ids"])  # type: ignore[call-overload]
                check_create_cluster_payload(
                    self._pipeline.folder,
                    {**payload, "attempt": attempt, "cluster": cluster, "network": network},
                    renamed=renamed,
                )

    def _create_cluster(self) -> sfn.IChainable:
        create = self._lambda_state(
            CREATE_CLUSTER_STATE,
            self._lifecycle.create_cluster,
            self._create_cluster_payload(),
            result_selector={"cluster_id": sfn.JsonPath.string_at("$.Payload.cluster_id"), "polls": 0},
            result_path="$.cluster",
        )
        create.next(self._wait_loop(create))
        return create

    def _launch_again(self, create: sfn.IChainable) -> sfn.IChainable:
        """Record the failed launch, terminate its cluster, and create the next attempt's."""
        record = sfn.Pass(
            self,
            NEXT_LAUNCH_STATE,
            parameters={
                "attempt": sfn.JsonPath.math_add(sfn.JsonPath.number_at("$.launch.attempt"), 1),
                # The plan list is 0-based, attempts 1-based: item [attempt] is the next attempt's.
                "plan": sfn.JsonPath.array_get_item(
                    sfn.JsonPath.list_at("$.launch.plans"), sfn.JsonPath.number_at("$.launch.attempt")
                ),
                "plans": sfn.JsonPath.list_at("$.launch.plans"),
                "failures": _launch_failures(then="; "),
            },
            result_path="$.launch",
        )
        terminate = self._lambda_state(
            "TerminateFailedLaunch",
            self._lifecycle.terminate_cluster,
            self._terminate_payload(),
            # The failed cluster is gone: a later failure must not look for it, but for the new one.
            result_selector={"cluster_id": sfn.JsonPath.string_to_json("null"), "polls": 0},
            result_path="$.cluster",
        )
        record.next(terminate).next(create)
        return record

    def _wait_loop(self, create: sfn.IChainable) -> sfn.IChainable:
        settings = self._settings
        profile = self._pipeline.config.cluster
        max_polls = ceil(settings.start_timeout_minutes * 60 / settings.poll_seconds)
        wait = sfn.Wait(
            self, "WaitForCluster", time=sfn.WaitTime.duration(Duration.seconds(settings.poll_seconds))
        )
        status = self._lambda_state(
            CLUSTER_STATUS_STATE,
            self._lifecycle.cluster_status,
            {
                "cluster_id": sfn.JsonPath.string_at("$.cluster.cluster_id"),
                # A child's cluster is its batch's, tagged with the batch's execution.
                "execution_arn": sfn.JsonPath.string_at(f"{BATCH}.owner"),
            },
            result_selector={
                "state": sfn.JsonPath.string_at("$.Payload.state"),
                "ready": sfn.JsonPath.string_at("$.Payload.ready"),
                "failed": sfn.JsonPath.string_at("$.Payload.failed"),
                "launch_failure": sfn.JsonPath.string_at("$.Payload.launch_failure"),
                "reason": sfn.JsonPath.string_at("$.Payload.reason"),
                "master_host": sfn.JsonPath.string_at("$.Payload.master_host"),
            },
            result_path="$.status",
        )
        self._cluster_status = status
        failed_to_start = sfn.Pass(
            self,
            "ClusterFailedToStart",
            parameters={
                "Error": "ClusterFailedToStart",
                "Cause": _launch_failures(),
            },
            result_path="$.error",
        ).next(self.terminate)
        timed_out = sfn.Pass(
            self,
            "ClusterStartTimedOut",
            parameters={
                "Error": "ClusterStartTimedOut",
                "Cause": f"the cluster was not ready after {settings.start_timeout_minutes} minutes",
            },
            result_path="$.error",
        ).next(self.terminate)
        count = sfn.Pass(
            self,
            "CountPoll",
            parameters={
                "cluster_id": sfn.JsonPath.string_at("$.cluster.cluster_id"),
                "polls": sfn.JsonPath.math_add(sfn.JsonPath.number_at("$.cluster.polls"), 1),
            },
            result_path="$.cluster",
        ).next(wait)
        launch_again = sfn.Condition.and_(
            sfn.Condition.boolean_equals("$.status.failed", True),
            sfn.Condition.boolean_equals("$.status.launch_failure", True),
            sfn.Condition.number_less_than("$.launch.attempt", profile.launch_attempts),
        )
        wait.next(status).next(
            sfn.Choice(self, "ClusterReady?")
            .when(
                sfn.Condition.and_(sfn.Condition.boolean_equals("$.status.ready", True), _is_canary()),
                self._run_canary(),
            )
            .when(
                sfn.Condition.and_(sfn.Condition.boolean_equals("$.status.ready", True), _is_batch()),
                self._dates(),
            )
            .when(
                sfn.Condition.and_(
                    sfn.Condition.boolean_equals("$.status.ready", True), _is_child(), _not_checks_only()
                ),
                self._run_stages(),
            )
            .when(sfn.Condition.boolean_equals("$.status.ready", True), self._stages())
            .when(_is_child(), self._cluster_gone())
            .when(launch_again, self._launch_again(create))
            .when(sfn.Condition.boolean_equals("$.status.failed", True), failed_to_start)
            .when(sfn.Condition.number_greater_than_equals("$.cluster.polls", max_polls), timed_out)
            .otherwise(count)
        )
        return wait

    def _cluster_gone(self) -> sfn.IChainable:
        """A child's batch's cluster not ready (stopping, gone): no stage runs, the cluster is left."""
        return sfn.Pass(
            self,
            "BatchClusterNotReady",
            parameters={
                "Error": CLUSTER_GONE_ERROR,
                "Cause": sfn.JsonPath.format(
                    "the cluster {} of the batch is not ready ({}): {}",
                    sfn.JsonPath.string_at("$.cluster.cluster_id"),
                    sfn.JsonPath.string_at("$.status.state"),
                    sfn.JsonPath.string_at("$.status.reason"),
                ),
            },
            result_path="$.error",
        ).next(self.terminate)

    def _dates(self) -> sfn.IChainable:
        """The batch's dates one after another, each a child execution of this state machine on its cluster.

        A failed, refused or stopped date is noted and the next one runs; then the cluster is terminated.
        """
        run = tasks.StepFunctionsStartExecution(
            self,
            RUN_DATE_STATE,
            state_machine=self._self_reference,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            name=sfn.JsonPath.string_at("$.run.name"),
            # Built in the item (with AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID, as
            # associate_with_parent would): from_stage is in it only when the batch has one.
            input=sfn.TaskInput.from_json_path_at("$.input"),
            task_timeout=sfn.Timeout.duration(Duration.minutes(self._night_minutes)),
            result_path=sfn.JsonPath.DISCARD,
            output_path="$.run",
        )
        failed = sfn.Pass(
            self,
            DATE_FAILED_STATE,
            parameters={
                "run_date": sfn.JsonPath.string_at("$.run.run_date"),
                "name": sfn.JsonPath.string_at("$.run.name"),
                "failed": True,
                "error": sfn.JsonPath.string_at("$.error.Error"),
            },
        )
        run.add_catch(failed, errors=["States.ALL"], result_path="$.error")
        from_stage = sfn.Pass(
            self, DATE_FROM_STAGE_STATE, input_path="$.request.from_stage", result_path="$.input.from_stage"
        )
        iteration = (
            sfn.Choice(self, FROM_STAGE_CHOICE_STATE)
            .when(sfn.Condition.is_present(FROM_STAGE), from_stage.next(run))
            .otherwise(run)
        )
        item = sfn.JsonPath.string_at("$$.Map.Item.Value")
        dates = sfn.Map(
            self,
            DATES_STATE,
            items_path=BATCH_RUNS,
            max_concurrency=1,
            item_selector={
                "run": item,
                "request": sfn.JsonPath.object_at("$.request"),
                "input": {
                    "run_date": sfn.JsonPath.string_at("$$.Map.Item.Value.run_date"),
                    "cluster": {"cluster_id": sfn.JsonPath.string_at("$.cluster.cluster_id")},
                    "batch": sfn.JsonPath.execution_id,
                    "AWS_STEP_FUNCTIONS_STARTED_BY_EXECUTION_ID": sfn.JsonPath.execution_id,
                },
            },
            result_selector={
                "runs": sfn.JsonPath.object_at("$"),
                "any_failed.$": "States.ArrayContains($[*].failed, true)",
            },
            result_path="$.dates",
        )
        dates.item_processor(iteration)
        dates.add_catch(self.terminate, result_path="$.error")
        return dates.next(self.terminate)

    def _run_stages(self) -> sfn.IChainable:
        """A date of a batch: every stage in ONE runner task (the pipeline folder, as from a laptop).

        One Fargate start per date instead of one per step while the shared cluster waits. No
        States.TaskFailed retry: the runner retries its steps itself (--step-retries); a failure
        (non-zero exit) goes to Leave cluster with $.error, as a failed step of a night does.
        """
        folder = self._settings.pipelines_folder
        run = self._runner_task(
            RUN_STAGES_STATE, STAGES_COMMAND, timeout_minutes=stages_task_timeout_minutes(self._pipeline)
        )
        run.add_catch(self.terminate, result_path="$.error")
        run.next(self.terminate)

        def command(name: str, *, from_stage: bool) -> sfn.Pass:
            arguments = stages_command(self._pipeline, folder, from_stage=from_stage)
            return sfn.Pass(
                self,
                name,
                parameters={"command": sfn.JsonPath.list_at(sfn.JsonPath.array(*arguments))},
                result_path="$.stages",
            )

        return (
            sfn.Choice(self, STAGES_COMMAND_STATE)
            .when(
                sfn.Condition.is_present(FROM_STAGE),
                command(f"{STAGES_COMMAND_STATE} from_stage", from_stage=True).next(run),
            )
            .otherwise(command(f"{STAGES_COMMAND_STATE} every stage", from_stage=False).next(run))
        )

    def _stages(self) -> sfn.IChainable:
        """Each stage behind a Choice: run it, skip it (before from_stage), or run only its checks.

        In a checks-only run a stage's Choice goes straight to its checks task (when it has checks
        and is the run's checks_stage, or none is given), else to its skip state: no step runs.
        """
        following: sfn.IChainable = self.terminate
        checks_only = _checks_only()
        for stage in reversed(self._pipeline.stages):
            run = self._stage(stage)
            checks: tasks.EcsRunTask | None = None
            if stage.checks:
                checks = self._run_checks(stage)
                run.next(checks)
                checks.next(following)
            else:
                run.next(following)
            if stage.number is None:  # a single step file: there is nothing before it to skip
                following = run
                continue
            skip = sfn.Pass(
                self,
                skip_state_name(stage),
                comment=f"before from_stage, or a checks-only run: stage {stage.number}'s steps not run",
            )
            skip.next(following)
            choice = sfn.Choice(self, f"{stage_state_name(stage)}?")
            if checks is not None:
                choice.when(
                    sfn.Condition.and_(
                        checks_only,
                        sfn.Condition.or_(
                            sfn.Condition.not_(sfn.Condition.is_present(CHECKS_STAGE)),
                            sfn.Condition.and_(
                                sfn.Condition.is_numeric(CHECKS_STAGE),
                                sfn.Condition.number_equals(CHECKS_STAGE, stage.number),
                            ),
                        ),
                    ),
                    checks,
                )
            following = (
                choice.when(checks_only, skip)
                .when(
                    sfn.Condition.and_(
                        sfn.Condition.is_present(FROM_STAGE),
                        sfn.Condition.is_numeric(FROM_STAGE),
                        sfn.Condition.number_greater_than(FROM_STAGE, stage.number),
                    ),
                    skip,
                )
                .otherwise(run)
            )
        return following

    def _stage(self, stage: Stage) -> sfn.Parallel:
        parallel = sfn.Parallel(self, stage_state_name(stage), result_path=sfn.JsonPath.DISCARD)
        for step in stage.steps:
            parallel.branch(self._run_step(step))
        parallel.add_catch(self.terminate, result_path="$.error")
        return parallel

    def _run_checks(self, stage: Stage) -> tasks.EcsRunTask:
        """One task for the stage's checks; a failing `error` check (exit 65) fails the run.

        Not retried as a step is: the same tables give the same count, so a failed check would only
        fail again (an engine failure in it is shown, and a rerun --from-stage runs the checks again).
        """
        run = self._runner_task(
            checks_state_name(stage), checks_command(self._pipeline, stage, self._settings.pipelines_folder)
        )
        run.add_catch(self.terminate, result_path="$.error")
        return run

    def _run_canary(self) -> tasks.EcsRunTask:
        """The canary pipeline in one runner task (its step, then its check), then the terminate.

        Not retried as a step is: the canary proves the path once, and a failure is what it reports.
        """
        run = self._runner_task(canary_state_name(), canary_command(self._pipeline))
        run.add_catch(self.terminate, result_path="$.error")
        run.next(self.terminate)
        return run

    def _run_step(self, step: Step) -> tasks.EcsRunTask:
        policy = self._pipeline.config.steps
        run = self._runner_task(
            step_state_name(step), step_command(self._pipeline, step, self._settings.pipelines_folder)
        )
        if policy.retries:
            run.add_retry(
                errors=["States.TaskFailed"],
                max_attempts=policy.retries,
                interval=Duration.seconds(policy.retry_interval_seconds),
                backoff_rate=1,
            )
        return run

    def _runner_task(
        self, name: str, command: list[str] | str, *, timeout_minutes: int | None = None
    ) -> tasks.EcsRunTask:
        """The runner image on Fargate with `command` (or the list at a path), retried only when ECS failed.

        Its timeout: one step's attempt with the margin, unless `timeout_minutes` says otherwise.
        """
        policy = self._pipeline.config.steps
        if timeout_minutes is None:
            timeout_minutes = policy.timeout_minutes + TASK_TIMEOUT_MARGIN_MINUTES
        arguments = command if isinstance(command, str) else sfn.JsonPath.array(*command)
        task = self._task
        run = tasks.EcsRunTask(
            self,
            name,
            integration_pattern=sfn.IntegrationPattern.RUN_JOB,
            cluster=self._runner.cluster,
            task_definition=task.task_definition,
            launch_target=tasks.EcsFargateLaunchTarget(platform_version=ecs.FargatePlatformVersion.LATEST),
            subnets=self._network.private_subnets,
            security_groups=[self._network.runner_security_group],
            assign_public_ip=False,
            container_overrides=[
                tasks.ContainerOverride(
                    container_definition=task.container,
                    command=sfn.JsonPath.list_at(arguments),
                )
            ],
            task_timeout=sfn.Timeout.duration(Duration.minutes(timeout_minutes)),
            result_path=sfn.JsonPath.DISCARD,
        )
        run.add_retry(
            errors=ECS_TRANSIENT_ERRORS, max_attempts=4, interval=Duration.seconds(10), backoff_rate=2,
            jitter_strategy=sfn.JitterType.FULL,
        )  # fmt: skip
        return run

    def _lambda_state(
        self,
        name: str,
        function: lambda_.IFunction,
        payload: dict[str, object],
        *,
        result_selector: dict[str, object] | None = None,
        result_path: str | None = None,
    ) -> tasks.LambdaInvoke:
        state = tasks.LambdaInvoke(
            self,
            name,
            lambda_function=function,
            payload=sfn.TaskInput.from_object(payload),
            result_selector=result_selector,
            result_path=result_path or sfn.JsonPath.DISCARD,
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(Duration.minutes(5)),
        )
        state.add_retry(
            errors=LAMBDA_TRANSIENT_ERRORS,
            max_attempts=6,
            interval=Duration.seconds(2),
            backoff_rate=2,
            max_delay=Duration.seconds(60),
            jitter_strategy=sfn.JitterType.FULL,
        )
        if name != TERMINATE_CLUSTER_STATE:
            state.add_catch(self.terminate, result_path="$.error")
        return state

    def _terminate_payload(self) -> dict[str, object]:
        return {
            "cluster_id": sfn.JsonPath.string_at("$.cluster.cluster_id"),
            "execution_arn": sfn.JsonPath.execution_id,
        }

    def _record_run(self, then: sfn.Choice) -> sfn.IChainable:
        """Cost and durations of the run, into ``$.run_record``; a failure here only skips the record.

        Whatever happens in RecordRun, the run then ends as it would have: ``$.error`` (the run's
        own failure, which "Run failed?" reads) is passed through untouched.
        """
        record = tasks.LambdaInvoke(
            self,
            RECORD_RUN_STATE,
            lambda_function=self._lifecycle.record_run,
            payload=sfn.TaskInput.from_object(
                {
                    "pipeline": self._pipeline.name,
                    "execution_arn": sfn.JsonPath.execution_id,
                    "run": sfn.JsonPath.object_at("$"),
                    # A batch: its children, whose records it prices; a child: its batch.
                    "batch_runs": sfn.JsonPath.list_at(f"{BATCH}.runs"),
                    "batch_arn": sfn.JsonPath.string_at(f"{BATCH}.arn"),
                    "runner_task": {"cpu": self._runner.CPU, "memory_mib": self._runner.MEMORY_MIB},
                    # A date's stages task names only the steps it ran: the rest (skipped by
                    # from_stage, or never reached) are these, less what its stream names.
                    "stages": stages_payload(self._pipeline),
                    # The data checks' results are in their tasks' streams of this log group.
                    "runner_log": {
                        "log_group": self._task.log_group.log_group_name,
                        "container": CONTAINER_NAME,
                    },
                }
            ),
            payload_response_only=True,
            result_path="$.run_record",
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(Duration.minutes(2)),
        )
        self._task.log_group.grant(self._lifecycle.record_run, "logs:GetLogEvents")
        record.add_retry(errors=LAMBDA_TRANSIENT_ERRORS, max_attempts=2, interval=Duration.seconds(2))
        record.add_catch(then, errors=["States.ALL"], result_path="$.run_record_error")
        return record.next(then)

    def _build_state_machine(self, name: str, definition: sfn.IChainable) -> sfn.StateMachine:
        log_group = logs.LogGroup(
            self,
            "ExecutionLogs",
            # Under /aws/vendedlogs/: else each state machine adds its group to the account's
            # CloudWatch Logs resource policy (5,120 characters) until a deploy fails.
            log_group_name=f"{VENDED_LOGS_PREFIX}states/{name}",
            retention=self._settings.log_retention,
            encryption_key=self._settings.log_key,
            removal_policy=RemovalPolicy.RETAIN,
        )
        log_group.node.default_child.override_logical_id(f"ExecutionLogs{self._pipeline_id}")  # type: ignore[union-attr]
        state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=name,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            # A batch runs up to MAX_BATCH_DATES nights one after another; each of its dates' `Run date`
            # has one night's timeout, and a night its own steps' and tasks' timeouts.
            timeout=Duration.minutes(MAX_BATCH_DATES * self._night_minutes),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=False),
            comment=f"Nightshift pipeline {self._pipeline.name}: {len(self._pipeline.steps)} steps "
            f"in {len(self._pipeline.stages)} stages",
        )
        self._tag_for_discovery(state_machine)
        suppress(
            state_machine,
            "AwsSolutions-IAM5",
            "Generated by CDK for the integrations: the invoked Lambdas' versions (function:*), the "
            "task definition family's revisions, this state machine's executions (a batch's dates), "
            "and X-Ray/CloudWatch Logs delivery, which have no resource-level permissions.",
            applies_to=[
                "Resource::*",
                # A batch's `Run date` (startExecution.sync:2) describes and stops its own children.
                f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{name}*",
                task_definition_family_finding(self._task.task_definition),
                *(
                    arn_finding(function, ":*")
                    for function in (
                        self._lifecycle.preflight,
                        self._lifecycle.create_cluster,
                        self._lifecycle.cluster_status,
                        self._lifecycle.terminate_cluster,
                        self._lifecycle.record_run,
                    )
                ),
            ],
        )
        checkov_skip(
            state_machine.role.node.find_child("DefaultPolicy"),
            "CKV_AWS_111",
            "Generated by CDK: X-Ray and CloudWatch Logs delivery have no resource-level permissions.",
        )
        return state_machine

    def _tag_for_discovery(self, state_machine: sfn.StateMachine) -> None:
        tags = {
            TAG_STACK: Stack.of(self).stack_name,
            TAG_PIPELINE: self._pipeline.name,
            TAG_RUNNER_LOG_GROUP: self._task.log_group.log_group_name,
        }
        for key, value in tags.items():
            # Only the state machine: its role and log group are found through it, never by tag.
            Tags.of(state_machine).add(
                key, value, include_resource_types=["AWS::StepFunctions::StateMachine"]
            )


def _is_child() -> sfn.Condition:
    """A date of a batch: its input gives it its batch's cluster."""
    return sfn.Condition.is_present(GIVEN_CLUSTER)


def _checks_only() -> sfn.Condition:
    return sfn.Condition.and_(
        sfn.Condition.is_present(CHECKS_ONLY), sfn.Condition.boolean_equals(CHECKS_ONLY, True)
    )


def _not_checks_only() -> sfn.Condition:
    """No checks-only run: a child given `checks_only` (never from a batch) runs them as a night does.

    The negation of _checks_only, whose And reads checks_only only when it is present, as the stage
    Choices already rely on.
    """
    return sfn.Condition.not_(_checks_only())


def _is_batch() -> sfn.Condition:
    return sfn.Condition.is_not_null(f"{BATCH}.runs")


def _is_canary() -> sfn.Condition:
    return sfn.Condition.and_(sfn.Condition.is_present(CANARY), sfn.Condition.boolean_equals(CANARY, True))


def _launch_failures(*, then: str = "") -> str:
    """Every launch so far and why it failed, the current one last: "attempt 1 (j-…): …; attempt 2 …"."""
    return sfn.JsonPath.format(
        "{}attempt {} ({}): {}" + then,
        sfn.JsonPath.string_at("$.launch.failures"),
        sfn.JsonPath.string_at("$.launch.attempt"),
        sfn.JsonPath.string_at("$.cluster.cluster_id"),
        sfn.JsonPath.string_at("$.status.reason"),
    )
