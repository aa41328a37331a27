"""`--deployed --check` against the nightly pipeline in moto, and IAM's own simulator where moto has none.

moto has no SimulatePrincipalPolicy, no DescribeReleaseLabel, and its CloudFormation needs an extra
this project does not install: those three are botocore Stubbers answering as the API references
document the responses. The simulator's decisions are computed by tests/infra/iam_eval.py from the
synthesized template's role policies (and the pinned AWS-managed ones), so a stubbed "allowed" is
what the template really allows:
- SimulatePrincipalPolicy (IAM API Reference):
  https://docs.aws.amazon.com/IAM/latest/APIReference/API_SimulatePrincipalPolicy.html and its
  EvaluationResult (EvalDecision allowed | explicitDeny | implicitDeny, MatchedStatements,
  OrganizationsDecisionDetail.AllowedByOrganizations, PermissionsBoundaryDecisionDetail.
  AllowedByPermissionsBoundary): https://docs.aws.amazon.com/IAM/latest/APIReference/API_EvaluationResult.html
- DescribeReleaseLabel (Amazon EMR API Reference):
  https://docs.aws.amazon.com/emr/latest/APIReference/API_DescribeReleaseLabel.html
- DescribeStacks / ListStackResources (AWS CloudFormation API Reference):
  https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html
  https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_ListStackResources.html
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from runner.__main__ import exit_code_of
from runner.deployed import DeployedRequest, run_deployed
from runner.deployed.check import (
    DEPLOYED_FILES_PARAMETER,
    CheckClients,
    SimulationRequest,
)
from runner.deployed.check import Check as CheckRun
from runner.deployed.discovery import Clients, Deployment, find_deployment
from runner.digests import encode, folder_digests
from runner.model import load_pipeline
from runner.output import TextOutput
from tests.deployed.support import pipeline_of
from tests.infra.iam_eval import Request, Template, evaluate
from tests.infra.moto_harness import Harness
from tests.infra.test_inputs_gate import gated_synth  # noqa: F401 - the shared gated synth fixture
from tests.support.aws import ACCOUNT, REGION, SECRET_ARN

IAM_PREFIX = {"stepfunctions": "states", "emr": "elasticmapreduce"}
EMR_TAG: Any = {"Key": "for-use-with-amazon-emr-managed-policies", "Value": "true"}
#: (role logical id part, action) -> the extra fields of a denial, as a test breaks the account
Decide = Callable[[str, str, str], dict[str, Any] | None]


@dataclass
class Account:
    """The nightly deployment in moto, the pieces the harness does not make, and the stubbed APIs."""

    harness: Harness
    template: Template
    resources: dict[str, tuple[str, str]]
    stack_status: str = "UPDATE_COMPLETE"
    release_applications: tuple[str, ...] = ("Hadoop", "Hive", "Spark", "Livy")
    service_linked_role: bool = True
    #: role logical id -> statements (a test may take some away)
    statements: dict[str, list[Any]] = field(default_factory=dict)
    override: Decide | None = None
    #: the check's own AWS calls: (IAM action, parameters)
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: names moto chose -> the names the template's policies use for the same things
    renamed: dict[str, str] = field(default_factory=dict)
    #: the alert topic's subscriptions as SNS lists them, when a test needs what moto cannot make (a
    #: pending e-mail subscription); None: moto's own
    subscriptions: list[dict[str, str]] | None = None

    def _stub_alerts(self, sns: Any) -> None:
        """The alert topic's attributes and subscriptions as the SNS API Reference documents them."""
        ((_, topic),) = [r for r in self.resources.values() if r[0] == "AWS::SNS::Topic"]
        key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{self.template.logical_id('AWS::KMS::Key', 'AlertKey')}"
        stub = Stubber(sns)
        stub.add_response(
            "get_topic_attributes",
            {"Attributes": {"TopicArn": topic, "KmsMasterKeyId": key}},
            {"TopicArn": topic},
        )
        stub.add_response(
            "list_subscriptions_by_topic",
            {
                "Subscriptions": [
                    {"Owner": ACCOUNT, "TopicArn": topic, **subscription}
                    for subscription in self.subscriptions or []
                ]
            },
            {"TopicArn": topic},
        )
        stub.activate()

    def clients(self) -> CheckClients:
        def moto(name: str) -> Any:
            return boto3.client(name, region_name=REGION)  # type: ignore[call-overload]

        cfn, iam, emr = (moto(n) for n in ("cloudformation", "iam", "emr"))
        made = CheckClients(
            cloudformation=cfn,
            iam=iam,
            emr=emr,
            ec2=moto("ec2"),
            ecs=moto("ecs"),
            ssm=moto("ssm"),
            s3=moto("s3"),
            glue=moto("glue"),
            sns=moto("sns"),
            scheduler=moto("scheduler"),
            secretsmanager=moto("secretsmanager"),
            lambda_=moto("lambda"),
        )
        if self.subscriptions is not None:
            self._stub_alerts(made.sns)
        self._stub(made)
        for client in vars(made).values():
            prefix = IAM_PREFIX.get(
                client.meta.service_model.service_name, client.meta.service_model.signing_name
            )

            def record(params: dict[str, Any], model: Any, prefix: str = prefix, **_: Any) -> None:
                self.calls.append((f"{prefix}:{model.name}", dict(params)))

            client.meta.events.register("provide-client-params", record)
        return made

    def _stub(self, clients: CheckClients) -> None:
        stack = self.harness.synth.stack.stack_name
        cfn = Stubber(clients.cloudformation)
        # Twice: once for the test to learn the check's requests, once for the check itself.
        for _ in range(2):
            cfn.add_response(
                "describe_stacks",
                {
                    "Stacks": [
                        {
                            "StackName": stack,
                            "StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/{stack}/1",
                            "CreationTime": "2025-06-01T00:00:00Z",
                            "StackStatus": self.stack_status,
                        }
                    ]
                },
                {"StackName": stack},
            )
            cfn.add_response(
                "list_stack_resources",
                {
                    "StackResourceSummaries": [
                        {
                            "LogicalResourceId": logical,
                            "PhysicalResourceId": physical,
                            "ResourceType": kind,
                            "LastUpdatedTimestamp": "2025-06-01T00:00:00Z",
                            "ResourceStatus": "CREATE_COMPLETE",
                        }
                        for logical, (kind, physical) in self.resources.items()
                    ]
                },
                {"StackName": stack},
            )
        cfn.activate()
        emr = Stubber(clients.emr)
        emr.add_response(
            "describe_release_label",
            {
                "ReleaseLabel": "emr-7.13.0",
                "Applications": [{"Name": name, "Version": "1"} for name in self.release_applications],
            },
            {"ReleaseLabel": "emr-7.13.0"},
        )
        emr.activate()
        self._cfn, self._emr = cfn, emr

    def decide(self, request: SimulationRequest, action: str) -> dict[str, Any]:
        """One EvaluationResult: the template's decision, unless the test's account overrides it."""
        role = request.role_arn.rsplit("/", 1)[-1]
        overridden = self.override(role, action, request.resource) if self.override else None
        result: dict[str, Any] = {"EvalActionName": action, "EvalResourceName": request.resource}
        if overridden is not None:
            return result | overridden
        context = {key: values[0] if kind == "string" else values for key, values, kind in request.context}
        resource = request.resource
        for moto_name, template_name in self.renamed.items():
            resource = resource.replace(moto_name, template_name)
        decision = evaluate(self.statements[role], Request(action, resource, context))
        if decision.denies:
            return result | {
                "EvalDecision": "explicitDeny",
                "MatchedStatements": [
                    {"SourcePolicyId": sid, "SourcePolicyType": "IAM Policy"} for sid in decision.denies
                ],
            }
        return result | {"EvalDecision": "allowed" if decision.allowed else "implicitDeny"}

    def run(self) -> tuple[int, list[str]]:
        pipeline = pipeline_of(self.harness)
        clients = self.clients()
        deployment = find_deployment(pipeline.name, None, Clients.make(None))
        deployment.clients.sfn.meta.events.register(
            "provide-client-params",
            lambda params, model, **_: self.calls.append((f"states:{model.name}", dict(params))),
        )
        # The requests the check will send, in its order, each answered from the template.
        probe = CheckRun(pipeline, deployment, clients)
        list(probe.stack())
        list(probe.definition())
        requests, _ = probe.simulations()
        iam = Stubber(clients.iam)
        for request in requests:
            iam.add_response(
                "simulate_principal_policy",
                {
                    "EvaluationResults": [self.decide(request, a) for a in request.actions],
                    "IsTruncated": False,
                },
                request.params(),
            )
        if self.service_linked_role:
            iam.add_response(
                "get_role",
                {
                    "Role": {
                        "Path": "/aws-service-role/elasticmapreduce.amazonaws.com/",
                        "RoleName": "AWSServiceRoleForEMRCleanup",
                        "RoleId": "AROAEXAMPLEEXAMPLE01",
                        "Arn": f"arn:aws:iam::{ACCOUNT}:role/aws-service-role/elasticmapreduce.amazonaws.com/"
                        "AWSServiceRoleForEMRCleanup",
                        "CreateDate": "2025-06-01T00:00:00Z",
                    }
                },
                {"RoleName": "AWSServiceRoleForEMRCleanup"},
            )
        else:
            iam.add_client_error(
                "get_role",
                "NoSuchEntity",
                "The role with name AWSServiceRoleForEMRCleanup cannot be found.",
                404,
            )
            for request in requests:
                if "iam:CreateServiceLinkedRole" in request.actions and request.role_arn.endswith(
                    self.role("CreateClusterServiceRole")
                ):
                    iam.add_response(
                        "simulate_principal_policy",
                        {
                            "EvaluationResults": [self.decide(request, a) for a in request.actions],
                            "IsTruncated": False,
                        },
                        request.params(),
                    )
        iam.activate()
        out, err = io.BytesIO(), io.BytesIO()
        output = TextOutput(out, err)
        code = exit_code_of(
            lambda: run_deployed(pipeline, DeployedRequest("check"), output, check_clients=clients), output
        )
        iam.assert_no_pending_responses()
        self._emr.assert_no_pending_responses()
        lines = [line.removeprefix("nightshift: ") for line in err.getvalue().decode().splitlines()]
        return code, lines

    def role(self, part: str) -> str:
        return self.template.logical_id("AWS::IAM::Role", part)


@dataclass
class Correct:
    """A correct deployment of the nightly pipeline, made once per module: what the stack and the user's
    set-up give it. `restore` puts back what a test may have changed, so each test starts from it."""

    harness: Harness
    template: Template
    resources: dict[str, tuple[str, str]]
    statements: dict[str, list[Any]]
    renamed: dict[str, str]
    topic: str
    alert_key: str
    schedule: dict[str, Any]
    #: StartRun's name in moto and its event invoke configuration (the on-failure destination)
    start_run: str
    invoke_config: dict[str, Any]
    main_route_table: str
    nat: str

    def restore(self) -> None:
        """The correct deployment again: each piece a test of this module changes, set as made."""
        h = self.harness
        ec2 = h.ec2
        ec2.create_tags(Resources=h.subnets, Tags=[EMR_TAG])
        (table,) = ec2.describe_route_tables(RouteTableIds=[self.main_route_table])["RouteTables"]
        if not any(r.get("DestinationCidrBlock") == "0.0.0.0/0" for r in table["Routes"]):
            ec2.create_route(
                RouteTableId=self.main_route_table, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=self.nat
            )
        endpoints = [e["VpcEndpointId"] for e in ec2.describe_vpc_endpoints()["VpcEndpoints"]]
        if endpoints:
            ec2.delete_vpc_endpoints(VpcEndpointIds=endpoints)
        sns = boto3.client("sns", region_name=REGION)
        sns.set_topic_attributes(
            TopicArn=self.topic, AttributeName="KmsMasterKeyId", AttributeValue=self.alert_key
        )
        subscriptions = sns.list_subscriptions_by_topic(TopicArn=self.topic)["Subscriptions"]
        if [(s["Endpoint"], s["SubscriptionArn"].startswith("arn:")) for s in subscriptions] != [
            (ALERT_EMAIL, True)
        ]:
            for subscription in subscriptions:
                if subscription["SubscriptionArn"].startswith("arn:"):
                    sns.unsubscribe(SubscriptionArn=subscription["SubscriptionArn"])
            sns.subscribe(TopicArn=self.topic, Protocol="email", Endpoint=ALERT_EMAIL)
        boto3.client("scheduler", region_name=REGION).update_schedule(**self.schedule)
        lam = boto3.client("lambda", region_name=REGION)
        # moto's put adds a configuration rather than replacing it: the old one goes first.
        if lam.list_function_event_invoke_configs(FunctionName=self.start_run)["FunctionEventInvokeConfigs"]:
            lam.delete_function_event_invoke_config(FunctionName=self.start_run)
        lam.put_function_event_invoke_config(FunctionName=self.start_run, **self.invoke_config)
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=DEPLOYED_FILES_PARAMETER.format(stack=h.synth.stack.stack_name, pipeline=h.pipeline),
            Type="String",
            Value=encode(folder_digests(pipeline_of(h).folder)),
            Overwrite=True,
        )
        glue = boto3.client("glue", region_name=REGION)
        present = {d["Name"] for d in glue.get_databases()["DatabaseList"]}
        for database in CATALOG_DATABASES:
            if database not in present:
                glue.create_database(DatabaseInput={"Name": database})

    def account(self) -> Account:
        """A fresh view of the deployment for one test: its own statements to take away, its own calls."""
        return Account(
            self.harness,
            self.template,
            dict(self.resources),
            statements={role: list(s) for role, s in self.statements.items()},
            renamed=dict(self.renamed),
        )


ALERT_EMAIL = "data-team@example.com"
CATALOG_DATABASES = ("nightly", "nightly_staging")


@pytest.fixture(scope="module")
def correct(deployed_once: Harness) -> Correct:
    """The nightly deployment in moto, with the network, key pair, data, catalog and alerts the docs ask for."""
    h = deployed_once
    template = Template(h.synth.template)
    ec2 = h.ec2
    # The network as the docs ask for it: tagged private subnets with a NAT route, tagged groups.
    vpc = ec2.describe_subnets(SubnetIds=h.subnets)["Subnets"][0]["VpcId"]
    groups = [
        g["GroupId"]
        for g in ec2.describe_security_groups(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["SecurityGroups"]
    ]
    ec2.create_tags(Resources=groups, Tags=[EMR_TAG])
    public = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.9.0/24")["Subnet"]["SubnetId"]
    nat = ec2.create_nat_gateway(SubnetId=public)["NatGateway"]["NatGatewayId"]
    (main,) = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    # The key pair and its private half in the SSH secret; the runner task names the secret.
    material = ec2.create_key_pair(KeyName="nightshift")["KeyMaterial"]
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="nightshift/ssh-key", SecretString=material
    )["ARN"]
    task = h.ecs.register_task_definition(
        family="nightly-runner",
        containerDefinitions=[
            {
                "name": "runner",
                "image": "runner",
                "memory": 512,
                "secrets": [{"name": "NIGHTSHIFT_SSH_PRIVATE_KEY", "valueFrom": secret}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    # The data, the alert topic (the stack's key; restore subscribes the confirmed e-mail), the
    # schedule with its dead-letter queue; restore adds the catalog databases and the digests.
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="lake")
    sns = boto3.client("sns", region_name=REGION)
    alert_key = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/{template.logical_id('AWS::KMS::Key', 'AlertKey')}"
    topic = sns.create_topic(Name="alerts", Attributes={"KmsMasterKeyId": alert_key})["TopicArn"]
    queue = boto3.client("sqs", region_name=REGION).create_queue(QueueName="failed-starts")["QueueUrl"]
    failed_starts = f"arn:aws:sqs:{REGION}:{ACCOUNT}:failed-starts"
    start_run = template.logical_id("AWS::Lambda::Function", "SchedulesStartRun")
    invoke_config = {
        "MaximumRetryAttempts": 2,
        "DestinationConfig": {"OnFailure": {"Destination": failed_starts}},
    }
    schedule: dict[str, Any] = {
        "Name": template.logical_id("AWS::Scheduler::Schedule", "NightlySchedule"),
        "ScheduleExpression": "cron(0 3 * * ? *)",
        "FlexibleTimeWindow": {"Mode": "OFF"},
        "Target": {
            "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:StartRun",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/scheduler",
            "DeadLetterConfig": {"Arn": failed_starts},
        },
    }
    boto3.client("scheduler", region_name=REGION).create_schedule(**schedule)
    # The stack's resources as ListStackResources names them: the roles, keys and bucket by the
    # names iam_eval's Template gives them, the rest as moto made them.
    resources: dict[str, tuple[str, str]] = {}
    for logical, resource in h.synth.template["Resources"].items():
        kind = resource["Type"]
        physical = {
            "AWS::S3::Bucket": logical.lower(),
            "AWS::SNS::Topic": topic,
            "AWS::ECS::TaskDefinition": task if "Nightly" in logical else logical,
            "AWS::Scheduler::Schedule": logical,
            # CloudFormation's physical id of a queue is its URL
            "AWS::SQS::Queue": queue if logical.startswith("SchedulesFailedStarts") else logical,
        }.get(kind, logical)
        resources[logical] = (kind, physical)
    statements = {role: template.role_statements(role) for role in template.of_type("AWS::IAM::Role")}
    log_group = template.arn(template.logical_id("AWS::Logs::LogGroup", "RunnerLogsNightly"))
    renamed = {
        secret: SECRET_ARN,
        task: template.ref(template.logical_id("AWS::ECS::TaskDefinition", "RunnerNightlyTask")),
        f":log-group:{h.runner_log_group}:": ":log-group:"
        + log_group.split(":log-group:")[1].removesuffix("*"),
    }
    return Correct(
        h,
        template,
        resources,
        statements,
        renamed,
        topic,
        alert_key,
        schedule,
        start_run,
        invoke_config,
        main["RouteTableId"],
        nat,
    )


@pytest.fixture
def account(correct: Correct) -> Account:
    """The correct deployment, as each test of this module starts from it."""
    correct.restore()
    return correct.account()


def test_a_correct_deployment_passes_every_check(account: Account) -> None:
    code, lines = account.run()
    assert code == 0, "\n".join(lines)
    assert all(line.startswith("ok: ") for line in lines[:-1]), "\n".join(lines)
    assert lines[-1] == "every check passed"
    names = [line.split(":")[1].strip() for line in lines[:-1]]
    for expected in ("stack Nightshift", "deployed pipeline", "IAM CreateCluster", "IAM EmrServiceRole",
                     "IAM InstanceRole", "service-linked role", "EMR emr-7.13.0", "key pair nightshift",
                     "catalog database nightly", "alerts", "schedule", "IAM StateMachine", "failed starts"):  # fmt: skip
        assert expected in names, (expected, names)


def _denied_on(part: str, action: str, shape: dict[str, Any]) -> Decide:
    def decide(role: str, asked: str, _resource: str) -> dict[str, Any] | None:
        return shape if part in role and asked == action else None

    return decide


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        (
            {
                "EvalDecision": "implicitDeny",
                "OrganizationsDecisionDetail": {"AllowedByOrganizations": False},
            },
            "problem: IAM CreateCluster: elasticmapreduce:RunJobFlow on * is denied by a service control policy"
            " of your organization; fix: ask your organization's administrators to allow"
            " elasticmapreduce:RunJobFlow for arn:aws:iam::123456789012:role/{role}",
        ),
        (
            {
                "EvalDecision": "implicitDeny",
                "PermissionsBoundaryDecisionDetail": {"AllowedByPermissionsBoundary": False},
            },
            "problem: IAM CreateCluster: elasticmapreduce:RunJobFlow on * is denied by the permissions boundary"
            " of arn:aws:iam::123456789012:role/{role}; fix: allow elasticmapreduce:RunJobFlow in the"
            " permissions boundary of arn:aws:iam::123456789012:role/{role}",
        ),
        (
            {
                "EvalDecision": "explicitDeny",
                "MatchedStatements": [{"SourcePolicyId": "NoEmrInProd", "SourcePolicyType": "IAM Policy"}],
            },
            "problem: IAM CreateCluster: elasticmapreduce:RunJobFlow on * is denied explicitly by NoEmrInProd"
            " (IAM Policy); fix: remove or narrow that Deny for arn:aws:iam::123456789012:role/{role}",
        ),
    ],
    ids=["scp", "boundary", "explicit-deny"],
)
def test_a_denial_names_who_denies_and_the_fix(
    account: Account, shape: dict[str, Any], expected: str
) -> None:
    account.override = _denied_on("CreateClusterServiceRole", "elasticmapreduce:RunJobFlow", shape)
    code, lines = account.run()
    assert code == 1
    role = account.role("CreateClusterServiceRole")
    assert [line for line in lines if line.startswith("problem")] == [expected.format(role=role)]
    assert lines[-1] == "1 problem(s) found"


def test_untagged_subnets_are_found_in_the_network_and_in_iam(account: Account) -> None:
    """Issue 16's first finding: EMR's managed policy launches only into subnets tagged for it."""
    account.harness.ec2.delete_tags(Resources=account.harness.subnets, Tags=[EMR_TAG])
    code, lines = account.run()
    assert code == 1
    problems = [line for line in lines if line.startswith("problem")]
    for subnet in account.harness.subnets:
        assert (
            f"problem: subnet {subnet}: lacks the tag for-use-with-amazon-emr-managed-policies=true (EMR's"
            f" managed policy launches only there); fix: aws ec2 create-tags --resources {subnet} --tags"
            " Key=for-use-with-amazon-emr-managed-policies,Value=true"
        ) in problems
    # AmazonEMRServicePolicy_v2 itself refuses the launch into the untagged subnet.
    launch = [p for p in problems if p.startswith("problem: IAM EmrServiceRole: ")]
    assert {p.split(": ")[2].split(" on ")[0] for p in launch} == {
        "ec2:CreateLaunchTemplate",
        "ec2:CreateFleet",
        "ec2:RunInstances",
    }
    assert all(":subnet/" in p for p in launch)


def test_a_missing_service_linked_role_that_createcluster_may_not_create(account: Account) -> None:
    """Issue 16: a fresh account's first RunJobFlow creates AWSServiceRoleForEMRCleanup."""
    account.service_linked_role = False
    account.override = _denied_on(
        "CreateClusterServiceRole", "iam:CreateServiceLinkedRole", {"EvalDecision": "implicitDeny"}
    )
    code, lines = account.run()
    assert code == 1
    assert (
        "problem: service-linked role: AWSServiceRoleForEMRCleanup does not exist and CreateCluster may not"
        " create it; fix: aws iam create-service-linked-role --aws-service-name elasticmapreduce.amazonaws.com"
    ) in lines


def test_a_missing_service_linked_role_that_createcluster_may_create_is_fine(account: Account) -> None:
    account.service_linked_role = False
    code, lines = account.run()
    assert code == 0, lines
    assert (
        "ok: service-linked role: AWSServiceRoleForEMRCleanup does not exist yet;"
        " CreateCluster may create it at first launch"
    ) in lines


def test_an_ebs_key_the_service_role_may_not_decrypt(account: Account) -> None:
    """Issue 16: the EMR service role needs kms:Decrypt on the disk key for encrypted EBS volumes."""
    role = account.role("EmrServiceRole")
    account.statements[role] = [
        {**s, "Action": [a for a in s["Action"] if a != "kms:Decrypt"]}
        if isinstance(s.get("Action"), list)
        else s
        for s in account.statements[role]
        if s.get("Action") != "kms:Decrypt"
    ]
    code, lines = account.run()
    assert code == 1
    (problem,) = [line for line in lines if line.startswith("problem")]
    assert problem.startswith("problem: IAM EmrServiceRole: kms:Decrypt on arn:aws:kms:us-east-1:")
    assert "is not allowed by any policy of" in problem


def test_an_alert_topic_with_the_aws_managed_key_and_a_schedule_without_dead_letters(
    account: Account,
) -> None:
    """Issue 16: CloudWatch cannot publish to a topic under alias/aws/sns; a failed start without a DLQ is silent."""
    sns = boto3.client("sns", region_name=REGION)
    ((_, topic),) = [r for r in account.resources.values() if r[0] == "AWS::SNS::Topic"]
    sns.set_topic_attributes(TopicArn=topic, AttributeName="KmsMasterKeyId", AttributeValue="alias/aws/sns")
    scheduler = boto3.client("scheduler", region_name=REGION)
    name = account.template.logical_id("AWS::Scheduler::Schedule", "NightlySchedule")
    scheduler.update_schedule(
        Name=name,
        ScheduleExpression="cron(0 3 * * ? *)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:StartRun",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/s",
        },
    )
    code, lines = account.run()
    assert code == 1
    assert [line for line in lines if line.startswith("problem")] == [
        "problem: alert topic: encrypted with alias/aws/sns, which CloudWatch alarms cannot use;"
        " fix: cdk deploy (the stack's own alert key lets cloudwatch.amazonaws.com use it)",
        f"problem: schedule: {name} has no dead-letter queue: a start that fails is silent;"
        " fix: cdk deploy (the stack gives it one)",
    ]


def test_a_start_run_whose_failed_starts_go_nowhere_or_elsewhere(account: Account) -> None:
    """StartRun is invoked asynchronously by the schedule; a start that still fails after Lambda's
    retries is kept only if the function's on-failure destination takes it, and the stack's alarm
    watches its own queue. Lambda answers GetFunctionEventInvokeConfig with DestinationConfig.OnFailure.
    Destination, or ResourceNotFoundException when the function has no such configuration
    ("GetFunctionEventInvokeConfig", AWS Lambda API Reference:
    https://docs.aws.amazon.com/lambda/latest/api/API_GetFunctionEventInvokeConfig.html; "Capturing
    records of Lambda asynchronous invocations", AWS Lambda Developer Guide:
    https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html). A queue's
    physical id in CloudFormation is its URL ("AWS::SQS::Queue", return values:
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-sqs-queue.html).
    """
    lam = boto3.client("lambda", region_name=REGION)
    function = account.template.logical_id("AWS::Lambda::Function", "SchedulesStartRun")
    lam.delete_function_event_invoke_config(FunctionName=function)
    code, lines = account.run()
    assert code == 1
    assert [line for line in lines if line.startswith("problem")] == [
        f"problem: failed starts: StartRun ({function}) has no on-failure destination: a start that fails is"
        " silent; fix: cdk deploy (the stack sends them to its failed-starts queue)"
    ]
    other = f"arn:aws:sqs:{REGION}:{ACCOUNT}:someone-elses"
    lam.put_function_event_invoke_config(
        FunctionName=function, DestinationConfig={"OnFailure": {"Destination": other}}
    )
    code, lines = account.run()
    assert code == 1
    assert [line for line in lines if line.startswith("problem")] == [
        f"problem: failed starts: StartRun ({function}) sends them to {other}, not to the stack's queue"
        f" arn:aws:sqs:{REGION}:{ACCOUNT}:failed-starts; fix: cdk deploy (the stack's alarm watches only its"
        " own queue)"
    ]


def test_a_schedule_that_dead_letters_to_another_queue(account: Account) -> None:
    """EventBridge Scheduler delivers what it could not hand to the target to Target.DeadLetterConfig.Arn
    ("Target", EventBridge Scheduler API Reference:
    https://docs.aws.amazon.com/scheduler/latest/APIReference/API_Target.html): the stack's queue, or
    nobody is told.
    """
    other = f"arn:aws:sqs:{REGION}:{ACCOUNT}:someone-elses"
    name = account.template.logical_id("AWS::Scheduler::Schedule", "NightlySchedule")
    boto3.client("scheduler", region_name=REGION).update_schedule(
        Name=name,
        ScheduleExpression="cron(0 3 * * ? *)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:StartRun",
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/scheduler",
            "DeadLetterConfig": {"Arn": other},
        },
    )
    code, lines = account.run()
    assert code == 1
    assert [line for line in lines if line.startswith("problem")] == [
        f"problem: schedule: {name} dead-letters to {other}, not to the stack's queue"
        f" arn:aws:sqs:{REGION}:{ACCOUNT}:failed-starts; fix: cdk deploy (the stack's alarm watches only its"
        " own queue)"
    ]


def test_an_alert_e_mail_not_yet_confirmed(account: Account) -> None:
    """An e-mail subscription delivers nothing until its owner follows the link SNS e-mails; until then
    ListSubscriptionsByTopic lists its SubscriptionArn as "PendingConfirmation" ("Subscribe", Amazon SNS
    API Reference: https://docs.aws.amazon.com/sns/latest/api/API_Subscribe.html; "ListSubscriptionsByTopic":
    https://docs.aws.amazon.com/sns/latest/api/API_ListSubscriptionsByTopic.html). moto confirms every
    subscription at once, so SNS is a Stubber here.
    """
    account.subscriptions = [
        {"SubscriptionArn": "PendingConfirmation", "Protocol": "email", "Endpoint": "data-team@example.com"}
    ]
    code, lines = account.run()
    assert code == 1
    assert [line for line in lines if line.startswith("problem")] == [
        "problem: alerts: the e-mail subscription of data-team@example.com is not confirmed: nobody hears of"
        " failures; fix: confirm the e-mail sent to data-team@example.com (its link; cdk deploy sends a new one)"
    ]


def test_a_local_folder_that_differs_from_the_deployed_one_is_named(account: Account) -> None:
    pipeline = pipeline_of(account.harness)
    deployed = folder_digests(pipeline.folder)
    deployed["10_users.sql"] = "0" * 16
    deployed["05_old.sql"] = "1" * 16
    del deployed["30_funnel.sql"]
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=DEPLOYED_FILES_PARAMETER.format(stack="Nightshift", pipeline=pipeline.name),
        Type="String",
        Value=encode(deployed),
        Overwrite=True,
    )
    code, lines = account.run()
    assert code == 1
    assert [line for line in lines if line.startswith("problem")] == [
        "problem: deployed pipeline: the local folder differs from the deployed one: 10_users.sql (changed),"
        " 30_funnel.sql (only here), 05_old.sql (only deployed); fix: cdk deploy (the runner image carries"
        " the steps), or undo the local change"
    ]


def test_a_stack_that_rolled_back_and_missing_catalog_databases(account: Account) -> None:
    account.stack_status = "UPDATE_ROLLBACK_COMPLETE"
    boto3.client("glue", region_name=REGION).delete_database(Name="nightly_staging")
    code, lines = account.run()
    assert code == 1
    problems = [line for line in lines if line.startswith("problem")]
    assert problems[0].startswith("problem: stack Nightshift: is UPDATE_ROLLBACK_COMPLETE: ")
    assert (
        "problem: catalog database nightly_staging: does not exist; fix: cdk deploy (the stack creates it)"
        in problems
    )


def test_a_gated_pipelines_check_asks_iam_about_the_state_machine_invoking_check_inputs(
    gated_synth: Any,  # noqa: F811 - the fixture imported above
) -> None:
    """The manifest's gated calls (runner/deployed/calls.py) are simulated for a pipeline with [inputs]:
    the state machine's role invoking CheckInputs among them, on the function the stack deployed, and
    the template's role allows exactly that request. The task definition is read with ECS's
    DescribeTaskDefinition (a Stubber answering as the ECS API Reference documents:
    https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTaskDefinition.html).
    """
    template = Template(gated_synth.template)
    pipeline = load_pipeline(gated_synth.pipelines_dir / "gated")
    machine = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:Nightshift-gated"
    ecs = boto3.client("ecs", region_name=REGION)
    task = template.logical_id("AWS::ECS::TaskDefinition", "RunnerGatedTask")
    with Stubber(ecs) as stub:
        for _ in range(2):
            stub.add_response(
                "describe_task_definition",
                {"taskDefinition": {"containerDefinitions": [{"name": "runner", "secrets": []}]}},
                {"taskDefinition": task},
            )
        clients = CheckClients(
            *(ecs if name == "ecs" else None for name in CheckClients.__dataclass_fields__)
        )
        deployment = Deployment(
            "gated", "Nightshift", machine, "/nightshift/gated", Clients(REGION, None, None, None)
        )
        check = CheckRun(pipeline, deployment, clients)
        check.facts.resources = {
            logical: (resource["Type"], logical)
            for logical, resource in gated_synth.template["Resources"].items()
        }
        requests, _ = check.simulations()
    role = template.logical_id("AWS::IAM::Role", "GatedWorkflowStateMachineRole")
    function = template.logical_id("AWS::Lambda::Function", "GatedCheckInputs")
    (invoke,) = [
        r for r in requests if r.role == "StateMachine" and r.resource.endswith(f":function:{function}")
    ]
    assert invoke.role_arn == f"arn:aws:iam::{ACCOUNT}:role/{role}"
    assert invoke.actions == ("lambda:InvokeFunction",)
    assert evaluate(template.role_statements(role), Request("lambda:InvokeFunction", invoke.resource)).allowed
    # The gate's own role is simulated too: CheckInputs lists the input's marker.
    assert any(r.role == "CheckInputs" and "s3:ListBucket" in r.actions for r in requests)


def test_the_stack_records_the_digests_the_check_compares(test_synth: Any) -> None:
    """The SSM parameter the stack writes per pipeline is the one the check reads, with the folder's digests."""
    from infra.stack import DEPLOYED_FILES_PARAMETER as INFRA_NAME  # noqa: PLC0415

    assert INFRA_NAME == DEPLOYED_FILES_PARAMETER
    parameters = {
        r["Properties"]["Name"]: r["Properties"]["Value"]
        for r in test_synth.resources("AWS::SSM::Parameter").values()
    }
    for pipeline in ("nightly", "adhoc"):
        name = DEPLOYED_FILES_PARAMETER.format(stack=test_synth.stack.stack_name, pipeline=pipeline)
        assert parameters[name] == encode(folder_digests(test_synth.pipelines_dir / pipeline))


def test_every_call_of_the_check_is_allowed_by_the_operators_policy(account: Account) -> None:
    """What --check calls, the operators' policy allows (its "Check..." statements, each action used), as
    IAM evaluates it ("Policy evaluation logic", IAM User Guide:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html).
    Two reads are left out of the policy on purpose, and the check says so when they are denied: the
    SSH secret's value and a listing of the data buckets.
    """
    # No NAT gateway this time: the subnets reach S3 and EMR through VPC endpoints.
    ec2 = account.harness.ec2
    vpc = ec2.describe_subnets(SubnetIds=account.harness.subnets)["Subnets"][0]["VpcId"]
    (main,) = ec2.describe_route_tables(
        Filters=[{"Name": "vpc-id", "Values": [vpc]}, {"Name": "association.main", "Values": ["true"]}]
    )["RouteTables"]
    ec2.delete_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0")
    ec2.create_vpc_endpoint(
        VpcId=vpc,
        ServiceName=f"com.amazonaws.{REGION}.s3",
        VpcEndpointType="Gateway",
        RouteTableIds=[main["RouteTableId"]],
    )
    ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName=f"com.amazonaws.{REGION}.elasticmapreduce", VpcEndpointType="Interface"
    )
    # find_deployment's own calls are the operators' test's; the check's are recorded here.
    code, lines = account.run()
    assert code == 0, lines
    template = account.template
    statements = template.policy_statements(template.logical_id("AWS::IAM::ManagedPolicy", "OperatorsPolicy"))
    arn = f"{REGION}:{ACCOUNT}"
    ((_, topic),) = [r for r in account.resources.values() if r[0] == "AWS::SNS::Topic"]
    template_topic = template.ref(template.logical_id("AWS::SNS::Topic", "AlertsTopic"))

    def requests(action: str, p: dict[str, Any]) -> list[Request]:
        if action.startswith("cloudformation:"):
            return [Request(action, f"arn:aws:cloudformation:{arn}:stack/{p['StackName']}/1")]
        if action == "states:DescribeStateMachine":
            return [Request(action, p["stateMachineArn"])]
        if action == "iam:SimulatePrincipalPolicy":
            # CloudFormation names a role "<stack>-<logical id>-<suffix>"; the test's roles bear the logical id.
            return [Request(action, p["PolicySourceArn"].replace(":role/", ":role/Nightshift-") + "-SUFFIX")]
        if action == "iam:GetRole":
            return [Request(action, "arn:aws:iam::123456789012:role/aws-service-role/elasticmapreduce.amazonaws.com/"
                            f"{p['RoleName']}")]  # fmt: skip
        if action == "ssm:GetParameter":
            return [Request(action, f"arn:aws:ssm:{arn}:parameter{p['Name']}")]
        if action == "glue:GetDatabase":
            return [
                Request(action, f"arn:aws:glue:{arn}:catalog"),
                Request(action, f"arn:aws:glue:{arn}:database/{p['Name']}"),
            ]
        if action.startswith("sns:"):
            return [Request(action, p["TopicArn"].replace(topic, template_topic))]
        if action == "lambda:GetFunctionEventInvokeConfig":
            # CloudFormation names a function "<stack>-<logical id, cut>-<suffix>".
            return [Request(action, f"arn:aws:lambda:{arn}:function:Nightshift-{p['FunctionName']}-SUFFIX")]
        if action == "scheduler:GetSchedule":
            return [Request(action, f"arn:aws:scheduler:{arn}:schedule/default/{p['Name']}")]
        if action == "s3:ListObjectsV2":
            return [Request("s3:ListBucket", f"arn:aws:s3:::{p['Bucket']}")]
        return [Request(action, "*")]

    used: set[tuple[str, str]] = set()
    denied = set()
    checked = [
        (a, p)
        for a, p in account.calls
        if a not in ("states:ListStateMachines", "states:ListTagsForResource")
    ]
    for action, params in checked:
        for request in requests(action, params):
            decision = evaluate(statements, request)
            if decision.allowed:
                used.update((sid, request.action) for sid in decision.allows)
            else:
                denied.add(request.action)
    assert denied == {"secretsmanager:GetSecretValue", "s3:ListBucket"}
    granted = {
        (str(s["Sid"]), a)
        for s in statements
        if str(s["Sid"]).startswith("Check")
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert granted and used >= granted, granted - used
