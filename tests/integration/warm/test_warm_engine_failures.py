"""A step that fails inside the warm engine, not in Spark, says so on its stderr: never a silent exit.

The real cases: the engine's JVM killed while a step runs (the kernel's OOM killer picks the biggest
process, which is the JVM), and a step's folder of output pipes removed while the step waits for the
engine (a clean-up of the state dir). A cold `spark-sql -f` killed so exits 137 without a word; warm,
the JVM is the engine's, shared by every run, so the step's stderr says what failed and where the
engine's log is (one line, after what the step wrote), and its stdout stays what the step printed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from runner.local.warm import protocol
from runner.local.warm.client import engine_alive
from tests.conftest import HOLD_ENGINE, start_cli

pytestmark = pytest.mark.spark

# A Spark job that runs for hours: the JVM is killed inside it, after the first line is out.
QUICK = "SELECT 'quick';\n"
LONG = "SELECT 'started';\nSELECT sum(id % 7) FROM range(0, 5000000000000, 1, 2);\nSELECT 'never';\n"
# A run of a warm engine's first step takes a minute or two at load 20 on 2 cores (JVM start-up).
RUN_SECONDS = 600


def _wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_the_engines_jvm_killed_during_a_step_is_said_on_the_steps_stderr(
    tmp_path: Path, warm_state: Path
) -> None:
    step = tmp_path / "10_long.sql"
    step.write_text(LONG, encoding="utf-8")
    log = protocol.engine_dir(warm_state) / protocol.LOG_NAME
    run = start_cli(step, "--state-dir", warm_state, env=HOLD_ENGINE)
    try:
        assert run.stdout is not None and run.stdout.readline() == b"started\n"
        # The engine logs its JVM's pid before it runs any step.
        jvm = int(re.findall(r"ready: JVM pid (\d+)", log.read_text(errors="replace"))[-1])
        os.kill(jvm, signal.SIGKILL)
        stdout, stderr = run.communicate(timeout=RUN_SECONDS)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()

    lines = stderr.decode(errors="replace").splitlines()
    # 128 + SIGKILL, as a cold spark-sql killed so; stdout holds nothing after the first line.
    assert (run.returncode, stdout) == (137, b""), stderr[-3000:]
    said = [line for line in lines if line.startswith("nightshift: the warm engine failed the step: ")]
    assert len(said) == 1, stderr[-3000:]
    pattern = (
        r"nightshift: the warm engine failed the step: \w+: .+; its JVM ended \(killed by SIGKILL\); "
        rf"see the engine's log {re.escape(str(log))}"
    )
    assert re.fullmatch(pattern, said[0]), said[0]
    # Said before the runner's own verdict, and the engine answered: it did not just vanish.
    failed = next(
        i for i, line in enumerate(lines) if line.startswith("nightshift: 10_long.sql: failed (exit 137)")
    )
    assert lines.index(said[0]) < failed, stderr[-3000:]
    assert b"the warm engine ended during the step" not in stderr, stderr[-3000:]
    assert log.is_file()
    # An engine without its JVM ends: nothing of it is left running for the next run to wait on.
    assert _wait_for(lambda: not engine_alive(warm_state), 120)


def _step_folders(state: Path) -> set[Path]:
    return set(protocol.engine_dir(state).glob(protocol.STEP_DIR_PREFIX + "*"))


def _made_by(folder: Path, pid: int) -> bool:
    """The runner PID has the folder's pipes open: it made them for its step."""
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir():
        try:
            if os.readlink(fd).startswith(f"{folder}/"):
                return True
        except OSError:
            continue
    return False


def _kill(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()
    process.wait()


def test_a_step_whose_output_pipes_were_removed_while_it_waited_says_so(
    tmp_path: Path, warm_state: Path
) -> None:
    long, quick = tmp_path / "10_long.sql", tmp_path / "20_quick.sql"
    long.write_text(LONG, encoding="utf-8")
    quick.write_text(QUICK, encoding="utf-8")
    log = protocol.engine_dir(warm_state) / protocol.LOG_NAME
    holder = start_cli(long, "--state-dir", warm_state, env=HOLD_ENGINE)
    waiting_stderr = tmp_path / "waiting.stderr"
    waiting: subprocess.Popen[bytes] | None = None
    try:
        # The holder's step runs on the engine (for hours), so the other run's step waits in its queue.
        assert holder.stdout is not None and holder.stdout.readline() == b"started\n"
        with open(waiting_stderr, "wb") as stderr_file:
            waiting = start_cli(
                quick, "--state-dir", warm_state, stderr=stderr_file.fileno(), env=HOLD_ENGINE
            )
        assert _wait_for(lambda: b"waiting for the warm engine" in waiting_stderr.read_bytes(), RUN_SECONDS)
        folders = _step_folders(warm_state)
        assert len(folders) == 2, folders
        # The waiting step's folder is the one its runner made; the holder's runner holds the other.
        (ours,) = [folder for folder in folders if _made_by(folder, waiting.pid)]
        shutil.rmtree(ours)
        _kill(holder)  # the engine cancels the holder's step and takes the waiting one
        stdout, _ = waiting.communicate(timeout=RUN_SECONDS)
    finally:
        _kill(holder)
        if waiting is not None:
            _kill(waiting)

    stderr = waiting_stderr.read_bytes()
    lines = stderr.decode(errors="replace").splitlines()
    assert (waiting.returncode, stdout) == (1, b""), stderr[-3000:]
    expected = (
        f"nightshift: the warm engine could not run the step: its output pipe {ours / 'stdout'} is gone "
        f"(No such file or directory); see the engine's log {log}"
    )
    assert lines.count(expected) == 1, stderr[-3000:]
    assert lines.index(expected) < next(
        i for i, line in enumerate(lines) if line.startswith("nightshift: 20_quick.sql: failed (exit 1)")
    )
    # The engine itself is fine: it runs the next step.
    assert engine_alive(warm_state)
