"""Typed errors of the runner; only __main__ turns them into exit codes."""

from __future__ import annotations


class NightshiftError(Exception):
    """Base of every error the runner reports as one line."""

    exit_code = 1


class UsageError(NightshiftError):
    """Bad input: a missing path, a malformed flag, an invalid pipeline. Nothing was started."""

    exit_code = 2


class PipelineError(UsageError):
    """A pipeline folder or step file that cannot be run as it is."""


class ConfigError(UsageError):
    """A pipeline.toml that does not match the schema; the message names file, key and expectation."""


class StateDirInUse(UsageError):
    """The local state dir's warm engine (or its folder) is another user's: neither used nor ended."""


class JavaNotFound(UsageError):
    """No Java runtime that Spark 3.5 supports could be found."""


class ConnectionFailure(NightshiftError):
    """The cluster could not be reached or authenticated, and retrying did not help (as ssh: 255)."""

    exit_code = 255


class ClusterError(NightshiftError):
    """The cluster named by --cluster-id is unknown, terminated or failed to start."""

    exit_code = 255
