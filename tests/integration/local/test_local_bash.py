"""The local executor with real bash steps: live output, exit codes, variables, timeouts and signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli, start_cli
from tests.integration.local.test_local_leftovers import carrying


def test_step_output_and_exit_code_pass_through(tmp_path: Path) -> None:
    step = tmp_path / "job.sh"
    step.write_text('echo "out $run_date $who"\necho "err" >&2\nprintf "no newline"\nexit 7\n')
    result = run_cli(step, "--run-date", "2026-03-04", "--var", "who=it's me", cwd=tmp_path)
    assert result.returncode == 7
    assert result.stdout == b"out 2026-03-04 it's me\nno newline"
    header, started, err, finished = result.stderr.decode().splitlines()
    given = "nightshift: job: run date 2026-03-04 (given with --run-date)"
    assert header == f"{given}; variables: who='it'\"'\"'s me'"
    assert (started, err) == ("nightshift: job.sh: started (bash)", "err")
    assert re.fullmatch(r"nightshift: job\.sh: failed \(exit 7\) in \d+\.\d s", finished)


def test_output_is_live_not_buffered_until_the_end(tmp_path: Path) -> None:
    # The step goes on only once the test has read its first line: slow by construction, not by a sleep.
    gate = tmp_path / "gate"
    step = tmp_path / "slow.sh"
    step.write_text(f"echo first\nuntil [ -e {gate} ]; do sleep 0.05; done\necho second\n")
    process = start_cli(step, cwd=tmp_path, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == b"first\n"
        assert process.poll() is None, "the first line must arrive while the step is still running"
        gate.touch()
        assert process.stdout.read() == b"second\n"
        assert process.wait(60) == 0
    finally:
        gate.touch()  # a failed check above must not leave the step waiting
        process.wait(60)


def test_sigterm_stops_the_step_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    step = tmp_path / "long.sh"
    step.write_text(f"sleep 300 &\necho $! > {pid_file}\necho started\nwait\n")
    process = start_cli(step, cwd=tmp_path)
    assert process.stdout is not None
    assert process.stdout.readline() == b"started\n"
    child = int(pid_file.read_text())
    process.send_signal(signal.SIGTERM)
    assert process.wait(120) == 143
    # Generous: it costs nothing when the child is gone at once, and load 20 can delay its reaping.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the step's background child survived SIGTERM to the runner")
    assert process.stderr is not None
    assert b"nightshift: stopped by signal 15" in process.stderr.read()


def test_step_timeout_from_pipeline_toml(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "pipeline.toml").write_text("[steps]\ntimeout_minutes = 1\n")
    # The leftover holds the pipes and has left the group: the timeout must end it too.
    (folder / "10_hang.sh").write_text(
        'echo "$NIGHTSHIFT_STEP_TOKEN" > token\nsetsid sleep 600 &\necho hanging\nsleep 600\n'
    )
    (folder / "20_never.sh").write_text("echo never\n")
    # One minute is the smallest timeout pipeline.toml allows; the test waits for it on purpose.
    result = run_cli(folder, cwd=tmp_path, timeout=180)
    assert result.returncode == 124
    assert result.stdout == b"hanging\n"
    summary = [line.removeprefix("nightshift: ") for line in result.stderr.decode().splitlines()[-3:]]
    assert summary[1].split()[:4] == ["10_hang.sh", "10", "timed", "out"]
    assert summary[2].split() == ["20_never.sh", "20", "not", "run", "-"]
    assert carrying((tmp_path / "token").read_text().strip()) == []


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "10_a.sh").write_text("touch ran\n")
    (folder / "20_b.hql").write_text("SELECT 1;")
    state = tmp_path / "state"
    result = run_cli(folder, "--dry-run", "--run-date", "2026-01-02", "--state-dir", state, cwd=tmp_path)
    assert result.returncode == 0
    lines = result.stdout.decode().splitlines()
    dates = "run_date=2026-01-02 prev_date=2026-01-01 next_date=2026-01-03 run_date_nodash=20260102"
    dates += " prev_date_nodash=20260101 next_date_nodash=20260103"
    assert lines[0] == f"{dates} bash {folder / '10_a.sh'}"
    hivevars = " ".join(f"--hivevar {pair}" for pair in dates.split())
    assert lines[1].endswith(f"{hivevars} -f {folder / '20_b.hql'}")
    assert "/pyspark/bin/spark-sql --master 'local[*]'" in lines[1]
    assert len(lines) == 2
    assert not (tmp_path / "ran").exists() and not state.exists()


def without_locale(**extra: str) -> dict[str, str]:
    """The environment of a session without a locale (a bare sshd, a cron job, a container)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("LANG", "LC_", "PYTHONCOERCECLOCALE"))},
        "PYTHONPATH": str(ROOT),
        **extra,
    }


# Python itself would hand its children LC_CTYPE=C.UTF-8 when the locale is C (PEP 538), unless
# LC_ALL is set or the coercion is off: those are the sessions where the engine got ASCII.
NO_UTF8 = {"coercion off": {"PYTHONCOERCECLOCALE": "0"}, "LC_ALL=POSIX": {"LC_ALL": "POSIX"}}


@pytest.mark.parametrize("extra", NO_UTF8.values(), ids=NO_UTF8.keys())
def test_a_step_runs_under_a_utf8_locale_when_the_session_has_none(
    tmp_path: Path, extra: dict[str, str]
) -> None:
    step = tmp_path / "count.sh"
    step.write_text("printf 'ünï' | wc -m\n")
    env = without_locale(**extra)
    bare = subprocess.run(["bash", str(step)], env=env, capture_output=True, check=True)
    assert bare.stdout.split() == [b"5"], "without a locale wc counts bytes: the case the runner fixes"
    result = subprocess.run(
        [sys.executable, "-m", "runner", str(step)], env=env, cwd=tmp_path, capture_output=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [b"3"]
