"""The deployment's settings: a frozen config that app.py builds once from cdk.json context."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)  # fmt: skip
S3_PATH = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<prefix>.*))?$")
SECRET_ARN = re.compile(r"^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+-[A-Za-z0-9]{6}$")
DEFAULT_DATA_ACCESS_KEY = "*"
KMS_KEY_ARN = re.compile(r"^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key/[0-9a-f-]{36}$")
# cdk.json "prices": {"<region>": {"ec2": {"<type>": usd_per_hour}, "emr": {...},
# "fargate": {"vcpu_hour": usd, "gb_hour": usd}}}, on top of lambdas/shared/prices.json.
PRICE_TABLES = ("ec2", "emr", "fargate")
FARGATE_RATES = ("vcpu_hour", "gb_hour")
# cdk.json ships examples that would deploy and then fail at night: a secret in AWS's documentation
# account, an address in a domain reserved for examples (RFC 2606), the example pipeline's bucket.
EXAMPLE_ACCOUNT = "123456789012"
EXAMPLE_EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
EXAMPLE_BUCKET = "nightshift-example-data"


class ContextError(ValueError):
    """A cdk.json context value that is missing or malformed; the message names the key."""


@dataclass(frozen=True)
class ExistingNetwork:
    """A VPC the deployment uses as is: the runner task and the clusters go into its private subnets."""

    vpc_id: str
    availability_zones: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class S3Path:
    bucket: str
    prefix: str  # "" for the whole bucket, else ends with "/"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass(frozen=True)
class DataAccess:
    """The S3 paths a pipeline's cluster may read, and the (also readable) paths it may write."""

    read: tuple[S3Path, ...] = ()
    write: tuple[S3Path, ...] = ()


@dataclass(frozen=True)
class NightshiftConfig:
    """Everything the stack needs, validated; constructs never read context themselves."""

    ec2_key_name: str
    ssh_key_secret_arn: str
    notification_email: str
    network: ExistingNetwork | None = None
    data_access: Mapping[str, DataAccess] = field(default_factory=dict)
    log_retention_days: int = 30
    log_bucket_expiry_days: int = 90
    powertools_layer_version: int | None = None
    cluster_poll_seconds: int = 30
    cluster_start_timeout_minutes: int = 30
    # How often a run queued behind its pipeline's max_concurrent_runs asks Preflight again.
    queue_poll_seconds: int = 60
    # None: the stack creates the log groups' KMS key.
    log_kms_key_arn: str | None = None
    emr_security_configuration: bool = True
    # Prices that replace the shipped table's (lambdas/shared/prices.json) in RecordRun's cost.
    prices: Mapping[str, Mapping[str, Mapping[str, float]]] = field(default_factory=dict)

    def data_access_for(self, pipeline: str) -> DataAccess:
        """The pipeline's own entry, else the "*" entry, else no data access at all."""
        return self.data_access.get(pipeline) or self.data_access.get(DEFAULT_DATA_ACCESS_KEY) or DataAccess()


def _fail(key: str, expected: str, value: Any) -> ContextError:
    return ContextError(f"cdk.json context {key!r}: expected {expected}, got {value!r}")


def _string(key: str, value: Any, pattern: re.Pattern[str] | None = None) -> str:
    if not isinstance(value, str) or not value.strip() or (pattern and not pattern.match(value)):
        raise _fail(key, "a non-empty string" + (f" matching {pattern.pattern}" if pattern else ""), value)
    return value


def _integer(key: str, value: Any, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _fail(key, f"an integer from {low} to {high}", value)
    return value


def _strings(key: str, value: Any, pattern: str) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(v, str) and re.fullmatch(pattern, v) for v in value)
    ):
        raise _fail(key, f"a non-empty list of strings matching {pattern}", value)
    return tuple(value)


def _boolean(key: str, value: Any, default: bool = True) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def _s3_paths(key: str, value: Any) -> tuple[S3Path, ...]:
    if not isinstance(value, list):
        raise _fail(key, "a list of s3://bucket/prefix/ paths", value)
    paths = []
    for item in value:
        match = S3_PATH.match(item) if isinstance(item, str) else None
        prefix = (match["prefix"] or "") if match else ""
        if match is None or "*" in prefix or (prefix and not prefix.endswith("/")):
            raise _fail(key, "s3://bucket or s3://bucket/prefix/ (ending in '/', no wildcards)", item)
        paths.append(S3Path(bucket=match["bucket"], prefix=prefix))
    return tuple(paths)


def _network(value: Any) -> ExistingNetwork | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"vpc_id", "availability_zones", "private_subnet_ids"}:
        raise _fail("vpc", "an object with vpc_id, availability_zones and private_subnet_ids", value)
    zones = _strings("vpc.availability_zones", value["availability_zones"], r"[a-z0-9-]+")
    subnets = _strings("vpc.private_subnet_ids", value["private_subnet_ids"], r"subnet-[0-9a-f]+")
    if len(zones) != len(subnets):
        raise _fail("vpc.availability_zones", f"one zone per private subnet ({len(subnets)})", list(zones))
    return ExistingNetwork(
        vpc_id=_string("vpc.vpc_id", value["vpc_id"], re.compile(r"^vpc-[0-9a-f]+$")),
        availability_zones=zones,
        private_subnet_ids=subnets,
    )


def _data_access(value: Any) -> dict[str, DataAccess]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail("data_access", 'an object {"<pipeline>" or "*": {"read": [...], "write": [...]}}', value)
    result = {}
    for pipeline, entry in value.items():
        where = f"data_access.{pipeline}"
        if not isinstance(entry, dict) or not set(entry) <= {"read", "write"}:
            raise _fail(where, 'an object with "read" and/or "write" lists', entry)
        result[pipeline] = DataAccess(
            read=_s3_paths(f"{where}.read", entry.get("read", [])),
            write=_s3_paths(f"{where}.write", entry.get("write", [])),
        )
    return result


def _rate(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1000:
        raise _fail(key, "a price in USD per hour from 0 to 1000", value)
    return float(value)


def _prices(value: Any) -> dict[str, dict[str, dict[str, float]]]:
    if value is None:
        return {}
    shape = '{"<region>": {"ec2": {"<instance type>": usd}, "emr": {...}, "fargate": {"vcpu_hour": usd}}}'
    if not isinstance(value, dict):
        raise _fail("prices", shape, value)
    result: dict[str, dict[str, dict[str, float]]] = {}
    for region, tables in value.items():
        if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", region) or not isinstance(tables, dict) or not tables:
            raise _fail(f"prices.{region}", shape, tables)
        result[region] = {}
        for table, rates in tables.items():
            where = f"prices.{region}.{table}"
            if table not in PRICE_TABLES or not isinstance(rates, dict):
                raise _fail(where, f"one of {', '.join(PRICE_TABLES)} with an object of prices", rates)
            for name in rates:
                if table == "fargate" and name not in FARGATE_RATES:
                    raise _fail(f"{where}.{name}", f"one of {', '.join(FARGATE_RATES)}", name)
                if table != "fargate" and not re.fullmatch(r"[a-z][a-z0-9-]*\.[a-z0-9]+", name):
                    raise _fail(f"{where}.{name}", "an EC2 instance type such as m5.xlarge", name)
            result[region][table] = {name: _rate(f"{where}.{name}", rate) for name, rate in rates.items()}
    return result


def _bucket_of(path: Any) -> str | None:
    match = S3_PATH.match(path) if isinstance(path, str) else None
    return match["bucket"] if match else None


def placeholder_keys(get: Callable[[str], Any]) -> list[str]:
    """The context keys that still hold cdk.json's shipped examples, in cdk.json's order."""
    keys = []
    secret = get("ssh_key_secret_arn")
    if isinstance(secret, str) and f":{EXAMPLE_ACCOUNT}:" in secret:
        keys.append("ssh_key_secret_arn")
    email = get("notification_email")
    if isinstance(email, str) and email.rpartition("@")[2].lower() in EXAMPLE_EMAIL_DOMAINS:
        keys.append("notification_email")
    access = get("data_access")
    if isinstance(access, dict):
        for pipeline, entry in access.items():
            paths = [*entry.get("read", []), *entry.get("write", [])] if isinstance(entry, dict) else []
            if any(_bucket_of(path) == EXAMPLE_BUCKET for path in paths):
                keys.append(f"data_access.{pipeline}")
    return keys


def refuse_placeholders(get: Callable[[str], Any]) -> None:
    """Raise ContextError naming every key still set to a shipped example (a deployment needs real ones)."""
    keys = placeholder_keys(get)
    if keys:
        raise ContextError(
            f"set {', '.join(keys)} in cdk.json's context: the shipped values are examples "
            "(docs/infra.md, First deploy)"
        )


def config_from_context(get: Callable[[str], Any]) -> NightshiftConfig:
    """Build the config from a context getter (app.node.try_get_context); raise ContextError."""
    retention = get("log_retention_days")
    retention = 30 if retention is None else retention
    if retention not in LOG_RETENTION_DAYS:
        raise _fail("log_retention_days", f"one of {LOG_RETENTION_DAYS}", retention)

    def optional_int(key: str, default: int, low: int, high: int) -> int:
        value = get(key)
        return default if value is None else _integer(key, value, low, high)

    if get("pipelines_dir") is not None:
        # The runner image and every RunStep command have the folder baked in: a configurable
        # folder would deploy state machines whose steps the image does not contain.
        raise _fail(
            "pipelines_dir", "no such key (pipelines are the folders under sql/)", get("pipelines_dir")
        )
    layer = get("powertools_layer_version")
    return NightshiftConfig(
        ec2_key_name=_string("ec2_key_name", get("ec2_key_name")),
        ssh_key_secret_arn=_string("ssh_key_secret_arn", get("ssh_key_secret_arn"), SECRET_ARN),
        notification_email=_string(
            "notification_email", get("notification_email"), re.compile(r"^[^@\s]+@[^@\s]+$")
        ),
        network=_network(get("vpc")),
        data_access=_data_access(get("data_access")),
        log_retention_days=retention,
        log_bucket_expiry_days=optional_int("log_bucket_expiry_days", 90, 1, 3650),
        powertools_layer_version=None
        if layer is None
        else _integer("powertools_layer_version", layer, 1, 10_000),
        cluster_poll_seconds=optional_int("cluster_poll_seconds", 30, 5, 600),
        cluster_start_timeout_minutes=optional_int("cluster_start_timeout_minutes", 30, 5, 180),
        queue_poll_seconds=optional_int("queue_poll_seconds", 60, 1, 600),
        log_kms_key_arn=None
        if get("log_kms_key_arn") is None
        else _string("log_kms_key_arn", get("log_kms_key_arn"), KMS_KEY_ARN),
        emr_security_configuration=_boolean("emr_security_configuration", get("emr_security_configuration")),
        prices=_prices(get("prices")),
    )
