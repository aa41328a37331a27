"""Waiting for a cluster with a fake EMR client: progress lines, ready, terminated, stopped."""

from __future__ import annotations

from typing import Any

import pytest

from runner.errors import ClusterError
from runner.remote.emr import EmrClusters


class FakeEmr:
    def __init__(self, states: list[str], address: str = "ip-10-0-0-5.ec2.internal") -> None:
        self.states = states
        self.address = address
        self.calls = 0

    def describe_cluster(self, ClusterId: str) -> dict[str, Any]:
        state = self.states[min(self.calls, len(self.states) - 1)]
        self.calls += 1
        return {
            "Cluster": {
                "Id": ClusterId,
                "Status": {
                    "State": state,
                    "StateChangeReason": {
                        "Message": "Bootstrap failure" * (state == "TERMINATED_WITH_ERRORS")
                    },
                },
                "MasterPublicDnsName": self.address,
            }
        }


def _clusters(emr: FakeEmr, **kwargs: Any) -> EmrClusters:
    return EmrClusters(emr=emr, ssm=None, poll_seconds=0, **kwargs)  # type: ignore[arg-type]


def test_a_starting_cluster_is_waited_for_with_a_progress_line_each_poll() -> None:
    notices: list[str] = []
    emr = FakeEmr(["STARTING", "BOOTSTRAPPING", "WAITING"])

    address = _clusters(emr).master_address("j-1", notices.append, lambda _s: False)

    assert address == "ip-10-0-0-5.ec2.internal"
    assert [n.split(";")[0] for n in notices] == ["cluster j-1 is STARTING", "cluster j-1 is BOOTSTRAPPING"]
    assert all("waiting for it" in n for n in notices)


@pytest.mark.parametrize("state", ["TERMINATED", "TERMINATING", "TERMINATED_WITH_ERRORS"])
def test_a_cluster_that_is_gone_is_an_error(state: str) -> None:
    with pytest.raises(ClusterError, match=f"cluster j-1 is {state}"):
        _clusters(FakeEmr([state])).master_address("j-1", lambda _m: None, lambda _s: False)


def test_the_reason_of_a_failed_cluster_is_shown() -> None:
    with pytest.raises(ClusterError, match="Bootstrap failure"):
        _clusters(FakeEmr(["TERMINATED_WITH_ERRORS"])).master_address(
            "j-1", lambda _m: None, lambda _s: False
        )


def test_a_stop_while_waiting_ends_the_wait() -> None:
    emr = FakeEmr(["STARTING"])
    assert _clusters(emr).master_address("j-1", lambda _m: None, lambda _s: True) is None


def test_waiting_gives_up_after_the_limit() -> None:
    ticks = iter(range(0, 10_000, 600))
    clusters = EmrClusters(
        emr=FakeEmr(["STARTING"]),  # type: ignore[arg-type]
        poll_seconds=0,
        wait_seconds=1800,
        clock=lambda: next(ticks),
    )
    with pytest.raises(ClusterError, match="still STARTING after"):
        clusters.master_address("j-1", lambda _m: None, lambda _s: False)
