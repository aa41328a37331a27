"""Nightly schedules: EventBridge Scheduler in the pipeline's own time zone, starting one run per date."""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack, TimeZone
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_destinations as destinations
from aws_cdk import aws_logs as logs
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_scheduler_targets as targets
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from infra.lambda_code import small_function
from infra.nag import arn_finding, suppress
from runner.config import Schedule
from runner.schedule import to_eventbridge

SCHEDULER_SERVICE = "scheduler.amazonaws.com"
# The group a schedule is in when it names none (CreateSchedule, EventBridge Scheduler API Reference).
SCHEDULE_GROUP = "default"


def scheduler_principal(scope: Construct) -> iam.ServicePrincipal:
    """EventBridge Scheduler on behalf of this stack's schedule group only: every schedule role's trust.

    The source conditions keep the service from acting with the role for a schedule of another account
    or of another group (the confused deputy). Scheduler sends the schedule group's ARN as
    aws:SourceArn, never the schedule's ("Confused deputy prevention in EventBridge Scheduler",
    EventBridge Scheduler User Guide).
    """
    stack = Stack.of(scope)
    return iam.ServicePrincipal(
        SCHEDULER_SERVICE,
        conditions={
            "StringEquals": {"aws:SourceAccount": stack.account},
            "ArnEquals": {"aws:SourceArn": schedule_group_arn(stack)},
        },
    )


def schedule_group_arn(stack: Stack) -> str:
    """The group every schedule of the stack is in: Scheduler's default, as none names another."""
    return stack.format_arn(
        service="scheduler",
        resource="schedule-group",
        resource_name=SCHEDULE_GROUP,
        arn_format=ArnFormat.SLASH_RESOURCE_NAME,
    )


class Schedules(Construct):
    """A StartRun Lambda shared by all pipelines, and one Scheduler schedule per scheduled pipeline.

    Scheduler only knows the scheduled time in UTC; StartRun turns it into the run date in the
    pipeline's time zone and starts execution `<pipeline>-<run_date>`, so a date runs at most once.
    A start that fails for good (Scheduler could not invoke StartRun, or StartRun failed its last
    asynchronous attempt) leaves a message in ``failed_starts``, which the stack alarms on.
    """

    # Scheduler's attempts to hand the event to Lambda (throttling, a missing function); StartRun's
    # own failures are Lambda's asynchronous retries (idempotent: one execution name per date).
    SCHEDULER_RETRY_ATTEMPTS = 3
    START_RUN_RETRY_ATTEMPTS = 2

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: lambda_.Code,
        layer: lambda_.ILayerVersion,
        log_retention: logs.RetentionDays,
        log_key: kms.IKey,
        alert_key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        self.failed_starts = self._failed_starts_queue(alert_key)
        self.start_run = small_function(
            self,
            "StartRun",
            code=code,
            layer=layer,
            handler="lambdas.start_run.handler",
            log_retention=log_retention,
            log_key=log_key,
        )
        # Lambda sends the failed event with the function's own role (granted by the destination).
        self.start_run.configure_async_invoke(
            on_failure=destinations.SqsDestination(self.failed_starts),
            retry_attempts=self.START_RUN_RETRY_ATTEMPTS,
            max_event_age=Duration.hours(1),
        )
        suppress(
            self.start_run,
            "AwsSolutions-IAM5",
            "Sending to a queue encrypted with the alert key: KMS's own action families for that one key.",
            applies_to=["Action::kms:ReEncrypt*", "Action::kms:GenerateDataKey*"],
        )
        # Our own role, in this construct, rather than one the target would add to the stack.
        self.role = iam.Role(self, "SchedulerRole", assumed_by=scheduler_principal(self))
        suppress(
            self.role,
            "AwsSolutions-IAM5",
            "The Scheduler target grants invoke on StartRun and its versions (function:*), nothing else.",
            applies_to=[arn_finding(self.start_run, ":*")],
        )
        # The target grants sqs:SendMessage on the dead-letter queue, but not the key it is
        # encrypted with, which a producer of an SSE-KMS queue needs (SQS developer guide).
        alert_key.grant(self.role, "kms:GenerateDataKey", "kms:Decrypt")

    def _failed_starts_queue(self, key: kms.IKey) -> sqs.Queue:
        queue = sqs.Queue(
            self,
            "FailedStarts",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            # SQS's longest: time to read why a night did not start, long after the alarm.
            retention_period=Duration.days(14),
        )
        reason = "This queue is itself the dead-letter queue of the schedules and of StartRun."
        suppress(queue, "AwsSolutions-SQS3", reason)
        return queue

    def add(
        self, pipeline: str, pipeline_id: str, schedule: Schedule, state_machine: sfn.IStateMachine
    ) -> scheduler.Schedule:
        """Fire StartRun at the pipeline's cron in its IANA time zone."""
        state_machine.grant_start_execution(self.start_run)
        return scheduler.Schedule(
            self,
            f"{pipeline_id}Schedule",
            description=f"Nightshift pipeline {pipeline}: {schedule.cron} ({schedule.timezone})",
            schedule=scheduler.ScheduleExpression.expression(
                to_eventbridge(schedule.cron), TimeZone.of(schedule.timezone)
            ),
            target=targets.LambdaInvoke(
                self.start_run,
                input=scheduler.ScheduleTargetInput.from_object(
                    {
                        "pipeline": pipeline,
                        "state_machine_arn": state_machine.state_machine_arn,
                        "timezone": schedule.timezone,
                        "scheduled_time": scheduler.ContextAttribute.scheduled_time,
                    }
                ),
                role=self.role,
                retry_attempts=self.SCHEDULER_RETRY_ATTEMPTS,
                max_event_age=Duration.hours(1),
                dead_letter_queue=self.failed_starts,
            ),
        )
