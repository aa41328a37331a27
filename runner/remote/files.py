"""The run directory over exec channels, no SFTP: make it, upload into it, read the exit code, clear it."""

from __future__ import annotations

from runner.errors import NightshiftError
from runner.remote.rundir import PREPARED_LAUNCHED, Finished, RunDirectory, parse_finish
from runner.remote.session import Session
from runner.remote.transport import Cancel, Connection

# Per wait for progress: a command that neither reads nor answers for this long is on a dead link.
COMMAND_TIMEOUT = 60.0


class RemoteError(NightshiftError):
    """The cluster was reached but the step could not run there (remote disk full, run directory unsafe)."""


def _said(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else "no reason given"


def where(run_directory: RunDirectory, label: str) -> str:
    """The run directory as the user would look for it: `~/…` when it is relative to the login's home."""
    path = run_directory.path
    shown = path if path.startswith("/") else f"~/{path.removeprefix('./')}"
    return f"{shown} on {label}"


def prepare(session: Session, connection: Connection, run_directory: RunDirectory, cancel: Cancel) -> bool:
    """Make the run directory (or check the one made before); True when its step was launched already."""
    result = session.run(connection, run_directory.prepare_command(), timeout=COMMAND_TIMEOUT, cancel=cancel)
    if result.exit_status != 0:
        raise RemoteError(
            f"cannot upload {run_directory.step_file_name} to {session.label}: {_said(result.stderr)}"
        )
    return result.stdout.decode(errors="replace").strip() == PREPARED_LAUNCHED


def upload(
    session: Session,
    connection: Connection,
    run_directory: RunDirectory,
    *,
    name: str,
    data: bytes,
    cancel: Cancel,
) -> None:
    """Store `data` as `name` in the run directory, whole or not at all; the bytes travel on stdin."""
    command = run_directory.upload_command(name, len(data))
    result = session.run(connection, command, stdin=data, timeout=COMMAND_TIMEOUT, cancel=cancel)
    if result.exit_status != 0:
        shown = run_directory.step_file_name if name == run_directory.step_file_name else name
        raise RemoteError(f"cannot upload {shown} to {session.label}: {_said(result.stderr)}")


def finish(
    session: Session, connection: Connection, run_directory: RunDirectory, *, keep: bool, cancel: Cancel
) -> Finished:
    """The step's exit code if it was recorded; the run directory goes unless `keep`."""
    result = session.run(
        connection, run_directory.finish_command(keep), timeout=COMMAND_TIMEOUT, cancel=cancel
    )
    if result.exit_status != 0:
        raise RemoteError(
            f"cannot read the exit code in {where(run_directory, session.label)}: {_said(result.stderr)}"
        )
    return parse_finish(result.stdout)
