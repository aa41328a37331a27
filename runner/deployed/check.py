"""The deployment check: read-only, one line per check, what a night depends on, on the user's account."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
import botocore.exceptions

from runner.config import expand_input
from runner.dates import date_variables, today
from runner.deployed import calls as manifest
from runner.deployed.calls import CALLS, EMR_MANAGED_POLICY_TAG, Call
from runner.deployed.discovery import (
    _CLIENT_CONFIG,
    CLUSTER_TAG_EXECUTION_ARN,
    CLUSTER_TAG_MANAGED,
    CLUSTER_TAG_STACK,
    Deployment,
)
from runner.digests import decode, differences, folder_digests
from runner.model import Pipeline

#: the exit code of a check that found a problem
EXIT_PROBLEM = 1
#: the SSM parameter that records the digests of a deployed pipeline's files (infra/ writes it)
DEPLOYED_FILES_PARAMETER = "/nightshift/{stack}/{pipeline}/deployed-files"
#: a cluster id for the simulated calls: IAM decides on the cluster's tags, never on its id
CHECK_CLUSTER = "j-NIGHTSHIFTCHECK"
#: the host-key parameter of a cluster (runner/remote/emr.py's HOST_KEY_PARAMETER; a test holds them equal)
HOST_KEY_PARAMETER = "/nightshift/host-keys/{cluster_id}"
EMR_CLEANUP_ROLE_NAME = "AWSServiceRoleForEMRCleanup"
#: the AWS-managed key SNS offers: CloudWatch alarms cannot publish to a topic encrypted with it
SNS_MANAGED_KEY = "alias/aws/sns"
# The cluster tags of lambdas/shared/clusters.py that IAM conditions read (a test holds them equal).
CLUSTER_TAG_PIPELINE = "nightshift:pipeline"
CLUSTER_TAG_RUN_ID = "nightshift:run-id"
CLUSTER_TAG_RUN_DATE = "nightshift:run-date"
CLUSTER_TAG_LAUNCH_ATTEMPT = "nightshift:launch-attempt"
OPERATORS_FIX = "attach the stack's operators' policy (output OperatorsPolicyArn) to your user or role"


def role_logical_prefixes(pipeline: str) -> dict[str, str]:
    """Each manifest role's logical id in the stack, without the 8-digit hash the CDK appends."""
    cid = _cid(pipeline)
    return {
        manifest.CREATE_CLUSTER: "ClusterLifecycleCreateClusterServiceRole",
        manifest.CLUSTER_STATUS: "ClusterLifecycleClusterStatusServiceRole",
        manifest.TERMINATE_CLUSTER: "ClusterLifecycleTerminateClusterServiceRole",
        manifest.PREFLIGHT: "ClusterLifecyclePreflightServiceRole",
        manifest.RECORD_RUN: "ClusterLifecycleRecordRunServiceRole",
        manifest.CHECK_INPUTS: f"ClusterLifecycle{cid}CheckInputsServiceRole",
        manifest.SWEEPER: "ClusterLifecycleSweeperServiceRole",
        manifest.RUNNER_TASK: f"Runner{cid}TaskTaskRole",
        manifest.RUNNER_TASK_EXECUTION: f"Runner{cid}TaskExecutionRole",
        manifest.INSTANCE_ROLE: f"ClusterLifecycle{cid}InstanceRole",
        manifest.EMR_SERVICE_ROLE: "ClusterLifecycleEmrServiceRole",
        manifest.STATE_MACHINE: f"{cid}WorkflowStateMachineRole",
    }


def function_logical_prefixes(pipeline: str) -> dict[str, str]:
    """The manifest's function fields: the logical id of each function the state machine invokes."""
    return {
        "preflight_function": "ClusterLifecyclePreflight",
        "create_cluster_function": "ClusterLifecycleCreateCluster",
        "cluster_status_function": "ClusterLifecycleClusterStatus",
        "terminate_cluster_function": "ClusterLifecycleTerminateCluster",
        "record_run_function": "ClusterLifecycleRecordRun",
        "check_inputs_function": f"ClusterLifecycle{_cid(pipeline)}CheckInputs",
    }


def _logical(resources: dict[str, tuple[str, str]], prefix: str, kind: str) -> str | None:
    """The physical id of the one resource of `kind` whose logical id is `prefix` + the CDK's hash."""
    for logical, (resource_type, physical) in resources.items():
        rest = logical.removeprefix(prefix)
        if resource_type == kind and rest != logical and len(rest) == 8:
            return physical
    return None


@dataclass(frozen=True)
class Finding:
    """One line of the check: what was checked, and for a problem the exact fix."""

    name: str
    detail: str
    fix: str = ""

    @property
    def ok(self) -> bool:
        return not self.fix

    def line(self) -> str:
        return (
            f"ok: {self.name}: {self.detail}"
            if self.ok
            else f"problem: {self.name}: {self.detail}; fix: {self.fix}"
        )


@dataclass(frozen=True)
class CheckClients:
    """The read-only AWS clients of the check, in the deployment's region."""

    cloudformation: Any
    iam: Any
    emr: Any
    ec2: Any
    ecs: Any
    ssm: Any
    s3: Any
    glue: Any
    sns: Any
    scheduler: Any
    secretsmanager: Any
    lambda_: Any = None

    @classmethod
    def make(cls, region: str) -> CheckClients:
        session = boto3.session.Session()

        def client(name: str) -> Any:
            return session.client(name, region_name=region, config=_CLIENT_CONFIG)  # type: ignore[call-overload]

        return cls(
            *(
                client(name)
                for name in (
                    "cloudformation",
                    "iam",
                    "emr",
                    "ec2",
                    "ecs",
                    "ssm",
                    "s3",
                    "glue",
                    "sns",
                    "scheduler",
                    "secretsmanager",
                    "lambda",
                )
            )
        )


def _code(error: botocore.exceptions.ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _denied(error: botocore.exceptions.ClientError) -> bool:
    return _code(error) in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


@dataclass
class Facts:
    """What the check learns of the deployment before it judges it."""

    partition: str
    region: str
    account: str
    #: logical id -> (resource type, physical id) of the stack's resources
    resources: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the CreateCluster payload and the launch plans of the state machine's definition
    payload: dict[str, Any] = field(default_factory=dict)
    plans: list[dict[str, Any]] = field(default_factory=list)


class Check:
    """Each check of `run_check`, in order; every AWS call is a read."""

    def __init__(self, pipeline: Pipeline, deployment: Deployment, clients: CheckClients) -> None:
        self.pipeline = pipeline
        self.deployment = deployment
        self.clients = clients
        # arn:<partition>:states:<region>:<account>:stateMachine:<name>
        _, partition, _, region, account, *_ = deployment.state_machine_arn.split(":")
        self.facts = Facts(partition, region or deployment.region, account)

    def run(self) -> Iterator[Finding]:
        for check in (
            self.stack,
            self.drift,
            self.definition,
            self.iam,
            self.service_linked_role,
            self.release_label,
            self.instance_types,
            self.network,
            self.key_pair,
            self.inputs,
            self.catalog,
            self.alerts,
            self.failed_starts,
            self.schedule,
        ):
            try:
                yield from check()
            except botocore.exceptions.ClientError as error:
                operation = error.operation_name
                if _denied(error):
                    yield Finding(
                        check.__name__.replace("_", " "), f"you may not call {operation}", OPERATORS_FIX
                    )
                else:
                    yield Finding(
                        check.__name__.replace("_", " "), f"{operation}: {error}", "see the error above"
                    )

    # --- the stack and what was deployed ------------------------------------------------------

    def stack(self) -> Iterator[Finding]:
        name = self.deployment.stack
        cloudformation = self.clients.cloudformation
        try:
            (stack,) = cloudformation.describe_stacks(StackName=name)["Stacks"]
        except botocore.exceptions.ClientError as error:
            if _code(error) == "ValidationError":
                yield Finding(f"stack {name}", f"not found in {self.facts.region}", "deploy it: cdk deploy")
                return
            raise
        status = stack["StackStatus"]
        if status.endswith("_IN_PROGRESS"):
            yield Finding(f"stack {name}", f"is {status}", "wait until the deployment ends, then check again")
        elif status.endswith("_COMPLETE") and "ROLLBACK" not in status and not status.startswith("DELETE"):
            yield Finding(f"stack {name}", f"deployed ({status})")
        else:
            reason = stack.get("StackStatusReason") or "see the stack's events"
            yield Finding(
                f"stack {name}", f"is {status}: {reason}", "fix the cause in its events, then cdk deploy"
            )
        for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=name):
            for summary in page["StackResourceSummaries"]:
                self.facts.resources[summary["LogicalResourceId"]] = (
                    summary["ResourceType"],
                    summary.get("PhysicalResourceId", ""),
                )

    def drift(self) -> Iterator[Finding]:
        name = "deployed pipeline"
        parameter = DEPLOYED_FILES_PARAMETER.format(stack=self.deployment.stack, pipeline=self.pipeline.name)
        try:
            text = self.clients.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
        except botocore.exceptions.ClientError as error:
            if _code(error) == "ParameterNotFound":
                yield Finding(name, f"no record of what was deployed ({parameter})", "cdk deploy")
                return
            raise
        changed = differences(decode(text), folder_digests(self.pipeline.folder))
        if changed:
            yield Finding(
                name,
                f"the local folder differs from the deployed one: {', '.join(changed)}",
                "cdk deploy (the runner image carries the steps), or undo the local change",
            )
        else:
            yield Finding(name, f"the local folder {self.pipeline.name}/ is the deployed one")

    def definition(self) -> Iterator[Finding]:
        """The CreateCluster payload and launch plans, as the state machine will send them."""
        answer = self.deployment.clients.sfn.describe_state_machine(
            stateMachineArn=self.deployment.state_machine_arn
        )
        states = json.loads(answer["definition"])["States"]
        for state in _all_states(states):
            parameters = state.get("Parameters", {})
            payload = parameters.get("Payload", {})
            if isinstance(payload, dict) and "roles" in payload and "cluster" in payload:
                self.facts.payload = payload
            plans = parameters.get("launch", {}).get("plans") if isinstance(parameters, dict) else None
            if isinstance(plans, list):
                self.facts.plans = plans
        if not self.facts.payload:
            yield Finding("state machine", "has no CreateCluster state", "cdk deploy")
        return

    # --- IAM -----------------------------------------------------------------------------------

    def role_arns(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for role, prefix in role_logical_prefixes(self.pipeline.name).items():
            physical = _logical(self.facts.resources, prefix, "AWS::IAM::Role")
            if physical:
                found[role] = f"arn:{self.facts.partition}:iam::{self.facts.account}:role/{physical}"
        return found

    def values(self) -> dict[str, str]:
        """The manifest's template fields for this deployment (a field it cannot know is left out)."""
        f = self.facts
        d = self.deployment
        payload = f.payload
        values = {
            "partition": f.partition,
            "region": f.region,
            "account": f.account,
            "stack": d.stack,
            "cluster": CHECK_CLUSTER,
            "execution": d.execution_arn("nightshift-check"),
            "state_machine": d.state_machine_arn,
            "host_key": f"arn:{f.partition}:ssm:{f.region}:{f.account}:parameter"
            + HOST_KEY_PARAMETER.format(cluster_id=CHECK_CLUSTER),
            "runner_log_group": f"arn:{f.partition}:logs:{f.region}:{f.account}:log-group:"
            f"{d.runner_log_group}:log-stream:{d.pipeline}/runner/check",
        }
        roles = self.role_arns()
        for field_name, role in (
            ("instance_role", manifest.INSTANCE_ROLE),
            ("service_role", manifest.EMR_SERVICE_ROLE),
            ("task_role", manifest.RUNNER_TASK),
            ("task_execution_role", manifest.RUNNER_TASK_EXECUTION),
        ):
            if role in roles:
                values[field_name] = roles[role]
        # A function's physical id is its name; an ECS cluster's its name; a task definition's its ARN.
        for field_name, prefix in function_logical_prefixes(self.pipeline.name).items():
            function = _logical(f.resources, prefix, "AWS::Lambda::Function")
            if function:
                values[field_name] = function
        ecs_cluster = _logical(f.resources, "RunnerCluster", "AWS::ECS::Cluster")
        if ecs_cluster:
            values["ecs_cluster"] = ecs_cluster.rsplit("/", 1)[-1]
        task_definition = _logical(
            f.resources, f"Runner{_cid(self.pipeline.name)}Task", "AWS::ECS::TaskDefinition"
        )
        if task_definition:
            values["task_definition"] = task_definition
        # The log bucket's logical id is fixed (no hash): infra/storage.py overrides it.
        log_bucket = next(
            (
                p
                for logical, (kind, p) in f.resources.items()
                if logical == "EmrLogBucket" and kind == "AWS::S3::Bucket"
            ),
            None,
        )
        if log_bucket:
            values["log_bucket"] = log_bucket
        disk_key = _logical(f.resources, "EncryptionEmrDiskKey", "AWS::KMS::Key")
        if disk_key:
            values["disk_key"] = f"arn:{f.partition}:kms:{f.region}:{f.account}:key/{disk_key}"
        bootstrap = str(payload.get("bootstrap_script_uri", ""))
        if bootstrap.startswith("s3://"):
            values["bootstrap_object"] = f"arn:{f.partition}:s3:::{bootstrap.removeprefix('s3://')}"
        network = payload.get("network", {})
        if f.plans and f.plans[0].get("subnet_ids"):
            values["subnet"] = f.plans[0]["subnet_ids"][0]
        if isinstance(network.get("master_security_group"), str):
            values["security_group"] = network["master_security_group"]
        if isinstance(network.get("ec2_key_name"), str):
            values["key_pair"] = network["ec2_key_name"]
        secret = self.ssh_secret()
        if secret:
            values["ssh_secret"] = secret
        read = self.read_locations()
        if read:
            values["read_bucket"], values["read_prefix"] = read[0]
        warehouse = self.pipeline.config.catalog.warehouse if self.pipeline.config.catalog else ""
        if warehouse.startswith("s3://"):
            bucket, _, prefix = warehouse.removeprefix("s3://").partition("/")
            values["write_bucket"], values["write_prefix"] = bucket, prefix
        if self.pipeline.config.catalog and self.pipeline.config.catalog.databases:
            values["database"] = self.pipeline.config.catalog.databases[0]
            values["table"] = "nightshift_check"
        return values

    def ssh_secret(self) -> str | None:
        task = _logical(
            self.facts.resources, f"Runner{_cid(self.pipeline.name)}Task", "AWS::ECS::TaskDefinition"
        )
        if not task:
            return None
        answer = self.clients.ecs.describe_task_definition(taskDefinition=task)["taskDefinition"]
        for container in answer.get("containerDefinitions", []):
            for secret in container.get("secrets", []):
                return str(secret["valueFrom"])
        return None

    def read_locations(self) -> list[tuple[str, str]]:
        """(bucket, prefix) of each [inputs] path, up to its first run-time part."""
        inputs = self.pipeline.config.inputs
        if inputs is None:
            return []
        variables = {**self.pipeline.config.variables, **date_variables(today(self.pipeline))}
        found = []
        for _kind, path in inputs.paths:
            expanded = expand_input(path, variables)
            if expanded.startswith("s3://"):
                bucket, _, key = expanded.removeprefix("s3://").partition("/")
                found.append((bucket, key.rsplit("/", 1)[0] + "/" if "/" in key else ""))
        return found

    def cluster_tags(self) -> dict[str, str]:
        """The tags CreateCluster puts on a run's cluster (lambdas/shared/cluster_spec.py's cluster_tags)."""
        return {
            CLUSTER_TAG_PIPELINE: self.pipeline.name,
            CLUSTER_TAG_RUN_ID: "nightshift-check",
            CLUSTER_TAG_RUN_DATE: today(self.pipeline),
            CLUSTER_TAG_EXECUTION_ARN: self.deployment.execution_arn("nightshift-check"),
            CLUSTER_TAG_LAUNCH_ATTEMPT: "1",
            CLUSTER_TAG_STACK: self.deployment.stack,
            CLUSTER_TAG_MANAGED: "true",
            EMR_MANAGED_POLICY_TAG[0]: EMR_MANAGED_POLICY_TAG[1],
        }

    def resource_tags(self, tagged: str, values: dict[str, str]) -> dict[str, str]:
        ec2 = self.clients.ec2
        if tagged == "subnet":
            items = ec2.describe_subnets(SubnetIds=[values["subnet"]])["Subnets"]
        else:
            items = ec2.describe_security_groups(GroupIds=[values["security_group"]])["SecurityGroups"]
        return {t["Key"]: t["Value"] for item in items for t in item.get("Tags", [])}

    def simulations(self) -> tuple[list[SimulationRequest], int]:
        """One SimulatePrincipalPolicy request per role, resource and context; and the calls left out.

        A call whose resource or context needs a value this deployment lacks (no [inputs], no catalog)
        is left out and counted.
        """
        roles = self.role_arns()
        values = self.values()
        tags = self.cluster_tags()
        groups: dict[tuple[str, str, tuple[tuple[str, tuple[str, ...], str], ...]], list[str]] = {}
        skipped = 0
        resource_tags: dict[str, dict[str, str]] = {}
        gated = self.pipeline.config.inputs is not None
        for call in CALLS:
            if call.role not in roles or (call.gated and not gated):
                continue
            try:
                resource = call.resource.format(**values)
                context: list[tuple[str, tuple[str, ...], str]] = [
                    (key, (value.format(**values),), "string") for key, value in call.context
                ]
            except KeyError:
                skipped += 1
                continue
            context += _tag_context(call, tags)
            if call.tagged is not None:
                if call.tagged not in resource_tags:
                    resource_tags[call.tagged] = self.resource_tags(call.tagged, values)
                context += [
                    (f"aws:ResourceTag/{k}", (v,), "string")
                    for k, v in sorted(resource_tags[call.tagged].items())
                ]
            key = (call.role, resource, tuple(sorted(context)))
            if call.action not in groups.setdefault(key, []):
                groups[key].append(call.action)
        requests = [
            SimulationRequest(role, roles[role], tuple(actions), resource, context)
            for (role, resource, context), actions in groups.items()
        ]
        return requests, skipped

    def iam(self) -> Iterator[Finding]:
        roles = self.role_arns()
        gated = self.pipeline.config.inputs is not None
        # A role whose every call is the input gate's is only in the stack of a pipeline with [inputs].
        expected = {call.role for call in CALLS if gated or not call.gated}
        for role in sorted(expected - roles.keys()):
            yield Finding(f"IAM {role}", "its role is not in the stack", "cdk deploy")
        requests, skipped = self.simulations()
        results: dict[str, list[Denial]] = {role: [] for role in roles}
        counted: dict[str, int] = dict.fromkeys(roles, 0)
        for request in requests:
            counted[request.role] += len(request.actions)
            results[request.role] += simulate(self.clients.iam, request)
        for role in sorted(roles.keys() & expected):
            denials = results[role]
            if not denials:
                yield Finding(f"IAM {role}", f"{counted[role]} calls allowed (simulated by IAM)")
            for denial in denials:
                yield Finding(f"IAM {role}", denial.detail(), denial.fix())
        if skipped:
            yield Finding(
                "IAM", f"{skipped} calls not simulated (no [inputs], catalog or warehouse to fill them in)"
            )

    def service_linked_role(self) -> Iterator[Finding]:
        name = "service-linked role"
        try:
            self.clients.iam.get_role(RoleName=EMR_CLEANUP_ROLE_NAME)
        except botocore.exceptions.ClientError as error:
            if _code(error) != "NoSuchEntity":
                raise
        else:
            yield Finding(name, f"{EMR_CLEANUP_ROLE_NAME} exists")
            return
        role = self.role_arns().get(manifest.CREATE_CLUSTER)
        may_create = role is not None and not any(
            simulate(self.clients.iam, request)
            for request in self.simulations()[0]
            if request.role == manifest.CREATE_CLUSTER and "iam:CreateServiceLinkedRole" in request.actions
        )
        if may_create:
            yield Finding(
                name,
                f"{EMR_CLEANUP_ROLE_NAME} does not exist yet; CreateCluster may create it at first launch",
            )
        else:
            yield Finding(
                name,
                f"{EMR_CLEANUP_ROLE_NAME} does not exist and CreateCluster may not create it",
                f"aws iam create-service-linked-role --aws-service-name {manifest.EMR_SERVICE}",
            )

    # --- EMR and the network ------------------------------------------------------------------

    def release_label(self) -> Iterator[Finding]:
        cluster = self.facts.payload.get("cluster", {})
        label = cluster.get("release_label")
        if not label:
            return
        # The launch plans carry them (a canary's add what its stages run on); the payload did before.
        given = cluster.get("applications")
        wanted = set(given) if isinstance(given, list) else set()
        wanted |= {a for plan in self.facts.plans for a in plan.get("applications", [])}
        try:
            answer = self.clients.emr.describe_release_label(ReleaseLabel=label)
        except botocore.exceptions.ClientError as error:
            if _denied(error):
                raise
            yield Finding(
                f"EMR {label}",
                f"not available in {self.facts.region} ({_code(error)})",
                "set [cluster] release_label to one `aws emr list-release-labels` lists, then cdk deploy",
            )
            return
        offered = {application["Name"].lower() for application in answer.get("Applications", [])}
        missing = sorted(a for a in wanted if a.lower() not in offered)
        if missing:
            yield Finding(
                f"EMR {label}",
                f"has no {', '.join(missing)}",
                "choose a release_label that has them in [cluster] of pipeline.toml, then cdk deploy",
            )
        else:
            yield Finding(f"EMR {label}", f"exists in {self.facts.region} with {', '.join(sorted(wanted))}")

    def instance_types(self) -> Iterator[Finding]:
        cluster = self.facts.payload.get("cluster", {})
        wanted: dict[str, set[str]] = {}
        for plan in self.facts.plans:
            subnets = set(plan.get("subnet_ids", []))
            for instance_type in (cluster.get("master_instance_type"), plan.get("core_instance_type")):
                if isinstance(instance_type, str):
                    wanted.setdefault(instance_type, set()).update(subnets)
        if not wanted:
            return
        subnet_ids = sorted(set().union(*wanted.values()))
        zones = {
            s["SubnetId"]: s["AvailabilityZone"]
            for s in self.clients.ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
        }
        for instance_type, subnets in sorted(wanted.items()):
            where = sorted({zones[s] for s in subnets if s in zones})
            offered = {
                o["Location"]
                for o in self.clients.ec2.describe_instance_type_offerings(
                    LocationType="availability-zone",
                    Filters=[
                        {"Name": "instance-type", "Values": [instance_type]},
                        {"Name": "location", "Values": where},
                    ],
                )["InstanceTypeOfferings"]
            }
            if offered:
                yield Finding(f"instance type {instance_type}", f"offered in {', '.join(sorted(offered))}")
            else:
                yield Finding(
                    f"instance type {instance_type}",
                    f"not offered in {', '.join(where)}",
                    "choose another type in [cluster] or subnets in other zones, then cdk deploy",
                )

    def network(self) -> Iterator[Finding]:
        ec2 = self.clients.ec2
        subnet_ids = sorted({s for plan in self.facts.plans for s in plan.get("subnet_ids", [])})
        if not subnet_ids:
            return
        tag_key, tag_value = EMR_MANAGED_POLICY_TAG
        subnets = ec2.describe_subnets(SubnetIds=subnet_ids)["Subnets"]
        for subnet in subnets:
            subnet_id = subnet["SubnetId"]
            tags = {t["Key"]: t["Value"] for t in subnet.get("Tags", [])}
            routes = self._routes(subnet)
            problems = []
            fixes = []
            if any(r.get("GatewayId", "").startswith("igw-") for r in routes):
                problems.append("has a route to an internet gateway (not private)")
                fixes.append("use private subnets (vpc.private_subnet_ids in cdk.json)")
            if tags.get(tag_key) != tag_value:
                problems.append(
                    f"lacks the tag {tag_key}={tag_value} (EMR's managed policy launches only there)"
                )
                fixes.append(
                    f"aws ec2 create-tags --resources {subnet_id} --tags Key={tag_key},Value={tag_value}"
                )
            if not self._has_egress(subnet, routes):
                problems.append("has no route out (no NAT gateway, no S3 endpoint)")
                fixes.append("add a NAT gateway route (0.0.0.0/0) or the VPC endpoints docs/infra.md lists")
            if problems:
                yield Finding(f"subnet {subnet_id}", "; ".join(problems), "; ".join(fixes))
            else:
                yield Finding(
                    f"subnet {subnet_id}", f"private, tagged, routed ({subnet['AvailabilityZone']})"
                )
        network = self.facts.payload.get("network", {})
        groups = [
            network[k]
            for k in ("master_security_group", "core_security_group", "service_access_security_group")
            if isinstance(network.get(k), str)
        ]
        if groups:
            untagged = [
                g["GroupId"]
                for g in ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]
                if {t["Key"]: t["Value"] for t in g.get("Tags", [])}.get(tag_key) != tag_value
            ]
            if untagged:
                yield Finding(
                    "security groups",
                    f"{', '.join(untagged)} lack the tag {tag_key}={tag_value}",
                    "cdk deploy (the stack tags them)",
                )
            else:
                yield Finding("security groups", f"{len(groups)} tagged for EMR's managed policy")

    def _routes(self, subnet: dict[str, Any]) -> list[dict[str, Any]]:
        ec2 = self.clients.ec2
        tables = ec2.describe_route_tables(
            Filters=[{"Name": "association.subnet-id", "Values": [subnet["SubnetId"]]}]
        )["RouteTables"]
        if not tables:  # a subnet without its own table uses the VPC's main one
            tables = ec2.describe_route_tables(
                Filters=[
                    {"Name": "vpc-id", "Values": [subnet["VpcId"]]},
                    {"Name": "association.main", "Values": ["true"]},
                ]
            )["RouteTables"]
        return [route for table in tables for route in table.get("Routes", [])]

    def _has_egress(self, subnet: dict[str, Any], routes: list[dict[str, Any]]) -> bool:
        for route in routes:
            if route.get("DestinationCidrBlock") == "0.0.0.0/0" and (
                route.get("NatGatewayId") or route.get("TransitGatewayId") or route.get("NetworkInterfaceId")
            ):
                return True
        endpoints = self.clients.ec2.describe_vpc_endpoints(
            Filters=[{"Name": "vpc-id", "Values": [subnet["VpcId"]]}]
        )["VpcEndpoints"]
        return any(e.get("ServiceName", "").endswith(".s3") for e in endpoints) and len(endpoints) > 1

    def key_pair(self) -> Iterator[Finding]:
        name = self.facts.payload.get("network", {}).get("ec2_key_name")
        if not isinstance(name, str):
            return
        try:
            (pair,) = self.clients.ec2.describe_key_pairs(KeyNames=[name], IncludePublicKey=True)["KeyPairs"]
        except botocore.exceptions.ClientError as error:
            if _code(error) != "InvalidKeyPair.NotFound":
                raise
            yield Finding(
                f"key pair {name}",
                f"does not exist in {self.facts.region}",
                "create it (aws ec2 create-key-pair) and store its private key in the SSH secret",
            )
            return
        secret = self.ssh_secret()
        if secret is None:
            yield Finding(f"key pair {name}", "exists; the runner task names no SSH secret", "cdk deploy")
            return
        try:
            private = self.clients.secretsmanager.get_secret_value(SecretId=secret)["SecretString"]
        except botocore.exceptions.ClientError as error:
            if not _denied(error):
                raise
            yield Finding(
                f"key pair {name}", "exists (its match with the SSH secret not checked: you may not read it)"
            )
            return
        public = _public_key(private)
        if public is None:
            yield Finding(
                f"key pair {name}",
                "the SSH secret holds no private key",
                f"put the private key of {name} in {secret}",
            )
        elif public.split()[:2] != str(pair.get("PublicKey", "")).split()[:2]:
            yield Finding(
                f"key pair {name}",
                "does not match the SSH secret's private key",
                f"put the private key of {name} in {secret}, or set ec2_key_name to its pair and cdk deploy",
            )
        else:
            yield Finding(f"key pair {name}", "exists and matches the SSH secret")

    # --- data, catalog, alerts -----------------------------------------------------------------

    def inputs(self) -> Iterator[Finding]:
        locations = list(self.read_locations())
        warehouse = self.pipeline.config.catalog.warehouse if self.pipeline.config.catalog else ""
        if warehouse.startswith("s3://"):
            bucket, _, prefix = warehouse.removeprefix("s3://").partition("/")
            locations.append((bucket, prefix))
        for bucket, prefix in locations:
            where = f"s3://{bucket}/{prefix}"
            try:
                self.clients.s3.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            except botocore.exceptions.ClientError as error:
                if _denied(error):
                    yield Finding(f"data {where}", "bucket exists (not listed: you may not list it)")
                elif _code(error) == "NoSuchBucket":
                    yield Finding(
                        f"data {where}", "no such bucket", "create it, or correct the path in pipeline.toml"
                    )
                else:
                    raise
            else:
                yield Finding(f"data {where}", "reachable")

    def catalog(self) -> Iterator[Finding]:
        catalog = self.pipeline.config.catalog
        for database in catalog.databases if catalog else ():
            try:
                self.clients.glue.get_database(Name=database)
            except botocore.exceptions.ClientError as error:
                if _code(error) != "EntityNotFoundException":
                    raise
                yield Finding(
                    f"catalog database {database}", "does not exist", "cdk deploy (the stack creates it)"
                )
            else:
                yield Finding(f"catalog database {database}", "exists")

    def alerts(self) -> Iterator[Finding]:
        topic_name = _logical(self.facts.resources, "AlertsTopic", "AWS::SNS::Topic")
        if topic_name is None:
            yield Finding("alerts", "the stack has no alert topic", "cdk deploy")
            return
        topic = topic_name  # a topic's physical id is its ARN
        attributes = self.clients.sns.get_topic_attributes(TopicArn=topic)["Attributes"]
        key = attributes.get("KmsMasterKeyId", "")
        if key == SNS_MANAGED_KEY:
            yield Finding(
                "alert topic",
                f"encrypted with {SNS_MANAGED_KEY}, which CloudWatch alarms cannot use",
                "cdk deploy (the stack's own alert key lets cloudwatch.amazonaws.com use it)",
            )
        emails = [
            s
            for page in self.clients.sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic)
            for s in page["Subscriptions"]
            if s["Protocol"] == "email"
        ]
        pending = [s["Endpoint"] for s in emails if s["SubscriptionArn"] == "PendingConfirmation"]
        if not emails:
            yield Finding(
                "alerts",
                "nobody is subscribed to the alert topic",
                "set notification_email in cdk.json, cdk deploy",
            )
        elif pending:
            yield Finding(
                "alerts",
                f"the e-mail subscription of {', '.join(pending)} is not confirmed: nobody hears of failures",
                f"confirm the e-mail sent to {', '.join(pending)} (its link; cdk deploy sends a new one)",
            )
        else:
            yield Finding("alerts", f"e-mail to {', '.join(s['Endpoint'] for s in emails)} confirmed")

    def failed_starts_queue(self) -> str | None:
        """The ARN of the stack's failed-starts queue (CloudFormation names a queue by its URL)."""
        url = _logical(self.facts.resources, "SchedulesFailedStarts", "AWS::SQS::Queue")
        if url is None:
            return None
        # https://sqs.<region>.amazonaws.com/<account>/<name>
        account, name = url.rstrip("/").split("/")[-2:]
        return f"arn:{self.facts.partition}:sqs:{self.facts.region}:{account}:{name}"

    def failed_starts(self) -> Iterator[Finding]:
        """StartRun's on-failure destination: a start that fails after Lambda's retries lands in the queue."""
        function = _logical(self.facts.resources, "SchedulesStartRun", "AWS::Lambda::Function")
        queue = self.failed_starts_queue()
        if function is None or queue is None or self.clients.lambda_ is None:
            return
        name = "failed starts"
        try:
            config = self.clients.lambda_.get_function_event_invoke_config(FunctionName=function)
        except botocore.exceptions.ClientError as error:
            if _code(error) != "ResourceNotFoundException":
                raise
            config = {}
        destination = config.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        if not destination:
            yield Finding(
                name,
                f"StartRun ({function}) has no on-failure destination: a start that fails is silent",
                "cdk deploy (the stack sends them to its failed-starts queue)",
            )
        elif destination != queue:
            yield Finding(
                name,
                f"StartRun ({function}) sends them to {destination}, not to the stack's queue {queue}",
                "cdk deploy (the stack's alarm watches only its own queue)",
            )
        else:
            yield Finding(name, f"StartRun sends them to {queue.rsplit(':', 1)[-1]}")

    def schedule(self) -> Iterator[Finding]:
        schedule = self.pipeline.config.schedule
        if schedule is None or not schedule.enabled:
            yield Finding("schedule", "none: the pipeline runs only when started")
            return
        name = _logical(
            self.facts.resources, f"Schedules{_cid(self.pipeline.name)}Schedule", "AWS::Scheduler::Schedule"
        )
        if name is None:
            yield Finding("schedule", "enabled in pipeline.toml but not deployed", "cdk deploy")
            return
        answer = self.clients.scheduler.get_schedule(Name=name.rsplit("|", 1)[-1])
        dead_letters = answer.get("Target", {}).get("DeadLetterConfig", {}).get("Arn")
        queue = self.failed_starts_queue()
        if not dead_letters:
            yield Finding(
                "schedule",
                f"{name} has no dead-letter queue: a start that fails is silent",
                "cdk deploy (the stack gives it one)",
            )
        elif queue is not None and dead_letters != queue:
            yield Finding(
                "schedule",
                f"{name} dead-letters to {dead_letters}, not to the stack's queue {queue}",
                "cdk deploy (the stack's alarm watches only its own queue)",
            )
        else:
            yield Finding("schedule", f"{answer.get('ScheduleExpression', name)}, failed starts alarmed")


def local_changes(pipeline: Pipeline, deployment: Deployment) -> list[str] | None:
    """The files of the local folder that differ from the deployed ones; None when there is no record."""
    if deployment.clients.ssm is None:
        return None
    parameter = DEPLOYED_FILES_PARAMETER.format(stack=deployment.stack, pipeline=pipeline.name)
    try:
        text = deployment.clients.ssm.get_parameter(Name=parameter)["Parameter"]["Value"]
    except botocore.exceptions.ClientError as error:
        # A deployment from before the record, or a role without the operators' policy: not compared
        # here; --check reports either.
        if _code(error) == "ParameterNotFound" or _denied(error):
            return None
        raise
    return differences(decode(text), folder_digests(pipeline.folder))


def _cid(pipeline: str) -> str:
    """infra/pipelines.py's construct_id: "daily_sales" -> "DailySales" (a test holds them equal)."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", pipeline) if part)


def _all_states(states: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for state in states.values():
        yield state
        for branch in state.get("Branches", []):
            yield from _all_states(branch["States"])
        for key in ("Iterator", "ItemProcessor"):
            if key in state:
                yield from _all_states(state[key]["States"])


def _tag_context(call: Call, tags: dict[str, str]) -> list[tuple[str, tuple[str, ...], str]]:
    if call.cluster_tags == "request":
        return [(f"aws:RequestTag/{k}", (v,), "string") for k, v in sorted(tags.items())] + [
            ("aws:TagKeys", tuple(tags), "stringList")
        ]
    if call.cluster_tags == "resource":
        return [(f"aws:ResourceTag/{k}", (v,), "string") for k, v in sorted(tags.items())]
    return []


def _public_key(private: str) -> str | None:
    """The OpenSSH public key of a PEM or OpenSSH private key, None when the text holds none."""
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    data = private.encode()
    for load in (serialization.load_pem_private_key, serialization.load_ssh_private_key):
        try:
            key = load(data, password=None)
        except (ValueError, TypeError):
            continue
        return (
            key.public_key()
            .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            .decode()
        )
    return None


@dataclass(frozen=True)
class SimulationRequest:
    """One SimulatePrincipalPolicy request: a role, its actions on one resource, the context keys."""

    role: str
    role_arn: str
    actions: tuple[str, ...]
    resource: str
    context: tuple[tuple[str, tuple[str, ...], str], ...]

    def params(self) -> dict[str, Any]:
        """The request's parameters, as the IAM API reference names them."""
        params: dict[str, Any] = {
            "PolicySourceArn": self.role_arn,
            "ActionNames": list(self.actions),
            "ResourceArns": [self.resource],
        }
        if self.context:
            params["ContextEntries"] = [
                {"ContextKeyName": key, "ContextKeyValues": list(values), "ContextKeyType": kind}
                for key, values, kind in self.context
            ]
        return params


@dataclass(frozen=True)
class Denial:
    role: str
    role_arn: str
    action: str
    resource: str
    decision: str
    #: who denies: "scp", "boundary", or the policies whose Deny statements matched
    by: str = ""
    statements: tuple[str, ...] = ()

    def detail(self) -> str:
        what = f"{self.action} on {self.resource}"
        if self.by == "scp":
            return f"{what} is denied by a service control policy of your organization"
        if self.by == "boundary":
            return f"{what} is denied by the permissions boundary of {self.role_arn}"
        if self.decision == "explicitDeny":
            return f"{what} is denied explicitly by {', '.join(self.statements) or 'a Deny statement'}"
        return f"{what} is not allowed by any policy of {self.role_arn}"

    def fix(self) -> str:
        if self.by == "scp":
            return f"ask your organization's administrators to allow {self.action} for {self.role_arn}"
        if self.by == "boundary":
            return f"allow {self.action} in the permissions boundary of {self.role_arn}"
        if self.decision == "explicitDeny":
            return f"remove or narrow that Deny for {self.role_arn}"
        return "cdk deploy (the stack grants it); if it persists, the stack's policy is wrong: report it"


def simulate(iam: Any, request: SimulationRequest) -> list[Denial]:
    """AWS's own decision for each action of the request: the denials, with who denies."""
    denials: list[Denial] = []
    for page in iam.get_paginator("simulate_principal_policy").paginate(**request.params()):
        for result in page["EvaluationResults"]:
            decision = result["EvalDecision"]
            if decision == "allowed":
                continue
            by = ""
            if result.get("OrganizationsDecisionDetail", {}).get("AllowedByOrganizations") is False:
                by = "scp"
            elif (
                result.get("PermissionsBoundaryDecisionDetail", {}).get("AllowedByPermissionsBoundary")
                is False
            ):
                by = "boundary"
            statements = (
                tuple(
                    dict.fromkeys(
                        f"{m.get('SourcePolicyId', '?')} ({m.get('SourcePolicyType', 'policy')})"
                        for m in result.get("MatchedStatements", [])
                    )
                )
                if decision == "explicitDeny"
                else ()
            )
            denials.append(
                Denial(
                    request.role,
                    request.role_arn,
                    result["EvalActionName"],
                    result.get("EvalResourceName", request.resource),
                    decision,
                    by,
                    statements,
                )
            )
    return denials


def run_check(
    pipeline: Pipeline,
    deployment: Deployment,
    say: Callable[[str], None],
    clients: CheckClients | None = None,
) -> int:
    """Every check, a line each as it ends; 0 when all pass, EXIT_PROBLEM when one found a problem."""
    check = Check(pipeline, deployment, clients or CheckClients.make(deployment.region))
    problems = 0
    for finding in check.run():
        say(finding.line())
        problems += not finding.ok
    say(f"{problems} problem(s) found" if problems else "every check passed")
    return EXIT_PROBLEM if problems else 0


__all__ = ["EXIT_PROBLEM", "CheckClients", "Finding", "run_check"]
