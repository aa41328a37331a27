"""The runner on Fargate: one image with runner/ and sql/, a task definition and log group per pipeline."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.cluster_lifecycle import (
    EMR_CLUSTERS_FINDING,
    HOST_KEYS_FINDING,
    emr_cluster_arn,
    host_key_parameters_arn,
)
from infra.nag import checkov_skip, suppress
from infra.paths import ROOT, RUNNER_DOCKERFILE

CONTAINER_NAME = "runner"
SSH_KEY_VARIABLE = "NIGHTSHIFT_SSH_PRIVATE_KEY"


@dataclass(frozen=True)
class PipelineTask:
    """What a RunStep state needs: the task definition, its container and its logs."""

    task_definition: ecs.FargateTaskDefinition
    container: ecs.ContainerDefinition
    log_group: logs.LogGroup
    stream_prefix: str


class RunnerTask(Construct):
    """The Fargate side: the ECS cluster, the runner image and one task definition per pipeline."""

    # The runner only relays output over SSH: the smallest Fargate size is plenty.
    CPU = 256
    MEMORY_MIB = 512

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        vpc: ec2.IVpc,
        ssh_key_secret_arn: str,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self._log_retention = log_retention
        self._log_key = log_key
        self.cluster = self._build_cluster(vpc)
        # Any change under runner/ or sql/ changes the asset hash: a new image at the next deploy.
        self.image = ecs.ContainerImage.from_asset(
            str(ROOT), file=RUNNER_DOCKERFILE, platform=ecr_assets.Platform.LINUX_AMD64
        )
        self._ssh_key = secretsmanager.Secret.from_secret_complete_arn(self, "SshKey", ssh_key_secret_arn)
        self.tasks: dict[str, PipelineTask] = {}

    def add_pipeline(self, pipeline: str, pipeline_id: str) -> PipelineTask:
        """The task definition that runs the steps of one pipeline, logging to its own log group."""
        log_group = logs.LogGroup(
            self,
            f"{pipeline_id}Logs",
            retention=self._log_retention,
            # What the steps print (query results, often personal data) is encrypted at rest.
            encryption_key=self._log_key,
            # The step output is the run's record: keep it when the stack goes.
            removal_policy=RemovalPolicy.RETAIN,
        )
        log_group.node.default_child.override_logical_id(f"RunnerLogs{pipeline_id}")  # type: ignore[union-attr]
        task_definition = ecs.FargateTaskDefinition(
            self,
            f"{pipeline_id}Task",
            cpu=self.CPU,
            memory_limit_mib=self.MEMORY_MIB,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        container = task_definition.add_container(
            CONTAINER_NAME,
            image=self.image,
            essential=True,
            environment={"AWS_REGION": Aws.REGION},
            secrets={SSH_KEY_VARIABLE: ecs.Secret.from_secrets_manager(self._ssh_key)},
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix=pipeline,
                log_group=log_group,
                # ECS defaults to non-blocking since 2025, which drops lines when the buffer fills;
                # a step's output is its record, so a slow CloudWatch must slow the step instead.
                mode=ecs.AwsLogDriverMode.BLOCKING,
            ),
            readonly_root_filesystem=False,
        )
        self._grant_cluster_access(task_definition.task_role)
        suppress(
            task_definition,
            "AwsSolutions-ECS2",
            "The only plain environment variable is AWS_REGION; the SSH key comes from Secrets Manager.",
        )
        suppress(
            task_definition.task_role,
            "AwsSolutions-IAM5",
            "Cluster ids and their host-key parameters exist only at run time; scoped to this account's "
            "EMR clusters and /nightshift/host-keys/.",
            applies_to=[EMR_CLUSTERS_FINDING, HOST_KEYS_FINDING],
        )
        suppress(
            task_definition.obtain_execution_role(),
            "AwsSolutions-IAM5",
            "ecr:GetAuthorizationToken has no resource-level permissions.",
            applies_to=["Resource::*"],
        )
        task = PipelineTask(task_definition, container, log_group, stream_prefix=pipeline)
        self.tasks[pipeline] = task
        return task

    def _build_cluster(self, vpc: ec2.IVpc) -> ecs.Cluster:
        cluster = ecs.Cluster(self, "Cluster", vpc=vpc)
        suppress(
            cluster,
            "AwsSolutions-ECS4",
            "Container Insights would bill metrics for short tasks whose outcome Step Functions and the "
            "step logs already record.",
        )
        checkov_skip(
            cluster,
            "CKV_AWS_65",
            "Container Insights would bill metrics for short tasks whose outcome Step Functions and the "
            "step logs already record.",
        )
        return cluster

    @staticmethod
    def _grant_cluster_access(role: iam.IRole) -> None:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["elasticmapreduce:DescribeCluster", "elasticmapreduce:ListInstances"],
                resources=[emr_cluster_arn()],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[host_key_parameters_arn()])
        )
