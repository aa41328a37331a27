"""pipeline.toml's [cluster] and the CreateCluster model: whatever the runner accepts, the Lambda does."""

from __future__ import annotations

import copy
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from lambdas.shared.models import (
    DEFAULT_APPLICATIONS,
    MAX_LAUNCH_ATTEMPTS,
    ClusterProfile,
    CreateClusterRequest,
)
from runner.config import ClusterProfile as RunnerProfile
from runner.config import parse_config
from runner.errors import ConfigError
from tests.lambda_support import CREATE_PAYLOAD


def _lambda_profile(runner: RunnerProfile, attempt: int = 1) -> ClusterProfile:
    fields = asdict(runner)
    fields.pop("launch_attempts")
    fields.pop("core_instance_types")
    fields["core_instance_type"] = runner.core_instance_type_for(attempt)
    fields["applications"] = list(runner.applications)
    return ClusterProfile.model_validate(fields)


def test_defaults_agree() -> None:
    assert RunnerProfile().applications == DEFAULT_APPLICATIONS
    assert tuple(ClusterProfile.model_fields["applications"].default) == DEFAULT_APPLICATIONS
    _lambda_profile(RunnerProfile())


@pytest.mark.parametrize(
    "toml",
    [
        "core_instance_count = 0",  # master-only
        "core_instance_count = 256",
        "idle_timeout_minutes = 1",
        "idle_timeout_minutes = 10080",
        "step_concurrency_level = 256",
        "ebs_volume_gb = 16384",
        "launch_attempts = 10",
        'master_instance_type = "m7g.xlarge"\ncore_instance_types = ["r7g.2xlarge", "r6g.2xlarge"]',
    ],
)
def test_limits_the_runner_accepts_the_lambda_accepts(toml: str) -> None:
    profile = parse_config(f"[cluster]\n{toml}\n", Path("pipeline.toml")).cluster
    assert profile.launch_attempts <= MAX_LAUNCH_ATTEMPTS
    for attempt in range(1, profile.launch_attempts + 1):
        _lambda_profile(profile, attempt)


def test_each_launch_attempt_takes_the_next_instance_type_and_keeps_the_last() -> None:
    profile = parse_config(
        '[cluster]\nlaunch_attempts = 4\ncore_instance_types = ["a.large", "b.large"]\n', Path("p.toml")
    ).cluster
    assert [profile.core_instance_type_for(n) for n in (1, 2, 3, 4)] == [
        "a.large",
        "b.large",
        "b.large",
        "b.large",
    ]


def test_one_type_or_the_list_of_types_not_both() -> None:
    with pytest.raises(ConfigError, match=r"\[cluster\] core_instance_types: give core_instance_type or"):
        parse_config(
            '[cluster]\ncore_instance_type = "a.large"\ncore_instance_types = ["b.large"]\n', Path("p.toml")
        )


def test_a_master_only_run_is_a_valid_create_request() -> None:
    payload: dict[str, Any] = copy.deepcopy(CREATE_PAYLOAD)
    payload["cluster"]["core_instance_count"] = 0
    assert CreateClusterRequest.model_validate(payload).cluster.core_instance_count == 0
