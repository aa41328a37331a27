"""Every AWS call each deployed role makes, with its resource and request context: what IAM must allow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# Here, not in infra/ or lambdas/: the IAM tests read it against the synthesized template, and the
# deployment check (runner, which never imports infra or lambdas) against AWS's own policy simulator.
#
# Resources and context values are templates. Their fields are filled per deployment:
#   partition, region, account, stack                  the stack's environment and name
#   cluster, execution, state_machine                  a run's cluster ARN, execution and state machine
#   host_key                                           the host-key parameter ARN of a cluster
#   read_bucket, read_prefix, write_bucket, write_prefix   one pipeline's data_access paths
#   log_bucket, bootstrap_object, disk_key             the EMR log bucket, bootstrap script, disk key ARN
#   instance_role, service_role                        the pipeline's instance role, the EMR service role
#   subnet, security_group, key_pair                   what the cluster launches into
#   runner_log_group, ssh_secret                       the runner task's log group and SSH key secret
#   database, table                                    one of the pipeline's catalog databases, a table
#   function_log_group                                 the calling Lambda's own log group (per role)
#   start_run_function, late_check_function            the functions the schedules invoke
#   preflight_function, create_cluster_function, cluster_status_function,
#   terminate_cluster_function, record_run_function    the functions a state machine invokes
#   check_inputs_function                              the input gate's function (a pipeline with [inputs])
#   failed_starts, alert_key, alert_topic              the failed-starts queue, the alert key, the topic
#   ecs_cluster, task_definition                       the runner's ECS cluster, its task definition
#   task_role, task_execution_role                     the runner task's two roles
#   pipeline                                           the pipeline's folder name
#   image_repository                                   the ECR repository of the runner image (CDK's assets)

CREATE_CLUSTER = "CreateCluster"
CLUSTER_STATUS = "ClusterStatus"
TERMINATE_CLUSTER = "TerminateCluster"
PREFLIGHT = "Preflight"
RECORD_RUN = "RecordRun"
CHECK_INPUTS = "CheckInputs"
SWEEPER = "Sweeper"
RUNNER_TASK = "RunnerTask"
RUNNER_TASK_EXECUTION = "RunnerTaskExecution"
INSTANCE_ROLE = "InstanceRole"
EMR_SERVICE_ROLE = "EmrServiceRole"
ROLES: tuple[str, ...] = (
    CREATE_CLUSTER,
    CLUSTER_STATUS,
    TERMINATE_CLUSTER,
    PREFLIGHT,
    RECORD_RUN,
    CHECK_INPUTS,
    SWEEPER,
    RUNNER_TASK,
    RUNNER_TASK_EXECUTION,
    INSTANCE_ROLE,
    EMR_SERVICE_ROLE,
)
# The roles outside the lifecycle: the schedules' and alerts' Lambdas, Scheduler's roles, the state
# machine's role, and the operators' policy (what the CLI's --deployed mode calls).
START_RUN = "StartRun"
ALERT_FORMATTER = "AlertFormatter"
LATE_CHECK = "LateCheck"
START_RUN_SCHEDULE = "StartRunSchedule"
LATE_CHECK_SCHEDULE = "LateCheckSchedule"
STATE_MACHINE = "StateMachine"
OPERATORS = "Operators"
#: the same operators' policy, as `--deployed --check` uses it (its statements' Sids start with "Check")
OPERATORS_CHECK = "OperatorsCheck"
ROLES = (
    *ROLES,
    OPERATORS_CHECK,
    START_RUN,
    ALERT_FORMATTER,
    LATE_CHECK,
    START_RUN_SCHEDULE,
    LATE_CHECK_SCHEDULE,
    STATE_MACHINE,
    OPERATORS,
)

#: The user tag AmazonEMRServicePolicy_v2 requires on the cluster (EMR propagates it to the
#: launch templates, instances and volumes it makes) and on the subnets and security groups it uses.
EMR_MANAGED_POLICY_TAG = ("for-use-with-amazon-emr-managed-policies", "true")
EMR_SERVICE = "elasticmapreduce.amazonaws.com"
EMR_CLEANUP_ROLE = (
    "arn:{partition}:iam::{account}:role/aws-service-role/"
    "elasticmapreduce.amazonaws.com/AWSServiceRoleForEMRCleanup"
)

Tags = Literal["request", "resource"]


@dataclass(frozen=True)
class Call:
    """One call as IAM authorizes it: who makes it, the action, one resource, the context keys."""

    role: str
    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()
    #: the cluster's tags ride on the call: as aws:RequestTag/* and aws:TagKeys ("request"), or as the
    #: resource's aws:ResourceTag/* ("resource": EMR propagated them to what it made)
    cluster_tags: Tags | None = None
    #: the resource is one the deployment names (subnet, security_group): its own tags apply
    tagged: str | None = None
    #: only a pipeline with [inputs] makes it: the input gate (CheckInputs, and the state machine invoking it)
    gated: bool = False
    why: str = ""


EMR = "arn:{partition}:elasticmapreduce:{region}:{account}"
EC2 = "arn:{partition}:ec2:{region}:{account}"
S3 = "arn:{partition}:s3:::"
CLUSTER = EMR + ":cluster/{cluster}"


def _each(role: str, actions: tuple[str, ...], resource: str, **extra: object) -> tuple[Call, ...]:
    return tuple(Call(role, action, resource, **extra) for action in actions)  # type: ignore[arg-type]


_FIND_CLUSTERS = ("elasticmapreduce:ListClusters",)
_TERMINATE = ("elasticmapreduce:SetTerminationProtection", "elasticmapreduce:TerminateJobFlows")


def _lifecycle() -> tuple[Call, ...]:
    calls: list[Call] = []
    for role in (PREFLIGHT, CREATE_CLUSTER, TERMINATE_CLUSTER, SWEEPER, RECORD_RUN):
        calls.append(Call(role, "elasticmapreduce:ListClusters", "*", why="find a run's clusters by tag"))
    for role in (PREFLIGHT, CREATE_CLUSTER, CLUSTER_STATUS, TERMINATE_CLUSTER, SWEEPER, RECORD_RUN):
        calls.append(
            Call(role, "elasticmapreduce:DescribeCluster", CLUSTER, why="a cluster's state and tags")
        )
    for role in (CREATE_CLUSTER, TERMINATE_CLUSTER, SWEEPER):
        calls += _each(role, _TERMINATE, CLUSTER, cluster_tags="resource", why="end a cluster of this stack")
    for role in (TERMINATE_CLUSTER, SWEEPER):
        calls.append(Call(role, "ssm:DeleteParameter", "{host_key}", why="unpin a terminated master's keys"))
    calls += [
        Call(PREFLIGHT, "states:ListExecutions", "{state_machine}", why="the pipeline's running dates"),
        Call(PREFLIGHT, "states:DescribeExecution", "{execution}", why="a running execution's run date"),
        Call(SWEEPER, "states:DescribeExecution", "{execution}", why="is the cluster's execution over?"),
        Call(RECORD_RUN, "states:GetExecutionHistory", "{execution}", why="the run's durations"),
        Call(RECORD_RUN, "states:DescribeExecution", "{execution}", why="a batch's dates: status, seconds"),
        Call(RECORD_RUN, "logs:GetLogEvents", "{runner_log_group}", why="checks' results, error lines"),
        *_each(
            RECORD_RUN,
            (
                "elasticmapreduce:ListInstances",
                "elasticmapreduce:ListInstanceFleets",
                "elasticmapreduce:ListInstanceGroups",
            ),
            CLUSTER,
            why="what the run's clusters cost",
        ),
        Call(
            CREATE_CLUSTER,
            "elasticmapreduce:RunJobFlow",
            "*",
            cluster_tags="request",
            why="launch the run's cluster, tagged",
        ),
        Call(
            CREATE_CLUSTER,
            "elasticmapreduce:AddTags",
            CLUSTER,
            cluster_tags="request",
            why="tags on RunJobFlow are authorized as AddTags",
        ),
        *(
            Call(
                CREATE_CLUSTER,
                "iam:PassRole",
                role,
                (("iam:PassedToService", EMR_SERVICE),),
                why="RunJobFlow passes the service role and the instance profile's role to EMR",
            )
            for role in ("{service_role}", "{instance_role}")
        ),
        Call(
            CREATE_CLUSTER,
            "iam:CreateServiceLinkedRole",
            EMR_CLEANUP_ROLE,
            (("iam:AWSServiceName", EMR_SERVICE),),
            why="a fresh account's first RunJobFlow creates AWSServiceRoleForEMRCleanup",
        ),
        Call(
            CHECK_INPUTS,
            "s3:ListBucket",
            S3 + "{read_bucket}",
            (("s3:prefix", "{read_prefix}_SUCCESS"),),
            gated=True,
            why="is the input there?",
        ),
    ]
    return tuple(calls)


def _runner() -> tuple[Call, ...]:
    return (
        Call(RUNNER_TASK, "elasticmapreduce:DescribeCluster", CLUSTER, why="the master's address"),
        Call(RUNNER_TASK, "elasticmapreduce:ListInstances", CLUSTER, why="the master's private address"),
        Call(RUNNER_TASK, "ssm:GetParameter", "{host_key}", why="the master's published host key"),
        Call(RUNNER_TASK_EXECUTION, "secretsmanager:GetSecretValue", "{ssh_secret}", why="the SSH key"),
        *_each(
            RUNNER_TASK_EXECUTION,
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            "{runner_log_group}",
            why="the awslogs driver writes the step's output",
        ),
    )


def _instance_role() -> tuple[Call, ...]:
    read = S3 + "{read_bucket}"
    write = S3 + "{write_bucket}"
    return (
        # HeadBucket is authorized as s3:ListBucket with no prefix; EMRFS and S3A probe the bucket.
        Call(INSTANCE_ROLE, "s3:ListBucket", read, why="HeadBucket of a data bucket"),
        Call(INSTANCE_ROLE, "s3:ListBucket", read, (("s3:prefix", "{read_prefix}"),), why="list an input"),
        Call(INSTANCE_ROLE, "s3:GetBucketLocation", read, why="EMRFS finds the bucket's region"),
        Call(INSTANCE_ROLE, "s3:GetObject", read + "/{read_prefix}part-00000", why="read an input"),
        Call(INSTANCE_ROLE, "s3:ListBucket", write, (("s3:prefix", "{write_prefix}"),), why="list an output"),
        Call(INSTANCE_ROLE, "s3:ListBucket", write, why="HeadBucket of an output bucket"),
        # The committers list and abort a job's pending multipart uploads (bucket-level, no prefix).
        Call(INSTANCE_ROLE, "s3:ListBucketMultipartUploads", write, why="the committers' pending uploads"),
        *_each(
            INSTANCE_ROLE,
            (
                "s3:GetObject",
                "s3:PutObject",
                "s3:DeleteObject",
                "s3:AbortMultipartUpload",
                "s3:ListMultipartUploadParts",
            ),
            write + "/{write_prefix}part-00000",
            why="write an output",
        ),
        Call(INSTANCE_ROLE, "s3:PutObject", S3 + "{log_bucket}/emr/j-1/node/i-1/applications.gz", why="logs"),
        Call(INSTANCE_ROLE, "s3:GetObject", "{bootstrap_object}", why="the bootstrap action's script"),
        Call(
            INSTANCE_ROLE,
            "ssm:PutParameter",
            "{host_key}",
            (("ssm:Overwrite", "false"),),
            why="the master publishes its host keys",
        ),
        *_each(
            INSTANCE_ROLE,
            ("kms:Decrypt", "kms:GenerateDataKey"),
            "{disk_key}",
            why="local disk encryption on the nodes",
        ),
    )


GLUE = "arn:{partition}:glue:{region}:{account}"
# What the Hive and Spark Glue catalog clients call for a pipeline's tables; Glue authorizes each
# call on the catalog, the database and (for table calls) the table.
_TABLE_CALLS = (
    "glue:GetTable",
    "glue:GetTables",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:DeleteTable",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
    "glue:CreatePartition",
    "glue:BatchCreatePartition",
    "glue:DeletePartition",
)


def _catalog() -> tuple[Call, ...]:
    tables = tuple(
        Call(INSTANCE_ROLE, action, GLUE + resource, why="a step's tables in the pipeline's database")
        for action in _TABLE_CALLS
        for resource in (":catalog", ":database/{database}", ":table/{database}/{table}")
    )
    databases = tuple(
        Call(INSTANCE_ROLE, "glue:GetDatabase", GLUE + resource, why="the client looks up databases")
        for resource in (":catalog", ":database/{database}", ":database/default")
    )
    return (*tables, *databases)


# The EC2 calls EMR makes with the service role to launch a cluster of instance fleets, as
# AmazonEMRServicePolicy_v2 authorizes them: the launch template and instances carry the
# cluster's tags (EMR propagates them), the subnet and security groups carry their own.
_LAUNCH = ("ec2:CreateLaunchTemplate", "ec2:CreateFleet", "ec2:RunInstances")


def _emr_service_role() -> tuple[Call, ...]:
    calls: list[Call] = [
        Call(
            EMR_SERVICE_ROLE,
            "ec2:CreateLaunchTemplate",
            EC2 + ":launch-template/*",
            cluster_tags="request",
            why="a launch template per fleet, tagged like the cluster",
        ),
        *(
            Call(
                EMR_SERVICE_ROLE,
                action,
                EC2 + ":launch-template/lt-1",
                cluster_tags="resource",
                why="launch from EMR's launch template",
            )
            for action in ("ec2:CreateFleet", "ec2:RunInstances")
        ),
        *(
            Call(
                EMR_SERVICE_ROLE,
                action,
                EC2 + f":{kind}/*",
                cluster_tags="request",
                why="instances and their volumes, tagged like the cluster",
            )
            for action in ("ec2:CreateFleet", "ec2:RunInstances")
            for kind in ("instance", "volume")
        ),
        *(
            Call(
                EMR_SERVICE_ROLE, action, EC2 + resource, tagged=tagged, why="launch into the stack's network"
            )
            for action in _LAUNCH
            for resource, tagged in (
                (":subnet/{subnet}", "subnet"),
                (":security-group/{security_group}", "security_group"),
            )
        ),
        *(
            Call(EMR_SERVICE_ROLE, action, resource, why="what an instance launches with")
            for action in ("ec2:CreateFleet", "ec2:RunInstances")
            for resource in (
                EC2 + ":network-interface/*",
                "arn:{partition}:ec2:{region}::image/ami-0123456789abcdef0",
                EC2 + ":key-pair/{key_pair}",
            )
        ),
        *(
            Call(
                EMR_SERVICE_ROLE,
                "ec2:CreateTags",
                EC2 + f":{kind}/*",
                (("ec2:CreateAction", create),),
                why="tag on create",
            )
            for kind, create in (
                ("launch-template", "CreateLaunchTemplate"),
                ("instance", "CreateFleet"),
                ("volume", "RunInstances"),
            )
        ),
        *(
            Call(EMR_SERVICE_ROLE, action, EC2 + f":{kind}/*", cluster_tags="resource", why="end the cluster")
            for action, kind in (
                ("ec2:TerminateInstances", "instance"),
                ("ec2:DeleteLaunchTemplate", "launch-template"),
            )
        ),
        Call(
            EMR_SERVICE_ROLE,
            "ec2:AuthorizeSecurityGroupIngress",
            EC2 + ":security-group/{security_group}",
            tagged="security_group",
            why="EMR manages the rules of its managed security groups",
        ),
        *_each(
            EMR_SERVICE_ROLE,
            (
                "ec2:DescribeSubnets",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeInstances",
                "ec2:DescribeImages",
            ),
            "*",
            why="EMR checks the network and its instances",
        ),
        Call(
            EMR_SERVICE_ROLE,
            "iam:PassRole",
            "{instance_role}",
            (("iam:PassedToService", "ec2.amazonaws.com"),),
            why="instances launch with the pipeline's instance profile",
        ),
        # Encrypted EBS volumes with the disk key: the principal that launches them needs these
        # (EBS User Guide, "Permissions for IAM users"): CreateGrant only for an AWS resource.
        Call(
            EMR_SERVICE_ROLE,
            "kms:CreateGrant",
            "{disk_key}",
            (("kms:GrantIsForAWSResource", "true"),),
            why="EBS takes a grant on the disk key",
        ),
        *_each(
            EMR_SERVICE_ROLE,
            (
                "kms:Decrypt",
                "kms:DescribeKey",
                "kms:GenerateDataKeyWithoutPlaintext",
                "kms:ReEncryptFrom",
                "kms:ReEncryptTo",
            ),
            "{disk_key}",
            why="encrypted EBS volumes with the disk key",
        ),
    ]
    return tuple(calls)


LAMBDA = "arn:{partition}:lambda:{region}:{account}:function:"
STREAM = "{function_log_group}:log-stream:2025/06/01/[$LATEST]0123456789abcdef"
ECS = "arn:{partition}:ecs:{region}:{account}"
#: The EventBridge rule Step Functions manages in the account for every .sync ECS task it waits on.
ECS_SYNC_RULE = "arn:{partition}:events:{region}:{account}:rule/StepFunctionsGetEventsForECSTaskRule"
STATES_SYNC_RULE = (
    "arn:{partition}:events:{region}:{account}:rule/StepFunctionsGetEventsForStepFunctionsExecutionRule"
)
ECS_TASKS_SERVICE = "ecs-tasks.amazonaws.com"


def _lambda_logs(role: str) -> tuple[Call, ...]:
    """What the Lambda service writes with the function's role: its output in its own log group."""
    return _each(role, ("logs:CreateLogStream", "logs:PutLogEvents"), STREAM, why="the function's own log")


def _to_queue(role: str, why: str) -> tuple[Call, ...]:
    """A message to the failed-starts queue, encrypted with the alert key.

    SQS asks KMS for the data key in the sender's name (kms:ViaService), so the sender needs both.
    """
    via = (
        ("kms:ViaService", "sqs.{region}.amazonaws.com"),
        ("kms:EncryptionContext:aws:sqs:arn", "{failed_starts}"),
    )
    return (
        Call(role, "sqs:SendMessage", "{failed_starts}", why=why),
        *_each(role, ("kms:GenerateDataKey", "kms:Decrypt"), "{alert_key}", context=via, why=why),
    )


def _to_topic(role: str) -> tuple[Call, ...]:
    """A publish to the alert topic, encrypted with the alert key (SNS calls KMS in the sender's name)."""
    via = (
        ("kms:ViaService", "sns.{region}.amazonaws.com"),
        ("kms:EncryptionContext:aws:sns:topicArn", "{alert_topic}"),
    )
    why = "publish the alert to the encrypted topic"
    return (
        Call(role, "sns:Publish", "{alert_topic}", why=why),
        *_each(role, ("kms:GenerateDataKey", "kms:Decrypt"), "{alert_key}", context=via, why=why),
    )


def _schedules_and_alerts() -> tuple[Call, ...]:
    execution = "{execution}"
    return (
        # StartRun: the execution of the date; its last failed attempt goes to the queue (on-failure
        # destination, sent with the function's own role).
        Call(START_RUN, "states:StartExecution", "{state_machine}", why="start the date's run"),
        *_to_queue(START_RUN, "the on-failure destination of a start that failed"),
        *_lambda_logs(START_RUN),
        # The schedules' roles: Scheduler invokes the function, and dead-letters what it cannot hand over.
        Call(
            START_RUN_SCHEDULE,
            "lambda:InvokeFunction",
            LAMBDA + "{start_run_function}",
            why="the nightly start",
        ),
        *_to_queue(START_RUN_SCHEDULE, "the schedule's dead-letter queue"),
        Call(
            LATE_CHECK_SCHEDULE,
            "lambda:InvokeFunction",
            LAMBDA + "{late_check_function}",
            why="the late check",
        ),
        *_to_queue(LATE_CHECK_SCHEDULE, "the late check schedule's dead-letter queue"),
        # The alert formatter: the failed execution's history (the failing step, the run record).
        Call(ALERT_FORMATTER, "states:GetExecutionHistory", execution, why="which step failed, the record"),
        Call(ALERT_FORMATTER, "logs:GetLogEvents", "{runner_log_group}", why="the failed checks' results"),
        *_to_topic(ALERT_FORMATTER),
        *_lambda_logs(ALERT_FORMATTER),
        # The late check: the date's runs, and where the newest one is.
        Call(LATE_CHECK, "states:ListExecutions", "{state_machine}", why="the date's runs"),
        Call(LATE_CHECK, "states:GetExecutionHistory", execution, why="where a running run is"),
        Call(LATE_CHECK, "states:DescribeExecution", execution, why="why a run failed"),
        *_to_topic(LATE_CHECK),
        *_lambda_logs(LATE_CHECK),
    )


def _state_machine() -> tuple[Call, ...]:
    functions = (
        "preflight_function",
        "create_cluster_function",
        "cluster_status_function",
        "terminate_cluster_function",
        "record_run_function",
    )
    task = ECS + ":task/{ecs_cluster}/0123456789abcdef0123456789abcdef"
    return (
        *(
            Call(STATE_MACHINE, "lambda:InvokeFunction", LAMBDA + "{" + f + "}", why="a Lambda state")
            for f in functions
        ),
        Call(
            STATE_MACHINE,
            "lambda:InvokeFunction",
            LAMBDA + "{check_inputs_function}",
            gated=True,
            why="the input gate's CheckInputs state",
        ),
        Call(
            STATE_MACHINE,
            "ecs:RunTask",
            "{task_definition}",
            (("ecs:cluster", ECS + ":cluster/{ecs_cluster}"),),
            why="a step's runner task",
        ),
        # .sync: Step Functions waits for the task through its managed EventBridge rule.
        *_each(STATE_MACHINE, ("ecs:DescribeTasks", "ecs:StopTask"), task, why="wait for or stop the task"),
        *_each(
            STATE_MACHINE,
            ("events:PutTargets", "events:PutRule", "events:DescribeRule"),
            ECS_SYNC_RULE,
            why="the managed rule of .sync ECS tasks",
        ),
        # A batch's `Run date` (startExecution.sync:2): each date a child execution of the same state
        # machine, waited for through Step Functions' managed rule, stopped with its batch.
        Call(STATE_MACHINE, "states:StartExecution", "{state_machine}", why="a batch starts a date's run"),
        *_each(
            STATE_MACHINE,
            ("states:DescribeExecution", "states:StopExecution"),
            "{execution}",
            why="wait for or stop a batch's date",
        ),
        *_each(
            STATE_MACHINE,
            ("events:PutTargets", "events:PutRule", "events:DescribeRule"),
            STATES_SYNC_RULE,
            why="the managed rule of .sync nested executions",
        ),
        *(
            Call(
                STATE_MACHINE,
                "iam:PassRole",
                role,
                (("iam:PassedToService", ECS_TASKS_SERVICE),),
                why="RunTask passes the task's roles to ECS",
            )
            for role in ("{task_role}", "{task_execution_role}")
        ),
        *_each(
            STATE_MACHINE,
            (
                "logs:CreateLogDelivery",
                "logs:GetLogDelivery",
                "logs:UpdateLogDelivery",
                "logs:DeleteLogDelivery",
                "logs:ListLogDeliveries",
                "logs:PutResourcePolicy",
                "logs:DescribeResourcePolicies",
                "logs:DescribeLogGroups",
            ),
            "*",
            why="execution logs to CloudWatch Logs (no resource-level permissions)",
        ),
        *_each(
            STATE_MACHINE,
            (
                "xray:PutTraceSegments",
                "xray:PutTelemetryRecords",
                "xray:GetSamplingRules",
                "xray:GetSamplingTargets",
            ),
            "*",
            why="X-Ray tracing of the executions",
        ),
    )


def _operators() -> tuple[Call, ...]:
    """What the CLI's --deployed mode calls (start, follow, history, stop) with the operators' policy."""
    return (
        Call(OPERATORS, "states:ListStateMachines", "*", why="find the stack's state machines"),
        Call(OPERATORS, "states:ListTagsForResource", "{state_machine}", why="read their discovery tags"),
        *_each(
            OPERATORS,
            ("states:StartExecution", "states:ListExecutions"),
            "{state_machine}",
            why="start a date, find its runs",
        ),
        *_each(
            OPERATORS,
            ("states:DescribeExecution", "states:GetExecutionHistory", "states:StopExecution"),
            "{execution}",
            why="follow or stop a run",
        ),
        Call(OPERATORS, "logs:GetLogEvents", "{runner_log_group}", why="a step's stream"),
        Call(OPERATORS, "elasticmapreduce:ListClusters", "*", why="the run's cluster"),
        *_each(
            OPERATORS,
            ("elasticmapreduce:DescribeCluster", "elasticmapreduce:TerminateJobFlows"),
            CLUSTER,
            cluster_tags="resource",
            why="stop a run's cluster of this stack",
        ),
    )


def _lifecycle_runtime() -> tuple[Call, ...]:
    """What the Lambda service sends with a lifecycle function's role: its log, its X-Ray segments."""
    roles = (PREFLIGHT, CREATE_CLUSTER, CLUSTER_STATUS, TERMINATE_CLUSTER, SWEEPER, RECORD_RUN, CHECK_INPUTS)
    calls: list[Call] = []
    for role in roles:
        gated = role == CHECK_INPUTS
        calls += _each(
            role,
            ("logs:CreateLogStream", "logs:PutLogEvents"),
            STREAM,
            gated=gated,
            why="the function's own log",
        )
        calls += _each(
            role,
            ("xray:PutTraceSegments", "xray:PutTelemetryRecords"),
            "*",
            gated=gated,
            why="active tracing",
        )
    return tuple(calls)


def _runner_image() -> tuple[Call, ...]:
    """ECS pulls the runner image from the CDK asset repository with the task execution role."""
    return (
        Call(RUNNER_TASK_EXECUTION, "ecr:GetAuthorizationToken", "*", why="log in to ECR"),
        *_each(
            RUNNER_TASK_EXECUTION,
            ("ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer", "ecr:BatchGetImage"),
            "{image_repository}",
            why="pull the runner image",
        ),
    )


def _operators_check() -> tuple[Call, ...]:
    """What `--deployed --check` reads with the operators' policy (runner/deployed/check.py)."""
    regional = "arn:{partition}:{service}:{region}:{account}"

    def arn(service: str, rest: str) -> str:
        return regional.replace("{service}", service) + rest

    account_reads = (
        "elasticmapreduce:DescribeReleaseLabel",
        "ec2:DescribeSubnets",
        "ec2:DescribeRouteTables",
        "ec2:DescribeVpcEndpoints",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeKeyPairs",
        "ecs:DescribeTaskDefinition",
    )
    return (
        *_each(
            OPERATORS_CHECK,
            ("cloudformation:DescribeStacks", "cloudformation:ListStackResources"),
            arn("cloudformation", ":stack/{stack}/0a1b2c3d-0000-4000-8000-000000000000"),
            why="the stack and its resources",
        ),
        Call(
            OPERATORS_CHECK, "states:DescribeStateMachine", "{state_machine}", why="the deployed definition"
        ),
        Call(
            OPERATORS_CHECK,
            "iam:SimulatePrincipalPolicy",
            "arn:{partition}:iam::{account}:role/{stack}-ClusterLifecycleCreateCl-0A1B2C3D4E5F",
            why="IAM's own simulation of a stack role's calls",
        ),
        Call(OPERATORS_CHECK, "iam:GetRole", EMR_CLEANUP_ROLE, why="is EMR's service-linked role there?"),
        *_each(OPERATORS_CHECK, account_reads, "*", why="describes without resource-level permissions"),
        Call(
            OPERATORS_CHECK,
            "ssm:GetParameter",
            arn("ssm", ":parameter/nightshift/{stack}/{pipeline}/deployed-files"),
            why="the deployed files' digests (drift)",
        ),
        *(
            Call(OPERATORS_CHECK, "glue:GetDatabase", arn("glue", resource), why="the pipeline's databases")
            for resource in (":catalog", ":database/{database}")
        ),
        *_each(
            OPERATORS_CHECK,
            ("sns:GetTopicAttributes", "sns:ListSubscriptionsByTopic"),
            "{alert_topic}",
            why="the alert topic and its confirmed subscription",
        ),
        Call(
            OPERATORS_CHECK,
            "lambda:GetFunctionEventInvokeConfig",
            arn("lambda", ":function:{stack}-SchedulesStartRunF1B9F41-0A1B2C3D4E5F"),
            why="StartRun's on-failure destination",
        ),
        Call(
            OPERATORS_CHECK,
            "scheduler:GetSchedule",
            arn("scheduler", ":schedule/default/{stack}-SchedulesNightlySchedule-0A1B2C3D"),
            why="the pipeline's schedule",
        ),
    )


#: The calls of the lifecycle, runner, cluster, EMR service and state machine roles with the values a
#: deployment check can fill in from the deployed stack and the pipeline (runner/deployed/check.py
#: simulates these; a gated call only for a pipeline with [inputs]).
CALLS: tuple[Call, ...] = (
    *_lifecycle(),
    *_runner(),
    *_instance_role(),
    *_catalog(),
    *_emr_service_role(),
    *_state_machine(),
)
#: Every call of every deployed role: CALLS, what the Lambda service and ECS do with those roles (logs,
#: traces, the image pull), the schedules' and alerts' roles, the state machine's, and the operators'
#: policy. The IAM tests (tests/infra/test_aws_iam_rules.py) evaluate all of them on the template.
ALL_CALLS: tuple[Call, ...] = (
    *CALLS,
    *_lifecycle_runtime(),
    *_runner_image(),
    *_schedules_and_alerts(),
    *_operators(),
    *_operators_check(),
)
