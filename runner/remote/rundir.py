"""The run directory on the master node, and the POSIX sh scripts that make, fill, run, stop and clear it."""

from __future__ import annotations

import re
import secrets
import shlex
import signal
from dataclasses import dataclass, field

from runner.config import VARIABLE_NAME
from runner.engines import Command

# The scripts' own exit statuses; the step's exit code is read from its file, never from these.
RUN_DIRECTORY_NOT_SAFE = 93
CANNOT_CREATE = 94
UPLOAD_FAILED = 95
FOLLOWED_ELSEWHERE = 96
FOLLOW_NO_RUN_DIRECTORY = 97
FOLLOW_NOT_STARTED = 98
START_WAIT_SECONDS = 60
# prepare_command's answer: the step was started before (reattach), or not yet (upload it).
PREPARED_LAUNCHED = "launched"
PREPARED_NEW = "new"
TAIL_SLEEP_SECONDS = 0.05
# EMR (6.4+) counts a cluster idle while no YARN application runs, unless this file is fresh.
EMR_BUSY_FILE = "/emr/metricscollector/isbusy"
BUSY_TOUCH_SECONDS = 60
# Below this, a step whose exit code is missing is taken to have filled the disk.
DISK_FULL_KIB = 64

# Short naps first (a step starts within milliseconds), then longer ones.
_NAP = "if [ $i -lt 100 ]; then sleep 0.002; else sleep 0.05; fi"
_SAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_")
_DISK_FULL = re.compile(r"^disk-full (\d+)$")
_SAFE_START = re.compile(r"[A-Za-z0-9._/]")

# Shared by every script: refuse a directory that someone other than the login could have written.
# Every script runs on each step's path, so the checks that pass cost one fork (find) in all:
# `[ -L ]`, `[ -d ]` and `[ -O ]` are built in; stat and id run only to word a refusal.
_CHECKS = f"""\
refuse() {{ printf '%s\\n' "$2" >&2; exit "$1"; }}
free_kib() {{ df -Pk -- "$1" 2>/dev/null | awk 'NR == 2 {{ print $4 }}'; }}
mine() {{
  for l; do
    [ -L "$l" ] && refuse {RUN_DIRECTORY_NOT_SAFE} "$l is a symbolic link: refusing to use it"
    [ -d "$l" ] || refuse {RUN_DIRECTORY_NOT_SAFE} "$l is not a directory: refusing to use it"
    [ -O "$l" ] || refuse {RUN_DIRECTORY_NOT_SAFE} \
"$l belongs to $(stat -c %U -- "$l"), not to $(id -un), the login: refusing to use it"
  done
  [ -z "$(find "$@" -maxdepth 0 -perm /022 -print -quit 2>/dev/null)" ] && return 0
  for l; do
    case $(stat -c %A -- "$l") in
      ?????w*|????????w*) refuse {RUN_DIRECTORY_NOT_SAFE} \
"$l is writable by others (mode $(stat -c %a -- "$l")): refusing to use it" ;;
    esac
  done
}}"""

# Signal ($1) the login's processes that carry the step's token ($tok), printing their pids: the
# step's processes, also those that left its process group. /proc/PID belongs to the process's user.
# `skip` (a process group id): its members were signalled with the group and must not get the signal
# twice (a step's TERM trap would run twice). The group id is the third field after the `(comm)`.
_MARKED = """\
marked() {
  [ -n "$tok" ] || return 1
  sig=$1
  for f in $(grep -lzxF "NIGHTSHIFT_STEP_TOKEN=$tok" /proc/[0-9]*/environ 2>/dev/null); do
    p=${f#/proc/}; p=${p%/environ}
    if [ -n "${skip:-}" ]; then
      st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
      set -- ${st##*) }
      [ "$3" = "$skip" ] && continue
    fi
    [ -O "/proc/$p" ] && kill -"$sig" "$p" 2>/dev/null && echo "$p"
  done
}"""


def path_component(text: str) -> str:
    """A pipeline, run id or step name as one directory name; distinct names stay distinct.

    Percent-encoding of the UTF-8 bytes outside [A-Za-z0-9._-] (so `%` too): reversible, hence
    injective, and the usual names (`10_users`, `20240101T000000Z-3fa2c1`) stay as they are.
    """
    if text in {"", ".", ".."}:
        return "%" + "".join(f"%{byte:02X}" for byte in text.encode())
    return "".join(char if char in _SAFE else "".join(f"%{b:02X}" for b in char.encode()) for char in text)


def relative_to_home(remote_dir: str) -> str:
    """`~/x` as `x`: every command starts in the login directory. `-x` as `./-x`: never an option.

    Likewise `(x` or `!x`, which find would take for an expression.
    """
    if remote_dir in {"~", "~/"}:
        return "."
    relative = remote_dir[2:] if remote_dir.startswith("~/") else remote_dir
    return relative if _SAFE_START.match(relative) else f"./{relative}"


def sh(script: str) -> str:
    """A command line that runs `script` with POSIX sh whatever the login shell is."""
    return "exec sh -c " + shlex.quote(script)


def new_runner_id() -> str:
    """Names one runner process's followers, so it knows its own from another runner's."""
    return secrets.token_hex(8)


@dataclass(frozen=True)
class Finished:
    """What finish_command found: the step's exit code (None without one), and free KiB if the disk filled."""

    exit_code: int | None
    disk_full_kib: int | None = None


def parse_finish(stdout: bytes) -> Finished:
    """Read finish_command's output."""
    code: int | None = None
    full: int | None = None
    for raw in stdout.decode(errors="replace").splitlines():
        line = raw.strip()
        if line.isdigit() and code is None:
            code = int(line)
        elif match := _DISK_FULL.match(line):
            full = int(match.group(1))
    return Finished(code, full)


@dataclass(frozen=True)
class RunDirectory:
    """<remote-dir>/<pipeline>/<run id>/<step>: one per run and step, so a second start is a reattach.

    It holds the uploaded step file, `launch.sh`, the step's `stdout` and `stderr`, its `pid` and
    `token`, its `exit` code, the current `follower`, and `launched`, a directory made with an
    atomic mkdir: whoever makes it starts the step (or, for a stop that came first, cancels it),
    and nobody else ever does. The runner makes the pipeline, run and step levels itself and
    trusts them only while they are its own and nobody else can write them. Paths are relative to
    the login directory unless --remote-dir is absolute; every script runs from there.
    """

    path: str
    step_file_name: str
    # One per runner and step run: its followers carry it, and a follower recorded with another
    # runner's id belongs to a second runner of the same run id.
    runner_id: str = field(default_factory=new_runner_id, compare=False)

    @classmethod
    def for_step(cls, remote_dir: str, pipeline: str, run_id: str, step: str, file_name: str) -> RunDirectory:
        base = relative_to_home(remote_dir.rstrip("/") or "/")
        parts = [base.rstrip("/"), *(path_component(part) for part in (pipeline, run_id, step))]
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

    @property
    def base(self) -> str:
        """--remote-dir: shared with other runs and maybe other users; the runner owns only what is below."""
        return self.parents[1].rsplit("/", 1)[0] or "/"

    def _owned(self) -> str:
        """Check each level the runner owns; the script exits 93 with a reason at the first bad one."""
        run, pipeline = self.parents
        return "mine " + " ".join(shlex.quote(level) for level in (pipeline, run, self.path))

    def prepare_command(self) -> str:
        """Make the run directory, or accept the one this login made before; print `launched` or `new`.

        --remote-dir may be made with its parents and may be shared (root's or the login's, and
        sticky if others can write it: /tmp). The pipeline, run and step levels are made one by one
        with an atomic mkdir (mode 0700); one that already exists is used only if it is a real
        directory of the login that nobody else can write. Exit 93 (not safe) or 94 (cannot
        create: a full disk, no permission), each with a one-line reason on stderr.
        """
        q = shlex.quote
        run, pipeline = self.parents
        return sh(
            "\n".join(
                [
                    "umask 077",
                    _CHECKS,
                    "level() {",
                    '  mkdir -- "$1" 2>/dev/null && return 0',
                    '  if [ -e "$1" ] || [ -L "$1" ]; then mine "$1"; return; fi',
                    '  err=$(mkdir -- "$1" 2>&1) || cannot "$1" "$err"',
                    "}",
                    "cannot() {",
                    '  case $2 in *"No space left"*)',
                    f'    refuse {CANNOT_CREATE} "cannot create $1: the remote disk is full '
                    '($(free_kib "$(dirname -- "$1")") KiB free in $(dirname -- "$1"))" ;;',
                    "  esac",
                    f'  refuse {CANNOT_CREATE} "cannot create $1: ${{2##*: }}"',
                    "}",
                    f"b={q(self.base)}",
                    'if [ ! -d "$b" ]; then err=$(mkdir -p -- "$b" 2>&1) || cannot "$b" "$err"; fi',
                    # A symbolic link someone else owns could be pointed elsewhere between two runs.
                    'if [ -L "$b" ]; then',
                    '  owner=$(stat -c %u -- "$b")',
                    '  if [ "$owner" != "$(id -u)" ] && [ "$owner" != 0 ]; then',
                    f'    refuse {RUN_DIRECTORY_NOT_SAFE} "$b is a symbolic link of $(stat -c %U -- "$b"), '
                    'neither of $(id -un), the login, nor of root: refusing to use it"',
                    "  fi",
                    "fi",
                    'set -- $(stat -L -c "%u %A" -- "$b")',
                    'if ! [ -O "$b" ] && [ "$1" != 0 ]; then',
                    f'  refuse {RUN_DIRECTORY_NOT_SAFE} "$b belongs to $(stat -L -c %U -- "$b"), '
                    'neither to $(id -un), the login, nor to root: refusing to use it"',
                    "fi",
                    "case $2 in",
                    "  *t|*T) ;;",
                    f'  ?????w*|????????w*) refuse {RUN_DIRECTORY_NOT_SAFE} "$b is writable by others '
                    'and not sticky (mode $(stat -L -c %a -- "$b")): refusing to use it" ;;',
                    "esac",
                    f"level {q(pipeline)} && level {q(run)} && level {q(self.path)}",
                    f"if [ -d {q(self.file('launched'))} ]; then echo {PREPARED_LAUNCHED}",
                    f"else echo {PREPARED_NEW}; fi",
                ]
            )
        )

    def upload_command(self, name: str, size: int) -> str:
        """Store stdin as `name` in the run directory (mode 0600), whole or not at all.

        The text arrives on stdin, never in the command line; it is written to a temporary file
        and renamed once all `size` bytes are there. Exit 95 with a one-line reason otherwise.
        """
        if not name or "/" in name or name in {".", ".."}:
            raise ValueError(f"not a file name: {name!r}")
        q = shlex.quote
        # One staging file per upload ($$: the remote shell): two runners of one run id may upload at once.
        target, staged = q(self.file(name)), q(self.file(f"{name}.")) + "$$.part"
        d = q(self.path)
        return sh(
            "\n".join(
                [
                    "umask 077",
                    _CHECKS,
                    self._owned(),
                    # Names go into messages through variables: a file name may hold `"`, `$`, `.
                    f"name={q(name)} d={d}",
                    f"err=$(cat 2>&1 > {staged})",
                    f"n=$(wc -c 2>/dev/null < {staged})",
                    f'if [ "${{n:-0}}" -ne {size} ]; then',
                    f"  rm -f -- {staged}",
                    '  free=$(free_kib "$d")',
                    f'  if [ -n "$free" ] && [ "$free" -lt {size // 1024 + DISK_FULL_KIB} ]; then',
                    f'    refuse {UPLOAD_FAILED} "cannot store $name in $d: '
                    'the remote disk is full ($free KiB free in $d)"',
                    "  fi",
                    f'  refuse {UPLOAD_FAILED} "cannot store $name in $d: '
                    f'${{n:-0}} of {size} bytes written${{err:+ (${{err##*: }})}}"',
                    "fi",
                    f"mv -f -- {staged} {target}",
                ]
            )
        )

    def finish_command(self) -> str:
        """Print the step's exit code if it was recorded, `disk-full <KiB>` if the disk filled.

        Reads only: a connection lost before the answer arrives can ask again (clear_command
        removes the run directory once the answer is in).
        """
        q = shlex.quote
        exit_file, no_space, d = q(self.file("exit")), q(self.file("exit.nospace")), q(self.path)
        lines = [
            _CHECKS,
            f"[ -d {d} ] || exit 0",
            self._owned(),
            f'if [ -f {exit_file} ]; then read -r code < {exit_file}; echo "$code"',
            f"elif [ -L {no_space} ]; then readlink {no_space}; fi",
            f"if [ ! -f {exit_file} ]; then",
            f"  free=$(free_kib {d})",
            f'  if [ -L {no_space} ] || {{ [ -n "$free" ] && [ "$free" -lt {DISK_FULL_KIB} ]; }}; then',
            '    echo "disk-full ${free:-0}"',
            "  fi",
            "fi",
            "exit 0",
        ]
        return sh("\n".join(lines))

    def clear_command(self) -> str:
        """Remove the run directory, and the run's and pipeline's once empty; harmless when repeated."""
        q = shlex.quote
        run, pipeline = self.parents
        d = q(self.path)
        lines = [
            _CHECKS,
            f"[ -d {d} ] || exit 0",
            self._owned(),
            f"rm -rf -- {d} && rmdir -- {q(run)} {q(pipeline)} 2>/dev/null",
            "exit 0",
        ]
        return sh("\n".join(lines))

    def launcher_script(
        self,
        command: Command,
        *,
        label: str,
        busy_file: str = EMR_BUSY_FILE,
        busy_seconds: float = BUSY_TOUCH_SECONDS,
        grace_seconds: float = 5.0,
    ) -> str:
        """Record the pid, export the step's variables, run the engine, record its exit code.

        The step text never appears here: the engine reads the uploaded file. The engine's
        processes carry NIGHTSHIFT_STEP_TOKEN (random, recorded in `token`), so a stop, and the
        step's own end, find those that left its process group. Without a UTF-8 locale in the
        session (an sshd that takes no LANG), engines run under C.UTF-8: steps are UTF-8. A stop's
        TERM does not end the launcher before the step: its follower relays the step's last words.
        """
        q = shlex.quote
        binary = command.argv[0]
        token, token_tmp = q(self.file("token")), q(self.file("token.tmp"))
        pid_tmp = q(self.file("pid.tmp"))
        lines = [
            f"# Nightshift launcher: {label.replace(chr(10), ' ')}",
            "umask 077",
            # A stop's TERM reaches the whole group: the launcher outlives it until the step has
            # ended, so the follower (`tail --pid` on this script) relays the step's last words.
            # A trap, not an ignore: the step gets TERM's default disposition, as if typed.
            "stopped=",
            "trap 'stopped=1' TERM",
            # Random, from the kernel, without a fork: the step's start waits for this script.
            "read -r tok < /proc/sys/kernel/random/uuid",
            f'printf "%s\\n" "$tok" > {token_tmp} && mv -f -- {token_tmp} {token}',
            f"echo $$ > {pid_tmp} && mv -f -- {pid_tmp} {q(self.file('pid'))}",
        ]
        for name, value in command.env.items():
            if not VARIABLE_NAME.match(name):
                raise ValueError(f"not a variable name: {name!r}")
            lines.append(f"export {name}={q(value)}")
        rounds = max(1, int(grace_seconds * 10))
        exit_tmp, exit_file = q(self.file("exit.tmp")), q(self.file("exit"))
        lines += [
            # The codeset the engine would get from LC_ALL, else LC_CTYPE, else LANG, as the C
            # library resolves it: a UTF-8 name the master has no locale for (a laptop's
            # en_GB.UTF-8, macOS's LC_CTYPE=UTF-8) is ASCII there too.
            'if [ "$(locale charmap 2>/dev/null)" != UTF-8 ]; then LC_ALL=C.UTF-8; export LC_ALL; fi',
            # EMR's idle check sees no YARN application for a bash step: say the cluster is busy.
            f"busy={q(busy_file)}",
            "toucher=",
            'if [ -e "$busy" ]; then',
            f"  (trap 'kill $nap 2>/dev/null; exit 0' TERM; while :; do touch -c -- \"$busy\" 2>/dev/null;"
            f" sleep {busy_seconds:g} & nap=$!; wait $nap; done) </dev/null >/dev/null 2>&1 &",
            "  toucher=$!",
            "fi",
            # Stopped before it started: it does not start, and ends as TERM would have ended it.
            'if [ -n "$stopped" ]; then',
            f"  code={128 + signal.SIGTERM}",
            f"elif command -v {q(binary)} >/dev/null 2>&1; then",
            f'  NIGHTSHIFT_STEP_TOKEN="$tok" {shlex.join(command.argv)} </dev/null',
            "  code=$?",
            "else",
            "  printf 'nightshift: %s: command not found on %s (PATH=%s)\\n' \\",
            f'    {q(binary)} "$(hostname)" "$PATH" >&2',
            "  code=127",
            "fi",
            '[ -n "$toucher" ] && kill "$toucher" 2>/dev/null',
            # What the step started and left behind (daemons, `setsid`, `nohup ... &`) ends with it.
            _MARKED,
            'if [ -n "$(marked TERM)" ]; then',
            f'  i=0; while [ $i -lt {rounds} ] && [ -n "$(marked 0)" ]; do sleep 0.1; i=$((i+1)); done',
            "  marked KILL >/dev/null",
            "fi",
            # A full disk cannot take the exit file; a short symlink needs no data block.
            f'{{ printf "%s\\n" "$code" > {exit_tmp} && mv -f -- {exit_tmp} {exit_file}; }} 2>/dev/null'
            f' || {{ rm -f -- {exit_tmp}; ln -s "$code" {q(self.file("exit.nospace"))}; }}',
            "",
        ]
        return "\n".join(lines)

    def follow_command(self, stdout_offset: int, stderr_offset: int, *, resume: bool = False) -> str:
        """Start the step once its launcher is uploaded, unless it was started already; stream its output.

        Runs after prepare_command. The follower's stdout and stderr are the step's, byte for byte
        from the offsets on; `tail --pid` ends after a last read once the launcher has exited. It
        may start while the upload is still under way, so it waits for the launcher to appear
        (moved into place whole by upload_command). A follower this runner left behind on a
        dropped connection is stopped first. Another runner's follower is taken over on this
        runner's first follow (`resume` false: it exits 96 and its runner steps aside); on a later
        one (`resume`) this follower is the one that exits 96: the run is followed elsewhere, so
        nobody loops.
        """
        q = shlex.quote
        d = q(self.path)
        out, err = q(self.file("stdout")), q(self.file("stderr"))
        pid, cancelled = q(self.file("pid")), q(self.file("cancelled"))
        follower, follower_tmp = q(self.file("follower")), q(self.file("follower.tmp"))
        waits = START_WAIT_SECONDS * 20 + 100
        tail = f"tail -s {TAIL_SLEEP_SECONDS} --pid=$pid -f"
        script = "\n".join(
            [
                "umask 077",
                _CHECKS,
                # Gone: another runner of this run id finished it and cleared up.
                f"[ -d {d} ] || exit {FOLLOW_NO_RUN_DIRECTORY}",
                self._owned(),
                "old= oldpid=",
                f"[ -f {follower} ] && read -r old oldpid < {follower}",
                f'if [ -n "$old" ] && [ "$old" != "$NIGHTSHIFT_FOLLOWER" ] && [ {int(resume)} = 1 ]; then',
                f"  exit {FOLLOWED_ELSEWHERE}",
                "fi",
                # Only a follower this login runs, recorded here by a runner, with that runner's mark.
                'case $oldpid in ""|*[!0-9]*) ;; *)',
                '  if [ -O "/proc/$oldpid" ] \\',
                '    && grep -qzxF "NIGHTSHIFT_FOLLOWER=$old" "/proc/$oldpid/environ" 2>/dev/null',
                '  then kill -TERM "-$oldpid" 2>/dev/null; fi ;;',
                "esac",
                f'echo "$NIGHTSHIFT_FOLLOWER $$" > {follower_tmp} && mv -f -- {follower_tmp} {follower}',
                # Taken over by another runner: say so with a status, not as a dropped connection.
                f"trap 'exit {FOLLOWED_ELSEWHERE}' TERM",
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
                f"  env -u NIGHTSHIFT_FOLLOWER setsid sh {q(self.launcher)} </dev/null >> {out} 2>> {err} &",
                f"  until [ -s {pid} ]; do",
                f"    i=$((i+1)); [ $i -gt {waits} ] && exit {FOLLOW_NOT_STARTED}; {_NAP}",
                "  done",
                "fi",
                f"read -r pid < {pid}",
                f"{tail} -c +{stdout_offset + 1} {out} &",
                # Both in the background: a shell reports a foreground job that a signal killed.
                f"{tail} -c +{stderr_offset + 1} {err} >&2 &",
                "wait",
            ]
        )
        return f"exec env NIGHTSHIFT_FOLLOWER={self.runner_id} sh -c {shlex.quote(script)}"

    def stop_command(self, grace_seconds: float) -> str:
        """Stop the step: its process group and every process of the login that carries its token.

        TERM at once, then KILL after the grace period from a detached process, so the command
        returns at once (a runner being stopped has 2 s) and the run directory may go meanwhile.
        Only what the launcher recorded in a directory the login owns is signalled, and the group
        only while its leader is still that launcher. A step not started yet is cancelled instead:
        the stop takes the `launched` marker itself.
        """
        q = shlex.quote
        pid = q(self.file("pid"))
        rounds = max(1, int(grace_seconds * 10))
        signals = "\n".join(
            [
                'group() { [ -n "$ours" ] && kill -"$1" "-$pg" 2>/dev/null; }',
                _MARKED,
            ]
        )
        escalation = "\n".join(
            [
                "pg=$1 tok=$2 ours=$3",
                signals,
                "i=0",
                'while group 0 || [ -n "$(marked 0)" ]; do',
                f"  i=$((i+1)); if [ $i -gt {rounds} ]; then group KILL; marked KILL >/dev/null; exit 0; fi",
                "  sleep 0.1",
                "done",
            ]
        )
        return sh(
            "\n".join(
                [
                    "umask 077",
                    _CHECKS,
                    f"[ -d {q(self.path)} ] || exit 0",
                    self._owned(),
                    f"if mkdir {q(self.file('launched'))} 2>/dev/null; then",
                    f"  : > {q(self.file('cancelled'))}; exit 0",
                    "fi",
                    # The follower made `launched` and starts the launcher within milliseconds.
                    "i=0",
                    f"while [ ! -s {pid} ]; do",
                    "  i=$((i+1)); [ $i -gt 100 ] && exit 0",
                    "  sleep 0.01",
                    "done",
                    f"pg=$(cat {pid}); tok=$(cat {q(self.file('token'))} 2>/dev/null)",
                    "case $pg in ''|*[!0-9]*) exit 0 ;; esac",
                    # The group only if its leader is still our launcher (Linux reuses no live group
                    # id). `kill -SIG -PGID`, never `kill -SIG -- -PGID`: dash's kill takes no `--`.
                    "ours=",
                    f'[ ! -e {q(self.file("exit"))} ] && [ -O "/proc/$pg" ] '
                    f'&& grep -qzxF -- {q(self.launcher)} "/proc/$pg/cmdline" 2>/dev/null && ours=1',
                    signals,
                    'skip=; [ -n "$ours" ] && skip=$pg',
                    "group TERM; marked TERM >/dev/null; skip=",
                    f'setsid sh -c {q(escalation)} nightshift-stop "$pg" "$tok" "$ours" '
                    "</dev/null >/dev/null 2>&1 &",
                    "exit 0",
                ]
            )
        )
