"""Run directory paths and the generated launcher, exercised with the local POSIX sh."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from runner.engines import Command
from runner.remote.rundir import RunDirectory, path_component, relative_to_home


@pytest.mark.parametrize(
    ("text", "expected"),
    [("20240101T000000Z-abc123", "20240101T000000Z-abc123"), ("a b/c", "a_b_c"), ("..", "_.."), ("", "_")],
)
def test_names_become_one_safe_directory_each(text: str, expected: str) -> None:
    assert path_component(text) == expected


def test_the_run_directory_is_unique_per_pipeline_run_and_step() -> None:
    directory = RunDirectory.for_step("~/.nightshift/runs", "sales", "exec/1", "20_load", "20_load.sql")
    assert directory.path == ".nightshift/runs/sales/exec_1/20_load"
    assert directory.step_file == ".nightshift/runs/sales/exec_1/20_load/20_load.sql"
    assert directory.parents == (".nightshift/runs/sales/exec_1", ".nightshift/runs/sales")
    assert RunDirectory.for_step("/mnt/runs/", "p", "r", "s", "s.sh").path == "/mnt/runs/p/r/s"
    assert relative_to_home("~") == "."


def _launch(tmp_path: Path, command: Command) -> tuple[int, str, str, str]:
    directory = RunDirectory(str(tmp_path / "run dir"), "10_step.sh")
    Path(directory.path).mkdir()
    Path(directory.launcher).write_text(directory.launcher_script(command, label="p/10_step.sh"))
    result = subprocess.run(["sh", directory.launcher], capture_output=True, text=True, check=False)
    exit_code = Path(directory.file("exit")).read_text().strip()
    pid = Path(directory.file("pid")).read_text().strip()
    assert pid.isdigit()
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


def test_the_remote_commands_quote_paths_and_run_under_sh() -> None:
    directory = RunDirectory("runs/it's here", "10_a.sql")
    for command in (directory.follow_command(10, 20), directory.stop_command(5)):
        assert command.startswith("exec sh -c ")
        script = shlex.split(command)[3]
        assert "'runs/it'\"'\"'s here/" in script
    follow = shlex.split(directory.follow_command(10, 20))[3]
    assert "-c +11 " in follow and "-c +21 " in follow
