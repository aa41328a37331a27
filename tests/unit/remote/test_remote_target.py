"""Flags merged with ~/.ssh/config as ssh does: aliases, defaults, ProxyJump chains."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import paramiko
import pytest

from runner.errors import UsageError
from runner.remote.target import resolve_target

CONFIG = """
Host master
  HostName 10.0.0.5
  User emr
  Port 2222
  IdentityFile ~/keys/emr.pem
  ProxyJump ops@bastion:2200
  StrictHostKeyChecking no

Host bastion
  HostName bastion.example.com
  IdentityFile ~/keys/bastion

Host inner
  HostName 10.1.0.9
  ProxyJump master

Host accept
  StrictHostKeyChecking accept-new
  UserKnownHostsFile ~/cluster_known_hosts
"""


@pytest.fixture
def config() -> paramiko.SSHConfig:
    return paramiko.SSHConfig.from_text(CONFIG)


def test_an_alias_brings_hostname_user_port_key_and_bastion(config: paramiko.SSHConfig) -> None:
    target = resolve_target("master", config)

    assert (target.hostname, target.user, target.port) == ("10.0.0.5", "emr", 2222)
    assert target.identity_files == (Path("~/keys/emr.pem").expanduser(),)
    assert [(hop.hostname, hop.user, hop.port) for hop in target.jumps] == [
        ("bastion.example.com", "ops", 2200)
    ]
    assert target.jumps[0].identity_files == (Path("~/keys/bastion").expanduser(),)
    assert target.known_hosts_name == "[10.0.0.5]:2222"
    assert not target.accept_new  # StrictHostKeyChecking no is never honoured


def test_flags_win_and_the_default_user_is_hadoop(config: paramiko.SSHConfig) -> None:
    assert resolve_target("master", config, user="me", port=22).user == "me"
    plain = resolve_target("10.9.9.9", config)
    assert (plain.hostname, plain.user, plain.port, plain.jumps) == ("10.9.9.9", "hadoop", 22, ())
    assert plain.known_hosts_files == (Path("~/.ssh/known_hosts").expanduser(),)


def test_a_bastion_behind_a_bastion_is_reached_in_order(config: paramiko.SSHConfig) -> None:
    target = resolve_target("inner", config)
    assert [hop.hostname for hop in target.jumps] == ["bastion.example.com", "10.0.0.5"]


def test_accept_new_and_known_hosts_files_come_from_the_config(config: paramiko.SSHConfig) -> None:
    target = resolve_target("accept", config, known_hosts=Path("/given"))
    assert target.accept_new
    assert target.known_hosts_files == (Path("/given"), Path("~/cluster_known_hosts").expanduser())


def test_a_jump_loop_is_a_usage_error() -> None:
    config = paramiko.SSHConfig.from_text("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n")
    with pytest.raises(UsageError, match="ProxyJump"):
        resolve_target("a", config)


def test_match_exec_still_works_though_invoke_loads_only_when_a_config_needs_it(tmp_path: Path) -> None:
    # A fresh interpreter: this one may have loaded invoke already.
    config = tmp_path / "config"
    config.write_text('Match exec "test -n yes"\n  User fromexec\nMatch exec "false"\n  Port 99\n')
    script = f"""
import sys
import runner.remote
from runner.remote.target import load_ssh_config, resolve_target
before = "invoke.collection" in sys.modules
target = resolve_target("h", load_ssh_config(__import__("pathlib").Path({str(config)!r})))
print(before, "invoke.collection" in sys.modules, target.user, target.port)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True", "fromexec", "22"]
