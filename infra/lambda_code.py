"""The one code asset of every Lambda (the `lambdas` package with the tzdata package), without Docker."""

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
from infra.paths import LAMBDAS
from lambdas.shared.observability import NAMESPACE, SERVICE

# Not code: the cluster bootstrap is its own asset, the requirements are the layer's and the tests'.
NOT_DEPLOYED = ("bootstrap", "requirements.txt", "tests", "__pycache__", "*.pyc")


@jsii.implements(ILocalBundling)
class _CopyWithTzdata:
    # The Lambda Python runtimes do not promise a system time zone database, so StartRun's and
    # LateCheck's zoneinfo look-ups use the tzdata package (the asset installs no requirements,
    # and the Powertools layer does not promise it either).
    def try_bundle(self, output_dir: str, options: Any) -> bool:
        shutil.copytree(LAMBDAS, Path(output_dir) / "lambdas", ignore=shutil.ignore_patterns(*NOT_DEPLOYED))
        shutil.copytree(
            Path(str(resources.files("tzdata"))),
            Path(output_dir) / "tzdata",
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
        return True


def lambda_code() -> lambda_.Code:
    """Handlers are `lambdas.<name>.handler`; one asset per stack serves every function."""
    return lambda_.Code.from_asset(
        str(LAMBDAS),
        asset_hash_type=AssetHashType.OUTPUT,
        bundling=BundlingOptions(
            # Never pulled: local bundling always succeeds.
            image=DockerImage.from_registry("public.ecr.aws/docker/library/python:3.12-slim"),
            # jsii hands try_bundle the options as one struct, not as keywords as the stub says.
            local=_CopyWithTzdata(),  # type: ignore[arg-type]
        ),
    )


def small_function(
    scope: Construct,
    construct_id: str,
    *,
    code: lambda_.Code,
    layer: lambda_.ILayerVersion,
    handler: str,
    log_retention: logs.RetentionDays,
    log_key: kms.IKey,
    environment: dict[str, str] | None = None,
) -> lambda_.Function:
    """A Lambda outside the lifecycle (StartRun, the formatter, the late check): layer, log group, acks."""
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=lambda_.Runtime.PYTHON_3_12,
        handler=handler,
        code=code,
        layers=[layer],
        memory_size=128,
        timeout=Duration.seconds(30),
        environment={
            "POWERTOOLS_SERVICE_NAME": SERVICE,
            "POWERTOOLS_METRICS_NAMESPACE": NAMESPACE,
            **(environment or {}),
        },
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
