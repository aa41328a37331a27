"""An EMR cluster as an SSH target: its master's address (waited for) and the host keys it published."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import boto3
import paramiko
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from runner.errors import ClusterError
from runner.remote.hostkeys import parse_public_keys

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_emr.type_defs import ClusterTypeDef
    from mypy_boto3_ssm import SSMClient

HOST_KEY_PARAMETER = "/nightshift/host-keys/{cluster_id}"
STARTING_STATES = frozenset({"STARTING", "BOOTSTRAPPING"})
READY_STATES = frozenset({"RUNNING", "WAITING"})
POLL_SECONDS = 20.0
WAIT_SECONDS = 60 * 60.0
_REGION_HINT = "(give --region or set AWS_REGION)"


def host_key_parameter(cluster_id: str) -> str:
    return HOST_KEY_PARAMETER.format(cluster_id=cluster_id)


class EmrClusters:
    """Reads clusters through the EMR and SSM APIs; clients are made on first use unless injected."""

    def __init__(
        self,
        emr: EMRClient | None = None,
        ssm: SSMClient | None = None,
        *,
        poll_seconds: float = POLL_SECONDS,
        wait_seconds: float = WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        region: str | None = None,
    ) -> None:
        self._region = region
        self._emr = emr
        self._ssm = ssm
        self.poll_seconds = poll_seconds
        self.wait_seconds = wait_seconds
        self._clock = clock

    @property
    def emr(self) -> EMRClient:
        if self._emr is None:
            try:
                self._emr = boto3.client("emr", region_name=self._region, config=_retries())
            except BotoCoreError as error:
                raise ClusterError(
                    f"cannot use the EMR API: {error} (give --region or set AWS_REGION)"
                ) from error
        return self._emr

    @property
    def ssm(self) -> SSMClient:
        if self._ssm is None:
            try:
                self._ssm = boto3.client("ssm", region_name=self._region, config=_retries())
            except BotoCoreError as error:
                raise ClusterError(
                    f"cannot use the SSM API: {error} (give --region or set AWS_REGION)"
                ) from error
        return self._ssm

    def host_key_parameter(self, cluster_id: str) -> str:
        return host_key_parameter(cluster_id)

    def master_address(
        self,
        cluster_id: str,
        notice: Callable[[str], None],
        sleep: Callable[[float], bool],
    ) -> str | None:
        """The master node's DNS name once the cluster is ready; None if `sleep` was interrupted.

        `sleep(seconds)` returns True when the wait should end (a stop request). For a cluster in a
        private subnet the API's MasterPublicDnsName is the private name, which is what a runner in
        the same VPC needs.
        """
        started = self._clock()
        while True:
            cluster = self._describe(cluster_id)
            status = cluster.get("Status", {})
            state = status.get("State", "UNKNOWN")
            reason = status.get("StateChangeReason", {}).get("Message") or ""
            if state in READY_STATES:
                address = cluster.get("MasterPublicDnsName")
                if not address:
                    raise ClusterError(f"cluster {cluster_id} is {state} but reports no master address")
                return address
            if state not in STARTING_STATES:
                detail = f": {reason}" if reason else ""
                raise ClusterError(f"cluster {cluster_id} is {state}{detail}; nothing was run")
            waited = self._clock() - started
            if waited > self.wait_seconds:
                raise ClusterError(
                    f"cluster {cluster_id} is still {state} after {_minutes(waited)}; giving up"
                )
            detail = f" ({reason})" if reason else ""
            notice(f"cluster {cluster_id} is {state}{detail}; waiting for it ({_minutes(waited)} so far)")
            if sleep(self.poll_seconds):
                return None

    def _describe(self, cluster_id: str) -> ClusterTypeDef:
        try:
            return self.emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            message = error.response.get("Error", {}).get("Message", "")
            if code in {"InvalidRequestException", "ResourceNotFoundException", "ValidationException"}:
                region = self.emr.meta.region_name
                raise ClusterError(f"cluster {cluster_id} not found in {region}: {message}") from error
            raise ClusterError(f"cannot describe cluster {cluster_id}: {code}: {message}") from error
        except BotoCoreError as error:
            raise ClusterError(f"cannot describe cluster {cluster_id}: {error}") from error

    def published_host_keys(self, cluster_id: str) -> list[paramiko.PKey] | None:
        """The master's host keys its bootstrap action published, or None when there are none."""
        name = host_key_parameter(cluster_id)
        try:
            value = self.ssm.get_parameter(Name=name)["Parameter"].get("Value", "")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise ClusterError(f"cannot read SSM parameter {name}: {error}") from error
        except BotoCoreError as error:
            raise ClusterError(f"cannot read SSM parameter {name}: {error}") from error
        keys = parse_public_keys(value)
        if not keys:
            raise ClusterError(f"SSM parameter {name} holds no valid host key ('TYPE BASE64' per line)")
        return keys


def _retries() -> Config:
    return Config(retries={"mode": "standard", "max_attempts": 5})


def _minutes(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest:02d}s"
