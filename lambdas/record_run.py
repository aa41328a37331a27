"""Lambda: after TerminateCluster, record what the run cost and how long its parts took (EMF metrics)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.utilities.parser import parse

from lambdas.shared import clients
from lambdas.shared.cost import PRICES_VARIABLE, region_prices
from lambdas.shared.observability import logger, tracer
from lambdas.shared.preflight import is_canary
from lambdas.shared.run_metrics import publish
from lambdas.shared.run_models import RecordRunRequest
from lambdas.shared.run_record import PlannedStage, record_batch, record_run

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.typing import LambdaContext
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_stepfunctions import SFNClient


@logger.inject_lambda_context(correlation_id_path="execution_arn", clear_state=True)
@tracer.capture_lambda_handler
def handler(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    emr: EMRClient | None = None,
    sfn: SFNClient | None = None,
    now: datetime | None = None,
    logs: Any = None,
) -> dict[str, Any]:
    """``{pipeline, execution_arn, run: <the execution's state>}`` -> the run record."""
    request = parse(event=event, model=RecordRunRequest)
    region = request.execution_arn.split(":")[3]
    error = request.run.error
    emr, sfn = emr or clients.emr(), sfn or clients.sfn()
    prices = region_prices(region, json.loads(os.environ.get(PRICES_VARIABLE) or "{}"))
    now = now or datetime.now(UTC)
    task_size = (request.runner_task.cpu, request.runner_task.memory_mib) if request.runner_task else None
    if request.batch_runs is not None:
        # A batch: its cluster, split over its dates. It is no night: no nightly run metrics.
        batch = record_batch(
            pipeline=request.pipeline,
            run_date=request.run.run_date.isoformat(),
            execution_arn=request.execution_arn,
            cluster_id=request.run.cluster.cluster_id,
            error=error.Error or "failed" if error is not None else None,
            cause=error.Cause if error is not None else None,
            emr=emr,
            sfn=sfn,
            prices=prices,
            now=now,
            runs=request.batch_runs,
            task_size=task_size,
        )
        output = batch.as_output()
        logger.info("batch recorded", record=output)
        return output
    record = record_run(
        pipeline=request.pipeline,
        run_date=request.run.run_date.isoformat(),
        execution_arn=request.execution_arn,
        # A child's cluster is its batch's: priced once, in the batch's record.
        cluster_id=request.run.cluster.cluster_id if request.batch_arn is None else None,
        error=error.Error or "failed" if error is not None else None,
        cause=error.Cause if error is not None else None,
        emr=emr,
        sfn=sfn,
        prices=prices,
        now=now,
        task_size=task_size,
        logs=logs or clients.logs(),
        runner_log=(request.runner_log.log_group, request.runner_log.container)
        if request.runner_log
        else None,
        stages=None
        if request.stages is None
        else [PlannedStage(stage.stage, tuple(stage.steps), stage.checks) for stage in request.stages],
    )
    output = record.as_output()
    if request.batch_arn is not None:
        output["cluster"] = {"shared_in": request.batch_arn.rsplit(":", 1)[-1]}
    if is_canary(request.execution_arn.rsplit(":", 1)[-1], request.pipeline):
        # A canary proves the deployment; its cost and outcome are not the nights' (metrics, alarms).
        output["canary"] = True
    else:
        publish(record)
    logger.info("run recorded", record=output)
    return output
