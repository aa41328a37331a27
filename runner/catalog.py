"""[catalog] and [cluster] configurations: where a cluster keeps its tables, and EMR's own settings."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: [cluster] metastore: the AWS Glue Data Catalog (tables outlive the cluster), or the cluster's own.
METASTORE_GLUE, METASTORE_CLUSTER = "glue", "cluster"
METASTORES = (METASTORE_GLUE, METASTORE_CLUSTER)
GLUE_CLIENT_FACTORY = "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
# The settings Nightshift gives every Glue-metastore cluster (lambdas/shared/catalog.py writes them;
# tests/unit/test_catalog_config.py holds the two copies equal): [cluster.configurations] may not.
CATALOG_PROPERTIES: Mapping[str, tuple[str, ...]] = {
    "hive-site": ("hive.metastore.client.factory.class", "hive.metastore.warehouse.dir"),
    "spark-hive-site": ("hive.metastore.client.factory.class", "hive.metastore.warehouse.dir"),
    "spark-defaults": ("spark.sql.warehouse.dir",),
}
# The configuration classifications of EMR 7.x for the applications a Nightshift cluster may run
# (Amazon EMR Release Guide, "Amazon EMR release 7.13.0": Configuration classifications). The same
# list is the CreateCluster Lambda's (lambdas/shared/catalog.py).
EMR_CLASSIFICATIONS = frozenset({
    "capacity-scheduler", "container-executor", "container-log4j", "core-site", "docker-conf",
    "emrfs-site", "hadoop-env", "hadoop-log4j", "hadoop-ssl-client", "hadoop-ssl-server",
    "hdfs-encryption-zones", "hdfs-env", "hdfs-site", "hive", "hive-env", "hive-exec-log4j2",
    "hive-llap-daemon-log4j2", "hive-log4j2", "hive-site", "hiveserver2-site", "livy-conf",
    "livy-env", "livy-log4j2", "mapred-env", "mapred-site", "spark", "spark-defaults", "spark-env",
    "spark-hive-site", "spark-log4j2", "spark-metrics", "tez-site", "yarn-env", "yarn-site",
})  # fmt: skip
#: EMR: a classification ending in -env takes its variables in a nested "export" classification.
EXPORT = "export"
TABLE = "[cluster.configurations]"
# Glue keeps database names in lower case; Hive's names are letters, digits and '_'.
DATABASE_NAME = re.compile(r"^[a-z0-9_]{1,255}$")
WAREHOUSE = re.compile(r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(?:[^*?${}]+/)?$")


@dataclass(frozen=True)
class Configuration:
    """One EMR configuration classification: its properties, and nested ones (an -env's export)."""

    classification: str
    properties: tuple[tuple[str, str], ...] = ()
    configurations: tuple[Configuration, ...] = ()

    def as_emr(self) -> dict[str, Any]:
        """The shape RunJobFlow's Configurations takes (and the CreateCluster payload carries)."""
        return {
            "classification": self.classification,
            "properties": dict(self.properties),
            "configurations": [nested.as_emr() for nested in self.configurations],
        }


@dataclass(frozen=True)
class Catalog:
    """[catalog]: the Glue databases the pipeline's tables live in, and the S3 warehouse under them."""

    databases: tuple[str, ...]
    #: s3://bucket/prefix/: a table made without LOCATION lands here (database NAME under NAME.db/)
    warehouse: str

    def database_location(self, database: str) -> str:
        """Where the stack puts a declared database (Hive's and Spark's own default layout)."""
        return f"{self.warehouse}{database}.db/"


def configurations_problem(data: Any, metastore: str) -> tuple[str, str] | None:
    """(where, why) the [cluster.configurations] table is refused, or None when EMR would take it."""
    if not isinstance(data, dict):
        return TABLE, "expected a table of classifications ([cluster.configurations.spark-defaults])"
    for classification, properties in data.items():
        where = f"[cluster.configurations.{classification}]"
        if classification not in EMR_CLASSIFICATIONS:
            close = difflib.get_close_matches(classification, sorted(EMR_CLASSIFICATIONS), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            return where, f"not an EMR 7 configuration classification{hint}"
        if not isinstance(properties, dict):
            return where, "expected a table of properties"
        for key, value in properties.items():
            if classification.endswith("-env"):
                if key != EXPORT or not isinstance(value, dict):
                    return f"{where} {key}", (
                        f"an -env classification takes its variables in [{classification}.export]"
                    )
                for name, variable in value.items():
                    if not isinstance(variable, str):
                        return (
                            f"[cluster.configurations.{classification}.export] {name}",
                            f"expected a string value, got {variable!r}",
                        )
                continue
            if isinstance(value, dict):
                return f"{where} {key}", f"{classification} has no nested classifications in EMR"
            if not isinstance(value, str):
                return (
                    f"{where} {key}",
                    f"expected a string value (EMR's properties are strings), got {value!r}",
                )
            if metastore == METASTORE_GLUE and key in CATALOG_PROPERTIES.get(classification, ()):
                return f"{where} {key}", (
                    "set by Nightshift for the Glue catalog (from [catalog] warehouse); "
                    "[cluster] metastore = 'cluster' makes the cluster's metastore yours"
                )
    return None


def parse_configurations(data: Mapping[str, Any]) -> tuple[Configuration, ...]:
    """The validated table (configurations_problem is None) as Configurations, in declaration order."""
    found = []
    for classification, properties in data.items():
        if classification.endswith("-env"):
            nested = tuple(
                Configuration(EXPORT, tuple(variables.items())) for variables in properties.values()
            )
            found.append(Configuration(classification, (), nested))
        else:
            found.append(Configuration(classification, tuple(properties.items())))
    return tuple(found)


def catalog_problem(data: Any) -> tuple[str, str] | None:
    """(key, why) the [catalog] table is refused, or None."""
    if not isinstance(data, dict):
        return "", "expected a table ([catalog])"
    for key in data:
        if key not in ("databases", "warehouse"):
            return f" {key}", "unknown key (expected one of: databases, warehouse)"
    databases = data.get("databases")
    if not isinstance(databases, list) or not databases:
        return " databases", "expected a non-empty list of database names"
    for name in databases:
        if not isinstance(name, str) or not DATABASE_NAME.match(name):
            return " databases", f"expected lower-case letters, digits and '_' (Glue's names), got {name!r}"
    if len(set(databases)) != len(databases):
        return " databases", "a database is listed twice"
    warehouse = data.get("warehouse")
    if not isinstance(warehouse, str) or not WAREHOUSE.match(warehouse):
        return " warehouse", (
            f"expected s3://bucket/ or s3://bucket/prefix/ (ending in '/', no variables), got {warehouse!r}"
        )
    return None


def metastore_notice(metastore: str) -> str | None:
    """What a per-cluster metastore means for the runs, said once when the pipeline is loaded."""
    if metastore != METASTORE_CLUSTER:
        return None
    return (
        "[cluster] metastore = 'cluster': on a cluster, tables end with the cluster; a --from-stage "
        "rerun (on a new cluster) cannot see earlier stages' tables, and no table keeps more than one night"
    )
