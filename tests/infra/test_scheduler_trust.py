"""Every role an EventBridge Scheduler schedule acts with trusts Scheduler for this stack's schedule group only.

"Confused deputy prevention in EventBridge Scheduler", EventBridge Scheduler User Guide,
https://docs.aws.amazon.com/scheduler/latest/UserGuide/cross-service-confused-deputy-prevention.html:
"The most effective way to protect against the confused deputy problem is to use the aws:SourceArn
global condition context key with the full ARN of the resource. The following condition is scoped to
an individual schedule group: arn:aws:scheduler:*:123456789012:schedule-group/your-schedule-group
[...] The value of aws:SourceArn must be your EventBridge Scheduler schedule group ARN [...] Do not
scope the aws:SourceArn statement to a specific schedule or a schedule name prefix. The ARN you
specify must be a schedule group." So Scheduler sends the group's ARN, and a condition on a schedule's
ARN (schedule/GROUP/NAME) would refuse every night. A schedule that names no group is in "default"
(GroupName, "AWS::Scheduler::Schedule", CloudFormation User Guide,
https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-scheduler-schedule.html).
The execution role itself: "Set up the execution role",
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
# The schedule group our schedules are in (none named: Scheduler's "default"), as Scheduler names it.
SOURCE_GROUP = "arn:aws:scheduler:{region}:{account}:schedule-group/{group}"


def _group(account: str = ACCOUNT, group: str = "default", region: str = REGION) -> str:
    return SOURCE_GROUP.format(region=region, account=account, group=group)


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


def _schedule_groups(template: Template) -> set[str]:
    """The groups the stack's schedules are in (a schedule that names none is in "default")."""
    return {
        template.resolve(schedule["Properties"].get("GroupName", "default"))
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

        # What Scheduler sends for a schedule of this stack: its account and its group's ARN.
        ours = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": _group()}
        assert assume(ours), f"{logical}: Scheduler could not run this stack's schedules"
        theirs = {"aws:SourceAccount": ANOTHER_ACCOUNT, "aws:SourceArn": _group(ANOTHER_ACCOUNT)}
        assert not assume(theirs), f"{logical}: another account's schedule could act with it"
        # A schedule of another group in this account, and every shape Scheduler never sends.
        for source in (
            _group(group="reports"),
            _group(group="default-reports"),
            _group(region="eu-west-1"),
            f"arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/reports/nightly",
        ):
            other = {"aws:SourceAccount": ACCOUNT, "aws:SourceArn": source}
            assert not assume(other), f"{logical}: {source} could act with it"
        assert not assume({"aws:SourceAccount": ACCOUNT}), f"{logical}: a request that names no group"
        assert not assume({}), f"{logical}: a request that names no source account is trusted"


@pytest.mark.parametrize("synth_name", ["test_synth", "cost_synth"])
def test_each_schedule_role_trusts_the_group_its_schedules_are_in(
    request: pytest.FixtureRequest, synth_name: str
) -> None:
    """A schedule in another group than its role trusts would never start a night."""
    synth: Synthesis = request.getfixturevalue(synth_name)
    template = Template(synth.template)
    groups = {_group(group=name) for name in _schedule_groups(template)}
    for logical, trust in _trusting_scheduler(template).items():
        trusted = {
            source
            for statement in trust
            for test, keys in statement.get("Condition", {}).items()
            if test.startswith("Arn")
            for source in _listed(keys.get("aws:SourceArn", []))
        }
        assert trusted == groups, logical


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]
