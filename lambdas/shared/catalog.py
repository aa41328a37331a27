"""The EMR Configurations of a run's cluster: the pipeline's classifications and the Glue catalog settings."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_emr.type_defs import ConfigurationTypeDef

    from lambdas.shared.models import ClusterProfile, Configuration

METASTORE_GLUE, METASTORE_CLUSTER = "glue", "cluster"
# Amazon EMR Release Guide, "Use AWS Glue Data Catalog catalog with Spark on Amazon EMR" and "Using
# the AWS Glue Data Catalog as the metastore for Hive": this factory in spark-hive-site and hive-site.
GLUE_CLIENT_FACTORY = "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
FACTORY_PROPERTY = "hive.metastore.client.factory.class"
HIVE_WAREHOUSE_PROPERTY = "hive.metastore.warehouse.dir"
SPARK_WAREHOUSE_PROPERTY = "spark.sql.warehouse.dir"
# What Nightshift sets on a Glue-metastore cluster and a pipeline may not (runner/catalog.py has the
# loader's copy; tests/unit/test_catalog_config.py holds them equal).
CATALOG_PROPERTIES: dict[str, tuple[str, ...]] = {
    "hive-site": (FACTORY_PROPERTY, HIVE_WAREHOUSE_PROPERTY),
    "spark-hive-site": (FACTORY_PROPERTY, HIVE_WAREHOUSE_PROPERTY),
    "spark-defaults": (SPARK_WAREHOUSE_PROPERTY,),
}
# EMR 7.x's configuration classifications for Hadoop, Hive, Spark, Tez and Livy (Amazon EMR Release
# Guide, the release 7.13.0 page, "Configuration classifications").
EMR_CLASSIFICATIONS = frozenset({
    "capacity-scheduler", "container-executor", "container-log4j", "core-site", "docker-conf",
    "emrfs-site", "hadoop-env", "hadoop-log4j", "hadoop-ssl-client", "hadoop-ssl-server",
    "hdfs-encryption-zones", "hdfs-env", "hdfs-site", "hive", "hive-env", "hive-exec-log4j2",
    "hive-llap-daemon-log4j2", "hive-log4j2", "hive-site", "hiveserver2-site", "livy-conf",
    "livy-env", "livy-log4j2", "mapred-env", "mapred-site", "spark", "spark-defaults", "spark-env",
    "spark-hive-site", "spark-log4j2", "spark-metrics", "tez-site", "yarn-env", "yarn-site",
})  # fmt: skip
#: EMR, "Configure applications": a classification ending in -env nests its variables under "export".
EXPORT = "export"


def catalog_settings(profile: ClusterProfile) -> dict[str, dict[str, str]]:
    """The properties Nightshift puts in each classification for the profile's metastore."""
    if profile.metastore != METASTORE_GLUE:
        return {}
    settings: dict[str, dict[str, str]] = {
        "hive-site": {FACTORY_PROPERTY: GLUE_CLIENT_FACTORY},
        "spark-hive-site": {FACTORY_PROPERTY: GLUE_CLIENT_FACTORY},
    }
    if profile.warehouse is not None:
        # A table or database made without LOCATION lands in S3, never in the cluster's HDFS.
        settings["hive-site"][HIVE_WAREHOUSE_PROPERTY] = profile.warehouse
        settings["spark-hive-site"][HIVE_WAREHOUSE_PROPERTY] = profile.warehouse
        settings["spark-defaults"] = {SPARK_WAREHOUSE_PROPERTY: profile.warehouse}
    return settings


def _emr(configuration: Configuration, extra: dict[str, str] | None = None) -> ConfigurationTypeDef:
    entry: dict[str, Any] = {
        "Classification": configuration.classification,
        "Properties": {**configuration.properties, **(extra or {})},
    }
    if configuration.configurations:
        entry["Configurations"] = [_emr(nested) for nested in configuration.configurations]
    return entry  # type: ignore[return-value]


def emr_configurations(profile: ClusterProfile) -> list[ConfigurationTypeDef]:
    """RunJobFlow's Configurations: the pipeline's classifications, the catalog's settings merged in."""
    settings = catalog_settings(profile)
    found = [_emr(c, settings.pop(c.classification, None)) for c in profile.configurations]
    found += [{"Classification": name, "Properties": properties} for name, properties in settings.items()]
    return found
