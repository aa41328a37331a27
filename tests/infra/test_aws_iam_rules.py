"""The synthesized template held to AWS's documented IAM rules, which moto never enforces.

Every call of runner/deployed/calls.py's ALL_CALLS (what each deployed role calls, with its resource and
context) is evaluated by tests/infra/iam_eval.py against the role's inline policies and the
AWS-managed policies it attaches (pinned under tests/infra/aws_managed/ with version and date).
"""
# ruff: noqa: F811 - the gated synth fixture is imported, then named as a parameter

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from lambdas.shared.cluster_spec import cluster_tags
from lambdas.shared.models import CreateClusterRequest
from runner.deployed import calls as manifest
from runner.deployed.calls import ALL_CALLS, EMR_MANAGED_POLICY_TAG, Call
from tests.infra.conftest import ACCOUNT, REGION, SECRET_ARN, SUBNETS, Synthesis, base_context
from tests.infra.iam_eval import (
    Decision,
    Principal,
    Request,
    Template,
    evaluate,
    evaluate_resource_policy,
    managed_policy,
)
from tests.infra.test_cost_stack import cost_synth  # noqa: F401 - the synth with a late check
from tests.infra.test_inputs_gate import gated_synth  # noqa: F401 - the shared gated synth fixture
from tests.lambda_support import CREATE_PAYLOAD

PIPELINE = "nightly"
CLUSTER_ID = "j-1NIGHTLY2ABC"
MANAGED_TAG_KEY = EMR_MANAGED_POLICY_TAG[0]
# Each deployed role of the manifest: the session synth that has it (test_synth has every role but
# the late check's, which needs an expected_by, and CheckInputs, which needs [inputs]), the kind of
# resource that holds its statements and the part of its logical id.
ROLES = {
    manifest.CREATE_CLUSTER: ("test_synth", "ClusterLifecycleCreateClusterServiceRole"),
    manifest.CLUSTER_STATUS: ("test_synth", "ClusterLifecycleClusterStatusServiceRole"),
    manifest.TERMINATE_CLUSTER: ("test_synth", "ClusterLifecycleTerminateClusterServiceRole"),
    manifest.PREFLIGHT: ("test_synth", "ClusterLifecyclePreflightServiceRole"),
    manifest.RECORD_RUN: ("test_synth", "ClusterLifecycleRecordRunServiceRole"),
    manifest.CHECK_INPUTS: ("gated_synth", "CheckInputsServiceRole"),
    manifest.SWEEPER: ("test_synth", "ClusterLifecycleSweeperServiceRole"),
    manifest.RUNNER_TASK: ("test_synth", "RunnerNightlyTaskTaskRole"),
    manifest.RUNNER_TASK_EXECUTION: ("test_synth", "RunnerNightlyTaskExecutionRole"),
    manifest.INSTANCE_ROLE: ("test_synth", "ClusterLifecycleNightlyInstanceRole"),
    manifest.EMR_SERVICE_ROLE: ("test_synth", "ClusterLifecycleEmrServiceRole"),
    manifest.START_RUN: ("test_synth", "SchedulesStartRunServiceRole"),
    manifest.START_RUN_SCHEDULE: ("test_synth", "SchedulesSchedulerRole"),
    manifest.ALERT_FORMATTER: ("test_synth", "AlertsFormatterServiceRole"),
    manifest.LATE_CHECK: ("cost_synth", "AlertsLateCheckServiceRole"),
    manifest.LATE_CHECK_SCHEDULE: ("cost_synth", "AlertsLateCheckSchedulerRole"),
    manifest.STATE_MACHINE: ("test_synth", "NightlyWorkflowStateMachineRole"),
    manifest.OPERATORS: ("test_synth", "OperatorsPolicy"),
    manifest.OPERATORS_CHECK: ("test_synth", "OperatorsPolicy"),
}
OPERATOR_ROLES = (manifest.OPERATORS, manifest.OPERATORS_CHECK)
# The pipeline each synth's roles serve, and the values that differ from test_synth's nightly.
PIPELINES = {"test_synth": "nightly", "cost_synth": "nightly", "gated_synth": "gated"}
OVERRIDES = {"gated_synth": {"read_prefix": "raw/events/dt=2025-06-01/"}}


class Deployment:
    """A synth as the manifest sees a deployment: its roles' statements and the template's values."""

    def __init__(self, synth: Synthesis, pipeline: str = PIPELINE, **overrides: str) -> None:
        self.template = Template(synth.template)
        t = self.template
        machine = next(
            k
            for k, v in t.of_type("AWS::StepFunctions::StateMachine").items()
            if v["Properties"]["StateMachineName"].endswith(f"-{pipeline}")
        )
        self.master_security_group = t.logical_id("AWS::EC2::SecurityGroup", "MasterSecurityGroup")
        assets = json.loads((synth.outdir / f"{synth.stack.stack_name}.assets.json").read_text())
        (bootstrap_key,) = [
            d["objectKey"]
            for a in assets["files"].values()
            if a["source"]["path"].endswith(".sh")
            for d in a["destinations"].values()
        ]
        title = pipeline.capitalize()
        runner_logs = t.arn(t.logical_id("AWS::Logs::LogGroup", f"RunnerLogs{title}"))
        self.stack = synth.stack.stack_name

        def function(handler: str) -> str:
            (found,) = [
                k
                for k, v in t.of_type("AWS::Lambda::Function").items()
                if v["Properties"].get("Handler") == f"lambdas.{handler}.handler"
            ]
            return found

        late_checks = [
            k for k, v in t.of_type("AWS::Lambda::Function").items()
            if v["Properties"].get("Handler") == "lambdas.late_check.handler"
        ]  # fmt: skip
        check_inputs = [
            k for k, v in t.of_type("AWS::Lambda::Function").items()
            if v["Properties"].get("Handler") == "lambdas.check_inputs.handler"
        ]  # fmt: skip
        self.pipeline = pipeline
        #: whether the pipeline has an input gate: only then are the manifest's gated calls made
        self.gated = bool(check_inputs)
        self.values = {
            "partition": "aws",
            "region": REGION,
            "account": ACCOUNT,
            "stack": self.stack,
            "cluster": CLUSTER_ID,
            "execution": f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{self.stack}-{pipeline}:run-1",
            "state_machine": t.ref(machine),
            "host_key": f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/nightshift/host-keys/{CLUSTER_ID}",
            "read_bucket": "lake",
            "read_prefix": "raw/",
            "write_bucket": "lake",
            "write_prefix": "curated/",
            "log_bucket": t.ref(t.logical_id("AWS::S3::Bucket", "EmrLogBucket")),
            "bootstrap_object": f"arn:aws:s3:::cdk-hnb659fds-assets-{ACCOUNT}-{REGION}/{bootstrap_key}",
            "disk_key": t.arn(t.logical_id("AWS::KMS::Key", "EmrDiskKey")),
            "instance_role": t.arn(t.logical_id("AWS::IAM::Role", f"ClusterLifecycle{title}InstanceRole")),
            "service_role": t.arn(t.logical_id("AWS::IAM::Role", "ClusterLifecycleEmrServiceRole")),
            "subnet": SUBNETS[0],
            "security_group": "sg-0master",
            "key_pair": base_context()["ec2_key_name"],
            "runner_log_group": runner_logs.removesuffix(":*") + f":log-stream:{pipeline}/10_users/1",
            "ssh_secret": SECRET_ARN,
            "image_repository": (
                f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/cdk-hnb659fds-container-assets-{ACCOUNT}-{REGION}"
            ),
            "database": "nightly",
            "table": "users",
            "pipeline": pipeline,
            "start_run_function": function("start_run"),
            "late_check_function": late_checks[0] if late_checks else "no-late-check",
            "preflight_function": function("preflight"),
            "create_cluster_function": function("create_cluster"),
            "cluster_status_function": function("cluster_status"),
            "terminate_cluster_function": function("terminate_cluster"),
            "record_run_function": function("record_run"),
            **({"check_inputs_function": check_inputs[0]} if check_inputs else {}),
            "failed_starts": t.arn(t.logical_id("AWS::SQS::Queue", "FailedStarts")),
            "alert_key": t.arn(t.logical_id("AWS::KMS::Key", "AlertKey")),
            "alert_topic": t.ref(t.logical_id("AWS::SNS::Topic", "AlertsTopic")),
            "ecs_cluster": t.logical_id("AWS::ECS::Cluster", "RunnerCluster"),
            "task_definition": t.ref(t.logical_id("AWS::ECS::TaskDefinition", f"Runner{title}Task")),
            "task_role": t.arn(t.logical_id("AWS::IAM::Role", f"Runner{title}TaskTaskRole")),
            "task_execution_role": t.arn(t.logical_id("AWS::IAM::Role", f"Runner{title}TaskExecutionRole")),
            **overrides,
        }
        request = CreateClusterRequest.model_validate({**CREATE_PAYLOAD, "pipeline": PIPELINE})
        self.cluster_tags = cluster_tags(request, self.stack)

    def holder(self, role: str) -> str:
        """The logical id of the role (or, for the operators, the managed policy) that holds its statements."""
        # The state machine's role is its pipeline's own; every other role here is the synth's one.
        part = (
            f"{self.pipeline.capitalize()}WorkflowStateMachineRole"
            if role == manifest.STATE_MACHINE
            else ROLES[role][1]
        )
        kind = "AWS::IAM::ManagedPolicy" if role in OPERATOR_ROLES else "AWS::IAM::Role"
        return self.template.logical_id(kind, part)

    def statements(self, role: str) -> list[Mapping[str, Any]]:
        if role in OPERATOR_ROLES:
            return self.template.policy_statements(self.holder(role))
        return self.template.role_statements(self.holder(role))

    def inline_statements(self, role: str) -> list[Mapping[str, Any]]:
        if role in OPERATOR_ROLES:
            return self.statements(role)
        return self.template.inline_statements(self.holder(role))

    def role_values(self, role: str) -> dict[str, str]:
        """The values of one role: a Lambda's own log group (the function that runs with the role)."""
        if role in OPERATOR_ROLES:
            return {}
        arn = {"Fn::GetAtt": [self.holder(role), "Arn"]}
        for function in self.template.of_type("AWS::Lambda::Function").values():
            if function["Properties"].get("Role") == arn:
                group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
                return {"function_log_group": self.template.arn(group).removesuffix(":*")}
        return {}

    def resource_tags(self, tagged: str) -> dict[str, str]:
        if tagged == "security_group":
            return self.template.tags(self.master_security_group)
        # The existing VPC's subnets are not in the template: docs/infra.md makes their tag a
        # prerequisite (test_the_new_vpc_tags_the_subnets_emr_launches_into covers the stack's own).
        assert tagged == "subnet"
        return dict([EMR_MANAGED_POLICY_TAG])

    def request(self, call: Call, *, cluster_tags: dict[str, str] | None = None) -> Request:
        tags = self.cluster_tags if cluster_tags is None else cluster_tags
        values = self.values | self.role_values(call.role)
        context: dict[str, str | bool | tuple[str, ...]] = {
            key: value.format(**values) for key, value in call.context
        }
        if call.cluster_tags == "request":
            context |= {f"aws:RequestTag/{k}": v for k, v in tags.items()}
            context["aws:TagKeys"] = tuple(tags)
        elif call.cluster_tags == "resource":
            context |= {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
        if call.tagged is not None:
            context |= {f"aws:ResourceTag/{k}": v for k, v in self.resource_tags(call.tagged).items()}
        return Request(call.action, call.resource.format(**values), context)

    def decide(
        self, call: Call, statements: list[Mapping[str, Any]] | None = None, **kwargs: Any
    ) -> Decision:
        return evaluate(
            self.statements(call.role) if statements is None else statements, self.request(call, **kwargs)
        )


_DEPLOYMENTS: dict[str, Deployment] = {}


def deployment_of(request: pytest.FixtureRequest, role: str, gated: bool = False) -> Deployment:
    """The deployment (one per session synth) that holds ``role``; with `gated`, that of a pipeline with
    [inputs] (the calls of the input gate)."""
    synth_name = "gated_synth" if gated else ROLES[role][0]
    synth: Synthesis = request.getfixturevalue(synth_name)
    key = str(synth.outdir)
    if key not in _DEPLOYMENTS:
        _DEPLOYMENTS[key] = Deployment(synth, PIPELINES[synth_name], **OVERRIDES.get(synth_name, {}))
    return _DEPLOYMENTS[key]


@pytest.fixture(scope="module")
def deployment(test_synth: Synthesis) -> Deployment:
    return Deployment(test_synth)


def _call(role: str, action: str, resource_part: str = "") -> Call:
    found = [c for c in ALL_CALLS if c.role == role and c.action == action and resource_part in c.resource]
    assert found, (role, action, resource_part)
    return found[0]


@pytest.mark.parametrize(
    "call",
    ALL_CALLS,
    ids=lambda c: f"{c.role}-{c.action}-{c.resource.rsplit(':', 1)[-1]}",
)
def test_every_call_each_role_makes_is_allowed(request: pytest.FixtureRequest, call: Call) -> None:
    """What each deployed role calls, AWS allows: IAM evaluation of identity policies with conditions.

    Policy evaluation logic (IAM User Guide):
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html
    """
    deployment = deployment_of(request, call.role, call.gated)
    decision = deployment.decide(call)
    assert decision.allowed, (call, deployment.request(call), decision)


@pytest.mark.parametrize(
    ("role", "gated"),
    [*((role, False) for role in ROLES), (manifest.STATE_MACHINE, True)],
    ids=[*ROLES, f"{manifest.STATE_MACHINE}-gated"],
)
def test_every_grant_the_stack_writes_is_needed_by_a_call(
    request: pytest.FixtureRequest, role: str, gated: bool
) -> None:
    """Each statement of a role's own policies is what some call of the manifest needs: without it,
    a call is denied. So a grant missing from the stack fails test_every_call_each_role_makes_is_allowed,
    and a grant no call needs (or a call missing from the manifest) fails here. The state machine of a
    pipeline with [inputs] is held to it too: it also invokes CheckInputs.
    """
    deployment = deployment_of(request, role, gated)
    # Roles that share one policy (the operators' CLI and its --check) need its grants together.
    sharing = {r for r, where in ROLES.items() if where == ROLES[role]}
    calls = [c for c in ALL_CALLS if c.role in sharing and (deployment.gated or not c.gated)]
    everything = deployment.statements(role)
    unneeded = []
    for statement in deployment.inline_statements(role):
        if statement["Effect"] != "Allow":
            continue
        without = [s for s in everything if s != statement]
        if all(deployment.decide(call, without).allowed for call in calls):
            unneeded.append(statement)
    assert unneeded == [], unneeded


def test_the_manifest_names_only_known_roles_and_each_role_has_calls() -> None:
    assert {c.role for c in ALL_CALLS} == set(manifest.ROLES)


def test_emr_can_launch_only_a_cluster_tagged_for_the_managed_policy(deployment: Deployment) -> None:
    """AmazonEMRServicePolicy_v2 lets EMR create launch templates only with the request tag
    for-use-with-amazon-emr-managed-policies=true, and run instances only from templates carrying it.

    "Service role for Amazon EMR (EMR role)", Amazon EMR Management Guide:
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-role.html ("you need to pass the
    user tag for-use-with-amazon-emr-managed-policies = true when provisioning the cluster"), and the
    policy document: https://docs.aws.amazon.com/aws-managed-policy/latest/reference/AmazonEMRServicePolicy_v2.html
    """
    assert deployment.cluster_tags.get(MANAGED_TAG_KEY) == "true"
    untagged = {k: v for k, v in deployment.cluster_tags.items() if k != MANAGED_TAG_KEY}
    template = _call(manifest.EMR_SERVICE_ROLE, "ec2:CreateLaunchTemplate", "launch-template")
    assert deployment.decide(template).allowed
    assert not deployment.decide(template, cluster_tags=untagged).allowed
    run = _call(manifest.EMR_SERVICE_ROLE, "ec2:RunInstances", "launch-template")
    assert not deployment.decide(run, cluster_tags=untagged).allowed
    # ... and CreateCluster may send the tag: RunJobFlow and the AddTags that authorizes its tags;
    # a RunJobFlow without it, which could never start, is refused before EMR tries.
    for action in ("elasticmapreduce:RunJobFlow", "elasticmapreduce:AddTags"):
        assert deployment.decide(_call(manifest.CREATE_CLUSTER, action)).allowed
    run_job_flow = _call(manifest.CREATE_CLUSTER, "elasticmapreduce:RunJobFlow")
    assert not deployment.decide(run_job_flow, cluster_tags=untagged).allowed


def test_the_stacks_security_groups_carry_the_managed_policy_tag(deployment: Deployment) -> None:
    """EMR may launch into (and edit) only subnets and security groups tagged for the v2 policy.

    "Tagging resources to use managed policies", Amazon EMR Management Guide:
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-managed-policy-tagging.html
    """
    template = deployment.template
    groups = template.of_type("AWS::EC2::SecurityGroup")
    emr_groups = [k for k in groups if any(n in k for n in ("Master", "Core", "ServiceAccess"))]
    assert len(emr_groups) == 3
    for group in emr_groups:
        assert template.tags(group).get(MANAGED_TAG_KEY) == "true", group


def test_the_new_vpc_tags_the_subnets_emr_launches_into(repo_synth: Synthesis) -> None:
    """The stack's own VPC: each private subnet EMR launches into carries the tag (same document)."""
    template = Template(repo_synth.template)
    private = [k for k in template.of_type("AWS::EC2::Subnet") if "private" in k.lower()]
    assert private
    for subnet in private:
        assert template.tags(subnet).get(MANAGED_TAG_KEY) == "true", subnet


def test_run_job_flow_and_its_tags_stay_this_stacks(deployment: Deployment) -> None:
    """RunJobFlow is authorized with its request tags (aws:RequestTag, aws:TagKeys), as AddTags.

    "Use cluster and Notebook tags with IAM policies for access control", Amazon EMR Management Guide:
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-with-iam-tags.html
    """
    run = _call(manifest.CREATE_CLUSTER, "elasticmapreduce:RunJobFlow")
    add = _call(manifest.CREATE_CLUSTER, "elasticmapreduce:AddTags")
    other_stack = {**deployment.cluster_tags, "nightshift:stack": "SomeoneElse"}
    foreign_key = {**deployment.cluster_tags, "owner": "me"}
    for call in (run, add):
        assert not deployment.decide(call, cluster_tags=other_stack).allowed
    assert not deployment.decide(add, cluster_tags=foreign_key).allowed


def test_the_first_launch_may_create_only_emrs_cleanup_role(deployment: Deployment) -> None:
    """EMR creates AWSServiceRoleForEMRCleanup at an account's first RunJobFlow, with the caller's
    iam:CreateServiceLinkedRole (condition iam:AWSServiceName).

    "Using the service-linked role for Amazon EMR", Amazon EMR Management Guide:
    https://docs.aws.amazon.com/emr/latest/ManagementGuide/using-service-linked-roles.html
    """
    create = _call(manifest.CREATE_CLUSTER, "iam:CreateServiceLinkedRole")
    assert deployment.decide(create).allowed
    other = replace(
        create,
        resource="arn:aws:iam::{account}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS",
        context=(("iam:AWSServiceName", "ecs.amazonaws.com"),),
    )
    assert not deployment.decide(other).allowed
    assert not deployment.decide(replace(create, context=())).allowed


def test_ebs_may_use_the_disk_key_only_through_grants_for_aws_resources(deployment: Deployment) -> None:
    """The principal launching EBS volumes encrypted with a customer managed key needs kms:Decrypt,
    CreateGrant (with kms:GrantIsForAWSResource), DescribeKey, GenerateDataKeyWithoutPlaintext, ReEncrypt*.

    "Permissions for IAM users" in "How Amazon EBS encryption works", Amazon EBS User Guide:
    https://docs.aws.amazon.com/ebs/latest/userguide/how-ebs-encryption-works.html
    """
    grant = _call(manifest.EMR_SERVICE_ROLE, "kms:CreateGrant")
    assert deployment.decide(grant).allowed
    assert not deployment.decide(replace(grant, context=(("kms:GrantIsForAWSResource", "false"),))).allowed
    assert deployment.decide(_call(manifest.EMR_SERVICE_ROLE, "kms:Decrypt")).allowed


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _resource_policy(template: Template, kind: str, part: str, key: str) -> list[Mapping[str, Any]]:
    """The statements of a key policy, or of the topic, queue or bucket policy naming a resource."""
    logical = template.logical_id(kind, part)
    if kind == "AWS::KMS::Key":
        document = template.resolve(template.resources[logical]["Properties"]["KeyPolicy"])
    else:
        (document,) = [
            template.resolve(r["Properties"]["PolicyDocument"])
            for r in template.resources.values()
            if r["Type"].endswith("Policy") and {"Ref": logical} in _listed(r["Properties"].get(key, []))
        ]
    return list(document["Statement"])


def test_each_key_policy_lets_this_accounts_iam_policies_grant_the_key(deployment: Deployment) -> None:
    """A key's IAM grants work only if its key policy delegates to the account (the account root);
    a principal of another account gets nothing from the key policy.

    "Default key policy" ("Allows access to the AWS account and enables IAM policies"), AWS KMS
    Developer Guide: https://docs.aws.amazon.com/kms/latest/developerguide/key-policy-default.html
    """
    template = deployment.template
    roles = {
        "EmrDiskKey": (deployment.values["service_role"], "kms:CreateGrant"),
        "AlertKey": (template.arn(deployment.holder(manifest.START_RUN)), "kms:GenerateDataKey"),
        "LogKey": (template.arn(deployment.holder(manifest.ALERT_FORMATTER)), "kms:Decrypt"),
    }
    for part, (role, action) in roles.items():
        policy = _resource_policy(template, "AWS::KMS::Key", part, "")
        key = template.arn(template.logical_id("AWS::KMS::Key", part))
        assert evaluate_resource_policy(policy, Principal("AWS", role), Request(action, key)).allowed, part
        stranger = Principal("AWS", role.replace(ACCOUNT, "210987654321"))
        assert not evaluate_resource_policy(policy, stranger, Request(action, key)).allowed, part


def test_cloudwatch_alarms_may_use_the_alert_key_and_no_other_service_may(deployment: Deployment) -> None:
    """CloudWatch can publish an alarm to a topic encrypted with a customer managed key only when the
    key policy lets cloudwatch.amazonaws.com call kms:Decrypt and kms:GenerateDataKey*; the SNS
    document's key policy has no conditions, so the grant must not depend on context keys the
    request may not carry (it is evaluated with and without aws:SourceAccount and aws:SourceArn).

    Amazon SNS Developer Guide, "Key management" > "Enable compatibility between event sources from
    AWS services and encrypted topics":
    https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
    """
    template = deployment.template
    policy = _resource_policy(template, "AWS::KMS::Key", "AlertKey", "")
    key = deployment.values["alert_key"]
    alarm = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:Nightshift-ScheduledStartFailed"
    sources = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": alarm}
    cloudwatch = Principal("Service", "cloudwatch.amazonaws.com")
    for action in ("kms:Decrypt", "kms:GenerateDataKey"):
        for context in (sources, {}):
            assert evaluate_resource_policy(policy, cloudwatch, Request(action, key, context)).allowed
    assert not evaluate_resource_policy(policy, cloudwatch, Request("kms:ScheduleKeyDeletion", key)).allowed
    for service in ("events.amazonaws.com", "sns.amazonaws.com", "s3.amazonaws.com"):
        request = Request("kms:Decrypt", key, sources)
        assert not evaluate_resource_policy(policy, Principal("Service", service), request).allowed, service


def test_the_alert_topic_lets_only_this_accounts_alarms_publish(deployment: Deployment) -> None:
    """The topic policy allows cloudwatch.amazonaws.com sns:Publish for this account's alarms only
    (aws:SourceAccount, aws:SourceArn: the confused-deputy conditions), and nobody without TLS.

    Amazon SNS Developer Guide, "Example cases for Amazon SNS access control" (aws:SourceArn,
    aws:SourceAccount): https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html;
    "The confused deputy problem", IAM User Guide:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html
    """
    policy = _resource_policy(deployment.template, "AWS::SNS::Topic", "AlertsTopic", "Topics")
    topic = deployment.values["alert_topic"]
    cloudwatch = Principal("Service", "cloudwatch.amazonaws.com")

    def publish(account: str, source: str, tls: bool = True, who: Principal = cloudwatch) -> bool:
        context: dict[str, str | bool] = {
            "aws:SourceAccount": account,
            "aws:SourceArn": source,
            "aws:SecureTransport": tls,
        }
        return evaluate_resource_policy(policy, who, Request("sns:Publish", topic, context)).allowed

    mine = f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:Nightshift-ScheduledStartFailed"
    theirs = mine.replace(ACCOUNT, "210987654321")
    assert publish(ACCOUNT, mine)
    assert not publish("210987654321", theirs)
    assert not publish(ACCOUNT, mine, tls=False)
    assert not publish(ACCOUNT, f"arn:aws:events:{REGION}:{ACCOUNT}:rule/x")
    assert not publish(ACCOUNT, mine, who=Principal("Service", "events.amazonaws.com"))


def test_cloudwatch_logs_may_use_the_log_key_only_for_this_accounts_log_groups(
    deployment: Deployment,
) -> None:
    """The log key lets logs.<region>.amazonaws.com use it only with the encryption context of a log
    group of this account and region (kms:EncryptionContext:aws:logs:arn).

    "Encrypt log data in CloudWatch Logs using AWS Key Management Service" (step 2, the key policy),
    Amazon CloudWatch Logs User Guide:
    https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
    """
    policy = _resource_policy(deployment.template, "AWS::KMS::Key", "LogKey", "")
    key = deployment.template.arn(deployment.template.logical_id("AWS::KMS::Key", "LogKey"))
    logs = Principal("Service", f"logs.{REGION}.amazonaws.com")
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/vendedlogs/states/Nightshift-nightly"
    context_key = "kms:EncryptionContext:aws:logs:arn"

    def may(action: str, context: dict[str, Any], who: Principal = logs) -> bool:
        return evaluate_resource_policy(policy, who, Request(action, key, context)).allowed

    for action in (
        "kms:Encrypt",
        "kms:Decrypt",
        "kms:GenerateDataKey",
        "kms:ReEncryptFrom",
        "kms:DescribeKey",
    ):
        assert may(action, {context_key: group}), action
    assert not may("kms:Decrypt", {context_key: group.replace(ACCOUNT, "210987654321")})
    assert not may("kms:Decrypt", {context_key: group.replace(REGION, "eu-west-1")})
    assert not may("kms:Decrypt", {})
    assert not may("kms:Decrypt", {context_key: group}, Principal("Service", "logs.eu-west-1.amazonaws.com"))
    assert not may("kms:CreateGrant", {context_key: group})


def test_the_failed_starts_queue_takes_messages_only_over_tls(deployment: Deployment) -> None:
    """The queue policy denies every request without TLS (aws:SecureTransport), so StartRun's and the
    schedules' sends, which use TLS, are decided by their roles alone.

    Amazon SQS Developer Guide, "Amazon SQS security best practices" (enforce encryption of data in
    transit): https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-security-best-practices.html
    """
    policy = _resource_policy(deployment.template, "AWS::SQS::Queue", "FailedStarts", "Queues")
    role = Principal("AWS", deployment.template.arn(deployment.holder(manifest.START_RUN)))
    queue = deployment.values["failed_starts"]
    over_tls = evaluate_resource_policy(
        policy, role, Request("sqs:SendMessage", queue, {"aws:SecureTransport": True})
    )
    assert not over_tls.denies
    plain = evaluate_resource_policy(
        policy, role, Request("sqs:SendMessage", queue, {"aws:SecureTransport": False})
    )
    assert plain.denies


def test_flow_logs_may_write_only_this_accounts_logs_to_the_log_bucket(repo_synth: Synthesis) -> None:
    """delivery.logs.amazonaws.com may put flow logs under the flow log's prefix (AWSLogs/<account>/)
    with bucket-owner-full-control and read the bucket's ACL, for this account's log deliveries only.

    Amazon VPC User Guide, "Amazon S3 bucket permissions for flow logs":
    https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-s3-permissions.html
    """
    template = Template(repo_synth.template)
    policy = _resource_policy(template, "AWS::S3::Bucket", "EmrLogBucket", "Bucket")
    (flow_log,) = template.of_type("AWS::EC2::FlowLog").values()
    destination = template.resolve(flow_log["Properties"]["LogDestination"])
    bucket = template.arn(template.logical_id("AWS::S3::Bucket", "EmrLogBucket"))
    delivery = Principal("Service", "delivery.logs.amazonaws.com")
    source = f"arn:aws:logs:{REGION}:{ACCOUNT}:delivery-source:vpc"
    mine = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": source, "aws:SecureTransport": True}
    object_key = f"{destination}AWSLogs/{ACCOUNT}/vpcflowlogs/{REGION}/2025/06/01/flow.log.gz"
    acl = {"s3:x-amz-acl": "bucket-owner-full-control"}

    def may(action: str, resource: str, context: dict[str, Any]) -> bool:
        return evaluate_resource_policy(policy, delivery, Request(action, resource, context)).allowed

    assert may("s3:PutObject", object_key, mine | acl)
    assert may("s3:GetBucketAcl", bucket, mine)
    assert not may("s3:PutObject", object_key, mine)  # without the ACL the bucket owner could not read it
    assert not may("s3:PutObject", object_key, mine | acl | {"aws:SecureTransport": False})
    other = {"aws:SourceAccount": "210987654321", "aws:SourceArn": source.replace(ACCOUNT, "210987654321")}
    assert not may("s3:PutObject", object_key.replace(f"/{ACCOUNT}/", "/210987654321/"), mine | other | acl)
    assert not may("s3:PutObject", f"{bucket}/emr/j-1/x", mine | acl)


def test_emrfs_may_probe_its_buckets_but_not_read_outside_its_paths(deployment: Deployment) -> None:
    """HeadBucket is authorized as s3:ListBucket with no s3:prefix in the request, and listing
    multipart uploads as s3:ListBucketMultipartUploads on the bucket; both are what EMRFS and the
    S3A committers call. Objects and listings outside the pipeline's paths stay denied.

    "HeadBucket", Amazon S3 API Reference ("you must have permissions to perform the s3:ListBucket
    action"): https://docs.aws.amazon.com/AmazonS3/latest/API/API_HeadBucket.html; "ListMultipartUploads":
    https://docs.aws.amazon.com/AmazonS3/latest/API/API_ListMultipartUploads.html; "Actions, resources,
    and condition keys for Amazon S3": https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html
    """
    head = _call(manifest.INSTANCE_ROLE, "s3:ListBucket")
    assert head.context == ()
    assert deployment.decide(head).allowed
    assert deployment.decide(_call(manifest.INSTANCE_ROLE, "s3:ListBucketMultipartUploads")).allowed
    elsewhere = replace(head, context=(("s3:prefix", "private/"),))
    assert not deployment.decide(elsewhere).allowed
    read = _call(manifest.INSTANCE_ROLE, "s3:GetObject", "{read_prefix}")
    assert not deployment.decide(replace(read, resource="arn:aws:s3:::lake/private/x")).allowed
    assert not deployment.decide(replace(read, resource="arn:aws:s3:::other-bucket/raw/x")).allowed


def test_the_cluster_may_touch_only_its_pipelines_databases(deployment: Deployment) -> None:
    """Glue authorizes a table call on the catalog, the database and the table ("Specifying AWS Glue
    resource ARNs", AWS Glue Developer Guide:
    https://docs.aws.amazon.com/glue/latest/dg/glue-specifying-resource-arns.html).
    """
    create = _call(manifest.INSTANCE_ROLE, "glue:CreateTable", ":table/")
    assert deployment.decide(create).allowed
    for resource in ("table/finance/users", "database/finance"):
        other = replace(create, resource="arn:aws:glue:{region}:{account}:" + resource)
        assert not deployment.decide(other).allowed, resource
    database = replace(
        create, action="glue:CreateDatabase", resource="arn:aws:glue:{region}:{account}:database/x"
    )
    assert not deployment.decide(database).allowed


def test_check_inputs_may_list_its_declared_inputs_and_nothing_else(gated_synth: Synthesis) -> None:
    """CheckInputs lists an input with its key as s3:prefix (ListObjectsV2 is authorized as
    s3:ListBucket with the s3:prefix condition key: "Actions, resources, and condition keys for
    Amazon S3", https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html).
    """
    template = Template(gated_synth.template)
    statements = template.role_statements(template.logical_id("AWS::IAM::Role", "CheckInputsServiceRole"))
    (call,) = [c for c in ALL_CALLS if c.role == manifest.CHECK_INPUTS and c.action == "s3:ListBucket"]
    values = {"partition": "aws", "read_bucket": "lake", "read_prefix": "raw/events/dt=2025-06-01/"}

    def decide(prefix: str) -> bool:
        ((key, template_value),) = call.context
        context = {key: template_value.format(**values | {"read_prefix": prefix})}
        return evaluate(statements, Request(call.action, call.resource.format(**values), context)).allowed

    assert decide("raw/events/dt=2025-06-01/")
    assert not decide("raw/private/")
    read = Request("s3:GetObject", "arn:aws:s3:::lake/raw/events/dt=2025-06-01/_SUCCESS")
    assert not evaluate(statements, read).allowed


@pytest.mark.parametrize("gated", [False, True], ids=["nightly", "gated"])
def test_the_state_machine_invokes_exactly_the_manifests_functions(
    request: pytest.FixtureRequest, gated: bool
) -> None:
    """Each function the state machine's role may invoke is one the manifest says it invokes, and each
    of those it may invoke: a gated pipeline's CheckInputs too (one statement grants every invoke, so
    the per-statement test cannot tell a missing call). A Lambda state's Resource is the function, and
    Step Functions calls lambda:InvokeFunction on it with the state machine's role ("Invoke an AWS
    Lambda function with Step Functions", AWS Step Functions Developer Guide:
    https://docs.aws.amazon.com/step-functions/latest/dg/connect-lambda.html).
    """
    deployment = deployment_of(request, manifest.STATE_MACHINE, gated)
    granted = {
        resource.removesuffix(":*")
        for statement in deployment.statements(manifest.STATE_MACHINE)
        if statement["Effect"] == "Allow"
        and "lambda:InvokeFunction"
        in ([statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"])
        for resource in (
            [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        )
    }
    invoked = {
        deployment.request(call).resource
        for call in ALL_CALLS
        if call.role == manifest.STATE_MACHINE
        and call.action == "lambda:InvokeFunction"
        and (deployment.gated or not call.gated)
    }
    assert granted == invoked
    assert any("CheckInputs" in function for function in invoked) == gated


def test_the_state_machine_waits_for_ecs_tasks_through_the_managed_rule(
    request: pytest.FixtureRequest,
) -> None:
    """A Run a Job (.sync) ECS task needs ecs:RunTask on the task definition revision, DescribeTasks and
    StopTask, and events:PutTargets/PutRule/DescribeRule on the managed rule
    StepFunctionsGetEventsForECSTaskRule (and on no other rule).

    "IAM policies for Amazon ECS/AWS Fargate", AWS Step Functions Developer Guide:
    https://docs.aws.amazon.com/step-functions/latest/dg/ecs-iam.html
    """
    deployment = deployment_of(request, manifest.STATE_MACHINE)
    for action in ("events:PutTargets", "events:PutRule", "events:DescribeRule"):
        call = _call(manifest.STATE_MACHINE, action, "StepFunctionsGetEventsForECSTaskRule")
        assert deployment.decide(call).allowed
        other = replace(call, resource=call.resource.replace("StepFunctionsGetEventsForECSTaskRule", "Mine"))
        assert not deployment.decide(other).allowed
    run = _call(manifest.STATE_MACHINE, "ecs:RunTask")
    assert deployment.decide(run).allowed
    adhoc = deployment.template.ref(
        deployment.template.logical_id("AWS::ECS::TaskDefinition", "RunnerAdhocTask")
    )
    assert not deployment.decide(replace(run, resource=adhoc)).allowed  # another pipeline's task


def test_run_task_passes_only_the_tasks_own_roles_to_ecs(request: pytest.FixtureRequest) -> None:
    """RunTask with a task role and an execution role passes both: the caller needs iam:PassRole on
    each, which IAM evaluates with iam:PassedToService = ecs-tasks.amazonaws.com.

    "Grant a user permissions to pass a role to an AWS service", IAM User Guide:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html; "Amazon ECS task
    execution IAM role", Amazon ECS Developer Guide:
    https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task_execution_IAM_role.html
    """
    deployment = deployment_of(request, manifest.STATE_MACHINE)
    passes = [c for c in ALL_CALLS if c.role == manifest.STATE_MACHINE and c.action == "iam:PassRole"]
    assert {c.resource for c in passes} == {"{task_role}", "{task_execution_role}"}
    for call in passes:
        assert deployment.decide(call).allowed
    for other in ("{instance_role}", "{service_role}"):
        assert not deployment.decide(replace(passes[0], resource=other)).allowed, other


def test_execution_logs_and_traces_need_no_resource(request: pytest.FixtureRequest) -> None:
    """Logging to CloudWatch Logs needs the log-delivery actions, and X-Ray tracing the X-Ray ones, on
    "*" (neither has resource-level permissions).

    "Logging using CloudWatch Logs" (IAM policies for logging), AWS Step Functions Developer Guide:
    https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html; "Trace Step Functions request
    data in AWS X-Ray": https://docs.aws.amazon.com/step-functions/latest/dg/concepts-xray-tracing.html
    """
    deployment = deployment_of(request, manifest.STATE_MACHINE)
    for action in ("logs:CreateLogDelivery", "logs:PutResourcePolicy", "xray:PutTraceSegments"):
        assert deployment.decide(_call(manifest.STATE_MACHINE, action)).allowed, action


def test_schedules_invoke_only_their_function(request: pytest.FixtureRequest) -> None:
    """A schedule's execution role needs lambda:InvokeFunction on its target function.

    "Set up the execution role", EventBridge Scheduler User Guide:
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role
    """
    for role, other in (
        (manifest.START_RUN_SCHEDULE, "{preflight_function}"),
        (manifest.LATE_CHECK_SCHEDULE, "{start_run_function}"),
    ):
        deployment = deployment_of(request, role)
        invoke = _call(role, "lambda:InvokeFunction")
        assert deployment.decide(invoke).allowed
        elsewhere = replace(invoke, resource=invoke.resource.rsplit(":", 1)[0] + ":" + other)
        assert not deployment.decide(elsewhere).allowed, (role, other)


def test_the_failed_starts_and_alerts_reach_their_encrypted_destinations(
    request: pytest.FixtureRequest,
) -> None:
    """A producer to an SSE-KMS queue needs kms:GenerateDataKey and kms:Decrypt on its key (SQS
    calls KMS in the producer's name); so does a publisher to an SSE-KMS topic. Lambda sends a failed
    asynchronous event to its on-failure destination with the function's role.

    "Key management" (producer permissions), Amazon SQS Developer Guide:
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html;
    "Key management", Amazon SNS Developer Guide: https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html;
    "Capturing records of Lambda asynchronous invocations", AWS Lambda Developer Guide:
    https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
    """
    for role in (manifest.START_RUN, manifest.START_RUN_SCHEDULE, manifest.LATE_CHECK_SCHEDULE):
        deployment = deployment_of(request, role)
        for action in ("sqs:SendMessage", "kms:GenerateDataKey", "kms:Decrypt"):
            assert deployment.decide(_call(role, action)).allowed, (role, action)
        log_key = deployment.template.arn(deployment.template.logical_id("AWS::KMS::Key", "LogKey"))
        assert not deployment.decide(replace(_call(role, "kms:Decrypt"), resource=log_key)).allowed
    for role in (manifest.ALERT_FORMATTER, manifest.LATE_CHECK):
        deployment = deployment_of(request, role)
        for action in ("sns:Publish", "kms:GenerateDataKey", "kms:Decrypt"):
            assert deployment.decide(_call(role, action)).allowed, (role, action)


# The service that assumes each role (its trust policy's principal).
LAMBDA_SERVICE = "lambda.amazonaws.com"
TRUSTED = {
    **dict.fromkeys(
        (
            manifest.CREATE_CLUSTER,
            manifest.CLUSTER_STATUS,
            manifest.TERMINATE_CLUSTER,
            manifest.PREFLIGHT,
            manifest.RECORD_RUN,
            manifest.CHECK_INPUTS,
            manifest.SWEEPER,
            manifest.START_RUN,
            manifest.ALERT_FORMATTER,
            manifest.LATE_CHECK,
        ),
        LAMBDA_SERVICE,
    ),
    manifest.RUNNER_TASK: "ecs-tasks.amazonaws.com",
    manifest.RUNNER_TASK_EXECUTION: "ecs-tasks.amazonaws.com",
    manifest.INSTANCE_ROLE: "ec2.amazonaws.com",
    manifest.EMR_SERVICE_ROLE: manifest.EMR_SERVICE,
    manifest.START_RUN_SCHEDULE: "scheduler.amazonaws.com",
    manifest.LATE_CHECK_SCHEDULE: "scheduler.amazonaws.com",
    manifest.STATE_MACHINE: "states.amazonaws.com",
}


# The source each service names when it assumes a role, as its documentation gives it (None: its
# documentation names no source for it, so the role must be assumable without one):
# - Lambda: "The aws:SourceArn condition key applies only to policies where your Lambda function is the
#   target resource" ("Defining Lambda function permissions with an execution role", AWS Lambda
#   Developer Guide, https://docs.aws.amazon.com/lambda/latest/dg/lambda-intro-execution-role.html);
# - ECS tasks: the task ("Amazon ECS task IAM role", Amazon ECS Developer Guide,
#   https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html, ArnLike
#   arn:aws:ecs:region:account:*);
# - EC2: an instance profile's role, no source (IAM User Guide, "Use an IAM role to grant permissions
#   to applications running on Amazon EC2 instances");
# - EMR: the cluster ("Service role for Amazon EMR", Amazon EMR Management Guide,
#   https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-iam-role.html, ArnLike
#   arn:aws:elasticmapreduce:region:account:*);
# - Scheduler: the schedule's group, never the schedule ("Confused deputy prevention in EventBridge
#   Scheduler", https://docs.aws.amazon.com/scheduler/latest/UserGuide/cross-service-confused-deputy-prevention.html);
# - Step Functions: the state machine ("The confused deputy problem", IAM User Guide,
#   https://docs.aws.amazon.com/IAM/latest/UserGuide/confused-deputy.html).
SOURCE_ARN = {
    LAMBDA_SERVICE: None,
    "ecs-tasks.amazonaws.com": f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/NightshiftRunners/0123456789abcdef",
    "ec2.amazonaws.com": None,
    manifest.EMR_SERVICE: f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/{CLUSTER_ID}",
    "scheduler.amazonaws.com": f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule-group/default",
    "states.amazonaws.com": "{state_machine}",
}
# The roles whose trust names its source (confused-deputy prevention): another account's is refused.
SOURCE_GUARDED = {manifest.STATE_MACHINE, manifest.START_RUN_SCHEDULE, manifest.LATE_CHECK_SCHEDULE}


@pytest.mark.parametrize("role", list(TRUSTED))
def test_each_role_may_be_assumed_by_its_service_only(request: pytest.FixtureRequest, role: str) -> None:
    """A service acts with a role only if the role's trust policy lets its service principal call
    sts:AssumeRole with the source the service really sends (SOURCE_ARN, each service's document);
    any other service is refused, and so is another account's source where the trust names one.

    "Create a role to give permissions to an AWS service", IAM User Guide:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_create_for-service.html
    """
    assert set(TRUSTED) == set(ROLES) - set(OPERATOR_ROLES)
    deployment = deployment_of(request, role)
    template = deployment.template
    logical = deployment.holder(role)
    trust = template.resolve(template.resources[logical]["Properties"]["AssumeRolePolicyDocument"])
    service = TRUSTED[role]
    sent = SOURCE_ARN[service]
    source = (
        {}
        if sent is None
        else {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": sent.format(**deployment.values)}
    )
    assume = Request("sts:AssumeRole", template.arn(logical), source)
    assert evaluate_resource_policy(trust["Statement"], Principal("Service", service), assume).allowed
    stranger = Request(
        "sts:AssumeRole",
        template.arn(logical),
        {k: v.replace(ACCOUNT, "210987654321") for k, v in source.items()},
    )
    if role in SOURCE_GUARDED:
        assert not evaluate_resource_policy(
            trust["Statement"], Principal("Service", service), stranger
        ).allowed
    other = "states.amazonaws.com" if service != "states.amazonaws.com" else LAMBDA_SERVICE
    assert not evaluate_resource_policy(trust["Statement"], Principal("Service", other), assume).allowed


def test_no_node_can_overwrite_a_published_host_key(deployment: Deployment) -> None:
    """An explicit Deny wins over every Allow (policy evaluation logic, IAM User Guide)."""
    put = _call(manifest.INSTANCE_ROLE, "ssm:PutParameter")
    assert deployment.decide(put).allowed
    overwrite = deployment.decide(replace(put, context=(("ssm:Overwrite", "true"),)))
    assert not overwrite.allowed and overwrite.denies


def test_the_pinned_managed_policies_are_the_ones_attached() -> None:
    """The AWS-managed policies the roles attach are pinned with their version and date."""
    emr = managed_policy("AmazonEMRServicePolicy_v2")
    assert (emr.version, emr.date[:10]) == ("v6", "2026-02-12")
    lambda_basic = managed_policy("AWSLambdaBasicExecutionRole")
    assert (lambda_basic.version, lambda_basic.date[:10]) == ("v1", "2015-04-09")


# The evaluator's own rules, each as the IAM User Guide states it ("Condition operators",
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_condition_operators.html
# and "Single-valued vs. multivalued context keys",
# https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_condition-single-vs-multi-valued-context-keys.html).
def _allows(condition: dict[str, Any], context: dict[str, Any]) -> bool:
    statement = {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*", "Condition": condition}
    return evaluate([statement], Request("s3:ListBucket", "arn:aws:s3:::b", context)).allowed


@pytest.mark.parametrize(
    ("condition", "context", "allowed"),
    [
        ({"StringLike": {"s3:prefix": "raw/*"}}, {}, False),  # a missing key matches nothing
        ({"StringNotEquals": {"aws:ResourceTag/a": "x"}}, {}, True),  # ... except a negated operator
        ({"StringEqualsIfExists": {"aws:ResourceTag/a": "x"}}, {}, True),
        ({"Null": {"s3:prefix": "true"}}, {}, True),
        ({"Null": {"s3:prefix": "true"}}, {"s3:prefix": ""}, False),
        ({"ForAllValues:StringLike": {"aws:TagKeys": ["n:*"]}}, {}, True),
        ({"ForAllValues:StringLike": {"aws:TagKeys": ["n:*"]}}, {"aws:TagKeys": ("n:a", "o")}, False),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["o"]}}, {"aws:TagKeys": ("n:a", "o")}, True),
        ({"ForAnyValue:StringEquals": {"aws:TagKeys": ["o"]}}, {}, False),
        (
            {"ArnLike": {"aws:SourceArn": "arn:aws:logs:*:1:log-group:*"}},
            {"aws:SourceArn": "arn:aws:logs:r:1:log-group:g"},
            True,
        ),
        ({"Bool": {"kms:GrantIsForAWSResource": "true"}}, {"kms:GrantIsForAWSResource": True}, True),
    ],
)
def test_the_evaluator_reads_conditions_as_iam_does(
    condition: dict[str, Any], context: dict[str, Any], allowed: bool
) -> None:
    assert _allows(condition, context) is allowed


@pytest.mark.parametrize(
    ("named", "who", "allowed"),
    [
        ("*", Principal("Service", "logs.amazonaws.com"), True),
        ({"AWS": "*"}, Principal("Service", "logs.amazonaws.com"), True),
        ({"Service": "sns.amazonaws.com"}, Principal("Service", "logs.amazonaws.com"), False),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, Principal("AWS", f"arn:aws:iam::{ACCOUNT}:role/r"), True),
        ({"AWS": ACCOUNT}, Principal("AWS", f"arn:aws:iam::{ACCOUNT}:role/r"), True),
        (
            {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
            Principal("AWS", "arn:aws:iam::210987654321:role/r"),
            False,
        ),
        ({"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, Principal("Service", "logs.amazonaws.com"), False),
    ],
)
def test_the_evaluator_reads_principals_as_iam_does(named: Any, who: Principal, allowed: bool) -> None:
    """ "AWS JSON policy elements: Principal", IAM User Guide
    (https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_elements_principal.html): "*"
    and {"AWS": "*"} are everyone; an account (its root or its id) stands for its principals."""
    statement = {"Effect": "Allow", "Principal": named, "Action": "kms:Decrypt", "Resource": "*"}
    decision = evaluate_resource_policy([statement], who, Request("kms:Decrypt", "arn:aws:kms:r:1:key/k"))
    assert decision.allowed is allowed
