"""RecordRun's payload: the execution's state as it reaches the end of the run."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from lambdas.shared.models import ClusterId, ExecutionArn, Payload, PipelineName
from lambdas.shared.run_states import MAX_BATCH_DATES

# Step Functions' execution names: 1 to 80 characters.
ExecutionName = Annotated[str, Field(min_length=1, max_length=80)]


class RunState(BaseModel):
    """The execution's state as it reaches RecordRun; other engineers' keys in it are none of its business."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    class Cluster(BaseModel):
        """The run's cluster (null before CreateCluster answers)."""

        model_config = ConfigDict(extra="ignore", frozen=True)
        cluster_id: ClusterId | None = None

    class Error(BaseModel):
        """The run's failure, as the Catch put it into the state."""

        model_config = ConfigDict(extra="ignore", frozen=True)
        Error: str = ""
        Cause: str = ""

    run_date: date
    cluster: Cluster = Cluster()
    # Present when the run failed: RecordRun reports it and never changes it.
    error: Error | None = None


class RunnerTaskSize(Payload):
    """The runner's Fargate task size (ECS units), for tasks whose own answer lacks it."""

    cpu: Annotated[int, Field(ge=256, le=16384)]
    memory_mib: Annotated[int, Field(ge=512, le=122880)]


class RunnerLog(Payload):
    """Where the runner's tasks log (their streams are `<pipeline>/<container>/<task id>`)."""

    log_group: Annotated[str, Field(min_length=1, max_length=512)]
    container: Annotated[str, Field(min_length=1, max_length=255)]


#: bounds on a pipeline's stages and a stage's steps (a folder has far fewer)
MAX_STAGES, MAX_STAGE_STEPS = 100, 256
# A step's name: its file's name without extension.
StepName = Annotated[str, Field(min_length=1, max_length=255)]


class PipelineStage(Payload):
    """One stage of the pipeline, as the state machine was built from its folder."""

    stage: int | None = None
    steps: Annotated[list[StepName], Field(max_length=MAX_STAGE_STEPS)]
    #: the stage has data checks (its `N_checks` task after its steps)
    checks: bool = False


class RecordRunRequest(Payload):
    pipeline: PipelineName
    execution_arn: ExecutionArn
    run: RunState
    runner_task: RunnerTaskSize | None = None
    #: the data checks' results are read from their tasks' streams (none without it)
    runner_log: RunnerLog | None = None
    #: a batch: its children's execution names, in order (its record splits its cluster over them)
    batch_runs: Annotated[list[ExecutionName], Field(min_length=1, max_length=MAX_BATCH_DATES)] | None = None
    #: a child: its batch's execution (the batch's cluster is priced in the batch's record)
    batch_arn: ExecutionArn | None = None
    #: the pipeline's stages: a date's stages task names only what it ran, these say what it did not
    #: (absent from an older deployment's payload)
    stages: Annotated[list[PipelineStage], Field(max_length=MAX_STAGES)] | None = None
