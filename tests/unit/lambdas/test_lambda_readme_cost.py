"""The README's cost of a night of the example pipeline is what lambdas/shared/cost.py computes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from lambdas.shared.cost import ClusterUsage, InstanceUsage, TaskUsage, region_prices, run_cost
from runner.config import load_config

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2025, 6, 1, 1, 0, tzinfo=UTC)
# The modelled night (README "What a night costs"): ready after 8 min, three stages of 45 s Fargate
# start-up + 2 min of steps, 1 min until EMR has terminated; every node lives as long as the cluster.
READY_SECONDS = 8 * 60
STAGE_SECONDS = 45 + 120
SHUTDOWN_SECONDS = 60
STEPS = 5
RUNNER_VCPU, RUNNER_GB = 0.25, 0.5


def night_cost(region: str, core_nodes: int) -> float:
    """The example's night on its own profile, with ``core_nodes`` core nodes, priced by run_cost."""
    profile = load_config(ROOT / "sql" / "example").cluster
    seconds = READY_SECONDS + 3 * STAGE_SECONDS + SHUTDOWN_SECONDS
    market = "SPOT" if profile.use_spot else "ON_DEMAND"
    instances = [InstanceUsage("j-1", profile.master_instance_type, "ON_DEMAND", seconds)]
    instances += [InstanceUsage("j-1", profile.core_instance_type, market, seconds)] * core_nodes
    end = T0 + timedelta(seconds=seconds)
    cluster = ClusterUsage("j-1", T0, T0 + timedelta(seconds=READY_SECONDS), end, seconds, tuple(instances))
    tasks = [TaskUsage("step", RUNNER_VCPU, RUNNER_GB, STAGE_SECONDS)] * STEPS
    return run_cost([cluster], tasks, region_prices(region)).total_usd


@pytest.mark.parametrize(
    ("profile", "core_nodes"),
    [("the example as shipped: `m5.xlarge` master + 2 `m5.xlarge` core nodes (Spot)", 2),
     ("master-only (`core_instance_count = 0`): one `m5.xlarge`", 0)],
)  # fmt: skip
def test_the_readme_table_is_the_computation(profile: str, core_nodes: int) -> None:
    assert load_config(ROOT / "sql" / "example").cluster.core_instance_count == 2
    row = f"| {profile} | ${night_cost('us-east-1', core_nodes):.2f} | ${night_cost('eu-west-1', core_nodes):.2f} |"
    assert row in (ROOT / "README.md").read_text(encoding="utf-8").splitlines(), row
