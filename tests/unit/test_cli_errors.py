"""Errors become exit codes in one place (runner.__main__.exit_code_of): the deployed command's too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_an_unreachable_aws_endpoint_through_the_command_is_one_line_and_255(tmp_path: Path) -> None:
    """run_deployed raises botocore's error as the runner's (aws_error); main gives its line and code."""
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # the discard port: nothing listens
    }
    done = subprocess.run(
        [sys.executable, "-m", "runner", "sql/example/", "--deployed", "--history"],
        capture_output=True,
        check=False,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 255, done.stderr
    assert done.stdout == b""
    assert done.stderr.decode().splitlines() == [
        'nightshift: error: cannot reach AWS: Could not connect to the endpoint URL: "http://127.0.0.1:9/"'
    ]
