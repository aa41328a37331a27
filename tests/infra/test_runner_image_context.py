"""What of the repository goes into the runner image: the build context as CDK's asset applies .dockerignore.

CDK stages and hashes a Docker image asset with its Docker ignore strategy, the rules of Docker's
.dockerignore (Docker docs, "Build context", .dockerignore files:
https://docs.docker.com/build/building/context/#dockerignore-files): a pattern excludes the path it
matches and everything below it. What it ignores, neither the image nor the asset's hash sees.
"""

from __future__ import annotations

from pathlib import Path

import aws_cdk as cdk
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ignored() -> cdk.IgnoreStrategy:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    return cdk.IgnoreStrategy.docker(str(ROOT), patterns)


@pytest.mark.parametrize(
    "path",
    [
        "sql/example/sample_data/users.csv",
        "sql/orders/data/2025-06-03/orders.csv",  # a data folder of any name, however deep
        "sql/orders/exports/orders.parquet",
        "sql/orders/.env",
        "tests/conftest.py",
        "cdk.out/manifest.json",
        ".nightshift/warehouse/shop.db/orders/part-0.parquet",
    ],
)
def test_data_folders_of_any_name_and_hidden_files_stay_out(ignored: cdk.IgnoreStrategy, path: str) -> None:
    assert ignored.ignores(str(ROOT / path))


@pytest.mark.parametrize(
    "path",
    [
        "sql/example/10_users.sql",
        "sql/example/pipeline.toml",
        "sql/example/20_sessions_valid.check.sql",
        "sql/orders/30_publish.sh",
        "runner/__main__.py",
        "requirements.txt",
    ],
)
def test_the_steps_settings_and_runner_go_in(ignored: cdk.IgnoreStrategy, path: str) -> None:
    assert not ignored.ignores(str(ROOT / path))
