"""The Nightshift stack: composes the constructs, one workflow (and maybe schedule) per pipeline."""

from __future__ import annotations

import json
from typing import Any

from aws_cdk import Annotations, Stack
from aws_cdk import aws_logs as logs
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.alerts import Alerts
from infra.catalog import Catalog
from infra.cluster_lifecycle import ClusterLifecycle
from infra.config import LOG_RETENTION_DAYS, NightshiftConfig
from infra.dashboard import RunsDashboard
from infra.data_access import access_key, check_data_access
from infra.encryption import Encryption
from infra.network import Network
from infra.operators import OperatedPipeline, OperatorsPolicy
from infra.paths import PIPELINES_FOLDER
from infra.pipelines import construct_id
from infra.runner_task import CONTAINER_NAME, RunnerTask
from infra.schedules import Schedules
from infra.storage import Storage
from infra.workflow import PipelineWorkflow, WorkflowSettings
from lambdas.shared.cost import PRICES_VARIABLE
from runner.digests import encode, folder_digests
from runner.model import Pipeline

#: what `--deployed --check` compares the local folder with (runner/deployed/check.py names it too)
DEPLOYED_FILES_PARAMETER = "/nightshift/{stack}/{pipeline}/deployed-files"


def retention_days(days: int) -> logs.RetentionDays:
    # The jsii enum's values are member names; its members follow CloudWatch's list in order.
    return list(logs.RetentionDays)[LOG_RETENTION_DAYS.index(days)]


class NightshiftStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id_: str,
        *,
        config: NightshiftConfig,
        pipelines: list[Pipeline],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id_, **kwargs)
        retention = retention_days(config.log_retention_days)
        prefix = f"{self.stack_name}-"
        storage = Storage(self, "Storage", expiry_days=config.log_bucket_expiry_days)
        network = Network(self, "Network", existing=config.network, log_bucket=storage.log_bucket)
        encryption = Encryption(
            self,
            "Encryption",
            log_key_arn=config.log_kms_key_arn,
            emr_security_configuration=config.emr_security_configuration,
        )
        log_key = encryption.log_key
        lifecycle = ClusterLifecycle(
            self,
            "ClusterLifecycle",
            log_bucket=storage.log_bucket,
            log_retention=retention,
            log_key=log_key,
            powertools_layer_version=config.powertools_layer_version,
            state_machine_name_prefix=prefix,
        )
        lifecycle.record_run.add_environment(PRICES_VARIABLE, json.dumps(config.prices, sort_keys=True))
        runner = RunnerTask(
            self,
            "Runner",
            vpc=network.vpc,
            ssh_key_secret_arn=config.ssh_key_secret_arn,
            log_retention=retention,
            log_key=log_key,
        )
        self.schedules = Schedules(
            self,
            "Schedules",
            code=lifecycle.code,
            layer=lifecycle.layer,
            log_retention=retention,
            log_key=log_key,
            alert_key=encryption.alert_key,
        )
        self.alerts = Alerts(
            self,
            "Alerts",
            code=lifecycle.code,
            layer=lifecycle.layer,
            email=config.notification_email,
            sweeper=lifecycle.sweeper,
            log_retention=retention,
            log_key=log_key,
            key=encryption.alert_key,
            dead_letters=self.schedules.failed_starts,
            state_machine_prefix=prefix,
        )
        # A failing sweeper leaves clusters running; a failing StartRun skips a night; a failing
        # formatter hides a failure. None of them is part of an execution, so alarms watch them.
        self.alerts.alarm_on_errors("SweeperFailed", lifecycle.sweeper, "the cluster sweeper")
        self.alerts.alarm_on_errors("StartRunFailed", self.schedules.start_run, "starting a scheduled run")
        self.alerts.alarm_on_errors("AlertFormatterFailed", self.alerts.formatter, "the failure alert")
        # A night that never started: Scheduler's dead letters and StartRun's failed events.
        self.alerts.alarm_on_queue(
            "ScheduledStartFailed", self.schedules.failed_starts, "a scheduled start or late check"
        )
        settings = WorkflowSettings(
            poll_seconds=config.cluster_poll_seconds,
            start_timeout_minutes=config.cluster_start_timeout_minutes,
            queue_poll_seconds=config.queue_poll_seconds,
            log_retention=retention,
            log_uri=storage.emr_log_uri,
            ec2_key_name=config.ec2_key_name,
            pipelines_folder=PIPELINES_FOLDER,
            security_configuration=encryption.security_configuration_name,
            log_key=log_key,
        )
        self.workflows: dict[str, PipelineWorkflow] = {}
        self.dashboard = RunsDashboard(self, "Runs")
        operated: list[OperatedPipeline] = []
        self.catalog = Catalog(self, "Catalog")
        for pipeline in pipelines:
            pipeline_id = construct_id(pipeline.name)
            access = config.data_access_for(pipeline.name)
            # A path outside data_access fails the synth, not the night (AccessDenied on a paid cluster).
            coverage = check_data_access(pipeline, access, access_key(config, pipeline.name))
            for warning in coverage.warnings:
                Annotations.of(self).add_warning_v2(f"nightshift:data-access:{pipeline.name}", warning)
            skipped = pipeline.config.skipped_nights  # a scheduled time lost when the clocks spring forward
            if skipped is not None:
                Annotations.of(self).add_warning_v2(f"nightshift:dst:{pipeline.name}", skipped)
            databases = self.catalog.add_pipeline(pipeline_id, pipeline)
            task = runner.add_pipeline(pipeline.name, pipeline_id)
            name = f"{prefix}{pipeline.name}"
            workflow = PipelineWorkflow(
                self,
                f"{pipeline_id}Workflow",
                pipeline=pipeline,
                pipeline_id=pipeline_id,
                state_machine_name=name,
                lifecycle=lifecycle,
                runner=runner,
                task=task,
                network=network,
                instance_profile=lifecycle.instance_profile(
                    pipeline_id, access, encryption, databases=databases
                ),
                settings=settings,
            )
            self.workflows[pipeline.name] = workflow
            self.alerts.add_pipeline(name, pipeline.name, task.log_group, CONTAINER_NAME)
            if pipeline.config.notify == "always":
                self.alerts.notify_successes(pipeline_id, workflow.state_machine)
            self.dashboard.add_pipeline(
                pipeline.name,
                workflow.state_machine,
                [s.name for s in pipeline.steps],
                checks=tuple(check.label for check in pipeline.checks),
            )
            schedule = pipeline.config.schedule
            if schedule is not None and schedule.enabled:
                self.schedules.add(pipeline.name, pipeline_id, schedule, workflow.state_machine)
                if schedule.expected_by is not None:
                    self.alerts.add_late_check(pipeline.name, pipeline_id, schedule, workflow.state_machine)
            operated.append(OperatedPipeline(workflow.state_machine, name, task.log_group))
            # The digests of the files baked into the runner image: the CLI names what differs locally.
            ssm.StringParameter(
                self,
                f"{pipeline_id}DeployedFiles",
                parameter_name=DEPLOYED_FILES_PARAMETER.format(stack=self.stack_name, pipeline=pipeline.name),
                string_value=encode(folder_digests(pipeline.folder)),
                description=f"Nightshift pipeline {pipeline.name}: digests of its deployed files",
            )
        self.operators = OperatorsPolicy(self, "Operators", pipelines=operated, alert_topic=self.alerts.topic)
