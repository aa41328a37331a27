"""The Glue catalog that outlives the cluster: the stack's databases, the clusters' grants, a rerun that sees them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import boto3
from moto.emr.models import emr_backends

from infra.catalog import DEFAULT_DATABASE_ACTIONS, TABLE_ACTIONS
from lambdas.shared.catalog import GLUE_CLIENT_FACTORY
from tests.infra.conftest import ACCOUNT, REGION, Synthesis, definition_of
from tests.infra.moto_harness import Harness

PIPELINE = "nightly"
DATABASES = ("nightly", "nightly_staging")
WAREHOUSE = "s3://lake/curated/warehouse/"
GLUE = f"arn:aws:glue:{REGION}:{ACCOUNT}"
PSEUDO = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT}

# What each step of the nightly test pipeline (the shape of sql/example) makes and reads.
TABLES = {
    "10_users.sql": ((), ("users",)),
    "10_events.sql": ((), ("events",)),
    "20_sessions.hql": (("users", "events"), ("sessions",)),
    "30_funnel.sql": (("users", "events"), ("funnel",)),
    "30_segments.sql": (("users", "events", "sessions"), ("segments",)),
}


# --- the template ------------------------------------------------------------------------------


def _flat(value: Any) -> Any:
    """A policy or property with Fn::Join and pseudo-parameter Refs resolved as CloudFormation would."""
    if isinstance(value, list):
        return [_flat(item) for item in value]
    if isinstance(value, dict):
        if set(value) == {"Ref"} and value["Ref"] in PSEUDO:
            return PSEUDO[value["Ref"]]
        if set(value) == {"Fn::Join"}:
            separator, parts = value["Fn::Join"]
            return separator.join(str(_flat(part)) for part in parts)
        return {key: _flat(item) for key, item in value.items()}
    return value


def _role_statements(synth: Synthesis, pipeline: str) -> list[dict[str, Any]]:
    role = next(
        k
        for k in synth.resources("AWS::IAM::Role")
        if k.startswith(f"ClusterLifecycle{pipeline}InstanceRole")
    )
    return [
        statement
        for policy in synth.resources("AWS::IAM::Policy").values()
        if {"Ref": role} in policy["Properties"]["Roles"]
        for statement in _flat(policy["Properties"]["PolicyDocument"])["Statement"]
    ]


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def _allowed(statements: list[dict[str, Any]], action: str, resource: str) -> bool:
    """IAM's answer for an unconditioned Allow-only policy: some statement names the action and the resource."""

    def matches(pattern: str, value: str) -> bool:
        return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), value) is not None

    return any(
        statement["Effect"] == "Allow"
        and "Condition" not in statement
        and any(matches(a, action) for a in _listed(statement["Action"]))
        and any(matches(r, resource) for r in _listed(statement["Resource"]))
        for statement in statements
    )


def test_the_stack_creates_the_declared_databases_in_the_warehouse_and_keeps_them(
    test_synth: Synthesis,
) -> None:
    """AWS::Glue::Database (CloudFormation User Guide, https://docs.aws.amazon.com/AWSCloudFormation/latest/
    UserGuide/aws-resource-glue-database.html): CatalogId is the account, LocationUri where the
    database's tables go. The stack makes them (the instance role may not create databases) and
    retains them: tables outlive the clusters, and a deleted stack must not drop the catalog.
    """
    databases = {
        d["Properties"]["DatabaseInput"]["Name"]: d
        for d in test_synth.resources("AWS::Glue::Database").values()
    }
    # adhoc keeps a per-cluster metastore: no database of its own.
    assert set(databases) == set(DATABASES)
    for name, database in databases.items():
        assert database["Properties"]["DatabaseInput"]["LocationUri"] == f"{WAREHOUSE}{name}.db/"
        assert _flat(database["Properties"]["CatalogId"]) == ACCOUNT
        assert database["DeletionPolicy"] == database["UpdateReplacePolicy"] == "Retain"


def test_the_instance_role_may_use_only_its_own_databases_tables(test_synth: Synthesis) -> None:
    """AWS Glue Developer Guide, "Specifying AWS Glue resource ARNs"
    (https://docs.aws.amazon.com/glue/latest/dg/glue-specifying-resource-arns.html): a table call is
    authorized on the catalog, the database and the table (arn:aws:glue:region:account:table/DB/NAME).
    The actions are those EMR's Glue client calls for Hive and Spark SQL (Amazon EMR Release Guide,
    "Use AWS Glue Data Catalog catalog with Spark on Amazon EMR",
    https://docs.aws.amazon.com/emr/latest/ReleaseGuide/emr-spark-glue.html).
    """
    statements = _role_statements(test_synth, "Nightly")
    for database in DATABASES:
        for action in TABLE_ACTIONS:
            for resource in ("catalog", f"database/{database}", f"table/{database}/users"):
                assert _allowed(statements, action, f"{GLUE}:{resource}"), (action, resource)
        assert _allowed(statements, "glue:GetUserDefinedFunction", f"{GLUE}:userDefinedFunction/{database}/f")
    # Another pipeline's (or anyone's) tables, and the databases themselves, stay out of reach.
    assert not _allowed(statements, "glue:GetTable", f"{GLUE}:table/finance/salaries")
    assert not _allowed(statements, "glue:DeleteTable", f"{GLUE}:database/finance")
    for action in ("glue:CreateDatabase", "glue:DeleteDatabase", "glue:UpdateDatabase"):
        assert not _allowed(statements, action, f"{GLUE}:database/nightly"), action
    assert not [s for s in statements if any(a in ("glue:*", "*") for a in _listed(s["Action"]))]


def test_the_clients_start_up_look_up_of_default_is_allowed(test_synth: Synthesis) -> None:
    """EMR's Hive and Spark Glue client looks up the `default` database when it starts, and creates it
    when the account has none (awslabs/aws-glue-data-catalog-client-for-apache-hive-metastore,
    AWSCatalogMetastoreClient: doesDefaultDBExist, createDefaultDatabase); without glue:GetDatabase
    on the catalog and database/default every step fails with "Unable to verify existence of default
    database" (Amazon Athena User Guide, "Troubleshoot table errors",
    https://docs.aws.amazon.com/athena/latest/ug/notebooks-spark-troubleshooting-tables.html).
    """
    statements = _role_statements(test_synth, "Nightly")
    for action in DEFAULT_DATABASE_ACTIONS:
        for resource in ("catalog", "database/default"):
            assert _allowed(statements, action, f"{GLUE}:{resource}"), (action, resource)
    assert not _allowed(statements, "glue:CreateTable", f"{GLUE}:table/default/t")


def test_a_per_cluster_metastore_gets_no_glue_access(test_synth: Synthesis) -> None:
    statements = _role_statements(test_synth, "Adhoc")
    assert not [s for s in statements if any(a.startswith("glue:") for a in _listed(s["Action"]))]


def _cluster_payloads(node: Any) -> list[dict[str, Any]]:
    """Every CreateCluster payload's cluster profile in a state machine definition."""
    if isinstance(node, dict):
        if "release_label" in node and "metastore" in node:
            return [node]
        return [found for value in node.values() for found in _cluster_payloads(value)]
    if isinstance(node, list):
        return [found for value in node for found in _cluster_payloads(value)]
    return []


def test_the_example_pipeline_keeps_its_tables_in_the_catalog(repo_synth: Synthesis) -> None:
    """sql/example as deployed: its database is made in the warehouse, and its clusters are sent there."""
    databases = {
        d["Properties"]["DatabaseInput"]["Name"]: d["Properties"]["DatabaseInput"]["LocationUri"]
        for d in repo_synth.resources("AWS::Glue::Database").values()
    }
    warehouse = "s3://nightshift-example-data/warehouse/"
    assert databases == {"nightshift_example": f"{warehouse}nightshift_example.db/"}
    profiles = _cluster_payloads(definition_of(repo_synth, "example"))
    assert profiles and all(p["metastore"] == "glue" and p["warehouse"] == warehouse for p in profiles)


# --- the production flow in moto ------------------------------------------------------------------


def _glue() -> Any:
    return boto3.client("glue", region_name=REGION)


def _deploy_databases(synth: Synthesis) -> None:
    """What CloudFormation does with the template's AWS::Glue::Database resources, in moto."""
    for database in synth.resources("AWS::Glue::Database").values():
        _glue().create_database(DatabaseInput=database["Properties"]["DatabaseInput"])


def _catalog_of(cluster_id: str, engine: str) -> str:
    """The cluster's metastore as its Configurations say (as CreateCluster sent them to EMR)."""
    cluster = boto3.client("emr", region_name=REGION).describe_cluster(ClusterId=cluster_id)["Cluster"]
    found = {c["Classification"]: c.get("Properties", {}) for c in cluster.get("Configurations", [])}
    site = found.get("hive-site" if engine == "hive" else "spark-hive-site", {})
    if site.get("hive.metastore.client.factory.class") != GLUE_CLIENT_FACTORY:
        raise RuntimeError(f"{cluster_id}: {engine}'s metastore is the cluster's own: tables end with it")
    return site["hive.metastore.warehouse.dir"]


def _step_in_catalog(database: str, log: list[str]) -> Callable[[list[str]], None]:
    def run(command: list[str]) -> None:
        """The Glue calls of the step's SELECTs and CREATE TABLEs, made as the cluster's client would."""
        step = command[0].rsplit("/", 1)[-1]
        cluster_id = command[command.index("--cluster-id") + 1]
        warehouse = _catalog_of(cluster_id, "hive" if step.endswith(".hql") else "spark-sql")
        reads, makes = TABLES[step]
        glue = _glue()
        for table in reads:
            glue.get_table(DatabaseName=database, Name=table)
        location = glue.get_database(Name=database)["Database"]["LocationUri"]
        assert location.startswith(warehouse), (location, warehouse)
        for table in makes:
            # DROP TABLE IF EXISTS, then CREATE TABLE ... AS SELECT without LOCATION.
            if any(t["Name"] == table for t in glue.get_tables(DatabaseName=database)["TableList"]):
                glue.delete_table(DatabaseName=database, Name=table)
            glue.create_table(
                DatabaseName=database,
                TableInput={
                    "Name": table,
                    "TableType": "MANAGED_TABLE",
                    "StorageDescriptor": {"Location": f"{location}{table}"},
                },
            )
        log.append(f"{step} on {cluster_id}")

    return run


def _in_catalog(harness: Harness) -> list[str]:
    log: list[str] = []
    harness.faults.step_actions = {step: _step_in_catalog(DATABASES[0], log) for step in TABLES}
    return log


def _start(harness: Harness, name: str, run_input: dict[str, Any]) -> dict[str, Any]:
    arn = harness.sfn.start_execution(
        stateMachineArn=harness.state_machine_arn, name=name, input=json.dumps(run_input)
    )["executionArn"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = harness.sfn.describe_execution(executionArn=arn)
        if answer["status"] != "RUNNING":
            return dict(answer)
        time.sleep(0.05)
    raise AssertionError(f"{name} still running after 60 s")


def test_a_rerun_from_stage_30_on_a_new_cluster_reads_what_stage_10_made(
    harness: Harness, test_synth: Synthesis
) -> None:
    _deploy_databases(test_synth)
    log = _in_catalog(harness)

    first = harness.run("2025-06-01")
    assert first["status"] == "SUCCEEDED", (first, harness.faults.step_errors)
    users = _glue().get_table(DatabaseName="nightly", Name="users")["Table"]
    assert users["StorageDescriptor"]["Location"] == f"{WAREHOUSE}nightly.db/users"

    first_cluster = {line.split(" on ")[1] for line in log}
    harness.faults.steps_run.clear()
    log.clear()
    second = _start(harness, "nightly-2025-06-01-r2", {"run_date": "2025-06-01", "from_stage": 30})
    assert second["status"] == "SUCCEEDED", (second, harness.faults.step_errors)
    assert sorted(harness.faults.steps_run) == ["30_funnel.sql", "30_segments.sql"]

    clusters = {c["Id"]: c["Status"]["State"] for c in harness.clusters()}
    assert len(clusters) == 2 and set(clusters.values()) == {"TERMINATED"}
    # Stage 30 ran on the second cluster, which never ran stage 10.
    second_cluster = {line.split(" on ")[1] for line in log}
    assert len(first_cluster) == len(second_cluster) == 1 and second_cluster.isdisjoint(first_cluster)


def test_a_missing_database_fails_the_first_step_that_makes_a_table(harness: Harness) -> None:
    _in_catalog(harness)  # the databases were never deployed
    execution = harness.run("2025-06-01")
    assert execution["status"] == "FAILED"
    assert "EntityNotFoundException" in harness.faults.step_errors["10_users.sql"]
    assert not [s for s in harness.faults.steps_run if s.startswith("30_")]


def test_a_cluster_without_the_glue_catalog_fails_its_steps(harness: Harness, test_synth: Synthesis) -> None:
    """The stand-in reads the catalog from the cluster EMR was asked for: a cluster that did not get
    the Glue settings keeps its tables to itself, and the step says so."""
    _deploy_databases(test_synth)
    _in_catalog(harness)

    def forget_the_catalog(_payload: dict[str, Any], result: dict[str, Any]) -> None:
        emr_backends[ACCOUNT][REGION].clusters[result["cluster_id"]].configurations = []

    harness.faults.after["lambdas.create_cluster"] = forget_the_catalog
    execution = harness.run("2025-06-01")
    assert execution["status"] == "FAILED"
    assert "metastore is the cluster's own" in harness.faults.step_errors["10_users.sql"]
