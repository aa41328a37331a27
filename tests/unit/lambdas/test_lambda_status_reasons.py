"""How a failed cluster's reason reads for each way EMR reports a failure."""

from __future__ import annotations

import pytest

from lambdas.shared.status import failure_reason, summarize


@pytest.mark.parametrize(
    ("state", "code", "message", "details", "expected"),
    [
        (
            "TERMINATED_WITH_ERRORS",
            "BOOTSTRAP_FAILURE",
            "bootstrap action 1 returned a non-zero return code",
            [],
            "bootstrap failure (TERMINATED_WITH_ERRORS): bootstrap action 1 returned a non-zero return code",
        ),
        (
            "TERMINATED_WITH_ERRORS",
            "INSTANCE_FLEET_TIMEOUT",
            "core fleet timed out",
            [],
            "Spot capacity not found (TERMINATED_WITH_ERRORS, INSTANCE_FLEET_TIMEOUT): core fleet timed out",
        ),
        (
            "TERMINATED_WITH_ERRORS",
            "VALIDATION_ERROR",
            "The requested number of spot instances exceeds your limit",
            [],
            "Spot capacity not found (TERMINATED_WITH_ERRORS, VALIDATION_ERROR): "
            "The requested number of spot instances exceeds your limit",
        ),
        (
            "TERMINATED_WITH_ERRORS",
            "INTERNAL_ERROR",
            "",
            ["Insufficient capacity for Spot instance type r7g.2xlarge"],
            "Spot capacity not found (TERMINATED_WITH_ERRORS, INTERNAL_ERROR): "
            "Insufficient capacity for Spot instance type r7g.2xlarge",
        ),
        (
            "TERMINATED_WITH_ERRORS",
            "INSTANCE_FAILURE",
            "The master node was lost",
            [],
            "TERMINATED_WITH_ERRORS (INSTANCE_FAILURE): The master node was lost",
        ),
        (
            "TERMINATED",
            "USER_REQUEST",
            "Terminated by user request",
            [],
            "TERMINATED (USER_REQUEST): Terminated by user request",
        ),
        ("TERMINATING", "", "", [], "TERMINATING (no code): no reason given by EMR"),
    ],
    ids=["bootstrap", "fleet-timeout", "spot-limit", "spot-in-error-details", "instance", "user", "nothing"],
)
def test_failure_reason(state, code, message, details, expected):
    assert failure_reason(state, code, message, details) == expected


def test_master_host_is_empty_until_emr_knows_it():
    status = summarize({"Id": "j-1", "Name": "n", "Status": {"State": "STARTING"}})

    assert (status.ready, status.failed, status.master_host, status.reason) == (False, False, "", "")


def test_running_cluster_reports_the_private_dns_emr_gives():
    status = summarize(
        {
            "Id": "j-1",
            "Name": "n",
            "Status": {"State": "RUNNING"},
            "MasterPublicDnsName": "ip-10-0-1-23.ec2.internal",
        }
    )

    assert (status.ready, status.failed, status.master_host) == (True, False, "ip-10-0-1-23.ec2.internal")
