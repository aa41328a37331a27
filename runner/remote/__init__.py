"""Running steps on a cluster's master node over SSH: transport, streaming, and the SSH executor."""

from runner.remote.executor import RemoteSettings, SSHExecutor

__all__ = ["RemoteSettings", "SSHExecutor"]
