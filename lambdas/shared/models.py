"""Payload models of the lifecycle handlers (pydantic v2, parsed with the Powertools parser)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import BaseModel, ConfigDict, Discriminator, Field, RootModel, Tag, model_validator

from lambdas.shared.catalog import CATALOG_PROPERTIES, EMR_CLASSIFICATIONS, EXPORT, METASTORE_GLUE
from lambdas.shared.run_states import MAX_BATCH_DATES

# The runner's side of these contracts keeps its own copies; tests/unit/test_contract_*.py holds
# the two sides equal, and infra checks every CreateCluster payload against these models at synth.
PIPELINE_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
DEFAULT_APPLICATIONS = ("Hadoop", "Hive", "Spark")
MAX_LAUNCH_ATTEMPTS = 10
# pipeline.toml max_concurrent_runs: each run holds its own cluster, so more is a typo.
MAX_CONCURRENT_RUNS = 50
# pipeline.toml queue_minutes: a run waits at most a day for a free slot.
MAX_QUEUE_MINUTES = 24 * 60

PipelineName = Annotated[str, Field(pattern=PIPELINE_NAME_PATTERN)]
# EC2 instance types: family (with generation and options), a dot, a size: m5.xlarge, u-6tb1.metal.
InstanceType = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")]
# Graviton (arm64) families: a generation digit followed by "g" (m7g, r6gd, c6gn, x2gd, t4g), and a1.
GRAVITON_FAMILY = re.compile(r"^(a1|[a-z]+\d+g[a-z]*)\.")


def is_graviton(instance_type: str) -> bool:
    """True for an arm64 (AWS Graviton) instance type, False for x86_64."""
    return GRAVITON_FAMILY.match(instance_type) is not None


ExecutionArn = Annotated[
    str, Field(pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:execution:[^:]+:[^:]+$")
]
StateMachineArn = Annotated[
    str, Field(pattern=r"^arn:aws[a-z-]*:states:[a-z0-9-]+:\d{12}:stateMachine:[^:]+$")
]
ClusterId = Annotated[str, Field(pattern=r"^j-[A-Z0-9]{1,32}$")]
S3Uri = Annotated[str, Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$")]


class Payload(BaseModel):
    """A state machine payload: unknown fields are a typo in the state machine, so refuse them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class PreflightRequest(Payload):
    pipeline: PipelineName
    execution_arn: ExecutionArn
    state_machine_arn: StateMachineArn
    run_date: date
    # How many runs (of different dates) of the pipeline may run at once (pipeline.toml).
    max_concurrent_runs: Annotated[int, Field(ge=1, le=MAX_CONCURRENT_RUNS)] = 1
    # How long the run may wait for a free slot (pipeline.toml), and how long it has waited so far.
    queue_minutes: Annotated[float, Field(ge=0, le=MAX_QUEUE_MINUTES)] = 0
    waited_seconds: Annotated[int, Field(ge=0)] = 0
    # A batch (shared-cluster backfill): every date it holds, first to last, contiguous.
    batch_dates: Annotated[list[date], Field(min_length=1, max_length=MAX_BATCH_DATES)] | None = None
    # A child (one date of a batch): its batch's execution, which holds its slot and its cluster.
    batch_arn: ExecutionArn | None = None

    @model_validator(mode="after")
    def _one_range_from_run_date(self) -> PreflightRequest:
        # A batch's name and its cluster's tag carry one range, so its dates must be one.
        if self.batch_dates is not None:
            first = self.batch_dates[0]
            if first != self.run_date:
                raise ValueError(f"batch_dates starts {first}, not at run_date {self.run_date}")
            for index, day in enumerate(self.batch_dates):
                if day != first + timedelta(days=index):
                    raise ValueError(f"batch_dates is not one run of days: {day} at position {index}")
            if self.batch_arn is not None:
                raise ValueError(
                    "a run is a batch (batch_dates) or one of a batch's dates (batch_arn), not both"
                )
        return self


# An [inputs] path as the state machine sends it: s3:// with the run date still to put in, where
# pipeline.toml says ${run_date}. Not "${run_date}" in the definition: CloudFormation reads ${...}
# in a state machine's definition as a substitution, and `cdk synth` warned on every gated pipeline.
InputTemplate = Annotated[str, Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/[^*?]+$")]
RUN_DATE_REFERENCE = "{run_date}"
# The runner's built-in date variables (runner/dates.py DATE_VARIABLES), sent as {name} the same way;
# tests/unit/test_first_hour_dates.py holds the two lists and their values equal.
DATE_VARIABLES = (
    "run_date", "prev_date", "next_date", "run_date_nodash", "prev_date_nodash", "next_date_nodash"
)  # fmt: skip
MAX_INPUTS = 100


class InputToCheck(Payload):
    """A file that must exist ("object"), or a folder, ending in '/', that must hold one ("prefix")."""

    kind: Literal["object", "prefix"]
    path: InputTemplate


class CheckInputsRequest(Payload):
    pipeline: PipelineName
    run_date: date
    inputs: Annotated[list[InputToCheck], Field(min_length=1, max_length=MAX_INPUTS)]
    execution_arn: ExecutionArn | None = None


class Configuration(Payload):
    """An EMR configuration classification (pipeline.toml [cluster.configurations])."""

    classification: str
    properties: dict[str, str] = {}
    # EMR nests only an -env classification's "export"; nothing deeper.
    configurations: Annotated[list[Configuration], Field(max_length=1)] = []

    @model_validator(mode="after")
    def _known(self) -> Configuration:
        nested = self.classification.endswith("-env")
        if self.classification not in EMR_CLASSIFICATIONS and self.classification != EXPORT:
            raise ValueError(f"{self.classification!r} is not an EMR 7 configuration classification")
        if self.configurations and (not nested or self.configurations[0].classification != EXPORT):
            raise ValueError(f"{self.classification} nests no classification (only an -env's export)")
        if any(c.configurations for c in self.configurations):
            raise ValueError("an export classification nests nothing")
        return self


class ClusterProfile(Payload):
    """The pipeline's cluster profile (pipeline.toml), as the state machine passes it."""

    release_label: Annotated[str, Field(pattern=r"^emr-\d+\.\d+\.\d+$")]
    applications: Annotated[list[str], Field(min_length=1)] = list(DEFAULT_APPLICATIONS)
    master_instance_type: InstanceType
    core_instance_type: InstanceType
    # 0: a master-only cluster, one node that runs everything (no core instance fleet at all).
    core_instance_count: Annotated[int, Field(ge=0, le=500)]
    use_spot: bool
    # EMR accepts an idle timeout between 60 s and 7 days.
    idle_timeout_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)]
    step_concurrency_level: Annotated[int, Field(ge=1, le=256)]
    ebs_volume_gb: Annotated[int, Field(ge=1, le=16384)]
    # "glue": the AWS Glue Data Catalog is the cluster's Hive and Spark metastore; "cluster": its own.
    metastore: Literal["glue", "cluster"] = "glue"
    # The S3 folder a table made without LOCATION lands in (pipeline.toml [catalog] warehouse).
    warehouse: Annotated[str, Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(.*/)?$")] | None = None
    configurations: list[Configuration] = []

    @model_validator(mode="after")
    def _catalog_settings_are_nightshifts(self) -> ClusterProfile:
        if any(c.classification == EXPORT for c in self.configurations):
            raise ValueError("export is nested in an -env classification, never on its own")
        if self.warehouse is not None and self.metastore != METASTORE_GLUE:
            raise ValueError("a warehouse is the Glue catalog's: metastore must be 'glue'")
        if self.metastore == METASTORE_GLUE:
            for configuration in self.configurations:
                for key in CATALOG_PROPERTIES.get(configuration.classification, ()):
                    if key in configuration.properties:
                        raise ValueError(f"{configuration.classification} {key} is set by Nightshift")
        return self

    @model_validator(mode="after")
    def _one_architecture(self) -> ClusterProfile:
        # EMR's documentation describes no cluster of x86 and Graviton nodes: refused, not tried.
        types = [self.master_instance_type] + ([self.core_instance_type] if self.core_instance_count else [])
        if len({is_graviton(t) for t in types}) > 1:
            raise ValueError(f"mixes Graviton and x86_64 instance types in one cluster: {', '.join(types)}")
        return self


class Network(Payload):
    subnet_ids: Annotated[list[Annotated[str, Field(pattern=r"^subnet-[0-9a-f]+$")]], Field(min_length=1)]
    master_security_group: Annotated[str, Field(pattern=r"^sg-[0-9a-f]+$")]
    core_security_group: Annotated[str, Field(pattern=r"^sg-[0-9a-f]+$")]
    service_access_security_group: Annotated[str, Field(pattern=r"^sg-[0-9a-f]+$")]
    ec2_key_name: Annotated[str, Field(min_length=1)]


class Roles(Payload):
    service_role: Annotated[str, Field(min_length=1)]
    instance_profile: Annotated[str, Field(min_length=1)]


class CreateClusterRequest(Payload):
    pipeline: PipelineName
    run_id: Annotated[str, Field(min_length=1, max_length=128)]
    run_date: date
    execution_arn: ExecutionArn
    cluster: ClusterProfile
    network: Network
    roles: Roles
    log_uri: S3Uri
    bootstrap_script_uri: S3Uri
    # The EMR security configuration (IMDSv2, local disk encryption) infra creates; None: EMR's defaults.
    security_configuration: Annotated[str, Field(min_length=1, max_length=10280)] | None = None
    # Which launch of this run (a launch failure is retried with a new cluster): 1, 2, ...
    attempt: Annotated[int, Field(ge=1, le=MAX_LAUNCH_ATTEMPTS)] = 1
    # A batch's last date: its cluster is tagged with the whole range run_date..last_run_date.
    last_run_date: date | None = None

    @model_validator(mode="after")
    def _last_not_before_first(self) -> CreateClusterRequest:
        if self.last_run_date is not None and self.last_run_date < self.run_date:
            raise ValueError(f"last_run_date {self.last_run_date} is before run_date {self.run_date}")
        return self


class ClusterStatusRequest(Payload):
    cluster_id: ClusterId
    # The execution whose cluster this is (a child sends its batch's): a cluster tagged with
    # another execution is no cluster of this run, and ClusterStatus raises ClusterGone.
    execution_arn: ExecutionArn | None = None


class TerminateClusterRequest(Payload):
    """``cluster_id`` null or absent means "no cluster yet" (create failed or never ran)."""

    cluster_id: ClusterId | None = None
    execution_arn: ExecutionArn | None = None


class ExecutionStatusDetail(BaseModel):
    """The part of "Step Functions Execution Status Change" the sweeper reads."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    execution_arn: ExecutionArn = Field(alias="executionArn")
    status: Literal["RUNNING", "SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED", "PENDING_REDRIVE"]


class ExecutionStatusChange(EventBridgeModel):
    """EventBridge event for a Step Functions execution status change: sweep that execution."""

    source: Literal["aws.states"]
    detail_type: Literal["Step Functions Execution Status Change"] = Field(alias="detail-type")
    detail: ExecutionStatusDetail


class ScheduledSweep(EventBridgeModel):
    """EventBridge rule or Scheduler event on the hourly schedule: sweep everything."""

    source: Literal["aws.events", "aws.scheduler"]


class ManualSweep(Payload):
    """An empty payload (``{}``), for a manual run: sweep everything."""


def _sweep_kind(event: Any) -> str:
    if isinstance(event, dict):
        if event.get("source") == "aws.states":
            return "execution"
        if "source" in event:
            return "scheduled"
    return "manual"


SweepEvent = Annotated[
    Annotated[ExecutionStatusChange, Tag("execution")]
    | Annotated[ScheduledSweep, Tag("scheduled")]
    | Annotated[ManualSweep, Tag("manual")],
    Discriminator(_sweep_kind),
]


class SweepRequest(RootModel[SweepEvent]):
    """What the sweeper was invoked with: one execution's status change, or a sweep of all."""
