"""The synthesized template says what issue 5 asks for: structure, schedules, logs, network, pinned ids."""

from __future__ import annotations

import json
import re

import pytest
from aws_cdk.assertions import Capture, Match, Template

from infra.workflow import canary_state_name
from tests.conftest import ROOT
from tests.infra.conftest import SECRET_ARN, SUBNETS, Synthesis, definition_of


@pytest.fixture(scope="module")
def template(test_synth: Synthesis) -> Template:
    return Template.from_json(test_synth.template)


def test_one_state_machine_per_pipeline_folder(template: Template) -> None:
    template.resource_count_is("AWS::StepFunctions::StateMachine", 2)
    for name in ("Nightshift-nightly", "Nightshift-adhoc"):
        template.has_resource_properties("AWS::StepFunctions::StateMachine", {"StateMachineName": name})


def test_every_folder_under_sql_synthesizes(repo_synth: Synthesis) -> None:
    machines = repo_synth.resources("AWS::StepFunctions::StateMachine")
    folders = sorted(
        p.name for p in repo_synth.pipelines_dir.iterdir() if p.is_dir() and p.name[0] not in "._"
    )
    assert sorted(m["Properties"]["StateMachineName"] for m in machines.values()) == [
        f"Nightshift-{name}" for name in folders
    ]
    # The committed cdk.json has no VPC: a new one with a single NAT gateway.
    Template.from_json(repo_synth.template).resource_count_is("AWS::EC2::NatGateway", 1)


def test_stages_follow_the_folder(test_synth: Synthesis) -> None:
    states = definition_of(test_synth, "nightly")["States"]
    order = ["Stage 10", "Stage 20", "Stage 30"]
    # A canary run goes to its own task (tests/infra/test_deployed_canary.py); a night to stage 10.
    # A batch to its dates, a date of a batch to its one `Run stages` task (tests/infra/test_batch_synth.py).
    assert [c["Next"] for c in states["ClusterReady?"]["Choices"][:4]] == [
        canary_state_name(),
        "Dates",
        "Stages command",
        "Stage 10?",
    ]
    # A date of a batch leaves its batch's cluster ("Leave cluster?"), every other run terminates it.
    for stage, following in zip(order, ["Stage 20?", "Stage 30?", "Leave cluster?"], strict=True):
        assert states[stage]["Type"] == "Parallel"
        assert states[stage]["Next"] == following
    branches = {stage: sorted(b["StartAt"] for b in states[stage]["Branches"]) for stage in order}
    assert branches == {
        "Stage 10": ["Run 10_events", "Run 10_users"],
        "Stage 20": ["Run 20_sessions"],
        "Stage 30": ["Run 30_funnel", "Run 30_segments"],
    }


def test_each_stage_is_skipped_when_from_stage_is_later(test_synth: Synthesis) -> None:
    states = definition_of(test_synth, "nightly")["States"]
    for number, following in zip((10, 20, 30), ["Stage 20?", "Stage 30?", "Leave cluster?"], strict=True):
        gate = states[f"Stage {number}?"]
        assert gate["Type"] == "Choice" and gate["Default"] == f"Stage {number}"
        assert gate["Choices"] == [
            # A checks-only run: nightly has no checks, so each stage is skipped entirely.
            {
                "And": [
                    {"Variable": "$.request.checks_only", "IsPresent": True},
                    {"Variable": "$.request.checks_only", "BooleanEquals": True},
                ],
                "Next": f"Skip Stage {number}",
            },
            {
                "And": [
                    {"Variable": "$.request.from_stage", "IsPresent": True},
                    {"Variable": "$.request.from_stage", "IsNumeric": True},
                    {"Variable": "$.request.from_stage", "NumericGreaterThan": number},
                ],
                "Next": f"Skip Stage {number}",
            },
        ]
        skip = states[f"Skip Stage {number}"]
        # A Pass that runs nothing: the cluster is still created before and terminated after.
        assert skip["Type"] == "Pass" and skip["Next"] == following
    # The input is kept whole, so that from_stage may be absent.
    assert states["PrepareRun"]["Parameters"]["request.$"] == "$$.Execution.Input"
    # A from_stage that is not a number fails the run before a cluster is made.
    invalid = states["Proceed?"]["Choices"][0]
    assert invalid["Next"] == "InvalidFromStage" and states["InvalidFromStage"]["Type"] == "Fail"
    assert invalid["And"][1] == {"Not": {"Variable": "$.request.from_stage", "IsNumeric": True}}


def test_state_machines_carry_the_tags_the_cli_finds_them_by(template: Template) -> None:
    for pipeline, logical in (("nightly", "RunnerLogsNightly"), ("adhoc", "RunnerLogsAdhoc")):
        template.has_resource_properties(
            "AWS::StepFunctions::StateMachine",
            {
                "StateMachineName": f"Nightshift-{pipeline}",
                "Tags": Match.array_with(
                    [
                        {"Key": "nightshift:pipeline", "Value": pipeline},
                        {"Key": "nightshift:runner-log-group", "Value": {"Ref": logical}},
                        {"Key": "nightshift:stack", "Value": "Nightshift"},
                    ]
                ),
            },
        )


def test_preflight_gets_the_run_date_and_the_pipelines_maximum(test_synth: Synthesis) -> None:
    for pipeline, maximum in (("nightly", 1), ("adhoc", 2)):
        payload = definition_of(test_synth, pipeline)["States"]["Preflight"]["Parameters"]["Payload"]
        assert payload["run_date.$"] == "$.run_date"
        assert payload["max_concurrent_runs"] == maximum, pipeline


def test_lifecycle_order(test_synth: Synthesis) -> None:
    definition = definition_of(test_synth, "nightly")
    states = definition["States"]
    assert definition["StartAt"] == "PrepareRun"
    # A batch and a date of a batch part from a night there (tests/infra/test_batch_synth.py).
    assert states["PrepareRun"]["Next"] == "Batch or date?"
    assert states["Batch or date?"]["Default"] == "Preflight"
    assert states["Preflight"]["Next"] == "Proceed?"
    assert states["Proceed?"]["Default"] == "Refused"
    assert states["Refused"]["Type"] == "Fail"
    assert [c["Next"] for c in states["Proceed?"]["Choices"]] == [
        "InvalidFromStage", "InvalidChecksOnly", "InvalidCanary", "PrepareCanary", "Given cluster?",
        "CountSlotWait",
    ]  # fmt: skip
    # Every slot taken: wait (no cluster) and ask again, every queue_poll_seconds (1 in the tests).
    assert states["CountSlotWait"]["Next"] == "WaitForSlot"
    assert states["WaitForSlot"] == {"Type": "Wait", "Seconds": 1, "Next": "Preflight"}
    assert states["Preflight"]["Parameters"]["Payload"]["queue_minutes"] == 240
    assert states["CreateCluster"]["Next"] == "WaitForCluster"
    assert states["WaitForCluster"] == {"Type": "Wait", "Seconds": 30, "Next": "ClusterStatus"}
    assert states["ClusterStatus"]["Next"] == "ClusterReady?"
    choices = {c["Next"] for c in states["ClusterReady?"]["Choices"]}
    assert choices == {
        canary_state_name(), "Stage 10?", "NextLaunch", "ClusterFailedToStart", "ClusterStartTimedOut",
        "Dates", "BatchClusterNotReady",  # a batch's dates; a date of a batch whose cluster is not ready
        "Stages command",  # a date of a batch: every stage in one runner task
    }  # fmt: skip
    assert states["ClusterReady?"]["Default"] == "CountPoll"
    assert states["CountPoll"]["Next"] == "WaitForCluster"
    # The overall start timeout: 30 minutes of 30-second polls.
    limit = next(c for c in states["ClusterReady?"]["Choices"] if c["Next"] == "ClusterStartTimedOut")
    assert limit == {
        "Variable": "$.cluster.polls",
        "NumericGreaterThanEquals": 60,
        "Next": "ClusterStartTimedOut",
    }
    assert states["TerminateCluster"]["Next"] == "RecordRun"
    # The run's record never changes its outcome: done or failed, RecordRun goes on to "Run failed?".
    assert states["RecordRun"]["Next"] == "Run failed?"
    assert states["RecordRun"]["Catch"] == [
        {"ErrorEquals": ["States.ALL"], "ResultPath": "$.run_record_error", "Next": "Run failed?"}
    ]
    assert states["RecordRun"]["ResultPath"] == "$.run_record"
    assert states["Run failed?"]["Default"] == "Succeeded"
    assert states["RunFailed"] == {"Type": "Fail", "ErrorPath": "$.error.Error", "CausePath": "$.error.Cause"}


def test_every_failure_goes_through_terminate_cluster(test_synth: Synthesis) -> None:
    states = definition_of(test_synth, "nightly")["States"]
    catching = [
        "Preflight", "CreateCluster", "ClusterStatus", "Stage 10", "Stage 20", "Stage 30", canary_state_name(),
        "Dates", "Run stages",
    ]  # fmt: skip
    # "Leave cluster?": a date of a batch leaves its batch's cluster, any other run terminates its own.
    assert states["Leave cluster?"]["Default"] == "TerminateCluster"
    for name in catching:
        assert states[name]["Catch"] == [
            {"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Leave cluster?"}
        ], name
    assert states["ClusterFailedToStart"]["Next"] == "Leave cluster?"
    assert states["ClusterStartTimedOut"]["Next"] == "Leave cluster?"
    assert states["TerminateFailedLaunch"]["Catch"][0]["Next"] == "Leave cluster?"
    catching.append("TerminateFailedLaunch")
    # Every task or Parallel outside the stages' branches is listed above or is the terminate itself.
    others = {n for n, s in states.items() if s["Type"] in ("Task", "Parallel")} - set(catching)
    assert others == {"TerminateCluster", "RecordRun"}


def test_retries_with_backoff(test_synth: Synthesis) -> None:
    states = definition_of(test_synth, "nightly")["States"]
    for name in ("Preflight", "CreateCluster", "ClusterStatus", "TerminateFailedLaunch", "TerminateCluster"):
        transient = states[name]["Retry"][0]
        assert "TransientAwsError" in transient["ErrorEquals"], name
        assert "Lambda.TooManyRequestsException" in transient["ErrorEquals"], name
        assert transient["BackoffRate"] == 2 and transient["MaxAttempts"] == 6, name
    assert states["TerminateCluster"]["Retry"][-1]["ErrorEquals"] == ["States.ALL"]


def test_run_step_is_fargate_runner_with_policy_from_pipeline_toml(test_synth: Synthesis) -> None:
    branch = next(b for b in definition_of(test_synth, "nightly")["States"]["Stage 10"]["Branches"]
                  if b["StartAt"] == "Run 10_users")  # fmt: skip
    run = branch["States"]["Run 10_users"]
    assert run["Resource"].endswith(":states:::ecs:runTask.sync")
    # The runner stops the step at timeout_minutes (exit 124); the task's timeout is its backstop.
    assert run["TimeoutSeconds"] == (45 + 10) * 60
    params = run["Parameters"]
    assert params["LaunchType"] == "FARGATE"
    assert params["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == SUBNETS
    # RunTask defaults to DISABLED; a public IP would be pointless in a private subnet.
    assert (
        params["NetworkConfiguration"]["AwsvpcConfiguration"].get("AssignPublicIp", "DISABLED") == "DISABLED"
    )
    override = params["Overrides"]["ContainerOverrides"][0]
    assert override["Command.$"] == (
        "States.Array('sql/nightly/10_users.sql', '--cluster-id', $.cluster.cluster_id, "
        "'--run-date', $.run_date, '--run-id', $$.Execution.Name, '--log-format', 'json')"
    )
    step_retry = next(r for r in run["Retry"] if r["ErrorEquals"] == ["States.TaskFailed"])
    assert step_retry["MaxAttempts"] == 2 and step_retry["IntervalSeconds"] == 30


def test_schedule_in_the_pipeline_time_zone(template: Template) -> None:
    template.resource_count_is("AWS::Scheduler::Schedule", 1)  # adhoc is enabled = false
    payload = Capture()
    template.has_resource_properties(
        "AWS::Scheduler::Schedule",
        {
            "ScheduleExpression": "cron(0 3 * * ? *)",
            "ScheduleExpressionTimezone": "Europe/Berlin",
            "State": "ENABLED",
            "Target": {"Input": payload},
        },
    )
    text = json.dumps(payload.as_object())
    assert "<aws.scheduler.scheduled-time>" in text
    assert "Europe/Berlin" in text and "nightly" in text


def test_awslogs_blocking_mode_and_log_group_per_pipeline(template: Template) -> None:
    template.has_resource_properties(
        "AWS::ECS::TaskDefinition",
        {
            "ContainerDefinitions": [
                Match.object_like(
                    {
                        "Name": "runner",
                        "LogConfiguration": {
                            "LogDriver": "awslogs",
                            "Options": Match.object_like(
                                {"mode": "blocking", "awslogs-stream-prefix": "nightly",
                                 "awslogs-group": {"Ref": "RunnerLogsNightly"}}
                            ),
                        },
                        "Secrets": [{"Name": "NIGHTSHIFT_SSH_PRIVATE_KEY", "ValueFrom": SECRET_ARN}],
                        "Environment": [{"Name": "AWS_REGION", "Value": {"Ref": "AWS::Region"}}],
                    }
                )
            ],
            "RequiresCompatibilities": ["FARGATE"],
        },
    )  # fmt: skip


def test_log_retention_everywhere(test_synth: Synthesis) -> None:
    groups = test_synth.resources("AWS::Logs::LogGroup")
    assert groups and all(g["Properties"].get("RetentionInDays") == 30 for g in groups.values())


def test_pinned_logical_ids_of_stateful_resources(test_synth: Synthesis) -> None:
    resources = test_synth.template["Resources"]
    assert resources["EmrLogBucket"]["Type"] == "AWS::S3::Bucket"
    assert resources["EmrLogBucket"]["DeletionPolicy"] == "Retain"
    for pipeline in ("Nightly", "Adhoc"):
        for prefix in ("RunnerLogs", "ExecutionLogs"):
            assert resources[f"{prefix}{pipeline}"]["Type"] == "AWS::Logs::LogGroup"
            assert resources[f"{prefix}{pipeline}"]["DeletionPolicy"] == "Retain"


def test_log_bucket_encrypted_tls_only_with_lifecycle(template: Template) -> None:
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {"ServerSideEncryptionConfiguration": [
                {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
            "LifecycleConfiguration": {"Rules": Match.array_with([Match.object_like({"ExpirationInDays": 90})])},
        },
    )  # fmt: skip
    template.has_resource_properties(
        "AWS::S3::BucketPolicy",
        {"PolicyDocument": {"Statement": Match.array_with([Match.object_like(
            {"Effect": "Deny", "Condition": {"Bool": {"aws:SecureTransport": "false"}}})])}},
    )  # fmt: skip


def test_ssh_only_from_the_runner(test_synth: Synthesis, template: Template) -> None:
    template.has_resource_properties(
        "AWS::EC2::SecurityGroupIngress",
        {
            "IpProtocol": "tcp",
            "FromPort": 22,
            "ToPort": 22,
            "GroupId": {"Fn::GetAtt": [Match.string_like_regexp("NetworkMasterSecurityGroup"), "GroupId"]},
            "SourceSecurityGroupId": {
                "Fn::GetAtt": [Match.string_like_regexp("NetworkRunnerSecurityGroup"), "GroupId"]
            },
        },
    )
    ssh = [r for r in test_synth.resources("AWS::EC2::SecurityGroupIngress").values()
           if r["Properties"].get("FromPort") == 22]  # fmt: skip
    assert len(ssh) == 1


@pytest.mark.parametrize("synth_name", ["test_synth", "repo_synth"])
def test_no_ingress_from_anywhere(synth_name: str, request: pytest.FixtureRequest) -> None:
    synth: Synthesis = request.getfixturevalue(synth_name)
    rules = [r["Properties"] for r in synth.resources("AWS::EC2::SecurityGroupIngress").values()]
    for group in synth.resources("AWS::EC2::SecurityGroup").values():
        rules += group["Properties"].get("SecurityGroupIngress", [])
    assert rules
    assert not [r for r in rules if r.get("CidrIp") == "0.0.0.0/0" or r.get("CidrIpv6") == "::/0"]


def test_lambdas_use_the_project_handlers_and_the_pinned_powertools_layer(template: Template) -> None:
    # The layer is the one AWS publishes for exactly the Powertools version the tests run with.
    pinned = re.search(
        r"aws-lambda-powertools\[[^]]*\]==([\d.]+)", (ROOT / "lambdas" / "requirements.txt").read_text()
    )
    assert pinned is not None
    parameters = template.find_parameters(
        "*", {"Default": f"/aws/service/powertools/python/x86_64/python3.12/{pinned[1]}"}
    )
    assert len(parameters) == 1
    for handler in ("preflight", "create_cluster", "cluster_status", "terminate_cluster", "sweeper"):
        template.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": f"lambdas.{handler}.handler",
                "Runtime": "python3.12",
                "Layers": [{"Ref": next(iter(parameters))}],
            },
        )


def test_alerts_on_failed_runs_with_sweeper_and_hourly_sweep(template: Template) -> None:
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.object_like({
                "source": ["aws.states"],
                "detail-type": ["Step Functions Execution Status Change"],
                "detail": Match.object_like({"status": ["FAILED", "TIMED_OUT", "ABORTED"]}),
            }),
            "Targets": Match.array_with([
                Match.object_like({"Arn": {"Fn::GetAtt": [Match.string_like_regexp("AlertsFormatter"), "Arn"]}}),
                Match.object_like({"Arn": {"Fn::GetAtt": [Match.string_like_regexp("ClusterLifecycleSweeper"), "Arn"]}}),
            ]),
        },
    )  # fmt: skip
    template.has_resource_properties(
        "AWS::Events::Rule",
        {"ScheduleExpression": "rate(1 hour)", "Targets": [Match.object_like(
            {"Arn": {"Fn::GetAtt": [Match.string_like_regexp("ClusterLifecycleSweeper"), "Arn"]}})]},
    )  # fmt: skip
    template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "data-team@example.com"}
    )


def test_instance_role_reads_and_writes_only_the_pipeline_paths(test_synth: Synthesis) -> None:
    policies = test_synth.resources("AWS::IAM::Policy")
    nightly = next(p for k, p in policies.items() if k.startswith("ClusterLifecycleNightlyInstanceRole"))
    text = json.dumps(nightly)
    assert 'arn:", {"Ref": "AWS::Partition"}, ":s3:::lake/raw/*' in text
    assert ":s3:::lake/curated/*" in text
    adhoc = next(p for k, p in policies.items() if k.startswith("ClusterLifecycleAdhocInstanceRole"))
    assert ":s3:::lake/raw/adhoc/*" in json.dumps(adhoc)
    assert "curated" not in json.dumps(adhoc)


@pytest.mark.parametrize("function", ["ClusterLifecycleSweeper", "SchedulesStartRun", "AlertsFormatter"])
def test_unwatched_functions_alarm_by_email_when_they_fail(template: Template, function: str) -> None:
    topic = template.find_resources("AWS::SNS::Topic")
    assert len(topic) == 1
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "MetricName": "Errors",
            "Namespace": "AWS/Lambda",
            "Threshold": 1,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": Match.string_like_regexp(function)}}],
            "AlarmActions": [{"Ref": next(iter(topic))}],
        },
    )


def _statements(test_synth: Synthesis, policy_prefix: str) -> list[dict]:
    policies = test_synth.resources("AWS::IAM::Policy")
    return [
        statement
        for key, policy in policies.items()
        if key.startswith(policy_prefix)
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_step_code_can_never_overwrite_a_host_key_pin(test_synth: Synthesis) -> None:
    for pipeline in ("Nightly", "Adhoc"):
        statements = _statements(test_synth, f"ClusterLifecycle{pipeline}InstanceRole")
        puts = [s for s in statements if "ssm:PutParameter" in _actions(s)]
        allow = [s for s in puts if s["Effect"] == "Allow"]
        deny = [s for s in puts if s["Effect"] == "Deny"]
        assert allow and deny, pipeline
        assert deny[0]["Condition"] == {"StringEquals": {"ssm:Overwrite": "true"}}
        assert deny[0]["Resource"] == allow[0]["Resource"]
        assert "/nightshift/host-keys/*" in json.dumps(deny[0]["Resource"]).replace('"', "")
        # Nothing else on the nodes may touch a pin.
        assert not [
            s
            for s in statements
            if any(a.startswith("ssm:") and a != "ssm:PutParameter" for a in _actions(s))
        ]


def test_create_cluster_may_tag_and_terminate_only_this_stacks_clusters(test_synth: Synthesis) -> None:
    statements = _statements(test_synth, "ClusterLifecycleCreateCluster")
    (add_tags,) = [s for s in statements if "elasticmapreduce:AddTags" in _actions(s)]
    assert _actions(add_tags) == ["elasticmapreduce:AddTags"]
    assert ":elasticmapreduce:" in json.dumps(add_tags["Resource"]) and add_tags["Resource"] != "*"
    assert add_tags["Condition"] == {
        "StringEquals": {
            "aws:RequestTag/nightshift:managed": "true",
            "aws:RequestTag/nightshift:stack": "Nightshift",
        },
        # AmazonEMRServicePolicy_v2's tag is the one key outside nightshift:* a cluster may carry.
        "ForAllValues:StringLike": {
            "aws:TagKeys": ["nightshift:*", "for-use-with-amazon-emr-managed-policies"]
        },
        "StringEqualsIfExists": {"aws:ResourceTag/nightshift:stack": "Nightshift"},
    }
    (run,) = [s for s in statements if "elasticmapreduce:RunJobFlow" in _actions(s)]
    assert run["Condition"]["StringEquals"]["aws:RequestTag/nightshift:stack"] == "Nightshift"
    for function in ("CreateCluster", "TerminateCluster", "Sweeper"):
        (terminate,) = [
            s
            for s in _statements(test_synth, f"ClusterLifecycle{function}")
            if "elasticmapreduce:TerminateJobFlows" in _actions(s)
        ]
        assert terminate["Condition"] == {
            "StringEquals": {
                "aws:ResourceTag/nightshift:managed": "true",
                "aws:ResourceTag/nightshift:stack": "Nightshift",
            }
        }, function


def test_lifecycle_functions_know_their_stack(template: Template) -> None:
    for handler in ("preflight", "create_cluster", "cluster_status", "terminate_cluster", "sweeper"):
        template.has_resource_properties(
            "AWS::Lambda::Function",
            {
                "Handler": f"lambdas.{handler}.handler",
                "Environment": {"Variables": Match.object_like({"NIGHTSHIFT_STACK": "Nightshift"})},
            },
        )


@pytest.mark.parametrize("synth_name", ["test_synth", "repo_synth"])
def test_every_log_group_is_encrypted_with_the_log_key(
    synth_name: str, request: pytest.FixtureRequest
) -> None:
    synth: Synthesis = request.getfixturevalue(synth_name)
    keys = {k for k, r in synth.resources("AWS::KMS::Key").items() if k.startswith("EncryptionLogKey")}
    assert len(keys) == 1
    groups = synth.resources("AWS::Logs::LogGroup")
    # Runner logs and execution logs per pipeline, and every Lambda's log group.
    assert len(groups) == 2 * len(synth.resources("AWS::StepFunctions::StateMachine")) + 8
    for name, group in groups.items():
        assert group["Properties"].get("KmsKeyId") == {"Fn::GetAtt": [next(iter(keys)), "Arn"]}, name


def test_only_cloudwatch_logs_of_this_account_may_use_the_log_key(test_synth: Synthesis) -> None:
    (key,) = [r for k, r in test_synth.resources("AWS::KMS::Key").items() if k.startswith("EncryptionLogKey")]
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    users = [s for s in statements if any(a.startswith("kms:Decrypt") for a in _actions(s))]
    (logs,) = users
    assert logs["Principal"] == {
        "Service": {"Fn::Join": ["", ["logs.", {"Ref": "AWS::Region"}, ".amazonaws.com"]]}
    }
    context = json.dumps(logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"])
    assert '{"Ref": "AWS::AccountId"}' in context and ":log-group:*" in context
    # The other statement is CDK's default: the account administers the key, it does not use it.
    (admin,) = [s for s in statements if s is not logs]
    assert _actions(admin) == ["kms:*"] and "root" in json.dumps(admin["Principal"])


def test_clusters_get_imdsv2_and_encrypted_local_disks(test_synth: Synthesis) -> None:
    (name, configuration) = next(iter(test_synth.resources("AWS::EMR::SecurityConfiguration").items()))
    settings = configuration["Properties"]["SecurityConfiguration"]
    assert settings["InstanceMetadataServiceConfiguration"] == {
        "MinimumInstanceMetadataServiceVersion": 2,
        "HttpPutResponseHopLimit": 1,
    }
    disks = settings["EncryptionConfiguration"]["AtRestEncryptionConfiguration"][
        "LocalDiskEncryptionConfiguration"
    ]
    assert disks["EncryptionKeyProviderType"] == "AwsKms" and disks["EnableEbsEncryption"] is True
    create = definition_of(test_synth, "nightly", lambda token: f"<{token.get('Ref', '')}>")["States"][
        "CreateCluster"
    ]
    assert create["Parameters"]["Payload"]["security_configuration"] == f"<{name}>"


def test_the_operators_policy_grants_exactly_what_the_cli_needs(
    test_synth: Synthesis, template: Template
) -> None:
    (logical,) = template.find_resources("AWS::IAM::ManagedPolicy", {}).keys() & {
        k for k in test_synth.template["Resources"] if k.startswith("OperatorsPolicy")
    }
    machines = sorted(test_synth.resources("AWS::StepFunctions::StateMachine"))
    executions = [
        {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":states:", {"Ref": "AWS::Region"}, ":",
                           {"Ref": "AWS::AccountId"}, f":execution:Nightshift-{pipeline}:*"]]}
        for pipeline in ("adhoc", "nightly")
    ]  # fmt: skip
    template.has_resource_properties(
        "AWS::IAM::ManagedPolicy",
        {
            "PolicyDocument": {
                "Version": "2012-10-17",
                # The run commands' statements; the --deployed --check reads follow (Sids Check*,
                # tests/deployed/test_check.py), each needed by a call (tests/infra/test_aws_iam_rules.py).
                "Statement": Match.array_with([
                    {
                        "Sid": "StartAndListRuns",
                        "Effect": "Allow",
                        "Action": ["states:ListExecutions", "states:StartExecution"],
                        "Resource": Match.array_equals([{"Ref": machine} for machine in machines]),
                    },
                    {
                        "Sid": "FollowAndStopRuns",
                        "Effect": "Allow",
                        "Action": [
                            "states:DescribeExecution",
                            "states:GetExecutionHistory",
                            "states:StopExecution",
                        ],
                        "Resource": executions,
                    },
                    {"Sid": "FindStateMachines", "Effect": "Allow", "Action": "states:ListStateMachines",
                     "Resource": "*"},
                    {
                        "Sid": "ReadStateMachineTags",
                        "Effect": "Allow",
                        "Action": "states:ListTagsForResource",
                        "Resource": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":states:",
                                                       {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                                                       ":stateMachine:*"]]},
                    },
                    {
                        "Sid": "ReadStepOutput",
                        "Effect": "Allow",
                        "Action": "logs:GetLogEvents",
                        "Resource": [{"Fn::GetAtt": ["RunnerLogsAdhoc", "Arn"]},
                                     {"Fn::GetAtt": ["RunnerLogsNightly", "Arn"]}],
                    },
                    {"Sid": "ListClusters", "Effect": "Allow", "Action": "elasticmapreduce:ListClusters",
                     "Resource": "*"},
                    {
                        "Sid": "DescribeAndTerminateThisStacksClusters",
                        "Effect": "Allow",
                        "Action": ["elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows"],
                        "Resource": {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, ":elasticmapreduce:",
                                                       {"Ref": "AWS::Region"}, ":", {"Ref": "AWS::AccountId"},
                                                       ":cluster/*"]]},
                        "Condition": {"StringEquals": {"aws:ResourceTag/nightshift:managed": "true",
                                                       "aws:ResourceTag/nightshift:stack": "Nightshift"}},
                    },
                ]),
            }
        },
    )  # fmt: skip
    statements = test_synth.template["Resources"][logical]["Properties"]["PolicyDocument"]["Statement"]
    assert all(s["Sid"].startswith("Check") for s in statements[7:]), [s["Sid"] for s in statements]
    # Attached to nobody by the stack: the operators' users or roles get it (docs/infra.md).
    assert not {"Users", "Roles", "Groups"} & set(test_synth.template["Resources"][logical]["Properties"])
    template.has_output("OperatorsPolicyArn", {"Value": {"Ref": logical}})
