"""Every AWS call the CLI's deployed mode makes is one the operators' policy in the template allows.

moto does not evaluate IAM, so the calls the real CLI makes against moto (start and follow, history,
follow a finished run, stop) are recorded with their parameters, and each is evaluated as IAM would
(tests/infra/iam_eval.py: the action, the resource ARN, the cluster's tags as aws:ResourceTag)
against the operators' policy, and found in the manifest of calls (runner/deployed/calls.py, role
Operators), which tests/infra/test_aws_iam_rules.py evaluates on the template as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from runner.deployed import DeployedRequest
from runner.deployed import calls as manifest
from runner.deployed.discovery import Clients
from tests.deployed.support import run_cli, start_directly
from tests.infra.iam_eval import Request, Template, evaluate
from tests.infra.moto_harness import Harness, StepScript
from tests.support.aws import ACCOUNT, REGION

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


def policy_statements(harness: Harness) -> tuple[Template, list[Mapping[str, Any]]]:
    """The operators' policy, its values resolved as CloudFormation would (iam_eval.Template)."""
    template = Template(harness.synth.template)
    return template, template.policy_statements(
        template.logical_id("AWS::IAM::ManagedPolicy", "OperatorsPolicy")
    )


def requests_of(harness: Harness, template: Template, call: Call) -> list[Request]:
    """The requests IAM authorizes the call as: one per resource, with the cluster's tags in moto.

    The runner log group has its moto name in the call and its template name in the policy.
    """
    p = call.params
    group = template.arn(f"RunnerLogs{harness.pipeline.capitalize()}").removesuffix(":*")
    names = {harness.runner_log_group: group.rsplit(":", 1)[-1]}
    logs = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group"
    if call.action in ("states:StartExecution", "states:ListExecutions"):
        return [Request(call.action, p["stateMachineArn"])]
    if call.action in ("states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"):
        return [Request(call.action, p["executionArn"])]
    if call.action == "states:ListTagsForResource":
        return [Request(call.action, p["resourceArn"])]
    if call.action == "logs:GetLogEvents":
        name = names.get(p["logGroupName"], p["logGroupName"])
        return [Request(call.action, f"{logs}:{name}:log-stream:{p['logStreamName']}")]
    if call.action.startswith("logs:"):
        return [Request(call.action, f"{logs}:{names.get(p['logGroupName'], p['logGroupName'])}:*")]
    if call.action in ("elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows"):
        ids = p["JobFlowIds"] if "JobFlowIds" in p else [p["ClusterId"]]
        return [
            Request(
                call.action,
                f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/{cluster_id}",
                {
                    f"aws:ResourceTag/{t['Key']}": t["Value"]
                    for t in harness.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]["Tags"]
                },
            )
            for cluster_id in ids
        ]
    return [Request(call.action, "*")]


def test_every_call_of_the_cli_is_allowed_in_the_manifest_and_every_statement_is_used(
    deployed: Harness, calls: list[Call]
) -> None:
    """IAM's evaluation of the policy ("Policy evaluation logic", IAM User Guide:
    https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_policies_evaluation-logic.html), and
    EMR's tag-based authorization of cluster calls ("Use cluster and Notebook tags with IAM policies
    for access control", https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-with-iam-tags.html).
    """
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

    template, statements = policy_statements(deployed)
    used: set[tuple[str, str]] = set()
    denied = []
    for call in calls:
        for request in requests_of(deployed, template, call):
            decision = evaluate(statements, request)
            if decision.allowed:
                used.update((sid, call.action) for sid in decision.allows)
            else:
                denied.append(request)
    assert denied == []
    assert "elasticmapreduce:TerminateJobFlows" in {call.action for call in calls}
    # The manifest names exactly what the CLI calls, so the template test evaluates the same calls.
    listed = {c.action for c in manifest.ALL_CALLS if c.role == manifest.OPERATORS}
    assert {call.action for call in calls} == listed
    # Nothing in the policy that these commands never need: each action of each statement is called
    # (the --check statements, Sids Check*, are the check's: tests/infra/test_aws_iam_rules.py holds
    # each needed by a call of the manifest's OperatorsCheck).
    statements = [s for s in statements if not str(s["Sid"]).startswith("Check")]
    granted = {
        (str(s["Sid"]), a)
        for s in statements
        # The deployment check's reads ("Check..."): tests/deployed/test_check.py holds those.
        if not str(s["Sid"]).startswith("Check")
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert used == granted


def test_the_policy_allows_nothing_on_another_stacks_clusters_or_pipelines(deployed: Harness) -> None:
    """Tag conditions on the cluster (aws:ResourceTag) and the stack's own ARNs, as IAM evaluates them."""
    _, statements = policy_statements(deployed)
    cluster = f"arn:aws:elasticmapreduce:{REGION}:{ACCOUNT}:cluster/j-OTHER"
    mine = {"aws:ResourceTag/nightshift:managed": "true", "aws:ResourceTag/nightshift:stack": "Nightshift"}
    for action in ("elasticmapreduce:TerminateJobFlows", "elasticmapreduce:DescribeCluster"):
        assert evaluate(statements, Request(action, cluster, mine)).allowed
        dev = {**mine, "aws:ResourceTag/nightshift:stack": "NightshiftDev"}
        assert not evaluate(statements, Request(action, cluster, dev)).allowed
        assert not evaluate(statements, Request(action, cluster)).allowed
    other = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:NightshiftDev-nightly"
    assert not evaluate(statements, Request("states:StartExecution", other)).allowed
    execution = other.replace("stateMachine", "execution") + ":x"
    assert not evaluate(statements, Request("states:StopExecution", execution)).allowed
    group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/other:*"
    assert not evaluate(statements, Request("logs:GetLogEvents", group)).allowed
