"""What the Lambda asset needs at import time: no credentials, and nothing beyond the layer."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
HANDLERS = [
    "preflight",
    "create_cluster",
    "cluster_status",
    "terminate_cluster",
    "sweeper",
    "record_run",
    "check_inputs",
    "start_run",
    "late_check",
    "alert",
]
# The Lambda runtime (boto3/botocore), the Powertools layer (powertools, pydantic) and stdlib.
ALLOWED_TOP_LEVEL = {"boto3", "botocore", "aws_lambda_powertools", "pydantic", "lambdas"}


def test_handlers_import_without_credentials_or_region():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(ROOT)
    imports = "; ".join(f"import lambdas.{name}" for name in HANDLERS)
    result = subprocess.run(
        [sys.executable, "-c", imports], env=env, cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


SOURCES = sorted((ROOT / "lambdas").rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_runtime_imports_are_only_runtime_and_layer(path):
    tree = ast.parse(path.read_text())
    runtime_imports = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            runtime_imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            runtime_imports.add(node.module.split(".")[0])
    foreign = runtime_imports - ALLOWED_TOP_LEVEL - set(sys.stdlib_module_names)
    assert not foreign, f"{path.name} imports {foreign}, which the Lambda runtime does not have"


@pytest.mark.parametrize("name", HANDLERS)
def test_each_handler_is_where_the_state_machine_looks(name):
    module = __import__(f"lambdas.{name}", fromlist=["handler"])
    assert callable(module.handler)


def test_the_bundled_asset_imports_every_handler_and_has_its_own_zone_database(tmp_path):
    """The asset infra deploys (infra/lambda_code.py's bundling), not the source tree: every handler
    imports from it, and StartRun's zoneinfo look-ups find the bundled tzdata with no system zones
    (PYTHONTZPATH empty), as the Lambda runtime does not promise a zone database."""
    from infra.lambda_code import _CopyWithTzdata  # noqa: PLC0415

    assert _CopyWithTzdata().try_bundle(str(tmp_path), None)
    assert not (tmp_path / "lambdas" / "bootstrap").exists()
    assert not (tmp_path / "lambdas" / "requirements.txt").exists()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["PYTHONPATH"] = str(tmp_path)
    env["PYTHONTZPATH"] = ""
    script = "; ".join(
        [
            *(f"import lambdas.{name}" for name in HANDLERS),
            "import lambdas, tzdata",
            "from lambdas.shared.scheduling import run_date_of",
            "print(lambdas.__file__, tzdata.__file__, run_date_of('2025-06-30T22:30:00Z', 'Europe/Berlin'))",
        ]
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    package, zones, run_date = result.stdout.split()
    assert Path(package).is_relative_to(tmp_path)
    assert Path(zones).is_relative_to(tmp_path)
    assert run_date == "2025-07-01"
