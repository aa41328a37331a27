"""The pipeline model: which files are steps, how they group into stages, which files are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import ConfigError, PipelineError, UsageError
from runner.model import Engine, load_pipeline


def make(folder: Path, files: dict[str, bytes | str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        data = content.encode() if isinstance(content, str) else content
        (folder / name).write_bytes(data)
    return folder


def test_folder_groups_steps_into_ordered_stages(tmp_path: Path) -> None:
    folder = make(
        tmp_path / "sales",
        {
            "20_sessions.hql": "SELECT 2;",
            "10_users.sql": "SELECT 1;",
            "10_events.sql": "SELECT 1;",
            "100_late.sh": "echo late",
            "40_model.py": "print(1)",
            "README.md": "notes are not steps",
            "pipeline.toml": "default_engine = 'hive'",
            ".hidden.sql": "ignored",
        },
    )
    (folder / "sample_data").mkdir()
    pipeline = load_pipeline(folder)
    assert pipeline.name == "sales"
    assert [stage.number for stage in pipeline.stages] == [10, 20, 40, 100]
    assert [[s.file_name for s in stage.steps] for stage in pipeline.stages] == [
        ["10_events.sql", "10_users.sql"],
        ["20_sessions.hql"],
        ["40_model.py"],
        ["100_late.sh"],
    ]
    engines = {step.name: step.engine for step in pipeline.steps}
    # default_engine = hive applies to .sql steps; the other extensions pick their own engine.
    assert engines == {
        "10_events": Engine.HIVE,
        "10_users": Engine.HIVE,
        "20_sessions": Engine.HIVE,
        "40_model": Engine.SPARK_SUBMIT,
        "100_late": Engine.BASH,
    }


def test_single_file_uses_its_folders_settings(tmp_path: Path) -> None:
    folder = make(tmp_path / "p", {"pipeline.toml": "default_engine = 'hive'", "30_x.sql": "SELECT 1;"})
    pipeline = load_pipeline(folder / "30_x.sql")
    assert pipeline.name == "p"
    assert [(s.name, s.stage, s.engine) for s in pipeline.steps] == [("30_x", 30, Engine.HIVE)]


def test_any_file_name_runs_as_a_single_step(tmp_path: Path) -> None:
    make(tmp_path, {"job.sql": "SELECT 1;"})
    pipeline = load_pipeline(tmp_path / "job.sql")
    assert pipeline.name == "job"
    assert [(s.name, s.stage, s.engine) for s in pipeline.steps] == [("job", None, Engine.SPARK_SQL)]


@pytest.mark.parametrize(
    ("files", "target", "error", "message"),
    [
        ({}, "missing", UsageError, "missing: no such file or folder"),
        ({"README.md": "x"}, ".", PipelineError, ": no steps (expected files named NN_name.ext"),
        (
            {"10_a.txt": "x"},
            ".",
            PipelineError,
            "10_a.txt: unknown extension '.txt' (expected .hql, .py, .sh or .sql)",
        ),
        ({"job.csv": "x"}, "job.csv", PipelineError, "job.csv: unknown extension '.csv'"),
        ({"10_a.sql": ""}, ".", PipelineError, "10_a.sql: the step file is empty"),
        ({"10_a.sql": " \n\t\r\n"}, ".", PipelineError, "10_a.sql: the step file is empty"),
        ({"10_a.sql": b"\xef\xbb\xbf\n"}, ".", PipelineError, "10_a.sql: the step file is empty"),
        (
            {"10_a.sql": b"SELECT '\xe9';"},
            ".",
            PipelineError,
            "10_a.sql: not UTF-8 text (invalid byte at offset 8)",
        ),
        (
            {"job.sql": b"\xff\xfeS\x00"},
            "job.sql",
            PipelineError,
            "job.sql: not UTF-8 text (invalid byte at offset 0)",
        ),
        (
            {"10_a.sql": "x", "10_a.hql": "y"},
            ".",
            PipelineError,
            "two steps named '10_a' (10_a.hql, 10_a.sql)",
        ),
        ({"users.sql": "x"}, ".", PipelineError, "users.sql: step files are named NN_name.sql"),
        (
            {"10_a.sql": "x", "pipeline.toml": "nope = 1"},
            ".",
            ConfigError,
            "pipeline.toml: nope: unknown key",
        ),
        # A step whose engine the cluster would not have fails at load, not on the cluster at night.
        (
            {
                "10_a.sh": "true",
                "20_b.hql": "x",
                "pipeline.toml": '[cluster]\napplications = ["Hadoop", "Spark"]',
            },
            ".",
            PipelineError,
            "pipeline.toml: [cluster] applications ['Hadoop', 'Spark'] lack Hive, which 20_b.hql runs on:"
            " add 'Hive' to the list",
        ),
        (
            {"job.py": "x", "pipeline.toml": '[cluster]\napplications = ["Hadoop", "Hive"]'},
            "job.py",
            PipelineError,
            "lack Spark, which job.py runs on",
        ),
        (
            {
                "10_a.sh": "true",
                "10_rows.check.sql": "SELECT 1",
                "pipeline.toml": '[cluster]\napplications = ["Hadoop"]',
            },
            ".",
            PipelineError,
            "lack Spark, which 10_rows.check.sql runs on",
        ),
        (
            {
                "10_a.sql": "x",
                "pipeline.toml": 'default_engine = "hive"\n[cluster]\napplications = ["Spark"]',
            },
            ".",
            PipelineError,
            "lack Hive, which 10_a.sql runs on",
        ),
    ],
)
def test_bad_input_is_refused_with_one_line(
    tmp_path: Path, files: dict[str, bytes | str], target: str, error: type[Exception], message: str
) -> None:
    make(tmp_path, files)
    with pytest.raises(error) as caught:
        load_pipeline(tmp_path / target)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_applications_match_without_regard_to_case_and_a_sh_step_needs_none(tmp_path: Path) -> None:
    make(
        tmp_path / "a",
        {"10_a.hql": "x", "20_b.sql": "y", "pipeline.toml": '[cluster]\napplications = ["hive", "SPARK"]'},
    )
    make(tmp_path / "b", {"10_a.sh": "true", "pipeline.toml": '[cluster]\napplications = ["Hadoop"]'})
    assert [s.engine for s in load_pipeline(tmp_path / "a").steps] == [Engine.HIVE, Engine.SPARK_SQL]
    assert [s.engine for s in load_pipeline(tmp_path / "b").steps] == [Engine.BASH]


def test_a_leading_byte_order_mark_is_noted_not_removed(tmp_path: Path) -> None:
    make(tmp_path, {"10_bom.sql": b"\xef\xbb\xbfSELECT 1;", "10_plain.sql": "SELECT 1;"})
    bom, plain = load_pipeline(tmp_path).steps
    assert (bom.starts_with_bom, plain.starts_with_bom) == (True, False)
    assert bom.path.read_bytes().startswith(b"\xef\xbb\xbf")
