"""A pipeline's S3 paths against its cdk.json data_access: refused at synth, not denied at night."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra.config import ContextError, DataAccess, NightshiftConfig, S3Path
from infra.data_access import DataAccessError, access_key, check_data_access
from runner.model import Pipeline, load_pipeline

ACCESS = DataAccess(read=(S3Path("lake", "raw/"),), write=(S3Path("lake", "curated/"),))


def _pipeline(tmp_path: Path, toml: str) -> Pipeline:
    folder = tmp_path / "sales"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(toml)
    (folder / "10_a.sql").write_text("SELECT 1;\n")
    return load_pipeline(folder)


@pytest.mark.parametrize(
    "toml",
    [
        '[variables]\nraw = "s3://lake/raw"\nout = "s3a://lake/curated/sales/"\nname = "sales"\n',
        '[variables]\nlocal_only = "/tmp/x"\n[variables.local]\nraw = "s3://elsewhere/raw/"\n',
        '[catalog]\ndatabases = ["sales"]\nwarehouse = "s3://lake/curated/warehouse/"\n',
        '[variables]\nraw = "s3://lake/raw/"\n[inputs]\nobjects = ["${raw}${run_date}/_SUCCESS"]\n',
    ],
)
def test_paths_within_data_access_pass(tmp_path: Path, toml: str) -> None:
    assert check_data_access(_pipeline(tmp_path, toml), ACCESS, "sales").warnings == ()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[variables]\nraw = "s3://lake/landing/sales"\n',
            r"^pipeline 'sales': \[variables\] raw = 's3://lake/landing/sales' is outside what cdk.json "
            r"data_access.sales lets its clusters read or write \(s3://lake/raw/, s3://lake/curated/\); "
            r"add it to data_access.sales.read or .write$",
        ),
        (
            '[variables]\nraw = "s3n://other-bucket/raw/"\n',
            r"\[variables\] raw = 's3n://other-bucket/raw/' is outside",
        ),
        (
            '[catalog]\ndatabases = ["sales"]\nwarehouse = "s3://lake/raw/warehouse/"\n',
            r"^pipeline 'sales': \[catalog\] warehouse 's3://lake/raw/warehouse/' is outside what cdk.json "
            r"data_access.sales.write lets its clusters write \(s3://lake/curated/\)",
        ),
        (
            '[variables]\nraw = "s3://lake/raw/"\n[inputs]\nobjects = ["s3://other/${run_date}/_SUCCESS"]\n',
            r"^pipeline 'sales': \[inputs\] 's3://other/\$\{run_date\}/_SUCCESS' .* outside what cdk.json data_access",
        ),
    ],
)
def test_a_path_outside_data_access_is_refused_in_one_line(tmp_path: Path, toml: str, message: str) -> None:
    with pytest.raises(DataAccessError, match=message) as raised:
        check_data_access(_pipeline(tmp_path, toml), ACCESS, "sales")
    assert "\n" not in str(raised.value)
    # app.py prints a ContextError as one line naming the key, without a traceback.
    assert isinstance(raised.value, ContextError)


def test_a_path_only_known_at_run_time_is_a_warning(tmp_path: Path) -> None:
    pipeline = _pipeline(tmp_path, '[variables]\nbucket = "lake"\nraw = "s3://${bucket}/raw/"\n')
    (warning,) = check_data_access(pipeline, ACCESS, "sales").warnings
    assert warning.startswith(
        "pipeline 'sales': [variables] raw = 's3://${bucket}/raw/': only known at run time"
    )


def test_the_entry_named_is_the_one_that_grants() -> None:
    config = NightshiftConfig(
        ec2_key_name="k",
        ssh_key_secret_arn="arn",
        notification_email="a@b",
        data_access={"*": DataAccess(), "sales": DataAccess()},
    )
    assert access_key(config, "sales") == "sales"
    assert access_key(config, "adhoc") == "*"
    assert access_key(NightshiftConfig("k", "arn", "a@b"), "adhoc") == "adhoc"
