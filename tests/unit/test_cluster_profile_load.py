"""A [cluster] profile the CreateCluster Lambda would refuse is refused when the pipeline is loaded."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
from pydantic import ValidationError

from lambdas.shared import models
from runner import config
from runner.config import parse_config
from runner.errors import ConfigError
from tests.conftest import run_cli

MIXED = [
    # x86 master, Graviton core: EMR documents more than one architecture in a cluster only with a
    # custom AMI per instance type ("Working with Amazon Linux AMIs in Amazon EMR",
    # https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-ami.html: "Multiple custom AMI
    # support gives you the flexibility to use more than one architecture type in a cluster"), and
    # Nightshift launches EMR's default AMI.
    'master_instance_type = "m5.xlarge"\ncore_instance_type = "r7g.2xlarge"',
    # The same mix across launch attempts: attempt 2 would launch x86 cores under a Graviton master.
    'master_instance_type = "m7g.xlarge"\ncore_instance_types = ["r7g.2xlarge", "r5.2xlarge"]',
    # The default master is m5.xlarge.
    'core_instance_types = ["r7g.2xlarge"]',
]


def _pipeline(tmp_path: Path, cluster: str) -> Path:
    folder = tmp_path / "nightly"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(f"[cluster]\n{cluster}\n")
    (folder / "10_a.sql").write_text("SELECT 1;\n")
    return folder


@pytest.mark.parametrize("cluster", MIXED)
def test_a_cluster_of_x86_and_graviton_nodes_is_refused_at_load(tmp_path: Path, cluster: str) -> None:
    folder = _pipeline(tmp_path, cluster)
    result = run_cli(folder, timeout=120)
    assert result.returncode == 2
    assert result.stdout == b""
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"nightshift: error: {folder / 'pipeline.toml'}: [cluster]: mixes Graviton"), line
    assert "x86_64" in line


@pytest.mark.parametrize(
    ("cluster", "key"),
    [
        # Accepted by the runner until now; the CreateCluster model refuses them at synth or at night.
        ('master_instance_type = "M5.XLARGE"', "master_instance_type"),
        ('core_instance_type = "m5 xlarge"', "core_instance_type"),
        ('core_instance_types = ["m5.2xlarge", "xlarge"]', "core_instance_types"),
    ],
)
def test_an_instance_type_the_lambda_refuses_is_refused_at_load(
    tmp_path: Path, cluster: str, key: str
) -> None:
    folder = _pipeline(tmp_path, cluster)
    result = run_cli(folder, timeout=120)
    assert result.returncode == 2
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"nightshift: error: {folder / 'pipeline.toml'}: [cluster] {key}: expected"), line


@pytest.mark.parametrize(
    "cluster",
    [
        'master_instance_type = "m7g.xlarge"\ncore_instance_types = ["r7g.2xlarge", "r6g.2xlarge", "m6g.2xlarge"]',
        'master_instance_type = "m5.xlarge"\ncore_instance_types = ["r5.2xlarge", "m6i.2xlarge"]',
        # Master-only: the core type is never launched, so only the master's architecture counts.
        'master_instance_type = "m7g.xlarge"\ncore_instance_count = 0',
    ],
)
def test_one_architecture_per_cluster_is_accepted_by_both_sides(cluster: str) -> None:
    profile = parse_config(f"[cluster]\n{cluster}\n", Path("pipeline.toml")).cluster
    for attempt in range(1, profile.launch_attempts + 1):
        fields = asdict(profile) | {"core_instance_type": profile.core_instance_type_for(attempt)}
        for key in ("launch_attempts", "core_instance_types", "configurations"):
            fields.pop(key, None)
        models.ClusterProfile.model_validate(fields | {"applications": list(profile.applications)})


def test_the_lambda_refuses_the_mix_too() -> None:
    fields = {
        "release_label": "emr-7.13.0",
        "master_instance_type": "m5.xlarge",
        "core_instance_type": "r7g.2xlarge",
        "core_instance_count": 2,
        "use_spot": False,
        "idle_timeout_minutes": 60,
        "step_concurrency_level": 1,
        "ebs_volume_gb": 64,
    }
    with pytest.raises(ValidationError, match="mixes Graviton and x86_64"):
        models.ClusterProfile.model_validate(fields)


GRAVITON = [
    "m7g.xlarge",
    "r6gd.2xlarge",
    "c6gn.large",
    "x2gd.xlarge",
    "im4gn.large",
    "t4g.medium",
    "m8g.large",
]
X86 = ["m5.xlarge", "r5d.2xlarge", "g4dn.xlarge", "m5zn.large", "c6i.large", "r7iz.large", "m6a.large"]


@pytest.mark.parametrize(("instance_type", "arm"), [(t, True) for t in GRAVITON] + [(t, False) for t in X86])
def test_runner_and_lambda_agree_on_each_architecture(instance_type: str, arm: bool) -> None:
    assert config.is_graviton(instance_type) is arm
    assert models.is_graviton(instance_type) is arm


def test_a_bad_profile_in_a_string_is_one_config_error() -> None:
    with pytest.raises(ConfigError, match=r"\[cluster\]: mixes Graviton"):
        parse_config('[cluster]\ncore_instance_type = "r7g.xlarge"\n', Path("pipeline.toml"))
