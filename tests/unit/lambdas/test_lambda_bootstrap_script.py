"""The host-key bootstrap action, run for real by bash against a fake node and a fake aws CLI."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from lambdas.shared.hostkeys import HOST_KEY_PREFIX

SCRIPT = Path(__file__).resolve().parents[3] / "lambdas" / "bootstrap" / "publish_host_keys.sh"

ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIED25519"
RSA = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQRSA"

# A stand-in for the AWS CLI that records its arguments, one per line (there is no AWS here).
FAKE_AWS = """#!/bin/bash
printf '%s\\n' "$@" > "$FAKE_AWS_LOG"
"""


@pytest.fixture
def node(tmp_path: Path):
    info = tmp_path / "info"
    ssh = tmp_path / "ssh"
    bin_dir = tmp_path / "bin"
    for directory in (info, ssh, bin_dir):
        directory.mkdir()
    (ssh / "ssh_host_ed25519_key.pub").write_text(f"{ED25519} root@ip-10-0-1-23\n")
    (ssh / "ssh_host_rsa_key.pub").write_text(f"{RSA} root@ip-10-0-1-23\n")
    (ssh / "ssh_host_ed25519_key").write_text("PRIVATE KEY, must never be published\n")
    # EMR writes these files pretty-printed, one key per line.
    job_flow = {"jobFlowId": "j-2AXXXXXXGAPLF", "jobFlowCreationInstant": 1}
    (info / "job-flow.json").write_text(json.dumps(job_flow, indent=2))
    aws = bin_dir / "aws"
    aws.write_text(FAKE_AWS)
    aws.chmod(0o755)
    log = tmp_path / "aws-args"
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "NIGHTSHIFT_INFO_DIR": str(info),
        "NIGHTSHIFT_SSH_DIR": str(ssh),
        "AWS_DEFAULT_REGION": "eu-west-1",
        "FAKE_AWS_LOG": str(log),
    }
    return info, log, env


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # The Lambdas pass their host-key prefix as the argument (cluster_spec.run_job_flow_request).
    argv = list(args) if args else [HOST_KEY_PREFIX]
    return subprocess.run(["bash", str(SCRIPT), *argv], env=env, capture_output=True, text=True, timeout=30)


def test_master_publishes_its_host_keys_without_comments(node):
    info, log, env = node
    (info / "instance.json").write_text('{"isMaster": true, "isRunningNameNode": true}')

    result = _run(env)

    assert result.returncode == 0, result.stderr
    args = log.read_text().splitlines()
    assert args[:2] == ["ssm", "put-parameter"]
    assert args[args.index("--name") + 1] == f"{HOST_KEY_PREFIX}j-2AXXXXXXGAPLF"
    assert args[args.index("--type") + 1] == "String"
    assert args[args.index("--region") + 1] == "eu-west-1"
    # Published once: the instance role is denied overwrites, so a pin can never be replaced.
    assert "--overwrite" not in args
    value_at = args.index("--value") + 1
    assert args[value_at : value_at + 2] == [ED25519, RSA]
    assert "PRIVATE" not in log.read_text()


def test_core_node_does_nothing_and_succeeds(node):
    info, log, env = node
    (info / "instance.json").write_text('{"isMaster": false, "isRunningNameNode": false}')

    result = _run(env)

    assert result.returncode == 0, result.stderr
    assert not log.exists()


def test_master_without_host_keys_fails_the_bootstrap(node, tmp_path):
    info, log, env = node
    (info / "instance.json").write_text('{"isMaster": true}')
    env["NIGHTSHIFT_SSH_DIR"] = str(tmp_path / "empty")

    result = _run(env)

    assert result.returncode != 0
    assert "no host public keys" in result.stderr
    assert not log.exists()


def test_a_failing_publish_fails_the_master_bootstrap(node):
    info, _, env = node
    (info / "instance.json").write_text('{"isMaster": true}')
    (Path(env["PATH"].split(":")[0]) / "aws").write_text("#!/bin/bash\nexit 255\n")

    assert _run(env).returncode != 0


def test_the_prefix_comes_from_the_argument(node):
    info, log, env = node
    (info / "instance.json").write_text('{"isMaster": true}')

    assert _run(env, "/nightshift-dev/host-keys/").returncode == 0
    args = log.read_text().splitlines()
    assert args[args.index("--name") + 1] == "/nightshift-dev/host-keys/j-2AXXXXXXGAPLF"


def test_without_a_prefix_the_script_refuses_to_guess(node):
    info, log, env = node
    (info / "instance.json").write_text('{"isMaster": true}')

    result = _run(env, "")

    assert result.returncode == 2
    assert "usage" in result.stderr
    assert not log.exists()
