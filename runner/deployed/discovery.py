"""Find the deployed pipeline: AWS clients, the region, and the state machine by its tags."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.exceptions
from botocore.config import Config

from runner.errors import NightshiftError

# The state machine's tags, as infra/ sets them (a test holds both sides equal).
TAG_STACK = "nightshift:stack"
TAG_PIPELINE = "nightshift:pipeline"
TAG_RUNNER_LOG_GROUP = "nightshift:runner-log-group"
# The cluster tags of lambdas/shared/clusters.py (the runner image does not ship lambdas/).
CLUSTER_TAG_EXECUTION_ARN = "nightshift:execution-arn"
CLUSTER_TAG_MANAGED = "nightshift:managed"
CLUSTER_TAG_STACK = "nightshift:stack"
# Where awslogs puts a task's output: `<stream prefix>/<container>/<task id>`, prefix = pipeline.
RUNNER_CONTAINER = "runner"

EXIT_NOT_FOUND = 3
EXIT_REFUSED = 4
EXIT_AWS_ERROR = 1
EXIT_UNREACHABLE = 255

# Standard retries with backoff; the follower's own pacing keeps far below the quotas and rides
# out throttling beyond these retries itself. A short connect timeout and few attempts: an
# unreachable endpoint is reported in seconds, not minutes.
_CLIENT_CONFIG = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)


class NotFound(NightshiftError):
    """Nothing to act on: no credentials, no region, no deployment, no run of that date."""

    exit_code = EXIT_NOT_FOUND


class Refused(NightshiftError):
    """The command would break a rule (a date run twice, two runs of one date at once)."""

    exit_code = EXIT_REFUSED


class AwsError(NightshiftError):
    """An AWS error that is none of the above (permissions, throttling beyond retries)."""

    exit_code = EXIT_AWS_ERROR


class AwsUnreachable(AwsError):
    """AWS's endpoint cannot be reached (as ssh's 255 for a host it cannot reach)."""

    exit_code = EXIT_UNREACHABLE


def aws_error(error: botocore.exceptions.ClientError | botocore.exceptions.BotoCoreError) -> NightshiftError:
    """An error of botocore's as the runner's: one line, the exit code of its kind (README: Production)."""
    if isinstance(error, botocore.exceptions.NoCredentialsError):
        return NotFound(
            "no AWS credentials: set AWS_PROFILE, run `aws sso login`, or export AWS_ACCESS_KEY_ID"
        )
    if isinstance(
        error, botocore.exceptions.EndpointConnectionError | botocore.exceptions.ConnectTimeoutError
    ):
        return AwsUnreachable(f"cannot reach AWS: {error}")
    return AwsError(str(error))


@dataclass(frozen=True)
class Clients:
    """The AWS clients a deployed command uses, in one region."""

    region: str
    sfn: Any
    logs: Any
    emr: Any
    #: reads the record of the deployed files (None: not compared)
    ssm: Any = None

    @classmethod
    def make(cls, region: str | None) -> Clients:
        """Clients in `region`, else AWS_REGION / AWS_DEFAULT_REGION / the profile's region."""
        session = boto3.session.Session()
        chosen = region or os.environ.get("AWS_REGION") or session.region_name
        if not chosen:
            raise NotFound("no AWS region: pass --region or set AWS_REGION (or a profile's region)")
        try:
            credentials = session.get_credentials()
        except botocore.exceptions.BotoCoreError as error:
            raise NotFound(f"no usable AWS credentials: {error}") from error
        if credentials is None:
            raise NotFound(
                "no AWS credentials: set AWS_PROFILE, run `aws sso login`, or export AWS_ACCESS_KEY_ID"
            )

        def client(name: str) -> Any:
            return session.client(name, region_name=chosen, config=_CLIENT_CONFIG)  # type: ignore[call-overload]

        return cls(chosen, client("stepfunctions"), client("logs"), client("emr"), client("ssm"))


@dataclass(frozen=True)
class Deployment:
    """One pipeline's deployed state machine and where its runner writes."""

    pipeline: str
    stack: str
    state_machine_arn: str
    runner_log_group: str
    clients: Clients

    @property
    def region(self) -> str:
        return self.clients.region

    def execution_arn(self, name: str) -> str:
        """The ARN an execution of this state machine named `name` has (or would have)."""
        prefix, _, machine = self.state_machine_arn.rpartition(":stateMachine:")
        return f"{prefix}:execution:{machine}:{name}"

    def log_stream(self, task_arn: str) -> str:
        return f"{self.pipeline}/{RUNNER_CONTAINER}/{task_arn.rsplit('/', 1)[-1]}"


def find_deployment(pipeline: str, stack: str | None, clients: Clients) -> Deployment:
    """The state machine tagged with this pipeline (and `stack`); one line naming what is missing."""
    sfn = clients.sfn
    found: list[tuple[str, dict[str, str]]] = []
    try:
        for page in sfn.get_paginator("list_state_machines").paginate():
            for machine in page["stateMachines"]:
                # ListTagsForResource refills at 1/s: only machines named like a Nightshift one
                # (`<stack>-<pipeline>`) are asked for their tags.
                if not machine["name"].endswith(f"-{pipeline}"):
                    continue
                tags = {
                    t["key"]: t["value"]
                    for t in sfn.list_tags_for_resource(resourceArn=machine["stateMachineArn"])["tags"]
                }
                if tags.get(TAG_PIPELINE) == pipeline and (stack is None or tags.get(TAG_STACK) == stack):
                    found.append((machine["stateMachineArn"], tags))
    except botocore.exceptions.NoCredentialsError as error:
        raise NotFound(f"no AWS credentials: {error}") from error
    except botocore.exceptions.ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        raise NotFound(f"cannot list the state machines in {clients.region}: {code}: {error}") from error
    where = f"in {clients.region}" + (f" for stack {stack}" if stack else "")
    if not found:
        raise NotFound(
            f"no deployment of pipeline {pipeline} {where} (no state machine tagged "
            f"{TAG_PIPELINE}={pipeline}); deploy it with `cdk deploy`, or check --region/--stack"
        )
    if len(found) > 1:
        stacks = ", ".join(sorted(tags.get(TAG_STACK, "?") for _, tags in found))
        raise NotFound(
            f"pipeline {pipeline} is deployed by several stacks {where}: {stacks}; choose one with --stack"
        )
    arn, tags = found[0]
    log_group = tags.get(TAG_RUNNER_LOG_GROUP)
    if not log_group:
        raise NotFound(f"state machine {arn} has no {TAG_RUNNER_LOG_GROUP} tag: redeploy the stack")
    return Deployment(pipeline, tags.get(TAG_STACK, ""), arn, log_group, clients)
