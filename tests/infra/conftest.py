"""The infra tests' names, kept importable from here: the fixtures live in tests/support/aws.py (a plugin)."""

from tests.support.aws import (
    ACCOUNT,
    ADHOC_TOML,
    NIGHTLY_STEPS,
    NIGHTLY_TOML,
    REGION,
    ROOT,
    SECRET_ARN,
    SUBNETS,
    Synthesis,
    base_context,
    definition_of,
    resolve_join,
    synthesize,
    write_pipelines,
)

__all__ = [
    "ACCOUNT",
    "ADHOC_TOML",
    "NIGHTLY_STEPS",
    "NIGHTLY_TOML",
    "REGION",
    "ROOT",
    "SECRET_ARN",
    "SUBNETS",
    "Synthesis",
    "base_context",
    "definition_of",
    "resolve_join",
    "synthesize",
    "write_pipelines",
]
