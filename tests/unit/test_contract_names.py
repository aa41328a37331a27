"""The names the runner image and the lifecycle Lambdas must agree on, held equal across the boundary.

The runner image does not ship lambdas/ and the Lambda bundle does not ship runner/, so each side
keeps its own constant; this test imports both.
"""

from __future__ import annotations

import re

from infra.pipelines import PIPELINE_NAME
from infra.runner_task import SSH_KEY_VARIABLE
from lambdas.shared.clusters import ALIVE_STATES, READY_STATES
from lambdas.shared.hostkeys import HOST_KEY_PREFIX, host_key_parameter_name
from lambdas.shared.models import PIPELINE_NAME_PATTERN
from runner.__main__ import PRIVATE_KEY_VARIABLE
from runner.remote import emr as runner_emr


def test_the_runner_reads_the_host_keys_where_the_bootstrap_action_writes_them() -> None:
    assert runner_emr.host_key_parameter("j-2AXXXXXXGAPLF") == host_key_parameter_name("j-2AXXXXXXGAPLF")
    assert runner_emr.HOST_KEY_PARAMETER.format(cluster_id="") == HOST_KEY_PREFIX


def test_the_task_sets_the_ssh_key_variable_the_runner_reads() -> None:
    assert SSH_KEY_VARIABLE == PRIVATE_KEY_VARIABLE


def test_cluster_states_mean_the_same_on_both_sides() -> None:
    assert runner_emr.READY_STATES == READY_STATES
    # The runner waits through the states the Lambdas call alive but not yet ready.
    assert set(ALIVE_STATES) - READY_STATES == runner_emr.STARTING_STATES


def test_the_stack_accepts_exactly_the_pipeline_names_the_lambdas_accept() -> None:
    assert PIPELINE_NAME.pattern == PIPELINE_NAME_PATTERN
    for name in ("example", "daily_sales", "v2.orders", "a" * 64):
        assert PIPELINE_NAME.match(name) and re.match(PIPELINE_NAME_PATTERN, name)
    for name in ("-x", "a b", "a" * 65, "ü"):
        assert not PIPELINE_NAME.match(name)
