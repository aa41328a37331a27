"""The cluster lifecycle: the Lambdas, the EMR service role, per-pipeline instance profiles, the bootstrap."""

from __future__ import annotations

import re

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra.catalog import grant_catalog
from infra.config import DataAccess, S3Path
from infra.encryption import Encryption
from infra.inputs import DeployedInput, deployed_inputs
from infra.lambda_code import lambda_code
from infra.nag import acknowledge_lambda_defaults, arn_finding, suppress
from infra.paths import HOST_KEY_BOOTSTRAP, ROOT
from infra.storage import EMR_LOG_PREFIX
from lambdas.shared.clusters import TAG_EMR_MANAGED_POLICIES, TAG_MANAGED, TAG_STACK
from lambdas.shared.hostkeys import HOST_KEY_PREFIX
from lambdas.shared.stack import STACK_VARIABLE
from runner.model import Pipeline

HOST_KEY_PARAMETERS = f"{HOST_KEY_PREFIX.strip('/')}/*"
EMR_CLUSTERS_FINDING = (
    "Resource::arn:<AWS::Partition>:elasticmapreduce:<AWS::Region>:<AWS::AccountId>:cluster/*"
)
HOST_KEYS_FINDING = (
    f"Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/{HOST_KEY_PARAMETERS}"
)


def managed_by(stack: str, key: str = "aws:ResourceTag") -> dict[str, str]:
    """Tag condition of a cluster this stack's lifecycle made (or, with aws:RequestTag, is making)."""
    return {f"{key}/{TAG_MANAGED}": "true", f"{key}/{TAG_STACK}": stack}


# AWS publishes each Powertools release's layer ARN under this public SSM path.
POWERTOOLS_LAYER_PARAMETER = "/aws/service/powertools/python/x86_64/python3.12/{version}"
POWERTOOLS_LAYER = (
    "arn:{partition}:lambda:{region}:017000801446:layer:"
    "AWSLambdaPowertoolsPythonV3-python312-x86_64:{version}"
)


def pinned_powertools_version() -> str:
    """The aws-lambda-powertools version pinned in lambdas/requirements.txt."""
    text = (ROOT / "lambdas" / "requirements.txt").read_text(encoding="utf-8")
    match = re.search(r"^aws-lambda-powertools(?:\[[^]]*\])?==([\w.]+)", text, re.MULTILINE)
    if match is None:
        raise ValueError("lambdas/requirements.txt must pin aws-lambda-powertools==X.Y.Z")
    return match[1]


def emr_cleanup_role_arn() -> str:
    """EMR's service-linked role, which its first RunJobFlow in an account creates."""
    return (
        f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/"
        "elasticmapreduce.amazonaws.com/AWSServiceRoleForEMRCleanup"
    )


def emr_cluster_arn() -> str:
    return f"arn:{Aws.PARTITION}:elasticmapreduce:{Aws.REGION}:{Aws.ACCOUNT_ID}:cluster/*"


def host_key_parameters_arn() -> str:
    return f"arn:{Aws.PARTITION}:ssm:{Aws.REGION}:{Aws.ACCOUNT_ID}:parameter/{HOST_KEY_PARAMETERS}"


class ClusterLifecycle(Construct):
    """What makes, watches and removes the transient EMR clusters."""

    RUNTIME = lambda_.Runtime.PYTHON_3_12
    HANDLERS = {
        "Preflight": ("lambdas.preflight.handler", 30),
        # One per pipeline with [inputs] (check_inputs_function): each may list only its own paths.
        "CheckInputs": ("lambdas.check_inputs.handler", 30),
        "CreateCluster": ("lambdas.create_cluster.handler", 120),
        "ClusterStatus": ("lambdas.cluster_status.handler", 30),
        "TerminateCluster": ("lambdas.terminate_cluster.handler", 60),
        "Sweeper": ("lambdas.sweeper.handler", 300),
        "RecordRun": ("lambdas.record_run.handler", 60),
    }

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        log_bucket: s3.IBucket,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
        powertools_layer_version: int | None,
        state_machine_name_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self._log_bucket = log_bucket
        self._log_retention = log_retention
        self._log_key = log_key
        #: the one code asset and Powertools layer of every function (infra/lambda_code.py)
        self.code = lambda_code()
        self.layer = lambda_.LayerVersion.from_layer_version_arn(
            self, "Powertools", self._powertools_layer_arn(powertools_layer_version)
        )
        #: each pipeline's S3 paths, as instance_profile granted them (its inputs check stays within)
        self.data_access: dict[str, DataAccess] = {}
        self.bootstrap_script = s3_assets.Asset(self, "HostKeyBootstrap", path=str(HOST_KEY_BOOTSTRAP))
        self.service_role = self._build_service_role()
        self.preflight = self._function("Preflight")
        self.create_cluster = self._function("CreateCluster")
        self.cluster_status = self._function("ClusterStatus")
        self.terminate_cluster = self._function("TerminateCluster")
        self.sweeper = self._function("Sweeper")
        self.record_run = self._function("RecordRun")
        self._grant_emr(state_machine_name_prefix)
        self.service_role.grant_pass_role(self.create_cluster.grant_principal)

    @property
    def functions(self) -> list[lambda_.Function]:
        return [
            self.preflight,
            self.create_cluster,
            self.cluster_status,
            self.terminate_cluster,
            self.sweeper,
            self.record_run,
        ]

    def instance_profile(
        self,
        pipeline_id: str,
        access: DataAccess,
        encryption: Encryption,
        *,
        databases: tuple[str, ...] | None = None,
    ) -> iam.InstanceProfile:
        """The EC2 instance profile of one pipeline's clusters: its data paths, the logs, the host keys.

        ``databases``: the Glue databases its tables live in (None: a per-cluster metastore, no Glue).
        """
        self.data_access[pipeline_id] = access
        role = iam.Role(
            self,
            f"{pipeline_id}InstanceRole",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description=f"EMR nodes of Nightshift pipeline {pipeline_id}",
        )
        for path in access.read:
            self._grant_s3(role, path, write=False)
        for path in access.write:
            self._grant_s3(role, path, write=True)
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:PutObject"], resources=[self._log_bucket.arn_for_objects(f"{EMR_LOG_PREFIX}*")]
            )
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                resources=[self.bootstrap_script.bucket.arn_for_objects(self.bootstrap_script.s3_object_key)],
            )
        )
        # The master publishes its host keys once at boot. Never overwriting them means no step's
        # code (which runs with this role on every node) can re-pin any cluster's master later;
        # only the lifecycle Lambdas delete a pin, when its cluster is terminated.
        role.add_to_policy(
            iam.PolicyStatement(actions=["ssm:PutParameter"], resources=[host_key_parameters_arn()])
        )
        role.add_to_policy(
            iam.PolicyStatement(
                effect=iam.Effect.DENY,
                actions=["ssm:PutParameter"],
                resources=[host_key_parameters_arn()],
                conditions={"StringEquals": {"ssm:Overwrite": "true"}},
            )
        )
        if databases is not None:
            grant_catalog(role, databases)
        role.grant_pass_role(self.service_role)
        role.grant_pass_role(self.create_cluster.grant_principal)
        encryption.grant_cluster(role, self.service_role)
        suppress(
            role,
            "AwsSolutions-IAM5",
            "Objects under the pipeline's configured data prefixes and the EMR log prefix, and the "
            "host-key parameter of a cluster whose id is only known once it exists.",
            applies_to=[
                *(
                    f"Resource::arn:<AWS::Partition>:s3:::{path.bucket}/{path.prefix}*"
                    for path in (*access.read, *access.write)
                ),
                arn_finding(self._log_bucket, f"/{EMR_LOG_PREFIX}*"),
                HOST_KEYS_FINDING,
            ],
        )
        return iam.InstanceProfile(self, f"{pipeline_id}InstanceProfile", role=role)

    def check_inputs_function(
        self, pipeline_id: str, pipeline: Pipeline
    ) -> tuple[lambda_.Function, list[DeployedInput]]:
        """The inputs check of one pipeline: it may list the S3 paths of its declared inputs, nothing else.

        Only s3:ListBucket: CheckInputs lists even a single marker, and never reads an object. An
        input outside the pipeline's data_access (instance_profile first) fails the synth.
        """
        inputs = deployed_inputs(pipeline, self.data_access[pipeline_id])
        function = self._function("CheckInputs", f"{pipeline_id}CheckInputs")
        buckets: dict[str, list[str]] = {}
        for item in inputs:
            buckets.setdefault(item.listable.bucket, []).append(f"{item.listable.prefix}*")
        for bucket, prefixes in sorted(buckets.items()):
            function.add_to_role_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[f"arn:{Aws.PARTITION}:s3:::{bucket}"],
                    conditions={"StringLike": {"s3:prefix": sorted(set(prefixes))}},
                )
            )
        suppress(
            function,
            "AwsSolutions-IAM5",
            "X-Ray has no resource-level permissions.",
            applies_to=["Resource::*"],
        )
        return function, inputs

    def _function(self, name: str, construct_id: str | None = None) -> lambda_.Function:
        handler, timeout_seconds = self.HANDLERS[name]
        construct_id = construct_id or name
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=self._log_retention,
            encryption_key=self._log_key,
            removal_policy=RemovalPolicy.DESTROY,
        )
        function = lambda_.Function(
            self,
            construct_id,
            runtime=self.RUNTIME,
            handler=handler,
            code=self.code,
            layers=[self.layer],
            memory_size=256,
            timeout=Duration.seconds(timeout_seconds),
            tracing=lambda_.Tracing.ACTIVE,
            log_group=log_group,
            environment={
                "POWERTOOLS_SERVICE_NAME": "nightshift",
                "POWERTOOLS_METRICS_NAMESPACE": "Nightshift",
                STACK_VARIABLE: Stack.of(self).stack_name,
            },
        )
        acknowledge_lambda_defaults(function)
        return function

    def _build_service_role(self) -> iam.Role:
        role = iam.Role(
            self,
            "EmrServiceRole",
            assumed_by=iam.ServicePrincipal("elasticmapreduce.amazonaws.com"),
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonEMRServicePolicy_v2")
            ],
        )
        suppress(
            role,
            "AwsSolutions-IAM4",
            "AmazonEMRServicePolicy_v2 is EMR's own least-privilege service policy: it only acts on "
            "resources tagged for-use-with-amazon-emr-managed-policies=true.",
            applies_to=[
                "Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonEMRServicePolicy_v2"
            ],
        )
        return role

    def _powertools_layer_arn(self, layer_version: int | None) -> str:
        """The layer of exactly the Powertools release the tests pin, unless cdk.json names a layer."""
        if layer_version is not None:
            return POWERTOOLS_LAYER.format(partition=Aws.PARTITION, region=Aws.REGION, version=layer_version)
        # Resolved by CloudFormation at deploy time: no look-up at synth, and no layer number to
        # keep in step with lambdas/requirements.txt by hand.
        name = POWERTOOLS_LAYER_PARAMETER.format(version=pinned_powertools_version())
        return ssm.StringParameter.value_for_string_parameter(self, name)

    def _grant_emr(self, state_machine_name_prefix: str) -> None:
        stack = Stack.of(self).stack_name
        describe = iam.PolicyStatement(
            actions=["elasticmapreduce:DescribeCluster"], resources=[emr_cluster_arn()]
        )
        # ListClusters has no resource-level permissions.
        list_clusters = iam.PolicyStatement(actions=["elasticmapreduce:ListClusters"], resources=["*"])
        terminate = iam.PolicyStatement(
            actions=["elasticmapreduce:TerminateJobFlows", "elasticmapreduce:SetTerminationProtection"],
            resources=[emr_cluster_arn()],
            conditions={"StringEquals": managed_by(stack)},
        )
        delete_host_keys = iam.PolicyStatement(
            actions=["ssm:DeleteParameter"], resources=[host_key_parameters_arn()]
        )
        states_arn = f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}"
        state_machines = f"{states_arn}:stateMachine:{state_machine_name_prefix}*"
        executions = (
            f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{state_machine_name_prefix}*"
        )
        grants: dict[lambda_.Function, list[iam.PolicyStatement]] = {
            self.preflight: [
                describe,
                list_clusters,
                iam.PolicyStatement(actions=["states:ListExecutions"], resources=[state_machines]),
                # The run date of a running execution named by hand is in its input.
                iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[executions]),
            ],
            self.create_cluster: [
                describe,
                list_clusters,
                terminate,
                # RunJobFlow has no resource-level permissions; the request tags make every cluster
                # it creates this stack's from its first moment.
                iam.PolicyStatement(
                    actions=["elasticmapreduce:RunJobFlow"],
                    resources=["*"],
                    conditions={
                        "StringEquals": {
                            **managed_by(stack, "aws:RequestTag"),
                            # Without it the service role's AmazonEMRServicePolicy_v2 launches nothing.
                            f"aws:RequestTag/{TAG_EMR_MANAGED_POLICIES}": "true",
                        }
                    },
                ),
                # An account's first RunJobFlow creates EMR's cleanup role with the caller's
                # permission ("Using the service-linked role for Amazon EMR"). Granted, not created
                # in the stack: the role is one per account, so a second stack (or an account that
                # already ran EMR) could not create it, and deleting a stack must not remove it.
                iam.PolicyStatement(
                    actions=["iam:CreateServiceLinkedRole", "iam:PutRolePolicy"],
                    resources=[emr_cleanup_role_arn()],
                    conditions={"StringEquals": {"iam:AWSServiceName": "elasticmapreduce.amazonaws.com"}},
                ),
                # AddTags is what tags on RunJobFlow are authorised as. Scoped: only clusters, only
                # the nightshift:* keys, only with this stack's tags, and never on a cluster that
                # already belongs to another stack.
                iam.PolicyStatement(
                    actions=["elasticmapreduce:AddTags"],
                    resources=[emr_cluster_arn()],
                    conditions={
                        "StringEquals": managed_by(stack, "aws:RequestTag"),
                        "ForAllValues:StringLike": {
                            "aws:TagKeys": ["nightshift:*", TAG_EMR_MANAGED_POLICIES]
                        },
                        "StringEqualsIfExists": {f"aws:ResourceTag/{TAG_STACK}": stack},
                    },
                ),
            ],
            self.cluster_status: [describe],
            self.terminate_cluster: [describe, list_clusters, terminate, delete_host_keys],
            self.sweeper: [
                describe,
                list_clusters,
                terminate,
                delete_host_keys,
                iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[executions]),
            ],
            # The run's record: its clusters' instances (any of this account's: a cluster the run
            # launched may have failed before it was tagged) and its execution's history.
            self.record_run: [
                describe,
                list_clusters,
                iam.PolicyStatement(
                    actions=[
                        "elasticmapreduce:ListInstances",
                        "elasticmapreduce:ListInstanceGroups",
                        "elasticmapreduce:ListInstanceFleets",
                    ],
                    resources=[emr_cluster_arn()],
                ),
                iam.PolicyStatement(actions=["states:GetExecutionHistory"], resources=[executions]),
                # A batch's record: each date's execution's status, start and stop (issue 22).
                iam.PolicyStatement(actions=["states:DescribeExecution"], resources=[executions]),
            ],
        }
        for function, statements in grants.items():
            for statement in statements:
                function.add_to_role_policy(statement)
            suppress(
                function,
                "AwsSolutions-IAM5",
                "EMR cluster ids, host-key parameters and executions are only known at run time: the "
                "wildcards are scoped to this account's EMR clusters (terminate and tag only with the "
                "nightshift:managed and this stack's nightshift:stack tags), /nightshift/host-keys/ and "
                "this stack's state machines; "
                "ListClusters, RunJobFlow and X-Ray have no resource-level permissions.",
                applies_to=[
                    "Resource::*",
                    EMR_CLUSTERS_FINDING,
                    HOST_KEYS_FINDING,
                    f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:stateMachine:{state_machine_name_prefix}*",
                    f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{state_machine_name_prefix}*",
                ],
            )

    @staticmethod
    def _grant_s3(role: iam.Role, path: S3Path, *, write: bool) -> None:
        bucket_arn = f"arn:{Aws.PARTITION}:s3:::{path.bucket}"
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["s3:ListBucket"],
                resources=[bucket_arn],
                # Hadoop's S3A also lists the "folder" itself, without its trailing slash.
                conditions={"StringLike": {"s3:prefix": [f"{path.prefix}*", path.prefix.rstrip("/")]}}
                if path.prefix
                else None,
            )
        )
        role.add_to_policy(iam.PolicyStatement(actions=["s3:GetBucketLocation"], resources=[bucket_arn]))
        if path.prefix:
            # HeadBucket is authorized as s3:ListBucket with no prefix in the request; EMRFS and S3A
            # probe a bucket before they use it. The price: a listing that names no prefix shows
            # the bucket's key names (never an object's content, which stays within the prefixes).
            role.add_to_policy(
                iam.PolicyStatement(
                    actions=["s3:ListBucket"],
                    resources=[bucket_arn],
                    conditions={"Null": {"s3:prefix": "true"}},
                )
            )
        if write:
            # The S3A and EMRFS committers list a job's pending multipart uploads to abort them; the
            # action is bucket-level and takes no s3:prefix condition.
            role.add_to_policy(
                iam.PolicyStatement(actions=["s3:ListBucketMultipartUploads"], resources=[bucket_arn])
            )
        actions = ["s3:GetObject"]
        if write:
            actions += [
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ]
        role.add_to_policy(iam.PolicyStatement(actions=actions, resources=[f"{bucket_arn}/{path.prefix}*"]))
