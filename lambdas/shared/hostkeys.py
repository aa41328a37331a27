"""Where the bootstrap action publishes a cluster's SSH host keys, and their clean-up."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.errors import error_code
from lambdas.shared.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

HOST_KEY_PREFIX = "/nightshift/host-keys/"


def host_key_parameter_name(cluster_id: str) -> str:
    """SSM parameter holding the master's host public keys, one "TYPE BASE64" per line."""
    return f"{HOST_KEY_PREFIX}{cluster_id}"


def delete_host_keys(ssm: SSMClient, cluster_id: str) -> bool:
    """Delete the published host keys; best effort, never raises. True if a parameter was deleted."""
    name = host_key_parameter_name(cluster_id)
    try:
        ssm.delete_parameter(Name=name)
    except ClientError as exc:
        # A cluster that never finished bootstrapping never published its keys.
        if error_code(exc) != "ParameterNotFound":
            logger.warning("could not delete host keys", parameter=name, error=str(exc))
        return False
    except BotoCoreError as exc:
        logger.warning("could not delete host keys", parameter=name, error=str(exc))
        return False
    return True
