"""The pipelines' Glue Data Catalog: the databases they declare, and what their clusters may do there."""

from __future__ import annotations

from aws_cdk import Aws, RemovalPolicy
from aws_cdk import aws_glue as glue
from aws_cdk import aws_iam as iam
from constructs import Construct

from infra.config import ContextError
from infra.nag import suppress
from infra.pipelines import construct_id
from runner.catalog import METASTORE_GLUE
from runner.model import Pipeline

#: The database every Hive and Spark client of the Glue catalog looks up when it starts, and creates
#: when the account has none (AWSCatalogMetastoreClient: doesDefaultDBExist, createDefaultDatabase).
DEFAULT_DATABASE = "default"
# What EMR's Hive and Spark Glue client calls for a pipeline's tables, partitions and functions
# (Amazon EMR Release Guide, "Use AWS Glue Data Catalog catalog with Spark on Amazon EMR"): no
# database may be created, altered or dropped; the stack owns the databases.
TABLE_ACTIONS = (
    "glue:GetDatabase",
    "glue:GetDatabases",
    "glue:GetTable",
    "glue:GetTables",
    "glue:GetTableVersions",
    "glue:CreateTable",
    "glue:UpdateTable",
    "glue:DeleteTable",
    "glue:GetPartition",
    "glue:GetPartitions",
    "glue:BatchGetPartition",
    "glue:CreatePartition",
    "glue:BatchCreatePartition",
    "glue:UpdatePartition",
    "glue:DeletePartition",
    "glue:BatchDeletePartition",
    "glue:GetUserDefinedFunction",
    "glue:GetUserDefinedFunctions",
)
DEFAULT_DATABASE_ACTIONS = ("glue:GetDatabase", "glue:CreateDatabase")


class CatalogError(ContextError):
    """Two pipelines declare the same Glue database (one catalog per account and region)."""


def glue_arn(resource: str) -> str:
    """A Data Catalog ARN ("Specifying AWS Glue resource ARNs"): catalog, database/NAME, table/DB/NAME."""
    return f"arn:{Aws.PARTITION}:glue:{Aws.REGION}:{Aws.ACCOUNT_ID}:{resource}"


def _finding(resource: str) -> str:
    return f"Resource::arn:<AWS::Partition>:glue:<AWS::Region>:<AWS::AccountId>:{resource}"


def grant_catalog(role: iam.Role, databases: tuple[str, ...]) -> None:
    """Let a pipeline's clusters use the Glue catalog: its own databases' tables, and `default` to start."""
    role.add_to_policy(
        iam.PolicyStatement(
            actions=list(DEFAULT_DATABASE_ACTIONS),
            resources=[glue_arn("catalog"), glue_arn(f"database/{DEFAULT_DATABASE}")],
        )
    )
    if not databases:
        return
    role.add_to_policy(
        iam.PolicyStatement(
            actions=list(TABLE_ACTIONS),
            resources=[
                glue_arn("catalog"),
                *(glue_arn(f"database/{name}") for name in databases),
                *(glue_arn(f"table/{name}/*") for name in databases),
                *(glue_arn(f"userDefinedFunction/{name}/*") for name in databases),
            ],
        )
    )
    suppress(
        role,
        "AwsSolutions-IAM5",
        "The tables and functions of the pipeline's own Glue databases: their names are the SQL's.",
        applies_to=[
            *(_finding(f"table/{name}/*") for name in databases),
            *(_finding(f"userDefinedFunction/{name}/*") for name in databases),
        ],
    )


class Catalog(Construct):
    """The Glue databases the pipelines declare in pipeline.toml [catalog], made and kept by the stack."""

    def __init__(self, scope: Construct, construct_id_: str) -> None:
        super().__init__(scope, construct_id_)
        self._owners: dict[str, str] = {}
        #: each created database by name
        self.databases: dict[str, glue.CfnDatabase] = {}

    def add_pipeline(self, pipeline_id: str, pipeline: Pipeline) -> tuple[str, ...] | None:
        """Create the pipeline's databases; the ones its clusters may use (None: no Glue catalog at all)."""
        if pipeline.config.cluster.metastore != METASTORE_GLUE:
            return None
        catalog = pipeline.config.catalog
        if catalog is None:
            return ()
        for name in catalog.databases:
            owner = self._owners.setdefault(name, pipeline.name)
            if owner != pipeline.name:
                raise CatalogError(
                    f"pipelines {owner!r} and {pipeline.name!r} both declare the Glue database {name!r} "
                    "in [catalog] databases: a database belongs to one pipeline"
                )
            database = glue.CfnDatabase(
                self,
                f"{pipeline_id}{construct_id(name)}",
                catalog_id=Aws.ACCOUNT_ID,
                database_input=glue.CfnDatabase.DatabaseInputProperty(
                    name=name,
                    description=f"Nightshift pipeline {pipeline.name}",
                    location_uri=catalog.database_location(name),
                ),
            )
            # The tables outlive the stack as they outlive the clusters: deleting the stack must not
            # drop a catalog that other tools (Athena, a rebuilt stack) still read.
            database.apply_removal_policy(RemovalPolicy.RETAIN)
            self.databases[name] = database
        return catalog.databases
