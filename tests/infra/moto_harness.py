"""Run a synthesized state machine in moto's Step Functions interpreter, with the project's real Lambdas.

Work-arounds for moto, all here and nowhere else:
- moto's Lambda backend runs handlers in Docker; `_invoke_lambda` is pointed at the real handler
  (``lambdas.<name>.handler``) in-process instead.
- moto's ECS has no containers that exit: the stand-in stops every task at once with exit code 0,
  or 1 for the steps a test asks to fail. moto's `.sync` resolver never looks at exit codes (real
  Step Functions fails the state with States.TaskFailed when the essential container exits
  non-zero), so the resolver is replaced by one that does.
- moto's ECS integration passes the state's PascalCase parameters (`Cluster`, `TaskDefinition`)
  to boto3 as they are, which botocore refuses (KeyError 'Cluster'), and reads the camelCase answer
  as if it were PascalCase. Its parameter and response normalisation are filled in from the
  botocore ECS model, as the other moto integrations do.
- moto's ECS cannot attach an awsvpc network interface ('NetworkInterface' object has no attribute
  'private_dns_name'), so the stand-in drops the network configuration and its task definition uses
  bridge mode; the real awsvpc configuration is asserted on the template.
- moto's Step Functions integration (a batch's nested `Run date`) has the same gap: StartExecution's
  parameters and DescribeExecution's answer are normalised from the botocore model here too.
- moto's Parallel (re-raising a branch's error) and Fail with ErrorPath make a custom error name
  of whatever error they carry, which refuses the "States." prefix (ValueError), so a step's
  States.TaskFailed would surface as States.Runtime; both are given a States error name for
  those, as Step Functions reports them.
- moto's Wait state and Retry intervals really sleep; both are skipped (the Wait interval is
  asserted on the template, the retry intervals are recorded in `retry_waits`).
- moto's EMR reports a cluster's state-change reason without its code (and has no way to set
  either); `fail_cluster` ends a cluster with the code and message EMR would give.
- The in-process handlers see the function's environment from the template (NIGHTSHIFT_STACK)
  only while they run, as a Lambda would, and only in their own thread: the process environment
  is never changed under the other executions' threads (see FunctionEnvironment).
- A step given a `StepScript` writes what the real runner's JsonOutput makes of its output to
  moto's CloudWatch Logs, one event per line as awslogs sends them, in the stream a real task
  would use (`<pipeline>/runner/<task id>`, in the log group the state machine's tag names); it may
  hold its task running until a gate opens, as a long step would.
- A stage's checks task (`--checks-only --stage N`) is the step `N_checks`, as the runner names it; its
  StepScript's `results` are the check records it writes (JsonOutput.result) after its chunks.
- A date of a batch's `Run stages` task (its command the pipeline's folder, no --checks-only) is
  imitated as the runner runs a folder with --log-format json (StagesTask): stage by stage from
  --from-stage, each step attempt as a step task's above (steps_run, exit_codes, failing_steps,
  step_actions, its StepScript; retried as [steps] says with --step-retries), then the stage's
  checks as the step `N_checks`; it stops after the first failed stage and exits with the first
  failed step's code. Its one stream holds the records the runner writes (step_started, step_ended,
  step_retry, check; docs/backfill.md). A step held by its script ends the task, with nothing more
  run, when the date's execution was stopped meanwhile, as Step Functions stops a stopped run's task.
- A step given a `step_actions` entry does in moto's AWS what its SQL would do on the cluster (the
  Glue calls of its CREATE TABLE and SELECT, tests/infra/test_catalog.py), and fails as the step
  would (exit code 1) when one is refused.
- moto's EMR ignores instance fleets (no ListInstanceFleets, no instances): after CreateCluster the
  stand-in gives the cluster the instances its fleets ask for, as instance groups (master On-Demand,
  core On-Demand or Spot as the payload says), so RecordRun finds what EMR would list.
"""

from __future__ import annotations

import importlib
import io
import json
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import boto3
import botocore.session
import pytest
from moto import mock_aws
from moto.awslambda.models import LambdaFunction
from moto.ecs.models import EC2ContainerServiceBackend, ecs_backends
from moto.emr.models import Cluster, emr_backends
from moto.stepfunctions.parser.api import HistoryEventType, TaskFailedEventDetails
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
    FailureEvent,
    FailureEventException,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.program import program as sfn_program
from moto.stepfunctions.parser.asl.component.state.exec import execute_state
from moto.stepfunctions.parser.asl.component.state.exec.state_parallel import branches_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_callback,
    state_task_service_ecs,
    state_task_service_sfn,
)
from moto.stepfunctions.parser.asl.component.state.fail import state_fail
from moto.stepfunctions.parser.asl.component.state.wait.wait_function import wait_function
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails
from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from infra.pipelines import construct_id
from infra.runner_task import CONTAINER_NAME
from lambdas.shared import clients
from lambdas.shared.run_states import StepStatus, checks_step_name
from runner.execution import SKIPPED, RunReport, StepReport, skipped_stage_line, summary_lines
from runner.model import load_pipeline
from runner.output import JsonOutput
from tests.support.aws import ACCOUNT, REGION, SUBNETS, Synthesis, definition_of

FAKE_ZIP = b"PK\x05\x06" + b"\x00" * 18  # an empty zip archive: moto only stores it


@dataclass
class FakeContext:
    """The attributes Powertools' Logger reads from a Lambda context."""

    function_name: str
    memory_limit_in_mb: int = 256
    aws_request_id: str = "00000000-0000-4000-8000-000000000000"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"


@dataclass
class Faults:
    """What a test breaks: a handler raising (n times, or always), a step exiting non-zero."""

    raise_in: dict[str, tuple[Exception, int]] = field(default_factory=dict)
    failing_steps: set[str] = field(default_factory=set)
    after: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    payloads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    steps_run: list[str] = field(default_factory=list)
    #: a step's exit code other than failing_steps' 1
    exit_codes: dict[str, int] = field(default_factory=dict)
    #: what a step prints (and how long its task runs), by step file name
    scripts: dict[str, StepScript] = field(default_factory=dict)
    #: the names of the RUNNING executions each time a step's task starts
    running_at_steps: list[list[str]] = field(default_factory=list)
    #: what a step does in moto's AWS (given its command), by step file name; raising fails the step
    step_actions: dict[str, Callable[[list[str]], None]] = field(default_factory=dict)
    #: why a step's action failed, by step file name
    step_errors: dict[str, str] = field(default_factory=dict)
    #: (run date, step) of each step attempt as it starts, as steps_run
    steps_run_on: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class StepScript:
    """What a step prints, chunk by chunk, on which stream; its task may wait for `gate` half-way."""

    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    #: chunks before this index are written, then the task runs on until `gate` is set
    gate_after: int | None = None
    gate: threading.Event = field(default_factory=threading.Event)
    #: set when the task has written the chunks before the gate
    reached_gate: threading.Event = field(default_factory=threading.Event)
    #: how long the task runs at least (a backfill's overlapping runs)
    hold_seconds: float = 0.0
    #: a gate that does not open by then fails the task with exit code GATE_TIMEOUT_EXIT
    gate_timeout: float = 30.0
    #: check results the task writes after its chunks, as the runner's JsonOutput.result does
    results: list[dict[str, Any]] = field(default_factory=list)
    #: only the run of this date is scripted (None: every run's)
    run_date: str | None = None


GATE_TIMEOUT_EXIT = 99
#: a `Run stages` task's exit code when its execution stopped under it (SIGTERM's 128 + 15)
STOPPED_EXIT = 143


#: Held while an in-process Lambda handler runs: the handlers share module state (Powertools' Logger and
#: Metrics, the cached clients) that a Lambda process has for one invocation at a time.
ONE_HANDLER_AT_A_TIME = threading.RLock()


#: Held while a boto3 client is built from the default session (see _patch).
CLIENT_CREATION = threading.RLock()


class FunctionEnvironment(MutableMapping[str, str]):
    """``os.environ`` as each thread sees it: the process's, or inside a handler its function's own.

    A Lambda invocation has an environment of its own. Setting the function's variables in the one
    process environment and clearing them after the handler broke the other executions' threads:
    botocore copies ``os.environ`` whenever it builds a client (its proxy look-up iterates it), and a
    variable removed between its listing and its reading raised KeyError there, so a step's RunTask
    failed with States.Runtime "'POWERTOOLS_SERVICE_NAME'" while another execution's Preflight ran
    (test_another_date_waits_for_the_only_slot... failed so in CI). Here the process environment is
    never changed while executions run; a handler's thread reads and writes a copy of its own.
    """

    def __init__(self, process: MutableMapping[str, str]) -> None:
        self._process = process
        self._local = threading.local()

    def _current(self) -> MutableMapping[str, str]:
        own: dict[str, str] | None = getattr(self._local, "variables", None)
        return self._process if own is None else own

    @contextmanager
    def invocation(self, variables: dict[str, str]) -> Iterator[None]:
        """This thread sees the process environment with the function's variables over it, until the end."""
        self._local.variables = {**self._process, **variables}
        try:
            yield
        finally:
            del self._local.variables

    def __getitem__(self, key: str) -> str:
        return self._current()[key]

    def __setitem__(self, key: str, value: str) -> None:
        self._current()[key] = value

    def __delitem__(self, key: str) -> None:
        del self._current()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._current()))

    def __len__(self) -> int:
        return len(self._current())

    def copy(self) -> dict[str, str]:
        return dict(self._current())


#: What the handlers read from a Lambda's environment, and moto's stand-in credentials.
MOTO_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "POWERTOOLS_TRACE_DISABLED": "1",
    "POWERTOOLS_METRICS_NAMESPACE": "Nightshift",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


#: The definitions moto's parser has accepted in this process.
VALID_DEFINITIONS: set[str] = set()


def _clear_clients() -> None:
    # The handlers cache their clients; each test's moto needs fresh ones.
    for factory in vars(clients).values():
        if (
            callable(getattr(factory, "cache_clear", None))
            and getattr(factory, "__module__", "") == clients.__name__
        ):
            factory.cache_clear()


def set_moto_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Moto's credentials and the handlers' settings; no region or profile of the machine's."""
    for name, value in MOTO_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


def moto_harness(synth: Synthesis, pipeline: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    """A fixture's body: moto with its Step Functions interpreter, and `pipeline` deployed in it."""
    set_moto_env(monkeypatch)
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        _clear_clients()
        try:
            yield Harness(synth, pipeline, monkeypatch)
        finally:
            _clear_clients()


class Harness:
    """Moto with the stack's pieces a state machine touches, named as the template names them."""

    def __init__(self, synth: Synthesis, pipeline: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.synth = synth
        self.pipeline = pipeline
        self.faults = Faults()
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.emr = boto3.client("emr", region_name=REGION)
        self.sfn = boto3.client("stepfunctions", region_name=REGION)
        self.ecs = boto3.client("ecs", region_name=REGION)
        self._values: dict[str, str] = {}
        self.retry_waits: list[float] = []
        self._build_network()
        self._build_roles_and_buckets()
        self._build_runner_logs()
        self._build_functions()
        self._patch(monkeypatch)
        cluster = self.ecs.create_cluster(clusterName="runner")["cluster"]["clusterArn"]
        self._values[f"GetAtt:{self._logical('RunnerCluster')}.Arn"] = cluster
        text = json.dumps(definition_of(synth, pipeline, self._resolve))
        for context_subnet, subnet in zip(SUBNETS, self.subnets, strict=True):
            text = text.replace(context_subnet, subnet)
        self.definition = json.loads(text)
        self._register_task_definition()
        self.state_machine_arn = self.sfn.create_state_machine(
            name=f"{synth.stack.stack_name}-{pipeline}",
            definition=text,
            roleArn=f"arn:aws:iam::{ACCOUNT}:role/sfn",
            tags=self._state_machine_tags(),
        )["stateMachineArn"]

    # --- moto resources named after the template's logical ids -------------------------------

    def _logical(self, prefix: str) -> str:
        return next(k for k in self.synth.template["Resources"] if k.startswith(prefix))

    def _build_network(self) -> None:
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        self.subnets = [
            self.ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")[
                "Subnet"
            ]["SubnetId"]
            for i, z in enumerate("ab")
        ]
        for name in ("Runner", "Master", "Core", "ServiceAccess"):
            group = self.ec2.create_security_group(GroupName=name, Description=name, VpcId=vpc)["GroupId"]
            self._values[f"GetAtt:{self._logical(f'Network{name}SecurityGroup')}.GroupId"] = group

    def _build_roles_and_buckets(self) -> None:
        iam = boto3.client("iam", region_name=REGION)
        trust = json.dumps({"Version": "2012-10-17", "Statement": []})
        self.lambda_role = iam.create_role(RoleName="lambda", AssumeRolePolicyDocument=trust)["Role"]["Arn"]
        iam.create_role(RoleName="sfn", AssumeRolePolicyDocument=trust)
        self._values[f"Ref:{self._logical('ClusterLifecycleEmrServiceRole')}"] = "EMR_DefaultRole_V2"
        profile = self._logical(f"ClusterLifecycle{construct_id(self.pipeline)}InstanceProfile")
        self._values[f"Ref:{profile}"] = "EMR_EC2_Nightshift"
        self.log_bucket = "nightshift-logs"
        boto3.client("s3", region_name=REGION).create_bucket(Bucket=self.log_bucket)
        self._values["Ref:EmrLogBucket"] = self.log_bucket

    def _build_runner_logs(self) -> None:
        """The pipeline's runner log group, under the name its Ref resolves to."""
        self.runner_log_group = f"/nightshift/{self.synth.stack.stack_name}/{self.pipeline}/runner"
        boto3.client("logs", region_name=REGION).create_log_group(logGroupName=self.runner_log_group)
        self._values[f"Ref:RunnerLogs{construct_id(self.pipeline)}"] = self.runner_log_group

    def _state_machine_tags(self) -> list[Any]:
        """The state machine's tags as the template gives them, tokens resolved."""
        name = f"{self.synth.stack.stack_name}-{self.pipeline}"
        (resource,) = [
            r for r in self.synth.resources("AWS::StepFunctions::StateMachine").values()
            if r["Properties"]["StateMachineName"] == name
        ]  # fmt: skip
        return [
            {
                "key": t["Key"],
                "value": t["Value"] if isinstance(t["Value"], str) else self._resolve(t["Value"]),
            }
            for t in resource["Properties"].get("Tags", [])
        ]

    def _build_functions(self) -> None:
        lam = boto3.client("lambda", region_name=REGION)
        for logical, resource in self.synth.resources("AWS::Lambda::Function").items():
            if "Handler" not in resource["Properties"]:
                continue
            variables = resource["Properties"].get("Environment", {}).get("Variables", {})
            arn = lam.create_function(
                FunctionName=logical,
                Runtime="python3.12",
                Role=self.lambda_role,
                Handler=resource["Properties"]["Handler"],
                Code={"ZipFile": FAKE_ZIP},
                Environment={"Variables": {k: v for k, v in variables.items() if isinstance(v, str)}},
            )["FunctionArn"]
            self._values[f"GetAtt:{logical}.Arn"] = arn

    def _register_task_definition(self) -> None:
        (family,) = {state["Parameters"]["TaskDefinition"] for state in run_step_states(self.definition)}
        self.ecs.register_task_definition(
            family=family,
            networkMode="bridge",
            cpu="256",
            memory="512",
            containerDefinitions=[
                {"name": "runner", "image": "runner", "essential": True, "cpu": 256, "memory": 512}
            ],
        )

    def _resolve(self, token: dict[str, Any]) -> str:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::URLSuffix": "amazonaws.com",
        }
        if "Ref" in token:
            return pseudo.get(token["Ref"]) or self._values.get(f"Ref:{token['Ref']}", "TOKEN")
        if "Fn::GetAtt" in token:
            logical, attribute = token["Fn::GetAtt"]
            return self._values.get(f"GetAtt:{logical}.{attribute}", "TOKEN")
        if "Fn::Sub" in token:
            text: str = token["Fn::Sub"]
            for name, value in pseudo.items():
                text = text.replace("${" + name + "}", value)
            return text
        raise AssertionError(f"cannot resolve {token}")

    # --- the stand-ins -------------------------------------------------------------------------

    def _patch(self, monkeypatch: pytest.MonkeyPatch) -> None:

        faults = self.faults
        harness = self

        # moto parses a definition with its ANTLR grammar to validate it (an eighth of a harness's CPU);
        # the same text is as valid the next time. Each execution still parses its own.
        validate = StepFunctionsParserBackend._validate_definition

        def validated_once(definition: str) -> None:
            if definition not in VALID_DEFINITIONS:
                validate(definition)
                VALID_DEFINITIONS.add(definition)

        monkeypatch.setattr(StepFunctionsParserBackend, "_validate_definition", staticmethod(validated_once))

        # moto turns an exception raised inside a state into States.Runtime with its message alone; the
        # traceback, logged with moto's warning, says which code raised it (pytest shows it on failure).
        for module in (execute_state, sfn_program):
            monkeypatch.setattr(module, "LOG", _WithTraceback(module.LOG, {}))

        environment = FunctionEnvironment(os.environ)
        monkeypatch.setattr(os, "environ", environment)
        # boto3's default session is not thread-safe: a stage's parallel branches and a handler building
        # clients at once failed 'Run 10_users' with "dictionary changed size during iteration".
        original_client = boto3.client

        def one_client_at_a_time(*args: Any, **kwargs: Any) -> Any:
            with CLIENT_CREATION:
                return original_client(*args, **kwargs)

        monkeypatch.setattr(boto3, "client", one_client_at_a_time)

        def invoke_in_process(function: LambdaFunction, event: Any = None) -> tuple[str, bool, str]:
            module_name, attribute = str(function.handler).rsplit(".", 1)
            payload = json.loads(event) if isinstance(event, str | bytes) else (event or {})
            # One handler at a time (two executions invoke at once): a Lambda process runs one invocation.
            with ONE_HANDLER_AT_A_TIME:
                faults.calls[module_name] += 1
                faults.payloads.setdefault(module_name, []).append(payload)
                try:
                    with environment.invocation(function.environment_vars):
                        fault = faults.raise_in.get(module_name)
                        if fault is not None and fault[1] != 0:
                            faults.raise_in[module_name] = (fault[0], fault[1] - 1)
                            raise fault[0]
                        handler = getattr(importlib.import_module(module_name), attribute)
                        result = handler(payload, FakeContext(function.function_name))
                except Exception as exc:
                    return json.dumps({"errorType": type(exc).__name__, "errorMessage": str(exc)}), True, ""
                if module_name == "lambdas.create_cluster":
                    # What EMR does as it creates the cluster, before another handler may list it.
                    harness.mirror_fleets(payload, result)
            # Outside the lock: a test's hook may wait for another execution's handlers.
            if module_name in faults.after:
                faults.after[module_name](payload, result)
            return json.dumps(result), False, ""

        monkeypatch.setattr(LambdaFunction, "_invoke_lambda", invoke_in_process)

        moto_status = Cluster.status

        def status_with_code(cluster: Cluster) -> dict[str, Any]:
            status: dict[str, Any] = moto_status.fget(cluster)  # type: ignore[attr-defined]
            reason = getattr(cluster, "nightshift_reason", None)
            if reason is not None:
                status["StateChangeReason"] = {"Code": reason[0], "Message": reason[1]}
            return status

        monkeypatch.setattr(Cluster, "status", property(status_with_code))

        original_run_task: Any = EC2ContainerServiceBackend.run_task
        # A stage's parallel branches call RunTask and DescribeTasks from threads of their own, and
        # moto's ECS backend iterates the dicts another RunTask is adding to ("dictionary changed size
        # during iteration" failed a CI run's 'Run 30_segments' as States.Runtime): one call at a time.
        run_task_lock = threading.RLock()

        for name in ("describe_tasks", "list_tasks", "stop_task"):
            original: Any = getattr(EC2ContainerServiceBackend, name)

            def serialised(backend: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
                with run_task_lock:
                    return _original(backend, *args, **kwargs)

            monkeypatch.setattr(EC2ContainerServiceBackend, name, serialised)

        def run_task(backend: Any, *args: Any) -> Any:
            command = args[3]["containerOverrides"][0]["command"]
            # Without the network configuration: see the module docstring.
            with run_task_lock:
                tasks = original_run_task(backend, *args[:7], None, *args[8:])
            for task in tasks:
                task.nightshift_command = command  # type: ignore[attr-defined]
            return tasks

        monkeypatch.setattr(EC2ContainerServiceBackend, "run_task", run_task)

        def sync_resolver(service: Any, env: Any, resource_runtime_part: Any, normalised_parameters: Any,
                          state_credentials: Any) -> Callable[[], Any]:  # fmt: skip

            submitted = env.stack.pop()["Tasks"][0]
            command = harness.command_of(submitted["TaskArn"])
            advance: Callable[[], int | None]
            if harness.is_stages_task(command):
                advance = StagesTask(harness, submitted["TaskArn"], command).advance
            else:
                advance = harness.step_task(submitted["TaskArn"], command)
            stopped = {**submitted, "LastStatus": "STOPPED", "StopCode": "EssentialContainerExited",
                       "Containers": [{"Name": "runner", "ExitCode": 0}]}  # fmt: skip

            def resolve() -> Any:
                exit_code = advance()
                if exit_code is None:
                    return None  # the task still runs: moto asks again
                stopped["Containers"][0]["ExitCode"] = exit_code
                if exit_code:
                    # What Step Functions does when the essential container exits non-zero.
                    raise FailureEventException(
                        FailureEvent(
                            env=env,
                            error_name=StatesErrorName(typ=StatesErrorNameType.StatesTaskFailed),
                            event_type=HistoryEventType.TaskFailed,
                            event_details=EventDetails(  # type: ignore[typeddict-item]
                                taskFailedEventDetails=TaskFailedEventDetails(
                                    resource=service._get_sfn_resource(),
                                    resourceType=service._get_sfn_resource_type(),
                                    error="States.TaskFailed",
                                    cause=json.dumps(stopped),
                                )
                            ),
                        )
                    )
                return stopped

            return resolve

        monkeypatch.setattr(state_task_service_ecs.StateTaskServiceEcs, "_build_sync_resolver", sync_resolver)
        # A scripted task still running is asked again after this delay (moto: 0.5 s); short keeps tests quick.
        monkeypatch.setattr(state_task_service_callback, "_DELAY_SECONDS_SYNC_CONDITION_CHECK", 0.02)
        ecs_model = botocore.session.get_session().get_service_model("ecs")

        def operation(service: Any, action: str | None) -> Any:
            name = action or service.resource.api_action
            return ecs_model.operation_model("".join(part[:1].upper() + part[1:] for part in name.split("_")))

        def normalise_parameters(service: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                                 service_action_name: str | None = None) -> None:  # fmt: skip
            service._to_boto_request(parameters, operation(service, service_action_name).input_shape)

        def normalise_response(service: Any, response: Any, boto_service_name: str | None = None,
                               service_action_name: str | None = None) -> None:  # fmt: skip
            service._from_boto_response(response, operation(service, service_action_name).output_shape)

        monkeypatch.setattr(
            state_task_service_ecs.StateTaskServiceEcs, "_normalise_parameters", normalise_parameters
        )
        monkeypatch.setattr(
            state_task_service_ecs.StateTaskServiceEcs, "_normalise_response", normalise_response
        )
        # The same gap in moto's Step Functions integration (a batch's `Run date`, startExecution.sync:2):
        # StartExecution's PascalCase parameters reach boto3 as they are, and DescribeExecution's answer
        # stays camelCase where the state's paths read Step Functions' PascalCase.
        sfn_model = botocore.session.get_session().get_service_model("stepfunctions")
        sfn_normalise = state_task_service_sfn.StateTaskServiceSfn._normalise_parameters

        def sfn_operation(service: Any, action: str | None) -> Any:
            name = action or service.resource.api_action
            return sfn_model.operation_model("".join(part[:1].upper() + part[1:] for part in name.split("_")))

        def sfn_parameters(service: Any, parameters: dict[str, Any], boto_service_name: str | None = None,
                           service_action_name: str | None = None) -> None:  # fmt: skip
            sfn_normalise(service, parameters, boto_service_name, service_action_name)  # Input as JSON text
            service._to_boto_request(parameters, sfn_operation(service, service_action_name).input_shape)

        def sfn_response(service: Any, response: Any, boto_service_name: str | None = None,
                         service_action_name: str | None = None) -> None:  # fmt: skip
            service._from_boto_response(response, sfn_operation(service, service_action_name).output_shape)

        monkeypatch.setattr(
            state_task_service_sfn.StateTaskServiceSfn, "_normalise_parameters", sfn_parameters
        )
        monkeypatch.setattr(state_task_service_sfn.StateTaskServiceSfn, "_normalise_response", sfn_response)
        monkeypatch.setattr(
            wait_function.WaitFunction, "_wait_interval", lambda self, env, wait_seconds: None
        )
        monkeypatch.setattr(retrier_decl, "time", SimpleNamespace(sleep=self.retry_waits.append))

        def branch_error_name(error_name: str | None) -> Any:
            if error_name and error_name.startswith("States."):
                return StatesErrorName(typ=StatesErrorNameType.from_name(error_name))
            return CustomErrorName(error_name=error_name)

        monkeypatch.setattr(branches_decl, "CustomErrorName", branch_error_name)
        monkeypatch.setattr(state_fail, "CustomErrorName", branch_error_name)

    def is_stages_task(self, command: list[str]) -> bool:
        """A date of a batch's `Run stages` task: the pipeline's folder, not a stage's checks."""
        return command[0].rsplit("/", 1)[-1] == self.pipeline and "--checks-only" not in command

    def step_task(self, task_arn: str, command: list[str]) -> Callable[[], int | None]:
        """A task of one step (or a stage's checks, or the canary): its exit code once it has ended."""
        step = command[0].rsplit("/", 1)[-1]
        if "--checks-only" in command:  # a stage's checks task: named as the runner names it, NN_checks
            step = f"{command[command.index('--stage') + 1]}_checks"
        exit_code = self.start_step(step, command)
        script = self.script_of(step, command)
        task = TaskLog(self, task_arn, step, command) if script is not None else None

        def advance() -> int | None:
            if task is None or script is None:
                return exit_code
            return task.exit_code if task.advance(script, exit_code) else None

        return advance

    def start_step(self, step: str, command: list[str]) -> int:
        """An attempt of `step` starts: noted, and its action done; the exit code the faults give it."""
        faults = self.faults
        faults.steps_run.append(step)
        faults.steps_run_on.append((_option(command, "--run-date"), step))
        faults.running_at_steps.append(self.running_executions())
        exit_code = faults.exit_codes.get(step, 1 if step in faults.failing_steps else 0)
        action = faults.step_actions.get(step)
        if action is not None:
            try:
                action(command)
            except Exception as error:  # the step's SQL failed on the cluster: its exit code says so
                faults.step_errors[step] = f"{type(error).__name__}: {error}"
                exit_code = 1
        return exit_code

    def script_of(self, step: str, command: list[str]) -> StepScript | None:
        script = self.faults.scripts.get(step)
        if script is None or script.run_date not in (None, _option(command, "--run-date")):
            return None
        return script

    def mirror_fleets(self, payload: dict[str, Any], result: dict[str, Any]) -> None:
        """The instances the CreateCluster payload's fleets would bring, as moto instance groups."""
        backend = emr_backends[ACCOUNT][REGION]
        profile = payload["cluster"]
        groups = [("MASTER", profile["master_instance_type"], 1, "ON_DEMAND")]
        if profile["core_instance_count"]:
            market = "SPOT" if profile["use_spot"] else "ON_DEMAND"
            groups.append(("CORE", profile["core_instance_type"], profile["core_instance_count"], market))
        for role, instance_type, count, market in groups:
            spec = {"instance_role": role, "instance_type": instance_type, "instance_count": count,
                    "market": market, "name": role.lower()}  # fmt: skip
            (group,) = backend.add_instance_groups(result["cluster_id"], [spec])
            backend.run_instances(
                result["cluster_id"], {"instance_type": instance_type, "instance_count": count}, group
            )

    def running_executions(self) -> list[str]:
        """The names of this state machine's RUNNING executions, as moto has them now."""
        answer = self.sfn.list_executions(stateMachineArn=self.state_machine_arn, statusFilter="RUNNING")
        return [execution["name"] for execution in answer["executions"]]

    def fail_cluster(self, cluster_id: str, code: str, message: str) -> None:
        """End the cluster as EMR ends a failed one: TERMINATED_WITH_ERRORS, with its reason."""
        cluster = emr_backends[ACCOUNT][REGION].clusters[cluster_id]
        cluster.state = "TERMINATED_WITH_ERRORS"
        cluster.nightshift_reason = (code, message)  # type: ignore[attr-defined]

    def command_of(self, task_arn: str) -> list[str]:

        backend = ecs_backends[ACCOUNT][REGION]
        # Copies: the parallel branches of a stage start their tasks from other threads meanwhile.
        for tasks in list(backend.tasks.values()):
            for task in list(tasks.values()):
                if task.task_arn == task_arn:
                    return task.nightshift_command  # type: ignore[attr-defined]
        raise AssertionError(f"no task {task_arn}")

    # --- running -------------------------------------------------------------------------------

    def run(self, run_date: str = "2025-06-01", timeout: float = 300) -> dict[str, Any]:
        """Start `<pipeline>-<run_date>` and wait for it to stop; the DescribeExecution answer."""
        arn = self.sfn.start_execution(
            stateMachineArn=self.state_machine_arn,
            name=f"{self.pipeline}-{run_date}",
            input=json.dumps({"run_date": run_date}),
        )["executionArn"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = self.sfn.describe_execution(executionArn=arn)
            if answer["status"] != "RUNNING":
                return dict(answer)
            time.sleep(0.05)
        raise AssertionError(f"execution {arn} still running after {timeout} s")

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        events = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]
        return [dict(event) for event in events]

    def why(self, execution_arn: str) -> str:
        """An execution's status, error and cause, and every failure event in its history: for assertion messages."""
        answer = self.sfn.describe_execution(executionArn=execution_arn)
        failures = [e for e in self.history(execution_arn) if e["type"].endswith(("Failed", "TimedOut"))]
        return f"{answer['name']}: {answer['status']} {answer.get('error')} {answer.get('cause')} {failures}"

    def states_entered(self, execution_arn: str) -> list[str]:
        return [
            e["stateEnteredEventDetails"]["name"]
            for e in self.history(execution_arn)
            if "stateEnteredEventDetails" in e
        ]

    def clusters(self) -> list[dict[str, Any]]:
        return [dict(cluster) for cluster in self.emr.list_clusters()["Clusters"]]


class _WithTraceback(logging.LoggerAdapter):  # type: ignore[type-arg]
    """A logger whose records carry the exception being handled, if any."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return msg, {**kwargs, "exc_info": True}


class TaskLog:
    """The runner task of one step attempt writing its JSON records to CloudWatch Logs, as on Fargate."""

    def __init__(
        self, harness: Harness, task_arn: str, step: str, command: list[str], *, notice: bool = True
    ) -> None:
        self.logs = boto3.client("logs", region_name=REGION)
        self.group = harness.runner_log_group
        self.stream = f"{harness.pipeline}/{CONTAINER_NAME}/{task_arn.rsplit('/', 1)[-1]}"
        self.logs.create_log_stream(logGroupName=self.group, logStreamName=self.stream)
        self.buffer = io.BytesIO()
        json_output = JsonOutput(self.buffer)
        run_id = command[command.index("--run-id") + 1] if "--run-id" in command else ""
        json_output.begin(harness.pipeline, run_id, step.rsplit(".", 1)[0])
        self.json_output = json_output
        self.output = json_output.for_step(harness.pipeline, step.rsplit(".", 1)[0], run_id, step)
        if notice:
            self.output.notice("started (spark-sql)")
        self.written = 0
        self.started = time.monotonic()
        self.last_ms = 0
        self.exit_code = 0

    def advance(self, script: StepScript, exit_code: int) -> bool:
        """Write what is due; whether the task has ended (its last records written)."""
        gated = script.gate_after is not None and not script.gate.is_set()
        upto = script.gate_after if gated and script.gate_after is not None else len(script.chunks)
        for stream, chunk in script.chunks[self.written : upto]:
            self.output.feed(stream, chunk)  # type: ignore[arg-type]
        self.written = max(self.written, upto)
        self.ship()
        if gated:
            script.reached_gate.set()
            if time.monotonic() - self.started < script.gate_timeout:
                return False
            exit_code = GATE_TIMEOUT_EXIT
        if time.monotonic() - self.started < script.hold_seconds:
            return False
        self.output.close()
        for record in script.results:
            self.json_output.result(record, [])
        self.exit_code = exit_code
        status = "succeeded" if exit_code == 0 else f"failed (exit {exit_code})"
        self.output.notice(f"{status} in {time.monotonic() - self.started:.1f} s")
        self.ship()
        return True

    def ship(self) -> None:
        """Each JSON line one event, as awslogs sends a container's lines (timestamps never go back)."""
        data = self.buffer.getvalue()
        self.buffer.seek(0)
        self.buffer.truncate()
        lines = [line for line in data.split(b"\n") if line]
        if not lines:
            return
        self.last_ms = max(self.last_ms, int(time.time() * 1000))
        self.logs.put_log_events(
            logGroupName=self.group,
            logStreamName=self.stream,
            logEvents=[{"timestamp": self.last_ms, "message": line.decode("utf-8")} for line in lines],
        )


class StagesTask:
    """A date of a batch's `Run stages` task, as the runner runs a pipeline folder with --log-format json.

    Stage by stage from --from-stage: its steps (each attempt as a step task's: the faults' exit code
    and action, its StepScript), retried as [steps] says with --step-retries, then its checks (the step
    `N_checks`, its script's `results` the check records); it stops after the first failed stage. Its
    stream holds the contract's records (step_started, step_ended, step_retry, check; docs/backfill.md).
    """

    def __init__(self, harness: Harness, task_arn: str, command: list[str]) -> None:
        self.harness = harness
        self.command = command
        self.pipeline = load_pipeline(harness.synth.pipelines_dir / harness.pipeline)
        self.run_id = _option(command, "--run-id")
        self.run_date = _option(command, "--run-date")
        self.log = TaskLog(harness, task_arn, "", command, notice=False)
        self.log.json_output.begin(harness.pipeline, self.run_id, run_date=self.run_date)
        self._run = self._stages()
        self.exit_code: int | None = None

    def advance(self) -> int | None:
        """Run on until the task waits (None) or has ended (its exit code)."""
        if self.exit_code is None:
            try:
                self.exit_code = next(self._run, None)
            except _Stopped:
                self.exit_code = STOPPED_EXIT
            self.log.ship()
        return self.exit_code

    def _running(self) -> bool:
        """Whether the date's execution still runs: Step Functions stops its task when it stops."""
        prefix = self.harness.state_machine_arn.replace(":stateMachine:", ":execution:")
        answer = self.harness.sfn.describe_execution(executionArn=f"{prefix}:{self.run_id}")
        return bool(answer["status"] == "RUNNING")

    def _stages(self) -> Generator[int | None, None, None]:
        yield (yield from self._run_stages())

    def _run_stages(self) -> Generator[None, None, int]:
        """Every stage from --from-stage, then the runner's end-of-run table; the task's exit code."""
        from_stage = int(_option(self.command, "--from-stage") or 0)
        policy = self.pipeline.config.steps
        attempts = policy.retries + 1 if "--step-retries" in self.command else 1
        reports = {step: StepReport(step) for step in self.pipeline.steps}
        code = 0
        for stage in self.pipeline.stages:
            if stage.number is not None and stage.number < from_stage:
                self.log.json_output.notice(skipped_stage_line(stage, from_stage))
                for step in stage.steps:
                    reports[step].status = SKIPPED
                continue
            for step in stage.steps:
                for attempt in range(1, attempts + 1):
                    exit_code, seconds = yield from self._attempt(step.file_name, attempt, attempts)
                    if not exit_code or attempt == attempts:
                        break
                    interval = policy.retry_interval_seconds
                    self._record(
                        step.file_name,
                        f"{step.file_name}: attempt {attempt + 1} of {attempts} in {interval} s",
                        event="step_retry",
                        attempt=attempt + 1,
                    )
                status = StepStatus.of_exit(exit_code).value
                reports[step] = StepReport(step, status, exit_code, seconds)
                code = code or exit_code  # the first failed step's
            if code:
                break  # no checks, no next stage
            if stage.checks and stage.number is not None:
                code, _ = yield from self._attempt(checks_step_name(stage.number), 1, 1, stage=stage.number)
                if code:
                    break
        for line in summary_lines(RunReport(list(reports.values()), code)):
            self.log.json_output.notice(line)
        return code

    def _attempt(
        self, step: str, attempt: int, attempts: int, stage: int | None = None
    ) -> Generator[None, None, tuple[int, float]]:
        """One attempt of a step (or a stage's checks): its records, held while its script says; its exit code."""
        harness = self.harness
        self._record(step, f"{step}: started (spark-sql)", event="step_started", attempt=attempt)
        started = time.monotonic()
        exit_code = harness.start_step(step, self.command)
        script = harness.script_of(step, self.command)
        if script is not None:
            output = self.log.json_output.for_step(harness.pipeline, _name(step), self.run_id, step)
            written = 0
            held = False
            while True:
                gated = script.gate_after is not None and not script.gate.is_set()
                upto = script.gate_after if gated and script.gate_after is not None else len(script.chunks)
                for stream, chunk in script.chunks[written:upto]:
                    output.feed(stream, chunk)  # type: ignore[arg-type]
                written = max(written, upto)
                if gated:
                    script.reached_gate.set()
                    if time.monotonic() - started >= script.gate_timeout:
                        exit_code = GATE_TIMEOUT_EXIT
                        break
                elif time.monotonic() - started >= script.hold_seconds:
                    break
                held = True
                yield None  # the task runs on: moto asks again
            if held and not self._running():
                raise _Stopped  # stopped while held: the task was stopped with it, nothing more runs
            output.close()
            for record in script.results:
                self.log.json_output.result({"stage": stage, **record} if stage is not None else record, [])
        seconds = time.monotonic() - started
        status = StepStatus.of_exit(exit_code).value
        said = "succeeded" if exit_code == 0 else f"{status} (exit {exit_code})"
        self._record(
            step,
            f"{step}: {said} in {seconds:.1f} s",
            event="step_ended",
            status=status,
            exit_code=exit_code,
            seconds=round(seconds, 3),
            attempt=attempt,
            attempts=attempts,
        )
        return exit_code, seconds

    def _record(self, step: str, line: str, **event: Any) -> None:
        """A notice of the step that is also an event (the runner's JsonOutput record and the event's fields)."""
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "pipeline": self.harness.pipeline,
            "step": _name(step),
            "run_id": self.run_id,
            "run_date": self.run_date,
            "stream": "nightshift",
            "line": line,
            **event,
        }
        self.log.json_output.write_records([json.dumps(record, ensure_ascii=False)])


class _Stopped(Exception):
    """The date's execution stopped while its task held a step."""


def _name(step: str) -> str:
    """A step's name from its file name (`10_events.sql` -> `10_events`); `N_checks` as it is."""
    return step.rsplit(".", 1)[0]


def _option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1] if name in command else ""


def run_step_states(definition: dict[str, Any]) -> list[dict[str, Any]]:
    """Every RunStep (ecs:runTask.sync) state, also inside Parallel branches."""
    found = []
    for state in definition["States"].values():
        if state.get("Resource", "").endswith(":states:::ecs:runTask.sync"):
            found.append(state)
        for branch in state.get("Branches", []):
            found += run_step_states(branch)
    return found


def stop_leftovers(harness: Harness) -> None:
    """End what a test left running, so moto's interpreter threads do not run on into the next test."""
    prefix = harness.state_machine_arn.replace(":stateMachine:", ":execution:")
    for name in harness.running_executions():
        for _ in range(200):
            try:
                harness.sfn.stop_execution(executionArn=f"{prefix}:{name}")
                break
            except AttributeError:
                # moto: the execution's thread is still parsing the definition (no interpreter yet).
                time.sleep(0.05)
    for script in harness.faults.scripts.values():
        script.gate.set()
