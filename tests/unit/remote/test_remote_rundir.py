"""Run directory paths and the generated scripts, exercised with the local POSIX sh on real files."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import pytest

from runner.engines import Command
from runner.remote.rundir import (
    CANNOT_CREATE,
    FOLLOW_NO_RUN_DIRECTORY,
    FOLLOWED_ELSEWHERE,
    RUN_DIRECTORY_NOT_SAFE,
    UPLOAD_FAILED,
    Finished,
    RunDirectory,
    parse_finish,
    path_component,
    relative_to_home,
)


def _unquote(component: str) -> str:
    out = bytearray()
    i = 0
    while i < len(component):
        if component[i] == "%":
            out.append(int(component[i + 1 : i + 3], 16))
            i += 3
        else:
            out += component[i].encode()
            i += 1
    return out.decode()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20240101T000000Z-abc123", "20240101T000000Z-abc123"),
        ("10_users", "10_users"),
        ("a b/c", "a%20b%2Fc"),
        ("10_müller", "10_m%C3%BCller"),
        ("100%", "100%25"),
        ("..", "%%2E%2E"),
        (".", "%%2E"),
        ("", "%"),
    ],
)
def test_names_become_one_safe_directory_each(text: str, expected: str) -> None:
    assert path_component(text) == expected
    assert "/" not in expected and expected not in {".", ".."}


@pytest.mark.parametrize(
    "names",
    [
        ("10_müller", "10_möller"),
        ("night run", "night_run", "night%20run", "night/run", "night\trun"),
        ("sales", "sales_", "_sales", "sal es"),
        ("", ".", "..", "%", "_", "%%2E"),
    ],
)
def test_distinct_names_never_share_a_directory(names: tuple[str, ...]) -> None:
    components = [path_component(name) for name in names]
    assert len(set(components)) == len(names)
    for name, component in zip(names, components, strict=True):
        if name not in {"", ".", ".."}:
            assert _unquote(component) == name  # reversible, hence injective


def test_the_run_directory_is_unique_per_pipeline_run_and_step() -> None:
    directory = RunDirectory.for_step("~/.nightshift/runs", "sales", "exec/1", "20_load", "20_load.sql")
    assert directory.path == ".nightshift/runs/sales/exec%2F1/20_load"
    assert directory.step_file == ".nightshift/runs/sales/exec%2F1/20_load/20_load.sql"
    assert directory.parents == (".nightshift/runs/sales/exec%2F1", ".nightshift/runs/sales")
    assert directory.base == ".nightshift/runs"
    assert RunDirectory.for_step("/mnt/runs/", "p", "r", "s", "s.sh").path == "/mnt/runs/p/r/s"
    assert RunDirectory.for_step("/", "p", "r", "s", "s.sh").base == "/"
    assert relative_to_home("~") == "."


def test_a_relative_remote_dir_that_looks_like_an_option_is_not_one() -> None:
    assert relative_to_home("-runs") == "./-runs"
    assert relative_to_home("~/-runs") == "./-runs"
    assert relative_to_home("(runs") == "./(runs"
    assert relative_to_home("!runs") == "./!runs"
    assert RunDirectory.for_step("-runs", "p", "r", "s", "s.sh").path == "./-runs/p/r/s"


def _sh(command: str, cwd: Path, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        ["sh", "-c", command], cwd=cwd, input=stdin, capture_output=True, check=False, timeout=60
    )


def _mode(path: Path) -> str:
    return oct(path.lstat().st_mode & 0o7777)


def test_prepare_makes_each_level_private_and_says_new_then_launched(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("shared/runs", "p", "r", "s", "s.sh")

    first = _sh(directory.prepare_command(), tmp_path)
    again = _sh(directory.prepare_command(), tmp_path)
    (tmp_path / directory.file("launched")).mkdir()
    reattach = _sh(directory.prepare_command(), tmp_path)

    assert (first.returncode, first.stdout, first.stderr) == (0, b"new\n", b"")
    assert again.stdout == b"new\n"
    assert (reattach.returncode, reattach.stdout) == (0, b"launched\n")
    for level in ("shared", "shared/runs", "shared/runs/p", "shared/runs/p/r", "shared/runs/p/r/s"):
        assert _mode(tmp_path / level) == "0o700", level


def test_prepare_uses_a_shared_sticky_remote_dir(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    directory = RunDirectory.for_step(str(shared), "p", "r", "s", "s.sh")

    result = _sh(directory.prepare_command(), tmp_path)

    assert (result.returncode, result.stdout) == (0, b"new\n"), result.stderr


@pytest.mark.parametrize("level", ["p", "p/r", "p/r/s"])
def test_prepare_refuses_a_level_others_can_write(tmp_path: Path, level: str) -> None:
    (tmp_path / "base" / level).mkdir(parents=True)
    (tmp_path / "base" / level).chmod(0o777)
    directory = RunDirectory.for_step(str(tmp_path / "base"), "p", "r", "s", "s.sh")

    result = _sh(directory.prepare_command(), tmp_path)

    assert result.returncode == RUN_DIRECTORY_NOT_SAFE
    assert result.stderr.decode() == (
        f"{tmp_path}/base/{level} is writable by others (mode 777): refusing to use it\n"
    )
    assert result.stdout == b""


def test_prepare_refuses_a_symbolic_link_and_a_world_writable_remote_dir(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "base" / "p").symlink_to(tmp_path / "elsewhere")
    linked = _sh(RunDirectory.for_step("base", "p", "r", "s", "s.sh").prepare_command(), tmp_path)
    (tmp_path / "open").mkdir()
    (tmp_path / "open").chmod(0o777)
    open_base = _sh(RunDirectory.for_step("open", "p", "r", "s", "s.sh").prepare_command(), tmp_path)

    assert linked.returncode == RUN_DIRECTORY_NOT_SAFE
    assert linked.stderr == b"base/p is a symbolic link: refusing to use it\n"
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert open_base.returncode == RUN_DIRECTORY_NOT_SAFE
    assert open_base.stderr == b"open is writable by others and not sticky (mode 777): refusing to use it\n"
    assert list((tmp_path / "open").iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_prepare_refuses_a_level_another_user_owns(tmp_path: Path) -> None:
    (tmp_path / "base" / "p").mkdir(parents=True, mode=0o755)
    os.chown(tmp_path / "base" / "p", 65534, 65534)
    directory = RunDirectory.for_step(str(tmp_path / "base"), "p", "r", "s", "s.sh")

    result = _sh(directory.prepare_command(), tmp_path)

    assert result.returncode == RUN_DIRECTORY_NOT_SAFE
    assert b"/base/p belongs to nobody, not to root, the login: refusing to use it" in result.stderr


def test_prepare_says_why_it_cannot_create(tmp_path: Path) -> None:
    (tmp_path / "base").write_text("a file, not a directory")
    directory = RunDirectory.for_step("base/runs", "p", "r", "s", "s.sh")

    result = _sh(directory.prepare_command(), tmp_path)

    assert result.returncode == CANNOT_CREATE
    assert result.stderr == b"cannot create base/runs: Not a directory\n"


def test_a_remote_dir_beginning_with_a_dash_works_in_every_script(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("-runs", "p", "r", "s", "s.sh")

    prepared = _sh(directory.prepare_command(), tmp_path)
    uploaded = _sh(directory.upload_command("s.sh", 3), tmp_path, b"hi\n")
    finished = _sh(directory.finish_command(), tmp_path)
    cleared = _sh(directory.clear_command(), tmp_path)

    assert prepared.returncode == 0, prepared.stderr
    assert uploaded.returncode == 0, uploaded.stderr
    assert finished.returncode == 0, finished.stderr
    assert cleared.returncode == 0, cleared.stderr
    assert list((tmp_path / "-runs").iterdir()) == []


def test_upload_stores_stdin_privately_and_whole(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("runs", "p", "r", "s", "s.sql")
    text = b"SELECT 'it''s \"$HOME\" `x`';\n" * 1000
    _sh(directory.prepare_command(), tmp_path)

    command = directory.upload_command("s.sql", len(text))
    result = _sh(command, tmp_path, text)

    assert result.returncode == 0, result.stderr
    stored = tmp_path / directory.step_file
    assert stored.read_bytes() == text
    assert _mode(stored) == "0o600"
    assert b"SELECT" not in command.encode()
    assert sorted(p.name for p in stored.parent.iterdir()) == ["s.sql"]


def test_an_upload_short_of_the_expected_size_fails_and_leaves_nothing(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("runs", "p", "r", "s", "s.sql")
    _sh(directory.prepare_command(), tmp_path)

    result = _sh(directory.upload_command("s.sql", 100), tmp_path, b"only 12 byte")

    assert result.returncode == UPLOAD_FAILED
    assert result.stderr == b"cannot store s.sql in runs/p/r/s: 12 of 100 bytes written\n"
    assert list((tmp_path / directory.path).iterdir()) == []
    with pytest.raises(ValueError, match="not a file name"):
        directory.upload_command("../escape", 1)


def test_finish_prints_the_exit_code_as_often_as_asked_and_clear_removes_the_run_but_not_a_sibling(
    tmp_path: Path,
) -> None:
    first = RunDirectory.for_step("runs", "p", "r", "a", "a.sh")
    second = RunDirectory.for_step("runs", "p", "r", "b", "b.sh")
    for directory in (first, second):
        _sh(directory.prepare_command(), tmp_path)
    (tmp_path / first.file("exit")).write_text("3\n")

    # Asked twice: the first answer may be lost with its connection, and the second must still know.
    for _ in range(2):
        read = _sh(first.finish_command(), tmp_path)
        assert parse_finish(read.stdout) == Finished(3)
        assert (tmp_path / first.file("exit")).exists()
    for _ in range(2):
        assert _sh(first.clear_command(), tmp_path).returncode == 0
        assert not (tmp_path / first.path).exists()
    assert (tmp_path / second.path).is_dir()

    no_code = _sh(second.finish_command(), tmp_path)
    assert (no_code.returncode, parse_finish(no_code.stdout)) == (0, Finished(None))
    _sh(second.clear_command(), tmp_path)
    assert list((tmp_path / "runs").iterdir()) == []


def test_finish_reports_a_disk_that_filled_before_the_exit_code_could_be_written(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("runs", "p", "r", "s", "s.sh")
    _sh(directory.prepare_command(), tmp_path)
    (tmp_path / directory.file("exit.nospace")).symlink_to("0")

    result = _sh(directory.finish_command(), tmp_path)

    finished = parse_finish(result.stdout)
    assert finished.exit_code == 0
    assert finished.disk_full_kib is not None


def _launcher(tmp_path: Path, command: Command, **options: object) -> RunDirectory:
    directory = RunDirectory(str(tmp_path / "run dir"), "10_step.sh")
    Path(directory.path).mkdir()
    Path(directory.launcher).write_text(directory.launcher_script(command, label="p/10_step.sh", **options))  # type: ignore[arg-type]
    return directory


def _launch(
    tmp_path: Path, command: Command, env: dict[str, str] | None = None, **options: object
) -> tuple[int, str, str, str]:
    directory = _launcher(tmp_path, command, **options)
    result = subprocess.run(
        ["sh", directory.launcher], capture_output=True, text=True, check=False, timeout=60, env=env
    )
    exit_code = Path(directory.file("exit")).read_text().strip()
    pid = Path(directory.file("pid")).read_text().strip()
    assert pid.isdigit()
    assert re.fullmatch(r"[0-9a-f-]{36}", Path(directory.file("token")).read_text().strip())
    for name in ("token", "pid", "exit"):
        assert _mode(Path(directory.file(name))) == "0o600", name
    return result.returncode, result.stdout, result.stderr, exit_code


def test_the_launcher_passes_variables_verbatim_and_records_the_exit_code(tmp_path: Path) -> None:
    tricky = 'it\'s "$HOME" `uname` $(date) \\ \n second line'
    script = tmp_path / "step.sh"
    script.write_text('printf "%s" "$tricky"; exit 3\n')
    command = Command(("bash", str(script)), {"tricky": tricky})

    _, stdout, _, exit_code = _launch(tmp_path, command)

    assert stdout == tricky
    assert exit_code == "3"


def test_a_missing_engine_is_127_with_a_message(tmp_path: Path) -> None:
    _, _, stderr, exit_code = _launch(tmp_path, Command(("no-such-engine-here", "-f", "x.sql")))

    assert exit_code == "127"
    assert "nightshift: no-such-engine-here: command not found on" in stderr


def test_the_launcher_keeps_the_clusters_busy_file_fresh_while_the_step_runs(tmp_path: Path) -> None:
    busy = tmp_path / "isbusy"
    busy.touch()
    os.utime(busy, (1_000_000, 1_000_000))
    script = tmp_path / "step.sh"
    # The step waits (up to 50 s) until the file is touched, rather than guessing that 1.5 s is enough
    # for the launcher's first touch at load 20; untouched, it prints the old time and fails the test.
    script.write_text(
        f'for _ in $(seq 1000); do [ "$(stat -c %Y {busy})" = 1000000 ] || break; sleep 0.05; done\n'
        f"stat -c %Y {busy}\n"
    )

    started = time.time()
    _, stdout, _, exit_code = _launch(
        tmp_path, Command(("bash", str(script))), busy_file=str(busy), busy_seconds=0.5
    )

    assert exit_code == "0"
    touched_during = int(stdout.strip())
    assert touched_during >= int(started)  # touched while the step ran, at least once
    assert busy.stat().st_mtime >= started


def _launch_in_own_group(
    tmp_path: Path, step: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], RunDirectory]:
    """The launcher as the follower starts it: the leader of a process group of its own (`setsid`)."""
    script = tmp_path / "step.sh"
    script.write_text(step)
    directory = _launcher(tmp_path, Command(("bash", str(script))))
    process = subprocess.Popen(
        ["sh", directory.launcher],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,  # a stop signals the group: never this test's own
    )
    return process, directory


def test_a_stop_leaves_the_launcher_until_the_step_has_said_its_last_words(tmp_path: Path) -> None:
    # The follower ends with the launcher (`tail --pid`): a launcher ended by the stop's TERM while the
    # step still wrote cut the step's last words off (issue 19's flake). Here the pipe outlives the
    # launcher, so what tells is how it ended: on its own, with the step's exit code recorded.
    process, directory = _launch_in_own_group(
        tmp_path,
        f"trap 'echo got TERM; exit 7' TERM\n: > {tmp_path / 'ready'}\nwhile :; do sleep 0.05; done\n",
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "ready").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.01)

    os.killpg(process.pid, signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 0, stderr  # the launcher ended on its own, after the step
    assert stdout == "got TERM\n"
    assert Path(directory.file("exit")).read_text() == "7\n"


def test_a_stop_before_the_step_starts_means_it_never_starts(tmp_path: Path) -> None:
    # A `locale` that stops its group (itself immune): the TERM arrives inside the launcher, before the step.
    fakes = tmp_path / "bin"
    fakes.mkdir()
    (fakes / "locale").write_text("#!/bin/sh\ntrap '' TERM\nkill -TERM 0\n")
    (fakes / "locale").chmod(0o755)
    ran = tmp_path / "ran"
    env = {**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}"}
    process, directory = _launch_in_own_group(tmp_path, f": > {ran}\n", env)

    stdout, stderr = process.communicate(timeout=60)

    assert not ran.exists()
    assert (process.returncode, stdout, stderr) == (0, "", "")
    assert Path(directory.file("exit")).read_text() == "143\n"


def test_the_launcher_needs_no_busy_file(tmp_path: Path) -> None:
    script = tmp_path / "step.sh"
    script.write_text("echo ok\n")

    returncode, stdout, stderr, exit_code = _launch(
        tmp_path, Command(("bash", str(script))), busy_file=str(tmp_path / "absent")
    )

    assert (returncode, stdout, stderr, exit_code) == (0, "ok\n", "", "0")
    assert not (tmp_path / "absent").exists()


def test_the_remote_commands_quote_paths_and_run_under_sh() -> None:
    directory = RunDirectory("runs/it's here", "10_a.sql")
    commands = [
        directory.prepare_command(),
        directory.upload_command("10_a.sql", 3),
        directory.finish_command(),
        directory.clear_command(),
        directory.follow_command(10, 20),
        directory.stop_command(5),
    ]
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "exec"
        assert words[-3:-1] == ["sh", "-c"]
        assert "'runs/it'\"'\"'s here" in words[-1]
    follow = shlex.split(directory.follow_command(10, 20))[-1]
    assert "-c +11 " in follow and "-c +21 " in follow


def test_a_stop_before_the_start_cancels_it_privately(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("runs", "p", "r", "s", "s.sh")
    _sh(directory.prepare_command(), tmp_path)

    result = _sh(directory.stop_command(1), tmp_path)

    assert result.returncode == 0, result.stderr
    assert _mode(tmp_path / directory.file("launched")) == "0o700"
    assert _mode(tmp_path / directory.file("cancelled")) == "0o600"


def test_a_resumed_follow_steps_aside_when_another_runner_follows_the_run(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("runs", "p", "r", "s", "s.sh")
    _sh(directory.prepare_command(), tmp_path)
    follower = tmp_path / directory.file("follower")
    follower.write_text("0123456789abcdef 1\n")

    started = time.monotonic()
    resumed = _sh(directory.follow_command(0, 0, resume=True), tmp_path)

    assert resumed.returncode == FOLLOWED_ELSEWHERE
    assert time.monotonic() - started < 30  # at once (a shell's start, seconds at load 20), not a follow
    assert follower.read_text() == "0123456789abcdef 1\n"  # still the other runner's


def test_a_follow_of_a_run_directory_that_is_gone_ends_at_once(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("runs", "p", "r", "s", "s.sh")

    started = time.monotonic()
    result = _sh(directory.follow_command(0, 0, resume=True), tmp_path)

    assert result.returncode == FOLLOW_NO_RUN_DIRECTORY
    assert time.monotonic() - started < 30  # at once (a shell's start, seconds at load 20), not a follow


def test_a_file_name_with_shell_characters_is_only_ever_data(tmp_path: Path) -> None:
    directory = RunDirectory.for_step("runs", "p", "r", "s", 'x"$(touch pwned)`id`.sql')
    _sh(directory.prepare_command(), tmp_path)
    name = directory.step_file_name

    stored = _sh(directory.upload_command(name, 2), tmp_path, b"ok")
    short = _sh(directory.upload_command(name, 3), tmp_path, b"ok")

    assert stored.returncode == 0, stored.stderr
    assert (tmp_path / directory.step_file).read_bytes() == b"ok"
    assert short.returncode == UPLOAD_FAILED
    assert short.stderr.decode() == f"cannot store {name} in runs/p/r/s: 2 of 3 bytes written\n"
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    ("session", "seen"),
    [
        ({}, "C.UTF-8 UTF-8"),
        ({"LANG": "C.UTF-8"}, "- UTF-8"),
        ({"LANG": "C.UTF-8", "LC_ALL": "POSIX"}, "C.UTF-8 UTF-8"),
        ({"LANG": "xx_YY.UTF-8"}, "C.UTF-8 UTF-8"),  # looks UTF-8, but no such locale here
        ({"LC_CTYPE": "UTF-8"}, "C.UTF-8 UTF-8"),  # what macOS sends
    ],
    ids=["none", "utf8", "lc-all-posix", "not-installed", "macos-lc-ctype"],
)
def test_engines_run_under_a_utf8_locale(tmp_path: Path, session: dict[str, str], seen: str) -> None:
    script = tmp_path / "step.sh"
    script.write_text('echo "${LC_ALL:--} $(locale charmap)"\n')
    env = {"PATH": os.environ["PATH"], **session}

    _, stdout, _, _ = _launch(tmp_path, Command(("bash", str(script))), env=env)

    assert stdout == f"{seen}\n"
