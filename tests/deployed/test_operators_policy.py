"""Every AWS call the CLI's deployed mode makes is one the operators' policy in the template allows.

moto does not evaluate IAM resources or conditions, so the calls the real CLI makes against moto
(start and follow, history, follow a finished run, stop) are recorded with their parameters, and
each is checked against the policy's Allow statements as IAM reads them: the action, the resource
ARN (wildcards), and the `aws:ResourceTag` conditions against the cluster's tags in moto.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import pytest

from runner.deployed import DeployedRequest
from runner.deployed.discovery import Clients
from tests.deployed.support import run_cli, start_directly
from tests.infra.moto_harness import Harness, StepScript
from tests.support.aws import ACCOUNT, REGION, resolve_join

DATE = "2025-06-01"
IAM_PREFIX = {"stepfunctions": "states", "logs": "logs", "emr": "elasticmapreduce"}


@dataclass(frozen=True)
class Call:
    action: str
    params: dict[str, Any]


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[Call]:
    """The CLI's own AWS calls (not the Lambdas' or the harness's): its clients are recorded."""
    recorded: list[Call] = []
    make = Clients.make.__func__  # type: ignore[attr-defined]

    def recording(cls: type[Clients], region: str | None) -> Clients:
        made: Clients = make(cls, region)
        for client in (made.sfn, made.logs, made.emr):
            prefix = IAM_PREFIX[client.meta.service_model.service_name]

            def record(params: dict[str, Any], model: Any, prefix: str = prefix, **_: Any) -> None:
                recorded.append(Call(f"{prefix}:{model.name}", dict(params)))

            client.meta.events.register("provide-client-params", record)
        return made

    monkeypatch.setattr(Clients, "make", classmethod(recording))
    return recorded


def policy_statements(harness: Harness) -> list[dict[str, Any]]:
    """The operators' policy statements, resolved to the ARNs of the resources in moto."""
    resources = harness.synth.template["Resources"]
    (policy,) = [r for k, r in resources.items() if k.startswith("OperatorsPolicy")]
    machines = {
        logical: f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{r['Properties']['StateMachineName']}"
        for logical, r in resources.items()
        if r["Type"] == "AWS::StepFunctions::StateMachine"
    }

    def resolve(token: dict[str, Any]) -> str:
        if token.get("Ref") in machines:
            return machines[token["Ref"]]
        if token.get("Fn::GetAtt", [None])[0] == f"RunnerLogs{harness.pipeline.capitalize()}":
            return f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{harness.runner_log_group}:*"
        if "Fn::GetAtt" in token:
            return f"<another pipeline's {token['Fn::GetAtt'][0]}>"
        return harness._resolve(token)

    def listed(value: Any) -> list[Any]:
        return value if isinstance(value, list) else [value]

    return [
        {
            **statement,
            "Action": listed(statement["Action"]),
            "Resource": [
                resolve(item) if "Ref" in item or "Fn::GetAtt" in item else resolve_join(item, resolve)
                for item in listed(statement["Resource"])
                if isinstance(item, dict)
            ]
            + [item for item in listed(statement["Resource"]) if isinstance(item, str)],
        }
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def resources_of(harness: Harness, call: Call) -> list[tuple[str, dict[str, str]]]:
    """The ARNs IAM authorises the call on, each with its resource's tags (clusters only)."""
    p = call.params
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group"
    if call.action in ("states:StartExecution", "states:ListExecutions"):
        return [(p["stateMachineArn"], {})]
    if call.action in ("states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"):
        return [(p["executionArn"], {})]
    if call.action == "states:ListTagsForResource":
        return [(p["resourceArn"], {})]
    if call.action == "logs:GetLogEvents":
        return [(f"{logs}:{p['logGroupName']}:log-stream:{p['logStreamName']}", {})]
    if call.action.startswith("logs:"):
        return [(f"{logs}:{p['logGroupName']}:*", {})]
    if call.action in ("elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows"):
        ids = p["JobFlowIds"] if "JobFlowIds" in p else [p["ClusterId"]]
        return [
            (
                f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/{cluster_id}",
                {
                    t["Key"]: t["Value"]
                    for t in harness.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Tags"]
                },
            )
            for cluster_id in ids
        ]
    return [("*", {})]


def allowing(
    statements: list[dict[str, Any]], action: str, resource: str, tags: dict[str, str]
) -> str | None:
    """The Sid of the first Allow statement that lets ``action`` on ``resource``, or None."""
    for statement in statements:
        if statement["Effect"] != "Allow" or action not in statement["Action"]:
            continue
        if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in statement["Resource"]):
            continue
        conditions = statement.get("Condition", {})
        assert set(conditions) <= {"StringEquals"}, conditions
        wanted = conditions.get("StringEquals", {})
        if all(tags.get(key.removeprefix("aws:ResourceTag/")) == value for key, value in wanted.items()):
            return str(statement["Sid"])
    return None


def test_every_call_of_the_cli_is_allowed_and_every_statement_is_used(
    deployed: Harness, calls: list[Call]
) -> None:
    started = run_cli(deployed, DeployedRequest("start", (DATE,)))
    assert started.code == 0, started.notices
    assert run_cli(deployed, DeployedRequest("follow", (DATE,))).code == 0
    assert run_cli(deployed, DeployedRequest("history")).code == 0
    # A long step holds the next date's run, which is then stopped: its cluster is terminated too.
    held = StepScript(chunks=[("stdout", b"long query\n")], gate_after=1, gate_timeout=60)
    deployed.faults.scripts["10_users.sql"] = held
    start_directly(deployed, "2025-06-02")
    assert held.reached_gate.wait(30)
    stopped = run_cli(deployed, DeployedRequest("stop", ("2025-06-02",)))
    assert stopped.code == 0, stopped.notices

    statements = policy_statements(deployed)
    used: set[str] = set()
    denied = []
    for call in calls:
        for resource, tags in resources_of(deployed, call):
            sid = allowing(statements, call.action, resource, tags)
            if sid is None:
                denied.append((call.action, resource))
            else:
                used.add(sid)
    assert denied == []
    assert "elasticmapreduce:TerminateJobFlows" in {call.action for call in calls}
    # Nothing in the policy that the CLI never needs.
    assert used == {statement["Sid"] for statement in statements}


def test_the_policy_allows_nothing_on_another_stacks_clusters_or_pipelines(deployed: Harness) -> None:
    statements = policy_statements(deployed)
    cluster = f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/j-OTHER"
    mine = {"nightshift:managed": "true", "nightshift:stack": "Nightshift"}
    for action in ("elasticmapreduce:TerminateJobFlows", "elasticmapreduce:DescribeCluster"):
        assert allowing(statements, action, cluster, mine) is not None
        assert allowing(statements, action, cluster, {**mine, "nightshift:stack": "NightshiftDev"}) is None
        assert allowing(statements, action, cluster, {}) is None
    other = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:NightshiftDev-nightly"
    assert allowing(statements, "states:StartExecution", other, {}) is None
    assert (
        allowing(statements, "states:StopExecution", other.replace("stateMachine", "execution") + ":x", {})
        is None
    )
    assert (
        allowing(statements, "logs:GetLogEvents", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/other:*", {})
        is None
    )
