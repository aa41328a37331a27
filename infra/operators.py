"""The operators' managed policy: what `python -m runner … --deployed` needs of this stack, no more."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.cluster_lifecycle import EMR_CLUSTERS_FINDING, emr_cluster_arn, managed_by
from infra.nag import suppress

OUTPUT_NAME = "OperatorsPolicyArn"


@dataclass(frozen=True)
class OperatedPipeline:
    """One pipeline as the CLI meets it: its state machine (and that one's name), its step logs."""

    state_machine: sfn.IStateMachine
    state_machine_name: str
    runner_log_group: logs.ILogGroup


def states_arn(kind: str, name: str) -> str:
    return f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:{kind}:{name}"


def states_finding(kind: str, name: str) -> str:
    """cdk-nag's spelling of ``states_arn(kind, name)`` in a wildcard finding."""
    return f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:{kind}:{name}"


class OperatorsPolicy(Construct):
    """A managed policy to attach to the people (or their role) who run, follow and stop the runs.

    Start, follow, stop and list the runs of this stack's state machines; read the steps' output
    from the runner log groups; and terminate the cluster of a stopped run (a stopped execution runs
    no Catch, so the CLI does it), only on clusters this stack's lifecycle made.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        pipelines: list[OperatedPipeline],
        alert_topic: sns.ITopic | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self).stack_name
        check = self._check_statements(stack, pipelines, alert_topic) if alert_topic is not None else []
        self.policy = iam.ManagedPolicy(
            self,
            "Policy",
            description=f"Nightshift stack {stack}: start, follow, stop and list its pipelines' runs",
            statements=self._statements(stack, pipelines) + check,
        )
        output = CfnOutput(
            self,
            "PolicyArn",
            value=self.policy.managed_policy_arn,
            description="Attach to the users or roles who operate the pipelines (see docs/infra.md)",
        )
        # A fixed output name, for scripts and docs/infra.md.
        output.override_logical_id(OUTPUT_NAME)
        self._acknowledge(pipelines)

    @staticmethod
    def _statements(stack: str, pipelines: list[OperatedPipeline]) -> list[iam.PolicyStatement]:
        machines = [pipeline.state_machine.state_machine_arn for pipeline in pipelines]
        executions = [states_arn("execution", f"{pipeline.state_machine_name}:*") for pipeline in pipelines]
        return [
            iam.PolicyStatement(
                sid="StartAndListRuns",
                actions=["states:StartExecution", "states:ListExecutions"],
                resources=machines,
            ),
            iam.PolicyStatement(
                sid="FollowAndStopRuns",
                actions=["states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"],
                resources=executions,
            ),
            # Finding the deployment: list the state machines and read their tags, before it is
            # known which of them are this stack's.
            iam.PolicyStatement(
                sid="FindStateMachines", actions=["states:ListStateMachines"], resources=["*"]
            ),
            iam.PolicyStatement(
                sid="ReadStateMachineTags",
                actions=["states:ListTagsForResource"],
                resources=[states_arn("stateMachine", "*")],
            ),
            iam.PolicyStatement(
                sid="ReadStepOutput",
                # The CLI reads a step's stream by name (GetLogEvents), never lists or searches.
                actions=["logs:GetLogEvents"],
                resources=[pipeline.runner_log_group.log_group_arn for pipeline in pipelines],
            ),
            iam.PolicyStatement(
                sid="ListClusters", actions=["elasticmapreduce:ListClusters"], resources=["*"]
            ),
            iam.PolicyStatement(
                sid="DescribeAndTerminateThisStacksClusters",
                actions=["elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows"],
                resources=[emr_cluster_arn()],
                conditions={"StringEquals": managed_by(stack)},
            ),
        ]

    @staticmethod
    def _check_statements(
        stack: str, pipelines: list[OperatedPipeline], alert_topic: sns.ITopic
    ) -> list[iam.PolicyStatement]:
        """`--deployed --check` reads only; its Sids start with "Check" (tests/deployed/test_check.py).

        Not here on purpose: secretsmanager:GetSecretValue (the SSH private key stays with the runner;
        the check says when it could not compare the key pair) and s3:ListBucket on data buckets.
        """

        def regional(service: str) -> str:
            return f"arn:{Aws.PARTITION}:{service}:{Aws.REGION}:{Aws.ACCOUNT_ID}"

        return [
            iam.PolicyStatement(
                sid="CheckStack",
                actions=["cloudformation:DescribeStacks", "cloudformation:ListStackResources"],
                resources=[regional("cloudformation") + f":stack/{stack}/*"],
            ),
            iam.PolicyStatement(
                sid="CheckStateMachines",
                actions=["states:DescribeStateMachine"],
                resources=[pipeline.state_machine.state_machine_arn for pipeline in pipelines],
            ),
            iam.PolicyStatement(
                sid="CheckRoles",
                actions=["iam:SimulatePrincipalPolicy"],
                resources=[f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/{stack}-*"],
            ),
            iam.PolicyStatement(
                sid="CheckServiceLinkedRole",
                actions=["iam:GetRole"],
                resources=[
                    f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/aws-service-role/"
                    "elasticmapreduce.amazonaws.com/AWSServiceRoleForEMRCleanup"
                ],
            ),
            # Describe calls without resource-level permissions (EMR, EC2, ECS): account-wide by nature.
            iam.PolicyStatement(
                sid="CheckAccountReads",
                actions=[
                    "elasticmapreduce:DescribeReleaseLabel",
                    "ec2:DescribeSubnets",
                    "ec2:DescribeRouteTables",
                    "ec2:DescribeVpcEndpoints",
                    "ec2:DescribeSecurityGroups",
                    "ec2:DescribeInstanceTypeOfferings",
                    "ec2:DescribeKeyPairs",
                    "ecs:DescribeTaskDefinition",
                ],
                resources=["*"],
            ),
            iam.PolicyStatement(
                sid="CheckDeployedFiles",
                actions=["ssm:GetParameter"],
                resources=[regional("ssm") + f":parameter/nightshift/{stack}/*"],
            ),
            iam.PolicyStatement(
                sid="CheckCatalog",
                actions=["glue:GetDatabase"],
                resources=[
                    regional("glue") + ":catalog",
                    regional("glue") + ":database/*",
                ],
            ),
            iam.PolicyStatement(
                sid="CheckAlerts",
                actions=["sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic"],
                resources=[alert_topic.topic_arn],
            ),
            iam.PolicyStatement(
                sid="CheckFailedStarts",
                actions=["lambda:GetFunctionEventInvokeConfig"],
                resources=[regional("lambda") + f":function:{stack}-*"],
            ),
            iam.PolicyStatement(
                sid="CheckSchedules",
                actions=["scheduler:GetSchedule"],
                resources=[regional("scheduler") + ":schedule/default/*"],
            ),
        ]

    def _acknowledge(self, pipelines: list[OperatedPipeline]) -> None:
        suppress(
            self.policy,
            "AwsSolutions-IAM5",
            "ListStateMachines and ListClusters have no resource-level permissions (account-wide by "
            "nature); the CLI reads the tags of the account's state machines to find this stack's; "
            "executions and clusters exist only at run time: executions of this stack's state machines, "
            "clusters only with this stack's nightshift:stack and nightshift:managed tags.",
            applies_to=[
                "Resource::*",
                # The deployment check's reads: its stack's roles and parameters, the catalog's
                # databases (GetDatabase only), the default schedule group (GetSchedule only), its
                # functions' invoke configuration (GetFunctionEventInvokeConfig only).
                f"Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:stack/{Stack.of(self).stack_name}/*",
                f"Resource::arn:<AWS::Partition>:iam::<AWS::AccountId>:role/{Stack.of(self).stack_name}-*",
                f"Resource::arn:<AWS::Partition>:ssm:<AWS::Region>:<AWS::AccountId>:parameter/nightshift/{Stack.of(self).stack_name}/*",
                "Resource::arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>:database/*",
                "Resource::arn:<AWS::Partition>:scheduler:<AWS::Region>:<AWS::AccountId>:schedule/default/*",
                f"Resource::arn:<AWS::Partition>:lambda:<AWS::Region>:<AWS::AccountId>:function:{Stack.of(self).stack_name}-*",
                states_finding("stateMachine", "*"),
                EMR_CLUSTERS_FINDING,
                *(states_finding("execution", f"{pipeline.state_machine_name}:*") for pipeline in pipelines),
            ],
        )
