"""Every role an EventBridge Scheduler schedule acts with trusts Scheduler for this account's schedules only.

"Confused deputy prevention in EventBridge Scheduler", EventBridge Scheduler User Guide,
https://docs.aws.amazon.com/scheduler/latest/UserGuide/cross-service-confused-deputy-prevention.html:
"We recommend using the aws:SourceArn and aws:SourceAccount global condition context keys in your
schedule execution role to limit the permissions that EventBridge Scheduler gives another service to
access the resource. [...] Use aws:SourceAccount if you want to allow any resource in that account to
be associated with the cross-service use." The execution role itself: "Set up the execution role",
https://docs.aws.amazon.com/scheduler/latest/UserGuide/setting-up.html#setting-up-execution-role.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.infra.conftest import ACCOUNT, REGION, Synthesis
from tests.infra.iam_eval import Principal, Request, Template, evaluate_resource_policy
from tests.infra.test_cost_stack import cost_synth  # noqa: F401 - the synth with a late check

SCHEDULER_SERVICE = "scheduler.amazonaws.com"
SCHEDULER = Principal("Service", SCHEDULER_SERVICE)
ANOTHER_ACCOUNT = "210987654321"
# The schedule group our schedules are in (none named: Scheduler's "default").
SOURCE_GROUP = f"arn:aws:scheduler:{REGION}:{{account}}:schedule-group/default"


def _trusting_scheduler(template: Template) -> dict[str, list[Any]]:
    """Each role whose trust policy names Scheduler, with its trust statements."""
    roles = {}
    for logical, role in template.of_type("AWS::IAM::Role").items():
        trust = template.resolve(role["Properties"]["AssumeRolePolicyDocument"])["Statement"]
        services = [s.get("Principal", {}).get("Service", []) for s in trust]
        if any(SCHEDULER_SERVICE in ([named] if isinstance(named, str) else named) for named in services):
            roles[logical] = trust
    return roles


def _schedule_roles(template: Template) -> set[str]:
    """The roles the stack's schedules name as their execution role (as role ARNs)."""
    return {
        template.resolve(schedule["Properties"]["Target"]["RoleArn"])
        for schedule in template.of_type("AWS::Scheduler::Schedule").values()
    }


@pytest.mark.parametrize(
    ("synth_name", "expected"),
    [
        ("test_synth", {"SchedulesSchedulerRole"}),
        ("cost_synth", {"SchedulesSchedulerRole", "AlertsLateCheckSchedulerRole"}),
    ],
)
def test_scheduler_may_assume_each_schedule_role_for_this_account_only(
    request: pytest.FixtureRequest, synth_name: str, expected: set[str]
) -> None:
    synth: Synthesis = request.getfixturevalue(synth_name)
    template = Template(synth.template)
    roles = _trusting_scheduler(template)
    # Every role a schedule acts with is checked, and the StartRun and late-check schedules' are there.
    assert _schedule_roles(template) == {template.arn(logical) for logical in roles}
    assert {next(part for part in expected if logical.startswith(part)) for logical in roles} == expected
    for logical, trust in roles.items():
        arn = template.arn(logical)

        def assume(context: dict[str, str], trust: Any = trust, arn: str = arn) -> bool:
            return evaluate_resource_policy(trust, SCHEDULER, Request("sts:AssumeRole", arn, context)).allowed

        ours = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": SOURCE_GROUP.format(account=ACCOUNT)}
        theirs = {
            "aws:SourceAccount": ANOTHER_ACCOUNT,
            "aws:SourceArn": SOURCE_GROUP.format(account=ANOTHER_ACCOUNT),
        }
        assert assume(ours), f"{logical}: Scheduler could not run this account's schedules"
        assert not assume(theirs), f"{logical}: another account's schedule could act with it"
        assert not assume({}), f"{logical}: a request that names no source account is trusted"
