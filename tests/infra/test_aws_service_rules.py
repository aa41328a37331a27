"""AWS's documented rules for the services that deliver to the stack (alarms, Scheduler, Lambda, logs), held
against the synthesized template: moto accepts what these services would refuse or silently drop."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Any

import pytest

from tests.infra.conftest import Synthesis, resolve_join

ACCOUNT_REF = {"Ref": "AWS::AccountId"}
VENDED_LOGS = "/aws/vendedlogs/"
# The AWS services that publish to a topic themselves (not through a role of ours), and the
# ARN of the resource that publishes, as the topic policy's aws:SourceArn should name it.
PUBLISHING_SERVICES = {"cloudwatch.amazonaws.com": ":cloudwatch:", "events.amazonaws.com": ":events:"}


@pytest.fixture(params=["test_synth", "repo_synth"])
def synth(request: pytest.FixtureRequest) -> Synthesis:
    value: Synthesis = request.getfixturevalue(request.param)
    return value


def logical_id(value: Any) -> str | None:
    """The resource a Ref or a Fn::GetAtt points at, else None."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def flat(value: Any, resolve: Any = None) -> str:
    """A string, an Fn::Join flattened, or a lone token as resolve(token) ("TOKEN" without one)."""
    if isinstance(value, dict) and "Fn::Join" not in value:
        return str(resolve(value)) if resolve else "TOKEN"
    return resolve_join(value, resolve)


def listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from listed(document["Statement"])


def covers(statement: dict[str, Any], action: str) -> bool:
    """The statement allows the action (IAM action names are case-insensitive, * and ? wildcards)."""
    return statement["Effect"] == "Allow" and any(
        fnmatch.fnmatchcase(action.lower(), pattern.lower()) for pattern in listed(statement["Action"])
    )


def services_of(statement: dict[str, Any]) -> list[str]:
    principal = statement.get("Principal")
    return listed(principal.get("Service", [])) if isinstance(principal, dict) else []


def role_statements(synth: Synthesis, role: str) -> list[dict[str, Any]]:
    """Every statement of the inline policies attached to the role."""
    return [
        statement
        for policy in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"].get("Roles", [])
        for statement in statements(policy["Properties"]["PolicyDocument"])
    ]


def role_may(synth: Synthesis, role: str, action: str, resource: str | None) -> bool:
    return any(
        covers(statement, action) and resource in [logical_id(r) for r in listed(statement["Resource"])]
        for statement in role_statements(synth, role)
    )


def customer_key_of(synth: Synthesis, encrypted: dict[str, Any]) -> str:
    """The KMS key the template creates for a topic or queue; fails for an AWS managed key (an alias)."""
    key = logical_id(encrypted["Properties"].get("KmsMasterKeyId"))
    assert key in synth.resources("AWS::KMS::Key"), (
        f"encrypted with {encrypted['Properties'].get('KmsMasterKeyId')}, not a key this stack creates"
    )
    return key


def alert_topic(synth: Synthesis) -> str:
    (topic,) = synth.resources("AWS::SNS::Topic")
    return topic


def publishing_services(synth: Synthesis, topic: str) -> set[str]:
    """The services that would publish to the topic: alarms with an action on it, rules targeting it."""
    services = set()
    for alarm in synth.resources("AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        actions = [*props.get("AlarmActions", []), *props.get("OKActions", [])]
        if {"Ref": topic} in actions + props.get("InsufficientDataActions", []):
            services.add("cloudwatch.amazonaws.com")
    for rule in synth.resources("AWS::Events::Rule").values():
        if any(logical_id(target["Arn"]) == topic for target in rule["Properties"].get("Targets", [])):
            services.add("events.amazonaws.com")
    return services


def test_services_that_publish_to_the_alert_topic_may_use_its_key(synth: Synthesis) -> None:
    """A CloudWatch alarm (or an EventBridge rule) can publish to an encrypted topic only when the topic
    uses a customer managed key whose key policy lets the service call kms:Decrypt and
    kms:GenerateDataKey*: the AWS managed key alias/aws/sns cannot, and the publish is dropped.

    Amazon SNS Developer Guide, "Key management" > "Enable compatibility between event sources from
    AWS services and encrypted topics":
    https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
    """
    topic = alert_topic(synth)
    services = publishing_services(synth, topic)
    assert "cloudwatch.amazonaws.com" in services  # the backstop alarms; else this test proves nothing
    key = customer_key_of(synth, synth.template["Resources"][topic])
    key_policy = synth.template["Resources"][key]["Properties"]["KeyPolicy"]
    for service in services:
        granted = [s for s in statements(key_policy) if service in services_of(s)]
        for action in ("kms:Decrypt", "kms:GenerateDataKey"):
            assert any(covers(s, action) for s in granted), f"the alert key lets {service} no {action}"


def test_the_topic_policy_lets_this_accounts_alarms_publish(synth: Synthesis) -> None:
    """The topic policy allows each publishing service sns:Publish for this account's resources only
    (aws:SourceAccount and aws:SourceArn, the confused-deputy conditions).

    Amazon SNS Developer Guide, "Enable compatibility between event sources from AWS services and
    encrypted topics" (https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html) and
    "Example cases for Amazon SNS access control" > aws:SourceArn / aws:SourceAccount
    (https://docs.aws.amazon.com/sns/latest/dg/sns-access-policy-use-cases.html).
    """
    topic = alert_topic(synth)
    (policy,) = (
        p
        for p in synth.resources("AWS::SNS::TopicPolicy").values()
        if {"Ref": topic} in p["Properties"]["Topics"]
    )
    for service in publishing_services(synth, topic):
        allowed = [
            s
            for s in statements(policy["Properties"]["PolicyDocument"])
            if service in services_of(s) and covers(s, "sns:Publish")
        ]
        assert allowed, f"the topic policy does not let {service} publish"
        for statement in allowed:
            conditions = statement.get("Condition", {})
            assert conditions.get("StringEquals", {}).get("aws:SourceAccount") == ACCOUNT_REF
            source = flat(conditions.get("ArnLike", {}).get("aws:SourceArn", ""))
            assert PUBLISHING_SERVICES[service] in source and source.endswith(":*"), source


def test_every_schedule_has_a_dead_letter_queue_its_role_can_write(synth: Synthesis) -> None:
    """A schedule whose target cannot be invoked (after its retries) puts a dead-letter event in an SQS
    standard queue, if it has one; the schedule's execution role needs sqs:SendMessage on it and, for a
    queue encrypted with a KMS key, kms:GenerateDataKey and kms:Decrypt on that key.

    EventBridge Scheduler User Guide, "Configuring a schedule's dead-letter queue":
    https://docs.aws.amazon.com/scheduler/latest/UserGuide/configuring-schedule-dlq.html
    Amazon SQS Developer Guide, "Key management" > producer permissions for an SSE-KMS queue:
    https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html
    """
    schedules = synth.resources("AWS::Scheduler::Schedule")
    if synth.pipelines_dir.name == "sql":
        # As shipped, the example pipeline is not scheduled: a first deploy starts no cluster.
        assert not schedules
        return
    assert schedules
    for name, schedule in schedules.items():
        target = schedule["Properties"]["Target"]
        assert "DeadLetterConfig" in target, f"{name} has no dead-letter queue"
        queue_id = logical_id(target["DeadLetterConfig"]["Arn"])
        queue = synth.template["Resources"][queue_id]
        key = customer_key_of(synth, queue)
        role = logical_id(target["RoleArn"])
        assert role is not None
        assert role_may(synth, role, "sqs:SendMessage", queue_id)
        for action in ("kms:GenerateDataKey", "kms:Decrypt"):
            assert role_may(synth, role, action, key), f"{name}'s role may not {action} the queue's key"


def test_start_run_sends_a_failed_start_to_a_queue_that_alarms(synth: Synthesis) -> None:
    """Scheduler invokes StartRun asynchronously: a StartRun that fails its last attempt is lost unless
    the function has an on-failure destination (sent with the function's own role, which needs
    sqs:SendMessage, and the queue key's kms:GenerateDataKey and kms:Decrypt). A message there is an
    alarm on the alert topic, so a night that never started is an e-mail.

    AWS Lambda Developer Guide, "Capturing records of Lambda asynchronous invocations" (destinations,
    execution role permissions): https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-retain-records.html
    and "Configuring error handling for asynchronous invocation" (retries 0-2):
    https://docs.aws.amazon.com/lambda/latest/dg/invocation-async-error-handling.html
    """
    (start_run,) = (
        name
        for name, function in synth.resources("AWS::Lambda::Function").items()
        if function["Properties"]["Handler"] == "lambdas.start_run.handler"
    )
    (config,) = (
        c for c in synth.resources("AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": start_run}
    )  # fmt: skip
    props = config["Properties"]
    assert props["MaximumRetryAttempts"] == 2  # idempotent: one execution name per run date
    queue_id = logical_id(props["DestinationConfig"]["OnFailure"]["Destination"])
    assert queue_id in synth.resources("AWS::SQS::Queue")
    key = customer_key_of(synth, synth.template["Resources"][queue_id])
    role = logical_id(synth.template["Resources"][start_run]["Properties"]["Role"])
    assert role is not None
    assert role_may(synth, role, "sqs:SendMessage", queue_id)
    for action in ("kms:GenerateDataKey", "kms:Decrypt"):
        assert role_may(synth, role, action, key)
    alarms = [
        alarm["Properties"]
        for alarm in synth.resources("AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("Dimensions") == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue_id, "QueueName"]}}]
    ]  # fmt: skip
    assert len(alarms) == 1
    (alarm,) = alarms
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert alarm["AlarmActions"] == [{"Ref": alert_topic(synth)}]


def test_state_machines_log_under_aws_vendedlogs(synth: Synthesis) -> None:
    """CloudWatch Logs resource policies are limited to 5,120 characters; a state machine logging to a
    group outside /aws/vendedlogs/ adds that group to the policy, until a deploy fails.

    AWS Step Functions Developer Guide, "Avoiding Amazon CloudWatch Logs resource policy size
    restrictions": https://docs.aws.amazon.com/step-functions/latest/dg/bp-cwl.html
    """
    machines = synth.resources("AWS::StepFunctions::StateMachine")
    assert machines
    for name, machine in machines.items():
        (destination,) = machine["Properties"]["LoggingConfiguration"]["Destinations"]
        group = logical_id(destination["CloudWatchLogsLogGroup"]["LogGroupArn"])
        group_name = synth.template["Resources"][group]["Properties"].get("LogGroupName", "")
        assert group_name.startswith(VENDED_LOGS), f"{name} logs to {group_name or 'a generated name'}"


def test_the_log_bucket_lets_log_delivery_write_flow_logs(repo_synth: Synthesis) -> None:
    """Flow logs to S3 need the bucket policy's AWSLogDeliveryWrite (s3:PutObject with
    bucket-owner-full-control) and AWSLogDeliveryAclCheck (s3:GetBucketAcl) statements for
    delivery.logs.amazonaws.com, limited by aws:SourceAccount and aws:SourceArn. Created outside the
    template, they would be removed by the next deploy that touches the bucket policy.

    Amazon VPC User Guide, "Amazon S3 bucket permissions for flow logs":
    https://docs.aws.amazon.com/vpc/latest/userguide/flow-logs-s3-permissions.html
    """
    flow_logs = [
        f["Properties"] for f in repo_synth.resources("AWS::EC2::FlowLog").values()
        if f["Properties"]["LogDestinationType"] == "s3"
    ]  # fmt: skip
    assert flow_logs  # the new VPC's flow logs; else this test proves nothing

    def resolve(part: Any) -> str:
        return "ACCOUNT" if part == ACCOUNT_REF else f"BUCKET({logical_id(part)})"

    for flow_log in flow_logs:
        destination = flat(flow_log["LogDestination"], resolve)
        bucket = destination.split(")")[0].removeprefix("BUCKET(")
        (policy,) = (
            p["Properties"]["PolicyDocument"] for p in repo_synth.resources("AWS::S3::BucketPolicy").values()
            if p["Properties"]["Bucket"] == {"Ref": bucket}
        )  # fmt: skip
        delivery = [s for s in statements(policy) if "delivery.logs.amazonaws.com" in services_of(s)]
        for statement in delivery:
            conditions = statement["Condition"]
            assert conditions["StringEquals"]["aws:SourceAccount"] == ACCOUNT_REF
            assert ":logs:" in flat(conditions["ArnLike"]["aws:SourceArn"])
        writes = [
            flat(s["Resource"], resolve) for s in delivery
            if covers(s, "s3:PutObject")
            and s["Condition"]["StringEquals"].get("s3:x-amz-acl") == "bucket-owner-full-control"
        ]  # fmt: skip
        assert f"{destination.rstrip('/')}/AWSLogs/ACCOUNT/*" in writes, writes
        acl_checks = [flat(s["Resource"], resolve) for s in delivery if covers(s, "s3:GetBucketAcl")]
        assert f"BUCKET({bucket})" in acl_checks
