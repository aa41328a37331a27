"""The code asset of the glue Lambdas (infra/functions) with the tzdata package bundled, without Docker."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import Any

import jsii
from aws_cdk import AssetHashType, BundlingOptions, DockerImage, Duration, ILocalBundling, RemovalPolicy
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.nag import acknowledge_lambda_defaults
from infra.paths import FUNCTIONS


@jsii.implements(ILocalBundling)
class _CopyWithTzdata:
    # The Lambda Python runtimes do not promise a system time zone database, so start_run's
    # zoneinfo look-ups use the tzdata package pinned in requirements.txt.
    def try_bundle(self, output_dir: str, options: Any) -> bool:
        target = Path(output_dir) / "functions"
        shutil.copytree(FUNCTIONS, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        shutil.copytree(
            Path(str(resources.files("tzdata"))),
            Path(output_dir) / "tzdata",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        return True


def glue_code() -> lambda_.Code:
    """Handlers are `functions.start_run.handler` and `functions.alert.handler`; one per stack serves both."""
    return lambda_.Code.from_asset(
        str(FUNCTIONS),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds.
            image=DockerImage.from_registry("public.ecr.aws/docker/library/python:3.12-slim"),
            # jsii hands try_bundle the options as one struct, not as keywords as the stub says.
            local=_CopyWithTzdata(),  # type: ignore[arg-type]
        ),
    )


def glue_function(
    scope: Construct,
    construct_id: str,
    *,
    code: lambda_.Code,
    handler: str,
    log_retention: logs.RetentionDays,
    log_key: kms.IKey,
    environment: dict[str, str] | None = None,
) -> lambda_.Function:
    """A small glue Lambda with its own log group (`<id>Logs`) and the stack's usual acknowledgments."""
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler=handler,
        code=code,
        memory_size=128,
        timeout=Duration.seconds(30),
        environment=environment,
        log_group=logs.LogGroup(
            scope,
            f"{construct_id}Logs",
            retention=log_retention,
            encryption_key=log_key,
            removal_policy=RemovalPolicy.DESTROY,
        ),
    )
    acknowledge_lambda_defaults(function)
    return function
