"""cdk.json as shipped: the synth refuses its examples in one line, and it takes the CDK's recommended flags."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import tarfile
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from infra.config import placeholder_keys
from runner.config import load_config
from tests.conftest import ROOT

SHIPPED = json.loads((ROOT / "cdk.json").read_text())
EXAMPLE_KEYS = ["ssh_key_secret_arn", "notification_email", "data_access.example"]
# The recommended flags cdk.json sets otherwise, each with its reason in docs/infra.md ("CDK feature flags").
DECLINED_FLAGS = {
    "@aws-cdk/core:target-partitions",
    "@aws-cdk/aws-ec2:restrictDefaultSecurityGroup",
    "@aws-cdk/core:enableAdditionalMetadataCollection",
    "@aws-cdk/core:annotationsInValidationReport",
}


def test_the_shipped_cdk_json_is_refused_in_one_line_naming_each_key(tmp_path: Path) -> None:
    """`cdk synth` runs cdk.json's "app" with the context in CDK_CONTEXT_JSON: the examples fail it."""
    command = shlex.split(SHIPPED["app"])
    assert command[0].startswith("python")
    env = {
        **os.environ,
        "CDK_CONTEXT_JSON": json.dumps(SHIPPED["context"]),
        "CDK_OUTDIR": str(tmp_path / "cdk.out"),
    }
    result = subprocess.run(
        [sys.executable, *command[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("nightshift:")]
    assert ours == [
        f"nightshift: error: set {', '.join(EXAMPLE_KEYS)} in cdk.json's context: the shipped values are "
        "examples (docs/infra.md, First deploy)"
    ], result.stderr
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "cdk.out").glob("*.template.json"))  # nothing to deploy


def test_each_shipped_example_is_found() -> None:
    assert placeholder_keys(SHIPPED["context"].get) == EXAMPLE_KEYS


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("ssh_key_secret_arn", "arn:aws:secretsmanager:eu-west-1:123456789012:secret:ops/ssh-Zz9Yy8"),
        ("notification_email", "Data-Team@Example.ORG"),
        ("data_access", {"*": {"read": ["s3://nightshift-example-data"]}}),
    ],
)
def test_an_example_left_in_a_real_context_is_found(key: str, value: Any) -> None:
    context = {**deployable_context(), key: value}
    found = placeholder_keys(context.get)
    assert found == [key if key != "data_access" else "data_access.*"]


def test_a_real_context_has_no_examples() -> None:
    assert placeholder_keys(deployable_context().get) == []


def deployable_context() -> dict[str, Any]:
    return {
        **SHIPPED["context"],
        "ssh_key_secret_arn": "arn:aws:secretsmanager:eu-west-1:444455556666:secret:nightshift/ssh-key-Q1w2E3",
        "notification_email": "data-team@company.test",
        "data_access": {"example": {"read": ["s3://company-lake/raw/"], "write": ["s3://company-lake/out/"]}},
    }


def test_the_example_pipeline_ships_unscheduled() -> None:
    """A first deploy must not start a nightly cluster that reads the example bucket."""
    schedule = load_config(ROOT / "sql" / "example").schedule
    assert schedule is not None and not schedule.enabled


def recommended_flags() -> dict[str, Any]:
    """What `cdk init` writes for the pinned aws-cdk-lib (its jsii bundle ships the list)."""
    library = metadata.distribution("aws-cdk-lib")
    bundle = Path(str(library.locate_file(f"aws_cdk/_jsii/aws-cdk-lib@{library.version}.jsii.tgz")))
    with tarfile.open(bundle) as archive:
        member = archive.extractfile("package/recommended-feature-flags.json")
        assert member is not None
        flags: dict[str, Any] = json.load(member)
    return flags


def test_cdk_json_takes_the_recommended_feature_flags() -> None:
    """Every flag `cdk init` recommends is set as recommended, except the declined ones docs/infra.md names."""
    context = SHIPPED["context"]
    recommended = recommended_flags()
    assert "@aws-cdk/aws-s3:createDefaultLoggingPolicy" in recommended
    differing = {flag for flag, value in recommended.items() if context.get(flag) != value}
    assert differing == DECLINED_FLAGS
    docs = (ROOT / "docs" / "infra.md").read_text()
    assert all(f"`{flag}`" in docs for flag in DECLINED_FLAGS)
