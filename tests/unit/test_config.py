"""pipeline.toml validation: every mistake names the file, the key and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.config import ClusterProfile, PipelineConfig, Schedule, StepPolicy, load_config, parse_config
from runner.errors import ConfigError

PATH = Path("sql/demo/pipeline.toml")

FULL = """
description = "demo"
default_engine = "hive"

[schedule]
cron = "30 2 * * MON-FRI"
timezone = "America/New_York"

[variables]
raw = "s3://bucket/raw"

[variables.local]
raw = "data/raw"

[cluster]
release_label = "emr-7.13.0"
applications = ["Hadoop", "Spark"]
core_instance_count = 4
use_spot = true
idle_timeout_minutes = 30

[steps]
timeout_minutes = 45
retries = 2
"""


def test_full_config_parses_into_frozen_settings() -> None:
    config = parse_config(FULL, PATH)
    assert config == PipelineConfig(
        description="demo",
        default_engine="hive",
        schedule=Schedule(cron="30 2 * * MON-FRI", timezone="America/New_York"),
        variables={"raw": "s3://bucket/raw"},
        local_variables={"raw": "data/raw"},
        cluster=ClusterProfile(
            applications=("Hadoop", "Spark"), core_instance_count=4, use_spot=True, idle_timeout_minutes=30
        ),
        steps=StepPolicy(timeout_minutes=45, retries=2),
    )


def test_missing_file_means_defaults(tmp_path: Path) -> None:
    assert load_config(tmp_path) == PipelineConfig()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 'blue'", "sql/demo/pipeline.toml: colour: unknown key (expected one of: default_engine"),
        ("[cluster]\ncore_count = 2", "[cluster] core_count: unknown key (expected one of: applications"),
        ("[cluster]\ncore_instance_count = 'two'", "[cluster] core_instance_count: expected an integer"),
        ("[cluster]\nuse_spot = 'yes'", "[cluster] use_spot: expected true or false, got 'yes'"),
        ("[cluster]\nrelease_label = 'emr-latest'", "[cluster] release_label: expected an EMR release label"),
        ("[cluster]\nidle_timeout_minutes = 0", "[cluster] idle_timeout_minutes: expected an integer from 1"),
        ("[steps]\nretries = -1", "[steps] retries: expected an integer from 0 to 10, got -1"),
        ("[steps]\ntimeout = 5", "[steps] timeout: unknown key"),
        ("default_engine = 'presto'", "default_engine: expected one of 'spark-sql', 'hive', got 'presto'"),
        ("[schedule]\ncron = '0 3 * *'", "[schedule] cron: expected a five-field cron string"),
        ("[schedule]\ncron = '61 3 * * *'", "minute: 61 is outside 0-59"),
        (
            "[schedule]\ncron = '0 3 * * *'\ntimezone = 'Mars/Olympus'",
            "[schedule] timezone: expected an IANA time zone such as 'Europe/Berlin', got 'Mars/Olympus'",
        ),
        ("[schedule]\ntimezone = 'UTC'", "[schedule] cron: missing"),
        ("schedule = 'nightly'", "[schedule]: expected a table"),
        ("[variables]\nrows = 5", "[variables] rows: expected a string value, got 5"),
        ("[variables]\n'bad-name' = 'x'", "[variables] bad-name: expected a variable name"),
        ("[variables]\nrun_date = '2020-01-01'", "[variables] run_date: 'run_date' is set by the runner"),
        ("[variables.local]\nrows = true", "[variables.local] rows: expected a string value, got True"),
        (
            "[variables]\nUID = '1'",
            "[variables] UID: 'UID' belongs to the shell, the dynamic loader or the runner",
        ),
        ("[variables.local]\nIFS = ','", "[variables.local] IFS: 'IFS' belongs to the shell"),
        ("[variables]\nBASH_ENV = 'x'", "[variables] BASH_ENV: 'BASH_ENV' belongs to the shell"),
        ("[variables]\nLD_PRELOAD = 'x.so'", "[variables] LD_PRELOAD: 'LD_PRELOAD' belongs to the shell"),
        ("[variables]\nLC_ALL = 'C'", "[variables] LC_ALL: 'LC_ALL' belongs to the shell"),
        ("[variables]\nPATH = 3", "[variables] PATH: 'PATH' belongs to the shell"),
        ('[variables]\nsep = "a\\u0000b"', "[variables] sep: a NUL character cannot reach an engine"),
        ("[cluster\n", "sql/demo/pipeline.toml: not valid TOML"),
    ],
)
def test_each_mistake_is_named(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, PATH)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(PATH))
    assert "\n" not in str(caught.value)


def test_config_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pipeline.toml").write_bytes(b"description = '\xff'\n")
    with pytest.raises(ConfigError, match=r"pipeline\.toml: not UTF-8 text"):
        load_config(tmp_path)


def test_names_the_shell_does_not_own_stay_allowed() -> None:
    config = parse_config("[variables]\npath = 'a'\nUIDS = 'b'\nLDAP_URL = 'c'\nhome_dir = 'd'\n", PATH)
    assert config.variables == {"path": "a", "UIDS": "b", "LDAP_URL": "c", "home_dir": "d"}
