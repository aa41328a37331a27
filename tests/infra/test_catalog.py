"""The Glue catalog that outlives the cluster: the stack's databases, the clusters' grants, a rerun that sees them."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from moto.emr.models import emr_backends

from infra.catalog import DEFAULT_DATABASE_ACTIONS, TABLE_ACTIONS
from lambdas.shared.catalog import GLUE_CLIENT_FACTORY
from runner.dates import date_variables
from runner.model import load_pipeline
from tests.infra.conftest import (
    ACCOUNT,
    REGION,
    ROOT,
    SECRET_ARN,
    SUBNETS,
    Synthesis,
    base_context,
    definition_of,
    synthesize,
)
from tests.infra.iam_eval import Request, Template, evaluate
from tests.infra.moto_harness import Harness
from tests.support.aws import pipeline_in_moto

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
    deadline = time.monotonic() + 600
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


# --- sql/example itself, end to end in moto ----------------------------------------------------------

EXAMPLE = ROOT / "sql" / "example"
EXAMPLE_BUCKET = "nightshift-example-data"


@pytest.fixture(scope="session")
def example_synth(tmp_path_factory: pytest.TempPathFactory) -> Synthesis:
    """The real sql/ folder (sql/example as shipped) in an existing VPC, its data_access covering the
    example's variables and warehouse, so moto's interpreter can run it (repo_synth's new VPC has
    subnet ids only CloudFormation knows)."""
    context = {
        **base_context(),
        "ssh_key_secret_arn": SECRET_ARN,
        "vpc": {
            "vpc_id": "vpc-0123456789abcdef0",
            "availability_zones": [f"{REGION}a", f"{REGION}b"],
            "private_subnet_ids": SUBNETS,
        },
        "data_access": {
            "example": {
                "read": [f"s3://{EXAMPLE_BUCKET}/raw/"],
                "write": [f"s3://{EXAMPLE_BUCKET}/out/", f"s3://{EXAMPLE_BUCKET}/warehouse/"],
            }
        },
    }
    return synthesize(tmp_path_factory.mktemp("example-cdk.out"), context, ROOT / "sql")


@pytest.fixture
def example(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from pipeline_in_moto(request, "example_synth", "example", monkeypatch)


_QUALIFIED = re.compile(r"\b([A-Za-z_][A-Za-z0-9_]*)\.([A-Za-z_][A-Za-z0-9_]*)\b")


def _statements(text: str) -> list[str]:
    """A step's statements: comment lines dropped, split at ';' (the example quotes no ';')."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


class ExampleOnACluster:
    """What each statement of sql/example does in the catalog and S3, as the cluster's instance role.

    Every Glue and S3 call is first evaluated as IAM would (tests/infra/iam_eval.py, the role's
    statements in the template): a call AWS would refuse fails the step, as AccessDenied would.
    """

    def __init__(self, synth: Synthesis, log: list[str]) -> None:
        template = Template(synth.template)
        role = template.logical_id("AWS::IAM::Role", "ClusterLifecycleExampleInstanceRole")
        self.statements = template.role_statements(role)
        pipeline = load_pipeline(EXAMPLE)
        self.variables = dict(pipeline.config.variables)
        self.database = self.variables["database"]
        self.log = log
        self.glue = _glue()
        self.s3 = boto3.client("s3", region_name=REGION)

    def allow(self, action: str, *resources: str) -> None:
        for resource in resources:
            if not evaluate(self.statements, Request(action, resource)).allowed:
                raise PermissionError(f"AccessDenied: {action} on {resource}")

    def table_call(self, action: str, database: str, table: str) -> None:
        self.allow(
            action, f"{GLUE}:catalog", f"{GLUE}:database/{database}", f"{GLUE}:table/{database}/{table}"
        )

    def object_call(self, action: str, url: str) -> tuple[str, str]:
        bucket, _, key = url.removeprefix("s3://").partition("/")
        self.allow(action, f"arn:aws:s3:::{bucket}/{key}")
        return bucket, key

    def read_tables(self, statement: str) -> None:
        for database, table in _QUALIFIED.findall(statement):
            if database == self.database:
                self.table_call("glue:GetTable", database, table)
                self.glue.get_table(DatabaseName=database, Name=table)

    def run(self, command: list[str]) -> None:
        script = ROOT / command[0]
        cluster_id = command[command.index("--cluster-id") + 1]
        run_date = command[command.index("--run-date") + 1]
        warehouse = _catalog_of(cluster_id, "hive" if script.suffix == ".hql" else "spark-sql")
        values = {**self.variables, **date_variables(run_date)}
        text = re.sub(
            r"\$\{(?:hivevar:)?([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: values[m[1]], script.read_text()
        )
        for statement in _statements(text):
            self.statement(statement, warehouse)
        self.log.append(f"{script.name} on {cluster_id}")

    def statement(self, statement: str, warehouse: str) -> None:
        upper = " ".join(statement.split()).upper()
        if upper.startswith("CREATE DATABASE IF NOT EXISTS"):
            # The stack made it; the client finds it (the role may not create one).
            self.allow("glue:GetDatabase", f"{GLUE}:catalog", f"{GLUE}:database/{self.database}")
            self.glue.get_database(Name=self.database)
        elif upper.startswith("CREATE OR REPLACE TEMPORARY VIEW"):
            (path,) = re.findall(r"path '([^']+)'", statement)
            bucket, key = self.object_call("s3:GetObject", path)
            self.s3.head_object(Bucket=bucket, Key=key)
        elif upper.startswith("DROP TABLE IF EXISTS"):
            ((database, table),) = _QUALIFIED.findall(statement)
            self.table_call("glue:GetTable", database, table)
            if any(t["Name"] == table for t in self.glue.get_tables(DatabaseName=database)["TableList"]):
                self.table_call("glue:DeleteTable", database, table)
                self.glue.delete_table(DatabaseName=database, Name=table)
        elif upper.startswith("CREATE TABLE"):
            (database, table), *_ = _QUALIFIED.findall(statement)
            self.read_tables(statement.split(" AS", 1)[1])
            location = self.glue.get_database(Name=database)["Database"]["LocationUri"]
            assert location.startswith(warehouse), (location, warehouse)
            self.table_call("glue:CreateTable", database, table)
            self.glue.create_table(
                DatabaseName=database,
                TableInput={
                    "Name": table,
                    "TableType": "MANAGED_TABLE",
                    "StorageDescriptor": {"Location": f"{location}{table}"},
                },
            )
            bucket, key = self.object_call("s3:PutObject", f"{location}{table}/part-00000.parquet")
            self.s3.put_object(Bucket=bucket, Key=key, Body=b"PAR1")
        elif upper.startswith("INSERT OVERWRITE DIRECTORY"):
            (path,) = re.findall(r"DIRECTORY '([^']+)'", statement)
            self.read_tables(statement)
            bucket, key = self.object_call("s3:PutObject", f"{path}/part-00000.parquet")
            self.s3.put_object(Bucket=bucket, Key=key, Body=b"PAR1")
        elif upper.startswith("SELECT"):
            self.read_tables(statement)
        else:
            raise AssertionError(f"a statement this stand-in does not know: {statement[:60]}")


def test_sql_example_runs_in_the_catalog_and_a_rerun_from_stage_30_reads_it(
    example: Harness, example_synth: Synthesis
) -> None:
    """sql/example as shipped (its pipeline.toml and SQL) through moto's interpreter and the real
    Lambdas: stage 10 makes its tables in the Glue catalog (the stack's database, in the warehouse),
    and a rerun --from-stage 30 on a new cluster reads them. Every catalog and S3 call the SQL makes
    is one the example's instance role may make.
    """
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=EXAMPLE_BUCKET)
    for name in ("users.csv", "events.csv"):
        s3.put_object(
            Bucket=EXAMPLE_BUCKET, Key=f"raw/{name}", Body=(EXAMPLE / "sample_data" / name).read_bytes()
        )
    _deploy_databases(example_synth)
    log: list[str] = []
    steps = sorted(step.path.name for stage in load_pipeline(EXAMPLE).stages for step in stage.steps)
    assert steps == ["10_events.sql", "10_users.sql", "20_sessions.hql", "30_funnel.sql", "30_segments.sql"]
    cluster = ExampleOnACluster(example_synth, log)
    example.faults.step_actions = dict.fromkeys(steps, cluster.run)

    first = example.run("2025-06-01")
    assert first["status"] == "SUCCEEDED", (first, example.faults.step_errors)
    tables = {t["Name"]: t for t in _glue().get_tables(DatabaseName="nightshift_example")["TableList"]}
    assert set(tables) == {"users", "events", "sessions", "funnel", "segments"}
    warehouse = f"s3://{EXAMPLE_BUCKET}/warehouse/nightshift_example.db/"
    assert tables["users"]["StorageDescriptor"]["Location"] == f"{warehouse}users"
    outputs = s3.list_objects_v2(Bucket=EXAMPLE_BUCKET, Prefix="out/")["Contents"]
    assert {o["Key"] for o in outputs} == {
        "out/funnel/run_date=2025-06-01/part-00000.parquet",
        "out/segments/run_date=2025-06-01/part-00000.parquet",
    }
    first_clusters = {line.split(" on ")[1] for line in log}

    example.faults.steps_run.clear()
    log.clear()
    rerun = _start(example, "example-2025-06-01-r2", {"run_date": "2025-06-01", "from_stage": 30})
    assert rerun["status"] == "SUCCEEDED", (rerun, example.faults.step_errors)
    # Stage 30's steps and its data checks' task: a rerun runs the checks of the stages it runs.
    assert sorted(example.faults.steps_run) == ["30_checks", "30_funnel.sql", "30_segments.sql"]
    second_clusters = {line.split(" on ")[1] for line in log}
    assert len(first_clusters) == len(second_clusters) == 1 and second_clusters.isdisjoint(first_clusters)
    assert {c["Status"]["State"] for c in example.clusters()} == {"TERMINATED"}


def test_sql_example_fails_its_first_step_without_the_stacks_database(
    example: Harness, example_synth: Synthesis
) -> None:
    """The same run with the database not deployed: the first step's CREATE DATABASE IF NOT EXISTS
    finds none, and the role may not create it, so the step fails and stage 30 never runs."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=EXAMPLE_BUCKET)
    cluster = ExampleOnACluster(example_synth, [])
    example.faults.step_actions = {"10_users.sql": cluster.run, "10_events.sql": cluster.run}
    execution = example.run("2025-06-01")
    assert execution["status"] == "FAILED"
    errors = example.faults.step_errors
    assert errors and all("EntityNotFoundException" in e for e in errors.values()), errors
    assert not [s for s in example.faults.steps_run if s.startswith("30_")]
