"""Alerts: an e-mail naming the failing step for every failed run, and the sweeper on the same events."""

from __future__ import annotations

from aws_cdk import Aws, Duration, Stack, TimeZone
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as events_targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as scheduler_targets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.lambda_code import small_function
from infra.nag import arn_finding, suppress
from infra.schedules import scheduler_principal
from lambdas.shared.stack import PIPELINES_VARIABLE, TOPIC_VARIABLE
from runner.config import Schedule

ALERT_STATUSES = ["FAILED", "TIMED_OUT", "ABORTED"]


class Alerts(Construct):
    """SNS topic with the e-mail subscription, the failure rule, and the hourly sweep."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        email: str,
        sweeper: lambda_.IFunction,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
        key: kms.IKey,
        dead_letters: sqs.IQueue,
        state_machine_prefix: str,
    ) -> None:
        super().__init__(scope, construct_id)
        # The key's policy lets CloudWatch use it; an AWS managed key would silence every alarm.
        self.topic = sns.Topic(
            self, "Topic", display_name="Nightshift alerts", enforce_ssl=True, master_key=key
        )
        alarms = f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:*"
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOfThisAccountPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "ArnLike": {"aws:SourceArn": alarms},
                    "StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID},
                },
            )
        )
        self.topic.add_subscription(subscriptions.EmailSubscription(email))
        # The late checks' schedules share StartRun's dead-letter queue (and so its alarm).
        self._dead_letters = (dead_letters, key)
        self._layer = layer
        self.formatter = self._build_formatter(code, log_retention, log_key, state_machine_prefix)
        # The late check (one function for every pipeline with an expected_by) is made on first use.
        self._late_check_settings = (code, log_retention, log_key, state_machine_prefix)
        self._late_check: tuple[lambda_.Function, iam.Role] | None = None
        self._grant_publish(self.formatter)
        self._pipelines: dict[str, list[str]] = {}
        self.failure_rule = events.Rule(
            self,
            "RunFailed",
            description="A Nightshift run failed, timed out or was aborted",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "status": ALERT_STATUSES,
                    "stateMachineArn": events.Match.prefix(
                        f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:stateMachine:{state_machine_prefix}"
                    ),
                },
            ),
            targets=[
                events_targets.LambdaFunction(self.formatter, retry_attempts=4),
                events_targets.LambdaFunction(sweeper, retry_attempts=4),
            ],
        )
        self.hourly_sweep = events.Rule(
            self,
            "HourlySweep",
            description="Terminate Nightshift clusters whose run is over",
            schedule=events.Schedule.rate(Duration.hours(1)),
            targets=[events_targets.LambdaFunction(sweeper, retry_attempts=2)],
        )

    def alarm_on_errors(self, construct_id: str, function: lambda_.IFunction, what: str) -> cloudwatch.Alarm:
        """E-mail when a function outside any execution fails; nobody would notice otherwise."""
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=f"Nightshift: {what} failed; check its log group",
            metric=function.metric_errors(period=Duration.hours(1), statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        return alarm

    def alarm_on_queue(self, construct_id: str, queue: sqs.IQueue, what: str) -> cloudwatch.Alarm:
        """E-mail when a message waits in a queue of failures; in alarm until the queue is drained."""
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=f"Nightshift: {what} failed; its queue holds why (docs/infra.md)",
            metric=queue.metric_approximate_number_of_messages_visible(
                period=Duration.minutes(5), statistic="Maximum"
            ),
            threshold=0,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        return alarm

    def _grant_publish(self, function: lambda_.IFunction) -> None:
        self.topic.grant_publish(function)
        suppress(
            function,
            "AwsSolutions-IAM5",
            "Publishing to a topic encrypted with the alert key needs data keys of that one key "
            "(kms:GenerateDataKey*, as the SNS developer guide's key policy grants).",
            applies_to=["Action::kms:GenerateDataKey*"],
        )

    def notify_successes(self, pipeline_id: str, state_machine: sfn.IStateMachine) -> events.Rule:
        """pipeline.toml notify = "always": a short e-mail for each successful run too (the same topic)."""
        return events.Rule(
            self,
            f"{pipeline_id}Succeeded",
            description='A Nightshift run succeeded (notify = "always")',
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={"status": ["SUCCEEDED"], "stateMachineArn": [state_machine.state_machine_arn]},
            ),
            targets=[events_targets.LambdaFunction(self.formatter, retry_attempts=4)],
        )

    def add_late_check(
        self, pipeline: str, pipeline_id: str, schedule: Schedule, state_machine: sfn.IStateMachine
    ) -> scheduler.Schedule:
        """[schedule] expected_by: at that local time, one e-mail unless the date's run has succeeded.

        Scheduler fires at the local time in the pipeline's IANA time zone, so across a daylight
        saving change the check stays at expected_by local time (its UTC time moves by an hour).
        """
        function, role = self._late_check_function()
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:ListExecutions"], resources=[state_machine.state_machine_arn]
            )
        )
        hour, minute = (int(part) for part in (schedule.expected_by or "").split(":"))
        return scheduler.Schedule(
            self,
            f"{pipeline_id}LateCheck",
            description=f"Nightshift {pipeline}: succeeded by {schedule.expected_by} ({schedule.timezone})?",
            schedule=scheduler.ScheduleExpression.expression(
                f"cron({minute} {hour} * * ? *)", TimeZone.of(schedule.timezone)
            ),
            target=scheduler_targets.LambdaInvoke(
                function,
                input=scheduler.ScheduleTargetInput.from_object(
                    {
                        "pipeline": pipeline,
                        "state_machine_arn": state_machine.state_machine_arn,
                        "timezone": schedule.timezone,
                        "expected_by": schedule.expected_by,
                        "scheduled_time": scheduler.ContextAttribute.scheduled_time,
                    }
                ),
                role=role,
                # A retry after a publish would send the alert twice; a lost check costs only the alert.
                retry_attempts=1,
                max_event_age=Duration.hours(1),
                dead_letter_queue=self._dead_letters[0],
            ),
        )

    def _late_check_function(self) -> tuple[lambda_.Function, iam.Role]:
        if self._late_check is not None:
            return self._late_check
        code, log_retention, log_key, prefix = self._late_check_settings
        function = small_function(
            self,
            "LateCheck",
            code=code,
            layer=self._layer,
            handler="lambdas.late_check.handler",
            log_retention=log_retention,
            log_key=log_key,
            environment={TOPIC_VARIABLE: self.topic.topic_arn},
        )
        self._grant_publish(function)
        executions = f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{prefix}*"
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:DescribeExecution", "states:GetExecutionHistory"], resources=[executions]
            )
        )
        suppress(
            function,
            "AwsSolutions-IAM5",
            "Execution ARNs exist only at run time; scoped to the executions of this stack's state machines.",
            applies_to=[
                f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{prefix}*"
            ],
        )
        role = iam.Role(self, "LateCheckSchedulerRole", assumed_by=scheduler_principal(self))
        # The target grants sqs:SendMessage on the dead-letter queue, not the key it is encrypted with.
        self._dead_letters[1].grant(role, "kms:GenerateDataKey", "kms:Decrypt")
        suppress(
            role,
            "AwsSolutions-IAM5",
            "The Scheduler target grants invoke on LateCheck and its versions (function:*), nothing else.",
            applies_to=[arn_finding(function, ":*")],
        )
        self.alarm_on_errors("LateCheckFailed", function, "the late-run check")
        self._late_check = (function, role)
        return self._late_check

    def add_pipeline(
        self, state_machine_name: str, pipeline: str, log_group: logs.ILogGroup, container: str
    ) -> None:
        """Tell the formatter where a pipeline's step logs are: the failing step's link, the failed checks.

        A failed checks task's results are read from its stream (GetLogEvents on this log group only).
        """
        self._pipelines[state_machine_name] = [pipeline, log_group.log_group_name, container]
        log_group.grant(self.formatter, "logs:GetLogEvents")
        self.formatter.add_environment(PIPELINES_VARIABLE, Stack.of(self).to_json_string(self._pipelines))

    def _build_formatter(
        self,
        code: lambda_.Code,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
        state_machine_prefix: str,
    ) -> lambda_.Function:
        function = small_function(
            self,
            "Formatter",
            code=code,
            layer=self._layer,
            handler="lambdas.alert.handler",
            log_retention=log_retention,
            log_key=log_key,
            environment={TOPIC_VARIABLE: self.topic.topic_arn, PIPELINES_VARIABLE: "{}"},
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["states:GetExecutionHistory"],
                resources=[
                    f"arn:{Aws.PARTITION}:states:{Aws.REGION}:{Aws.ACCOUNT_ID}:execution:{state_machine_prefix}*"
                ],
            )
        )
        suppress(
            function,
            "AwsSolutions-IAM5",
            "Execution ARNs exist only at run time; scoped to the executions of this stack's state machines.",
            applies_to=[
                f"Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:{state_machine_prefix}*"
            ],
        )
        return function
