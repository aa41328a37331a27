"""CDK entry point: the only reader of context and environment; builds the config once, then the stack."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from infra.config import ContextError, config_from_context, refuse_placeholders
from infra.paths import PIPELINES_FOLDER
from infra.pipelines import discover_pipelines
from infra.stack import NightshiftStack

ROOT = Path(__file__).resolve().parent
DEFAULT_STACK_NAME = "Nightshift"
PROJECT_TAG = ("project", "nightshift")


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
        # The stack's own tag (CloudFormation gives it to every resource it creates): with the
        # @aws-cdk/core:explicitStackTags flag, Tags.of(stack) below tags the template's resources only.
        tags={PROJECT_TAG[0]: PROJECT_TAG[1]},
    )
    cdk.Tags.of(stack).add(*PROJECT_TAG)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app, verbose=True))
    return stack


def main() -> None:
    app = cdk.App()
    try:
        # Only a deployment refuses cdk.json's examples; tests synthesize with their own context.
        refuse_placeholders(app.node.try_get_context)
        build(app)
    except ContextError as error:
        # One line naming the key, not a traceback through jsii (the CLI then says the app failed).
        sys.exit(f"nightshift: error: {error}")
    app.synth()


if __name__ == "__main__":
    main()
