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
