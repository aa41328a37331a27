"""--cluster-id: the master's address from EMR (moto), its host key pinned from SSM, the sshd as the master."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from runner.__main__ import main
from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd

REGION = "us-west-1"
PARAMETER = "/nightshift/host-keys/{}"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def master(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """The runner's ~/.ssh/config sends EC2 names to the test sshd, as one would map a bastion or VPN."""
    config = cli.home / ".ssh" / "config"
    config.write_text(
        f"Host ec2-*.amazonaws.com ip-*.internal\n  HostName 127.0.0.1\n  Port {cli.sshd.port}\n"
        f"  User {cli.sshd.user}\n  IdentityFile {cli.sshd.user_key}\n"
    )
    cli.known_hosts.write_text("")  # as on Fargate: nothing known
    monkeypatch.setenv("HOME", str(cli.home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.delenv("NIGHTSHIFT_SSH_PRIVATE_KEY", raising=False)
    return cli


@pytest.fixture(autouse=True)
def _restore_signal_handlers() -> Iterator[None]:
    # main() installs its SIGINT/SIGTERM handlers; pytest's Ctrl-C must work again afterwards.
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _cluster() -> str:
    emr = boto3.client("emr", region_name=REGION)
    return emr.run_job_flow(
        Name="nightshift-test",
        ReleaseLabel="emr-7.13.0",
        Instances={
            "MasterInstanceType": "m5.xlarge",
            "SlaveInstanceType": "m5.xlarge",
            "InstanceCount": 1,
            "KeepJobFlowAliveWhenNoSteps": True,
        },
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]


def _publish(cluster_id: str, keys: str) -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER.format(cluster_id), Value=keys, Type="String"
    )


def _run(cli: Cli, capfdbinary: pytest.CaptureFixture[bytes], *args: str) -> tuple[int, bytes, bytes]:
    step = cli.step("10_cluster.sh", "echo on the master\necho warn >&2\n")
    code = main([str(step), *args, "--remote-dir", str(cli.remote_dir)])
    captured = capfdbinary.readouterr()
    return code, captured.out, captured.err


def test_the_published_host_key_pins_the_master(
    aws: None, master: Cli, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    cluster_id = _cluster()
    _publish(cluster_id, master.sshd.host_public_key + "\n")

    code, out, err = _run(master, capfdbinary, "--cluster-id", cluster_id)

    assert code == 0, err
    assert out == b"on the master\n"
    assert b"warn\n" in err
    assert master.known_hosts.read_text() == ""  # a pinned key is not recorded


def test_a_master_key_other_than_the_published_one_is_refused(
    aws: None, master: Cli, capfdbinary: pytest.CaptureFixture[bytes], tmp_path: Path
) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "k")], check=True)
    cluster_id = _cluster()
    _publish(cluster_id, " ".join((tmp_path / "k.pub").read_text().split()[:2]))
    master.trust_host()  # even a known_hosts entry does not override the cluster's own word

    code, out, err = _run(master, capfdbinary, "--cluster-id", cluster_id)

    assert code == 255
    assert out == b""
    assert f"is not the one SSM parameter /nightshift/host-keys/{cluster_id} holds".encode() in err


def test_without_published_keys_known_hosts_rules_apply(
    aws: None, master: Cli, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    cluster_id = _cluster()

    refused, _, refused_err = _run(master, capfdbinary, "--cluster-id", cluster_id)
    master.trust_host()
    accepted, out, _ = _run(master, capfdbinary, "--cluster-id", cluster_id)

    assert refused == 255
    assert b"not found: verifying the master's host key with known_hosts" in refused_err
    assert b"is not known" in refused_err
    assert accepted == 0
    assert out == b"on the master\n"


def test_cluster_notices_in_json_carry_the_step_they_are_about(
    aws: None, master: Cli, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    cluster_id = _cluster()
    master.trust_host()

    code, out, _ = _run(
        master, capfdbinary, "--cluster-id", cluster_id, "--run-id", "exec-2", "--log-format", "json"
    )

    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    (record,) = [
        r for r in records if "verifying the master's host key with known_hosts" in r.get("line", "")
    ]
    assert (record["step"], record["run_id"], record["stream"]) == ("10_cluster", "exec-2", "nightshift")


def test_the_fargate_invocation_with_the_key_in_the_environment(
    aws: None, master: Cli, capfdbinary: pytest.CaptureFixture[bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    (master.home / ".ssh" / "config").unlink()
    monkeypatch.setenv("NIGHTSHIFT_SSH_PRIVATE_KEY", master.sshd.user_key.read_text())
    cluster_id = _cluster()
    _publish(cluster_id, master.sshd.host_public_key)
    # Fargate has no ssh_config: here the master's EC2 name must still lead to the test sshd.
    (master.home / ".ssh" / "config").write_text(
        f"Host ec2-*.amazonaws.com\n  HostName 127.0.0.1\n  Port {master.sshd.port}\n"
    )

    code, out, err = _run(
        master, capfdbinary, "--cluster-id", cluster_id, "--user", master.sshd.user,
        "--run-date", "2024-03-01", "--run-id", "exec-1", "--log-format", "json",
    )  # fmt: skip

    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    lines = [(r["stream"], r["line"]) for r in records if r["stream"] != "nightshift"]
    assert sorted(lines) == [("stderr", "warn"), ("stdout", "on the master")]
    assert {r["run_id"] for r in records if r["stream"] != "nightshift"} == {"exec-1"}


def test_an_unknown_cluster_is_a_clear_error(
    aws: None, master: Cli, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    code, out, err = _run(master, capfdbinary, "--cluster-id", "j-NOSUCHCLUSTER")

    assert code == 255
    assert out == b""
    errors = [line for line in err.splitlines() if b"error:" in line]
    assert len(errors) == 1 and b"cluster j-NOSUCHCLUSTER not found in us-west-1" in errors[0]


def test_a_terminated_cluster_is_a_clear_error(
    aws: None, master: Cli, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    cluster_id = _cluster()
    boto3.client("emr", region_name=REGION).terminate_job_flows(JobFlowIds=[cluster_id])

    code, out, err = _run(master, capfdbinary, "--cluster-id", cluster_id)

    assert code == 255
    assert out == b""
    assert f"cluster {cluster_id} is TERMINATED".encode() in err


def test_dry_run_with_a_cluster_id_calls_no_api(
    master: Cli, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    code, out, _ = _run(master, capfdbinary, "--cluster-id", "j-ANY", "--dry-run", "--run-id", "r")

    assert code == 0
    assert out.startswith(b"[hadoop@<master of j-ANY>] run_date=")
    assert out.rstrip().endswith(
        b" bash " + str(master.remote_dir).encode() + b"/10_cluster/r/10_cluster/10_cluster.sh"
    )


@pytest.mark.parametrize("how", ["AWS_REGION", "--region"])
def test_the_region_comes_from_aws_region_or_the_flag(
    aws: None,
    master: Cli,
    capfdbinary: pytest.CaptureFixture[bytes],
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    # ECS sets AWS_REGION, which botocore alone would not read; the cluster lives in us-west-1.
    cluster_id = _cluster()
    _publish(cluster_id, master.sshd.host_public_key + "\n")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    extra = ["--region", REGION] if how == "--region" else []
    if how == "AWS_REGION":
        monkeypatch.setenv("AWS_REGION", REGION)

    code, out, _ = _run(master, capfdbinary, "--cluster-id", cluster_id, *extra)

    assert code == 0
    assert out == b"on the master\n"
