"""The synth-time contract: a pipeline the CreateCluster Lambda would refuse never synthesizes."""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

import app as nightshift_app
from infra.config import ContextError, config_from_context
from infra.paths import PIPELINES_FOLDER, ROOT
from lambdas.shared.run_states import STAGES_COMMAND_STATE
from runner.canary import CANARY_IMAGE_PATH
from runner.errors import ConfigError
from tests.infra.conftest import Synthesis, base_context, definition_of
from tests.infra.moto_harness import Harness, run_step_states


def _synth_pipeline(tmp_path: Path, cluster_toml: str) -> None:
    folder = tmp_path / "pipelines" / "nightly"
    folder.mkdir(parents=True)
    (folder / "pipeline.toml").write_text(f"[cluster]\n{cluster_toml}\n")
    (folder / "10_a.sql").write_text("SELECT 1;")
    nightshift_app.build(
        cdk.App(outdir=str(tmp_path / "out"), context=base_context()), pipelines_dir=folder.parent
    )


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('master_instance_type = "xlarge"', "[cluster] master_instance_type"),
        ('core_instance_types = ["r7g.2xlarge", "r6g 2xlarge"]', "[cluster] core_instance_types"),
    ],
)
def test_a_profile_the_lambda_refuses_fails_synth_naming_folder_and_key(
    tmp_path: Path, toml: str, key: str
) -> None:
    # Refused already when the pipeline is loaded (runner/config.py checks what the Lambda's model
    # checks), so the synth stops there, with the same one-line error `python -m runner` gives.
    with pytest.raises(ConfigError) as raised:
        _synth_pipeline(tmp_path, toml)
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'pipelines' / 'nightly' / 'pipeline.toml'}: {key}: expected")


def test_pipelines_dir_is_no_longer_a_setting() -> None:
    # The image holds sql/ and the commands say sql/: a different folder would deploy steps the image lacks.
    context = {**base_context(), "pipelines_dir": "pipelines"}
    with pytest.raises(ContextError, match="pipelines_dir"):
        config_from_context(context.get)


def test_the_runner_image_holds_the_folder_every_run_step_names(test_synth: Synthesis) -> None:
    dockerfile = (ROOT / "runner" / "Dockerfile").read_text()
    assert f"COPY {PIPELINES_FOLDER}/ {PIPELINES_FOLDER}/" in dockerfile
    states = run_step_states(definition_of(test_synth, "nightly"))
    commands = [state["Parameters"]["Overrides"]["ContainerOverrides"][0]["Command.$"] for state in states]
    # The canary's task runs the runner's own canary folder (tests/infra/test_deployed_canary.py).
    canary = [command for command in commands if command.startswith(f"States.Array('{CANARY_IMAGE_PATH}'")]
    assert len(canary) == 1
    # A date of a batch's one task runs the command its `Stages command` Pass states build: the folder.
    states_by_name = definition_of(test_synth, "nightly")["States"]
    built = [
        state["Parameters"]["command.$"]
        for name, state in states_by_name.items()
        if name.startswith(STAGES_COMMAND_STATE) and state["Type"] == "Pass"
    ]
    assert len(built) == 2, built
    assert all(command.startswith(f"States.Array('{PIPELINES_FOLDER}/nightly', ") for command in built)
    for command in commands:
        assert (
            command in canary
            or command == "$.stages.command"
            or command.startswith(f"States.Array('{PIPELINES_FOLDER}/nightly/")
        )


def test_a_master_only_pipeline_runs_end_to_end(adhoc: Harness) -> None:
    execution = adhoc.run()
    assert execution["status"] == "SUCCEEDED", execution
    (payload,) = adhoc.faults.payloads["lambdas.create_cluster"]
    assert payload["cluster"]["core_instance_count"] == 0
    assert adhoc.faults.steps_run == ["10_export.sh"]
    assert [c["Status"]["State"] for c in adhoc.clusters()] == ["TERMINATED"]
