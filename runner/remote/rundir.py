"""The run directory on the master node, and the small POSIX sh scripts that start, follow and stop a step."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from runner.config import VARIABLE_NAME
from runner.engines import Command

# The follower's own exit statuses; the step's exit code is read from its file, never from these.
FOLLOW_NO_RUN_DIRECTORY = 97
FOLLOW_NOT_STARTED = 98
START_WAIT_SECONDS = 60
TAIL_SLEEP_SECONDS = 0.05

# Short naps first (a step starts within milliseconds), then longer ones.
_NAP = "if [ $i -lt 100 ]; then sleep 0.002; else sleep 0.05; fi"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def path_component(text: str) -> str:
    """A pipeline, run id or step name as one safe directory name (no '/', no '..', no spaces)."""
    cleaned = _UNSAFE.sub("_", text).strip("_") or "_"
    return f"_{cleaned}" if cleaned in {".", ".."} else cleaned


def relative_to_home(remote_dir: str) -> str:
    """`~/x` as `x`: commands and SFTP both start in the login directory."""
    if remote_dir in {"~", "~/"}:
        return "."
    return remote_dir[2:] if remote_dir.startswith("~/") else remote_dir


def sh(script: str) -> str:
    """A command line that runs `script` with POSIX sh whatever the login shell is."""
    return "exec sh -c " + shlex.quote(script)


@dataclass(frozen=True)
class RunDirectory:
    """<remote-dir>/<pipeline>/<run id>/<step>: one per run and step, so a second start is a reattach.

    It holds the uploaded step file, `launch.sh`, the step's `stdout` and `stderr`, its `pid`, its
    `exit` code, and `launched`, a directory made with an atomic mkdir: whoever makes it starts
    the step (or, for a stop that came first, cancels it), and nobody else ever does. Paths are
    relative to the login directory unless --remote-dir is absolute; every script runs from there.
    """

    path: str
    step_file_name: str

    @classmethod
    def for_step(cls, remote_dir: str, pipeline: str, run_id: str, step: str, file_name: str) -> RunDirectory:
        base = relative_to_home(remote_dir.rstrip("/") or "/")
        parts = [base, *(path_component(part) for part in (pipeline, run_id, step))]
        return cls("/".join(parts), file_name)

    def file(self, name: str) -> str:
        return f"{self.path}/{name}"

    @property
    def step_file(self) -> str:
        return self.file(self.step_file_name)

    @property
    def launcher(self) -> str:
        return self.file("launch.sh")

    @property
    def parents(self) -> tuple[str, str]:
        """The run's and the pipeline's directories, removed once empty."""
        run, _ = self.path.rsplit("/", 1)
        return run, run.rsplit("/", 1)[0]

    def launcher_script(self, command: Command, *, label: str) -> str:
        """Record the pid, export the step's variables, run the engine, record its exit code.

        The step text never appears here: the engine reads the uploaded file.
        """
        q = shlex.quote
        binary = command.argv[0]
        lines = [
            f"# Nightshift launcher: {label.replace(chr(10), ' ')}",
            f"echo $$ > {q(self.file('pid.tmp'))} && mv {q(self.file('pid.tmp'))} {q(self.file('pid'))}",
        ]
        for name, value in command.env.items():
            if not VARIABLE_NAME.match(name):
                raise ValueError(f"not a variable name: {name!r}")
            lines.append(f"export {name}={q(value)}")
        exit_tmp, exit_file = q(self.file("exit.tmp")), q(self.file("exit"))
        lines += [
            f"if command -v {q(binary)} >/dev/null 2>&1; then",
            f"  {shlex.join(command.argv)} </dev/null",
            "  code=$?",
            "else",
            f'  echo "nightshift: {binary}: command not found on $(hostname) (PATH=$PATH)" >&2',
            "  code=127",
            "fi",
            f"echo $code > {exit_tmp} && mv {exit_tmp} {exit_file}",
            "",
        ]
        return "\n".join(lines)

    def follow_command(self, stdout_offset: int, stderr_offset: int) -> str:
        """Start the step once its launcher is uploaded, unless it was started already; stream its output.

        The follower's stdout and stderr are the step's, byte for byte from the offsets on; `tail
        --pid` ends after a last read once the launcher has exited. It may start while the upload
        is still under way (that saves a round trip), so it waits for the launcher to appear. A
        follower left behind by a dropped connection is stopped first: only the step stays.
        """
        q = shlex.quote
        d = q(self.path)
        out, err = q(self.file("stdout")), q(self.file("stderr"))
        pid, cancelled = q(self.file("pid")), q(self.file("cancelled"))
        waits = START_WAIT_SECONDS * 20 + 100
        tail = f"tail -s {TAIL_SLEEP_SECONDS} --pid=$pid -f"
        return sh(
            "\n".join(
                [
                    f"(umask 077 && mkdir -p {d}) || exit {FOLLOW_NO_RUN_DIRECTORY}",
                    f'old=$(cat {q(self.file("follower"))} 2>/dev/null) && [ -n "$old" ] '
                    "&& kill -TERM -$old 2>/dev/null",
                    f"echo $$ > {q(self.file('follower'))}",
                    "i=0",
                    f"until [ -s {pid} ] || {{ [ -f {q(self.launcher)} ] "
                    f"&& mkdir {q(self.file('launched'))}; }} 2>/dev/null; do",
                    f"  [ -d {d} ] || exit {FOLLOW_NO_RUN_DIRECTORY}",
                    f"  [ -e {cancelled} ] && exit 0",
                    f"  i=$((i+1)); [ $i -gt {waits} ] && exit {FOLLOW_NOT_STARTED}",
                    f"  {_NAP}",
                    "done",
                    f"if [ ! -s {pid} ]; then",
                    f"  : >> {out}; : >> {err}",
                    f"  setsid sh {q(self.launcher)} </dev/null >> {out} 2>> {err} &",
                    f"  until [ -s {pid} ]; do",
                    f"    i=$((i+1)); [ $i -gt {waits} ] && exit {FOLLOW_NOT_STARTED}; {_NAP}",
                    "  done",
                    "fi",
                    f"pid=$(cat {pid})",
                    f"{tail} -c +{stdout_offset + 1} {out} &",
                    f"{tail} -c +{stderr_offset + 1} {err} >&2",
                    "wait",
                ]
            )
        )

    def stop_command(self, grace_seconds: float) -> str:
        """Stop the step's whole process group: TERM, then KILL after the grace period.

        A step not started yet is cancelled instead: the stop takes the `launched` marker itself.
        """
        q = shlex.quote
        pid = q(self.file("pid"))
        rounds = max(1, int(grace_seconds * 10))
        return sh(
            "\n".join(
                [
                    f"[ -d {q(self.path)} ] || exit 0",
                    f"if mkdir {q(self.file('launched'))} 2>/dev/null; then",
                    f"  : > {q(self.file('cancelled'))}; exit 0",
                    "fi",
                    "i=0",
                    f"while [ ! -s {pid} ]; do",
                    "  i=$((i+1)); [ $i -gt 500 ] && exit 0",
                    "  sleep 0.01",
                    "done",
                    f"pg=$(cat {pid})",
                    "kill -TERM -$pg 2>/dev/null || exit 0",
                    "i=0",
                    "while kill -0 -$pg 2>/dev/null; do",
                    f"  i=$((i+1)); if [ $i -gt {rounds} ]; then kill -KILL -$pg 2>/dev/null; exit 0; fi",
                    "  sleep 0.1",
                    "done",
                ]
            )
        )
