"""The cost of a run from a moto cluster's timeline and instances, against a hand calculation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from lambdas.shared.cost import (
    SPOT_NOTE,
    ClusterUsage,
    InstanceUsage,
    TaskUsage,
    cluster_usage,
    normalization_factor,
    price_table,
    region_prices,
    run_cost,
)
from tests.lambda_support import REGION

T0 = datetime(2025, 3, 30, 1, 0, 0)  # moto keeps naive UTC times
NOW = datetime(2025, 3, 30, 2, 0, 0, tzinfo=UTC)
# A known table, not the shipped one: the test checks the arithmetic, not AWS's prices.
TABLE: dict[str, Any] = {
    "as_of": "2025-01-01",
    "regions": {
        REGION: {
            "ec2": {"m5.xlarge": 0.192, "r6g.2xlarge": 0.4032},
            "emr": {"m5.xlarge": 0.048, "r6g.2xlarge": 0.1008},
            "fargate": {"vcpu_hour": 0.04048, "gb_hour": 0.004445},
        }
    },
}


def make_cluster(emr: Any, emr_backend: Any, *, master_seconds: int, core_seconds: int) -> str:
    """One m5.xlarge master (On-Demand) and two r6g.2xlarge core nodes (Spot), with set timelines."""
    cluster_id = str(
        emr.run_job_flow(
            Name="nightshift-example-2025-03-30",
            ReleaseLabel="emr-7.13.0",
            Instances={
                "InstanceGroups": [
                    {
                        "Name": "master",
                        "InstanceRole": "MASTER",
                        "InstanceType": "m5.xlarge",
                        "InstanceCount": 1,
                        "Market": "ON_DEMAND",
                    },
                    {
                        "Name": "core",
                        "InstanceRole": "CORE",
                        "InstanceType": "r6g.2xlarge",
                        "InstanceCount": 2,
                        "Market": "SPOT",
                    },
                ],
                "KeepJobFlowAliveWhenNoSteps": True,
            },
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
        )["JobFlowId"]
    )
    cluster = emr_backend.clusters[cluster_id]
    cluster.creation_datetime = T0
    cluster.ready_datetime = T0 + timedelta(minutes=8)
    cluster.end_datetime = T0 + timedelta(seconds=master_seconds)
    cluster.state = "TERMINATED"
    for group in cluster.instance_groups:
        start = T0 if group.role == "MASTER" else T0 + timedelta(seconds=60)
        group.creation_date_time = start
        group.end_date_time = start + timedelta(
            seconds=master_seconds if group.role == "MASTER" else core_seconds
        )
    return cluster_id


def test_cost_of_a_cluster_and_its_tasks_matches_the_hand_calculation(emr: Any, emr_backend: Any) -> None:
    cluster_id = make_cluster(emr, emr_backend, master_seconds=2400, core_seconds=2280)
    usage = cluster_usage(emr, emr.describe_cluster(ClusterId=cluster_id)["Cluster"], NOW)
    assert usage.seconds == 2400
    assert usage.ready_seconds == 480
    assert sorted((i.instance_type, i.market, i.seconds) for i in usage.instances) == [
        ("m5.xlarge", "ON_DEMAND", 2400),
        ("r6g.2xlarge", "SPOT", 2280),
        ("r6g.2xlarge", "SPOT", 2280),
    ]
    # Five runner tasks of 0.25 vCPU / 0.5 GB: four of 150 s, one of 30 s (billed as a minute).
    tasks = [TaskUsage("10_a.sql", 0.25, 0.5, 150)] * 4 + [TaskUsage("20_b.sql", 0.25, 0.5, 30)]
    cost = run_cost([usage], tasks, region_prices(REGION, table=TABLE))

    ec2 = 2400 / 3600 * 0.192 + 2 * 2280 / 3600 * 0.4032  # 0.128 + 0.51072
    emr_fee = 2400 / 3600 * 0.048 + 2 * 2280 / 3600 * 0.1008  # 0.032 + 0.12768
    fargate = (4 * 150 + 60) / 3600 * (0.25 * 0.04048 + 0.5 * 0.004445)  # 0.0022628
    assert round(cost.ec2_usd, 2) == round(ec2, 2) == 0.64
    assert round(cost.emr_usd, 2) == round(emr_fee, 2) == 0.16
    assert round(cost.fargate_usd, 4) == round(fargate, 4) == 0.0023
    assert round(cost.total_usd, 2) == round(ec2 + emr_fee + fargate, 2) == 0.80
    assert cost.cluster_seconds == 2400
    assert cost.fargate_task_seconds == 630
    # m5.xlarge weighs 8, r6g.2xlarge 16: 8 x 2400/3600 + 2 x 16 x 2280/3600.
    assert round(cost.normalized_instance_hours, 2) == 25.6
    assert SPOT_NOTE in cost.notes
    assert cost.as_output()["total_usd"] == round(ec2 + emr_fee + fargate, 4)


def test_a_cluster_still_terminating_counts_until_the_record(emr: Any, emr_backend: Any) -> None:
    cluster_id = make_cluster(emr, emr_backend, master_seconds=600, core_seconds=540)
    cluster = emr_backend.clusters[cluster_id]
    cluster.end_datetime = None
    cluster.state = "TERMINATING"
    for group in cluster.instance_groups:
        group.end_date_time = None
    usage = cluster_usage(emr, emr.describe_cluster(ClusterId=cluster_id)["Cluster"], NOW)
    assert usage.seconds == 3600
    assert {i.seconds for i in usage.instances} == {3600, 3540}
    assert any("still terminating" in note for note in usage.notes)


def test_an_instance_type_missing_from_the_table_is_named_not_guessed() -> None:
    usage = [InstanceUsage("j-1", "x2iedn.metal", "ON_DEMAND", 3600)]
    cluster = ClusterUsage("j-1", NOW, None, NOW, 3600, tuple(usage))
    cost = run_cost([cluster], [], region_prices(REGION, table=TABLE))
    assert cost.total_usd == 0
    assert any("no us-east-1 price for x2iedn.metal" in note for note in cost.notes)


def test_cdk_json_overrides_replace_single_prices() -> None:
    prices = region_prices(REGION, {REGION: {"ec2": {"m5.xlarge": 0.1}}}, table=TABLE)
    assert prices.instance_hour("m5.xlarge") == (0.1, 0.048)
    assert prices.instance_hour("r6g.2xlarge") == (0.4032, 0.1008)
    assert prices.source == f"{REGION} list prices as of 2025-01-01, with cdk.json overrides"


@pytest.mark.parametrize(
    ("instance_type", "factor"),
    [("m5.large", 4), ("m5.xlarge", 8), ("r6g.2xlarge", 16), ("m5.24xlarge", 192), ("m5.metal", None)],
)
def test_normalization_factors_follow_emr(instance_type: str, factor: float | None) -> None:
    assert normalization_factor(instance_type) == factor


def test_the_shipped_table_names_its_source_and_date_and_prices_the_default_profiles() -> None:
    table = price_table()
    assert "aws.amazon.com/emr/pricing" in table["source"] and table["as_of"]
    for region in ("us-east-1", "eu-west-1"):
        prices = region_prices(region)
        # The default profile (m5.xlarge) and the test pipelines' fallback types are priced.
        for instance_type in ("m5.xlarge", "r7g.2xlarge", "r6g.2xlarge", "m6g.2xlarge"):
            assert prices.instance_hour(instance_type) is not None, (region, instance_type)
        assert prices.fargate_vcpu_hour and prices.fargate_gb_hour
