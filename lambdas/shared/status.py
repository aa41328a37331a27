"""Report a cluster's state to the state machine: ready, failed, master host and why it failed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lambdas.shared.clusters import GONE_STATES, READY_STATES, TAG_EXECUTION_ARN, describe, tags_of
from lambdas.shared.errors import ClusterGone, transient_on_throttling

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_emr.type_defs import ClusterTypeDef

NOT_FOUND = "NOT_FOUND"

# EMR reports a lack of Spot capacity in the message (instance groups) or as a fleet timeout
# (instance fleets with TimeoutAction TERMINATE_CLUSTER); the wording varies between releases.
_SPOT_CAPACITY = re.compile(
    r"spot.*(capacity|insufficient|not available|limit)|(capacity|insufficient).*spot",
    re.IGNORECASE,
)

_INSUFFICIENT_CAPACITY = re.compile(r"insufficient\W*(instance\W*)?capacity", re.IGNORECASE)
# Failures of the launch itself, not of anything the pipeline asked for: a new cluster (maybe of
# the next instance type, in the next subnet) usually starts. VALIDATION_ERROR (a wrong release
# label, a missing role) and step failures would fail again the same way.
LAUNCH_FAILURE_CODES = frozenset(
    {"INTERNAL_ERROR", "BOOTSTRAP_FAILURE", "INSTANCE_FAILURE", "INSTANCE_FLEET_TIMEOUT"}
)


@dataclass(frozen=True)
class ClusterStatus:
    cluster_id: str
    state: str
    ready: bool
    failed: bool
    master_host: str
    reason: str
    # Failed while launching for a reason a new cluster may not meet: retry the launch.
    launch_failure: bool = False


def is_launch_failure(code: str, message: str, error_messages: list[str]) -> bool:
    """EMR's state-change reason says the launch failed (retry it), not the pipeline's request."""
    if code in LAUNCH_FAILURE_CODES:
        return True
    text = " ".join([message, *error_messages])
    return bool(_INSUFFICIENT_CAPACITY.search(text) or _SPOT_CAPACITY.search(text))


def failure_reason(state: str, code: str, message: str, error_messages: list[str]) -> str:
    """One line a data engineer can act on, naming the state and EMR's own reason."""
    detail = message or "; ".join(error_messages) or "no reason given by EMR"
    if code == "BOOTSTRAP_FAILURE":
        return f"bootstrap failure ({state}): {detail}"
    if code == "INSTANCE_FLEET_TIMEOUT" or _SPOT_CAPACITY.search(" ".join([message, *error_messages])):
        return f"Spot capacity not found ({state}, {code or 'no code'}): {detail}"
    if _INSUFFICIENT_CAPACITY.search(" ".join([message, *error_messages])):
        return f"insufficient capacity ({state}, {code or 'no code'}): {detail}"
    return f"{state} ({code or 'no code'}): {detail}"


def summarize(cluster: ClusterTypeDef) -> ClusterStatus:
    """The state machine's view of one DescribeCluster answer."""
    status = cluster["Status"]
    state = status.get("State", "")
    change = status.get("StateChangeReason", {})
    failed = state in GONE_STATES
    reason = ""
    launch_failure = False
    if failed:
        code, message = change.get("Code", ""), change.get("Message") or ""
        details = [detail.get("ErrorMessage", "") for detail in status.get("ErrorDetails", [])]
        reason = failure_reason(state, code, message, details)
        launch_failure = is_launch_failure(code, message, details)
    return ClusterStatus(
        cluster_id=cluster["Id"],
        state=state,
        ready=state in READY_STATES,
        failed=failed,
        # In a private subnet EMR puts the master's private DNS name here.
        master_host=cluster.get("MasterPublicDnsName") or "",
        reason=reason,
        launch_failure=launch_failure,
    )


@transient_on_throttling
def cluster_status(cluster_id: str, *, emr: EMRClient, execution_arn: str | None = None) -> ClusterStatus:
    """Describe the cluster; an id EMR does not know is reported as failed, not raised.

    A cluster tagged with another execution than ``execution_arn`` raises ClusterGone: it is no
    cluster of this run (a night's own cluster always carries its execution; a child sends its
    batch's, whose cluster it runs on).
    """
    cluster = describe(emr, cluster_id)
    if cluster is not None and execution_arn is not None:
        owner = tags_of(cluster).get(TAG_EXECUTION_ARN)
        if owner is not None and owner != execution_arn:
            raise ClusterGone(f"cluster {cluster_id} belongs to execution {owner}, not to {execution_arn}")
    if cluster is None:
        return ClusterStatus(
            cluster_id=cluster_id,
            state=NOT_FOUND,
            ready=False,
            failed=True,
            master_host="",
            reason=f"cluster {cluster_id} not found: EMR does not know this cluster id",
        )
    return summarize(cluster)
