"""What a run cost: its clusters' instances from EMR's own record, its Fargate tasks, a price table."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_emr import EMRClient
    from mypy_boto3_emr.type_defs import ClusterTypeDef

PRICES_FILE = Path(__file__).with_name("prices.json")
# Set by infra from cdk.json's "prices" (entries that replace the shipped table's), as JSON.
PRICES_VARIABLE = "NIGHTSHIFT_PRICES"
# EC2, EMR and Fargate all bill per second with a one-minute minimum.
MINIMUM_BILLED_SECONDS = 60.0
SPOT_NOTE = "Spot instances are priced at the On-Demand rate: the cost is an upper bound"
# EMR's normalization factors (m1.small = 1): xlarge = 8, each doubling of the size doubles it.
_SIZE_FACTORS = {"nano": 0.25, "micro": 0.5, "small": 1, "medium": 2, "large": 4, "xlarge": 8}
_MULTIPLE_XLARGE = re.compile(r"^(\d+)xlarge$")


@dataclass(frozen=True)
class RegionPrices:
    """USD per hour by instance type (EC2 On-Demand and the EMR fee), and Fargate's rates."""

    region: str
    ec2: Mapping[str, float]
    emr: Mapping[str, float]
    fargate_vcpu_hour: float | None
    fargate_gb_hour: float | None
    source: str

    def instance_hour(self, instance_type: str) -> tuple[float, float] | None:
        """(EC2, EMR fee) per hour, or None when the table lacks either."""
        if instance_type in self.ec2 and instance_type in self.emr:
            return self.ec2[instance_type], self.emr[instance_type]
        return None


def price_table() -> dict[str, Any]:
    """The table shipped with the code (lambdas/shared/prices.json)."""
    table: dict[str, Any] = json.loads(PRICES_FILE.read_text(encoding="utf-8"))
    return table


def region_prices(
    region: str, overrides: Mapping[str, Any] | None = None, table: Mapping[str, Any] | None = None
) -> RegionPrices:
    """The region's prices: the shipped table, with cdk.json's ``prices`` entries for that region on top."""
    table = table if table is not None else price_table()
    shipped = table.get("regions", {}).get(region, {})
    override = (overrides or {}).get(region, {})
    fargate = {**shipped.get("fargate", {}), **override.get("fargate", {})}
    source = f"{region} list prices as of {table.get('as_of', '?')}"
    if override:
        source += ", with cdk.json overrides"
    return RegionPrices(
        region=region,
        ec2={**shipped.get("ec2", {}), **override.get("ec2", {})},
        emr={**shipped.get("emr", {}), **override.get("emr", {})},
        fargate_vcpu_hour=fargate.get("vcpu_hour"),
        fargate_gb_hour=fargate.get("gb_hour"),
        source=source,
    )


def normalization_factor(instance_type: str) -> float | None:
    """EMR's normalized-instance-hour weight of one instance type; None for sizes it has no rule for."""
    size = instance_type.rsplit(".", 1)[-1]
    if size in _SIZE_FACTORS:
        return _SIZE_FACTORS[size]
    match = _MULTIPLE_XLARGE.match(size)
    return 8 * int(match[1]) if match else None


@dataclass(frozen=True)
class InstanceUsage:
    """One EC2 instance of a cluster, from its own timeline (or the cluster's, where EMR gave none)."""

    cluster_id: str
    instance_type: str
    market: str
    seconds: float


@dataclass(frozen=True)
class ClusterUsage:
    cluster_id: str
    created: datetime
    ready: datetime | None
    ended: datetime | None
    seconds: float
    instances: tuple[InstanceUsage, ...]
    notes: tuple[str, ...] = ()

    @property
    def ready_seconds(self) -> float | None:
        return None if self.ready is None else (self.ready - self.created).total_seconds()


@dataclass(frozen=True)
class TaskUsage:
    """One Fargate task of a step attempt: its size and the seconds Fargate bills."""

    step: str
    vcpu: float
    memory_gb: float
    seconds: float


def _seconds(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _pages(emr: EMRClient, operation: str, key: str, cluster_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in emr.get_paginator(operation).paginate(ClusterId=cluster_id):  # type: ignore[call-overload]
        items += page.get(key, [])
    return items


def cluster_usage(emr: EMRClient, cluster: ClusterTypeDef, now: datetime) -> ClusterUsage:
    """The cluster's timeline and what it ran on, as EMR itself reports them.

    A cluster still terminating (TerminateCluster has only asked) has no end yet: it counts until
    ``now``, a little short of what EMR bills for the shutdown.
    """
    cluster_id = cluster["Id"]
    timeline = cluster["Status"].get("Timeline", {})
    created = timeline.get("CreationDateTime") or now
    ready = timeline.get("ReadyDateTime")
    ended = timeline.get("EndDateTime")
    end = ended or now
    notes = [] if ended else [f"{cluster_id} was still terminating: counted until the run record"]
    instances = []
    for instance in _pages(emr, "list_instances", "Instances", cluster_id):
        times = instance.get("Status", {}).get("Timeline", {})
        start = times.get("CreationDateTime") or created
        stop = times.get("EndDateTime") or end
        instances.append(
            InstanceUsage(
                cluster_id,
                instance["InstanceType"],
                instance.get("Market", "ON_DEMAND"),
                _seconds(start, stop),
            )
        )
    if not instances:
        instances, note = _provisioned(emr, cluster_id, _seconds(created, end))
        notes.append(note)
    return ClusterUsage(
        cluster_id, created, ready, ended, _seconds(created, end), tuple(instances), tuple(notes)
    )


def _provisioned(emr: EMRClient, cluster_id: str, seconds: float) -> tuple[list[InstanceUsage], str]:
    """No instance listed (none started, or the API lists none): the groups' or fleets' sizes."""
    found: list[InstanceUsage] = []
    for group in _pages(emr, "list_instance_groups", "InstanceGroups", cluster_id):
        count = group.get("RunningInstanceCount") or 0
        found += [
            InstanceUsage(cluster_id, group["InstanceType"], group.get("Market", "ON_DEMAND"), seconds)
        ] * count
    if found:
        return (
            found,
            f"{cluster_id}: no instances listed, counted its instance groups for the cluster's lifetime",
        )
    try:
        fleets = _pages(emr, "list_instance_fleets", "InstanceFleets", cluster_id)
    except Exception as error:  # an API without fleets must not cost the whole record
        return [], f"{cluster_id}: no instances listed and its fleets unreadable ({error})"
    for fleet in fleets:
        types = [spec["InstanceType"] for spec in fleet.get("InstanceTypeSpecifications", [])]
        if not types:
            continue
        for market, key in (
            ("ON_DEMAND", "ProvisionedOnDemandCapacity"),
            ("SPOT", "ProvisionedSpotCapacity"),
        ):
            found += [InstanceUsage(cluster_id, types[0], market, seconds)] * (fleet.get(key) or 0)
    return found, f"{cluster_id}: no instances listed, counted its fleets' provisioned capacity"


@dataclass(frozen=True)
class RunCost:
    """The run's cost in USD (fractions of a cent kept) and the quantities it was computed from."""

    total_usd: float
    ec2_usd: float
    emr_usd: float
    fargate_usd: float
    cluster_seconds: float
    normalized_instance_hours: float
    fargate_task_seconds: float
    prices: str
    notes: tuple[str, ...] = field(default=())

    def as_output(self) -> dict[str, Any]:
        return {
            "total_usd": round(self.total_usd, 4),
            "ec2_usd": round(self.ec2_usd, 4),
            "emr_usd": round(self.emr_usd, 4),
            "fargate_usd": round(self.fargate_usd, 4),
            "cluster_seconds": round(self.cluster_seconds, 1),
            "normalized_instance_hours": round(self.normalized_instance_hours, 2),
            "fargate_task_seconds": round(self.fargate_task_seconds, 1),
            "prices": self.prices,
            "notes": list(self.notes),
        }


def run_cost(clusters: Sequence[ClusterUsage], tasks: Iterable[TaskUsage], prices: RegionPrices) -> RunCost:
    """Price every instance and task: per second, at least a minute each, Spot at On-Demand."""
    ec2 = emr = normalized = 0.0
    notes = [note for cluster in clusters for note in cluster.notes]
    unpriced: set[str] = set()
    spot = False
    for instance in (i for cluster in clusters for i in cluster.instances):
        billed = max(instance.seconds, MINIMUM_BILLED_SECONDS) / 3600
        factor = normalization_factor(instance.instance_type)
        normalized += (factor or 0) * instance.seconds / 3600
        hourly = prices.instance_hour(instance.instance_type)
        spot = spot or instance.market == "SPOT"
        if hourly is None:
            unpriced.add(instance.instance_type)
            continue
        ec2 += hourly[0] * billed
        emr += hourly[1] * billed
    if unpriced:
        notes.append(
            f"no {prices.region} price for {', '.join(sorted(unpriced))}: not counted (add it in cdk.json)"
        )
    if spot:
        notes.append(SPOT_NOTE)
    fargate = task_seconds = 0.0
    task_list = list(tasks)
    if task_list and (prices.fargate_vcpu_hour is None or prices.fargate_gb_hour is None):
        notes.append(f"no {prices.region} Fargate price: the runner tasks are not counted")
    for task in task_list:
        task_seconds += task.seconds
        if prices.fargate_vcpu_hour is not None and prices.fargate_gb_hour is not None:
            hours = max(task.seconds, MINIMUM_BILLED_SECONDS) / 3600
            fargate += hours * (
                task.vcpu * prices.fargate_vcpu_hour + task.memory_gb * prices.fargate_gb_hour
            )
    return RunCost(
        total_usd=ec2 + emr + fargate,
        ec2_usd=ec2,
        emr_usd=emr,
        fargate_usd=fargate,
        cluster_seconds=sum(cluster.seconds for cluster in clusters),
        normalized_instance_hours=normalized,
        fargate_task_seconds=task_seconds,
        prices=prices.source,
        notes=tuple(notes),
    )
