"""The run directory over exec channels, no SFTP: make it, upload into it, read the exit code, clear it."""

from __future__ import annotations

import shlex

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


def start(
    session: Session,
    connection: Connection,
    run_directory: RunDirectory,
    *,
    step: bytes,
    launcher: bytes,
    cancel: Cancel,
) -> bool:
    """Make the run directory, then upload the step file and its launcher, over one exec channel.

    True when the step was launched before (a reattach): then nothing is uploaded. The bytes of
    both files travel on the channel's stdin, `head -c` cutting the first off exactly; each
    session and shell costs a fork or three on the master, so one channel instead of three saves
    a round trip and most of a busy master's start-up. The launcher is stored last: a follower
    starts the step only once it is there, whole.
    """
    q = shlex.quote
    script = "\n".join(
        [
            'prepared=$(sh -c "$1") || exit',
            'echo "$prepared"',
            # A reattach: the bytes on stdin are not needed, but they are read, so the sender ends.
            f'if [ "$prepared" = {q(PREPARED_LAUNCHED)} ]; then exec cat >/dev/null; fi',
            f'head -c {len(step)} | sh -c "$2" || exit',
            'exec sh -c "$3"',
        ]
    )
    command = " ".join(
        [
            "exec sh -c",
            q(script),
            "nightshift-start",
            q(run_directory.prepare_command()),
            q(run_directory.upload_command(run_directory.step_file_name, len(step))),
            q(run_directory.upload_command("launch.sh", len(launcher))),
        ]
    )
    result = session.run(connection, command, stdin=step + launcher, timeout=COMMAND_TIMEOUT, cancel=cancel)
    if result.exit_status != 0:
        raise RemoteError(
            f"cannot upload {run_directory.step_file_name} to {session.label}: {_said(result.stderr)}"
        )
    return result.stdout.decode(errors="replace").strip() == PREPARED_LAUNCHED


def finish(
    session: Session, connection: Connection, run_directory: RunDirectory, *, cancel: Cancel
) -> Finished:
    """The step's exit code if it was recorded; reads only, so a lost answer can be asked for again."""
    result = session.run(connection, run_directory.finish_command(), timeout=COMMAND_TIMEOUT, cancel=cancel)
    if result.exit_status != 0:
        raise RemoteError(
            f"cannot read the exit code in {where(run_directory, session.label)}: {_said(result.stderr)}"
        )
    return parse_finish(result.stdout)


def clear(session: Session, connection: Connection, run_directory: RunDirectory, *, cancel: Cancel) -> None:
    """Remove the run directory (after finish: never before the exit code is read)."""
    result = session.run(connection, run_directory.clear_command(), timeout=COMMAND_TIMEOUT, cancel=cancel)
    if result.exit_status != 0:
        raise RemoteError(f"cannot remove {where(run_directory, session.label)}: {_said(result.stderr)}")
