"""CDK entry point: the only reader of context and environment; builds the config once, then the stack."""

from __future__ import annotations

import os
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import config_from_context
from infra.paths import PIPELINES_FOLDER
from infra.pipelines import discover_pipelines
from infra.stack import NightshiftStack

ROOT = Path(__file__).resolve().parent
DEFAULT_STACK_NAME = "Nightshift"


def build(app: cdk.App, *, pipelines_dir: Path | None = None) -> NightshiftStack:
    """Add the Nightshift stack (and the cdk-nag AwsSolutions checks) to the app.

    ``pipelines_dir`` is for tests only: the deployed image holds sql/, so a deployment uses that.
    """
    config = config_from_context(app.node.try_get_context)
    stack = NightshiftStack(
        app,
        app.node.try_get_context("stack_name") or DEFAULT_STACK_NAME,
        config=config,
        pipelines=discover_pipelines(pipelines_dir or ROOT / PIPELINES_FOLDER),
        # Unset (no credentials at hand) gives an environment-agnostic stack: synth stays offline.
        env=cdk.Environment(
            account=os.environ.get("CDK_DEFAULT_ACCOUNT"), region=os.environ.get("CDK_DEFAULT_REGION")
        ),
        description="Nightshift: nightly SQL pipelines on transient EMR clusters",
    )
    cdk.Tags.of(stack).add("project", "nightshift")
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return stack


def main() -> None:
    app = cdk.App()
    build(app)
    app.synth()


if __name__ == "__main__":
    main()
