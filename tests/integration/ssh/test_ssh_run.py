"""A step on the cluster over SSH: output, exit code, variables, run directories, reattach."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd


def test_a_bash_step_streams_both_streams_and_returns_its_exit_code(cli: Cli) -> None:
    step = cli.step("10_hello.sh", "echo 'hello from the cluster'\necho 'a warning' >&2\necho done\nexit 7\n")

    result = cli.run(step)

    assert result.returncode == 7
    assert result.stdout == b"hello from the cluster\ndone\n"
    assert b"a warning\n" in result.stderr
    assert b"10_hello.sh: failed (exit 7)" in result.stderr
    assert list(cli.remote_dir.iterdir()) == []  # the run directory is gone
    assert cli.leftovers() == []


def test_output_arrives_while_the_step_is_still_running(cli: Cli) -> None:
    # The step goes on only once the test has read its first line: slow by construction, not by a sleep.
    gate = cli.root / "go-on"
    step = cli.step("10_slow.sh", f"echo first\nuntil [ -e {gate} ]; do sleep 0.05; done\necho second\n")
    process = cli.start(step)
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line == b"first\n" and process.poll() is None
    gate.touch()
    rest, _ = process.communicate(timeout=60)
    assert rest == b"second\n"
    assert process.returncode == 0


def test_variables_reach_a_bash_step_as_environment_without_a_shell_in_between(cli: Cli) -> None:
    tricky = 'it\'s "$HOME" `uname`; $(date) \\ ${x}'
    step = cli.step("10_env.sh", 'printf "%s|%s\\n" "$run_date" "$tricky"\n')

    result = cli.run(step, "--run-date", "2024-02-29", "--var", f"tricky={tricky}")

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"2024-02-29|{tricky}\n".encode()


def test_the_step_file_is_uploaded_private_and_kept_with_keep_remote(cli: Cli) -> None:
    step = cli.step("10_keep.sh", "echo kept\n")

    result = cli.run(step, "--keep-remote", "--run-id", "run-1")

    assert result.returncode == 0, result.stderr
    # A lone step file (no pipeline.toml beside it) is a pipeline named after itself.
    run_directory = cli.remote_dir / "10_keep" / "run-1" / "10_keep"
    uploaded = run_directory / "10_keep.sh"
    assert uploaded.read_bytes() == step.read_bytes()
    assert oct(uploaded.stat().st_mode & 0o777) == "0o600"
    assert (run_directory / "exit").read_text().strip() == "0"
    assert (run_directory / "stdout").read_bytes() == b"kept\n"
    assert b"run directory kept" in result.stderr


def test_json_log_format_writes_one_object_per_output_line(cli: Cli) -> None:
    step = cli.step("10_json.sh", "echo one\necho two >&2\necho three\n")

    result = cli.run(step, "--log-format", "json", "--run-id", "r-json")

    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.decode().splitlines()]
    output = [record for record in records if record["stream"] != "nightshift"]
    assert [r["line"] for r in output if r["stream"] == "stdout"] == ["one", "three"]
    assert [r["line"] for r in output if r["stream"] == "stderr"] == ["two"]
    assert {(r["pipeline"], r["step"], r["run_id"]) for r in output} == {("10_json", "10_json", "r-json")}


def test_a_pipeline_folder_runs_a_stage_in_parallel_without_collisions(cli: Cli) -> None:
    marker = cli.root / "order"

    def beside(me: str, other: str) -> str:
        """Goes on only once the other step of the stage has started (up to 60 s, then fails): they run at once."""
        mine, theirs = cli.root / f"{me}.started", cli.root / f"{other}.started"
        return (
            f"touch {mine}; for _ in $(seq 1200); do [ -e {theirs} ] && break; sleep 0.05; done\n"
            f'[ -e {theirs} ] || {{ echo "10_{other} never ran beside 10_{me}" >&2; exit 1; }}\n'
        )

    cli.step("10_a.sh", beside("a", "b") + f"echo a >> {marker}; echo from-a\n")
    cli.step("10_b.sh", beside("b", "a") + f"echo b >> {marker}; echo from-b\n")
    cli.step("20_c.sh", f"echo c >> {marker}; echo from-c\n")

    result = cli.run(cli.root / "job")

    assert result.returncode == 0, result.stderr  # 10_a and 10_b ran at the same time
    assert sorted(result.stdout.splitlines()) == [b"from-a", b"from-b", b"from-c"]
    assert result.stdout.splitlines()[-1] == b"from-c"
    assert marker.read_text().splitlines()[-1] == "c"
    assert list(cli.remote_dir.iterdir()) == []


def test_a_failing_stage_stops_the_pipeline(cli: Cli) -> None:
    cli.step("10_fail.sh", "echo failing; exit 3\n")
    cli.step("20_never.sh", "echo should not run\n")

    result = cli.run(cli.root / "job")

    assert result.returncode == 3
    assert b"should not run" not in result.stdout
    assert b"not run" in result.stderr


def test_a_second_runner_with_the_same_run_id_reattaches_instead_of_starting_again(cli: Cli) -> None:
    marker = cli.root / "started"
    step = cli.step(
        "10_once.sh",
        f"echo run >> {marker}\nfor i in $(seq 1 20); do echo line $i; sleep 0.1; done\nexit 4\n",
    )
    first = cli.start(step, "--run-id", "same")
    assert first.stdout is not None
    assert first.stdout.readline() == b"line 1\n"
    # The runner dies without a word (as a killed Fargate task does); the step goes on.
    first.send_signal(signal.SIGKILL)
    first.wait()

    second = cli.run(step, "--run-id", "same")

    assert second.returncode == 4
    assert second.stdout == b"".join(f"line {i}\n".encode() for i in range(1, 21))
    assert b"reattaching" in second.stderr
    assert marker.read_text() == "run\n"
    assert cli.leftovers() == []


def test_an_edit_saved_before_the_next_run_is_what_runs(cli: Cli) -> None:
    step = cli.step("10_edit.sh", "echo version one\n")
    assert cli.run(step).stdout == b"version one\n"
    step.write_text("echo version two\n")
    assert cli.run(step).stdout == b"version two\n"


def test_dry_run_shows_the_remote_command_without_connecting(cli: Cli) -> None:
    step = cli.step("10_dry.sql", "SELECT 1;\n")

    result = cli.run(step, "--dry-run", "--run-id", "r1", "--run-date", "2024-01-02")

    assert result.returncode == 0, result.stderr
    line = result.stdout.decode().strip()
    assert line.startswith(
        f"[{cli.sshd.user}@127.0.0.1] spark-sql --hivevar run_date=2024-01-02 --hivevar prev_date=2024-01-01"
        " --hivevar next_date=2024-01-03 --hivevar run_date_nodash=20240102 --hivevar prev_date_nodash=20240101"
        " --hivevar next_date_nodash=20240103 -f "
    )
    assert line.endswith(f"{cli.remote_dir}/10_dry/r1/10_dry/10_dry.sql")


def test_local_variable_overrides_do_not_apply_on_a_cluster(cli: Cli) -> None:
    (cli.root / "job").mkdir()
    (cli.root / "job" / "pipeline.toml").write_text(
        '[variables]\nbucket = "s3://prod"\n\n[variables.local]\nbucket = "/tmp/local"\n'
    )
    step = cli.step("10_var.sh", 'echo "$bucket"\n')

    result = cli.run(step)

    assert result.returncode == 0, result.stderr
    assert result.stdout == b"s3://prod\n"


def test_the_remote_dir_defaults_to_the_login_home(cli: Cli) -> None:
    step = cli.step("10_home.sh", "pwd\n")
    argv = cli.target_args()
    index = argv.index("--remote-dir")
    del argv[index : index + 2]
    login = Path(os.path.expanduser(f"~{cli.sshd.user}"))
    existed = (login / ".nightshift").exists()
    try:
        result = cli.run(step, *argv, "--keep-remote", "--run-id", "home-run", target=False)

        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().strip() == str(login)  # the step runs where a login starts
        assert (login / ".nightshift" / "runs" / "10_home" / "home-run" / "10_home" / "exit").is_file()
    finally:
        shutil.rmtree(login / ".nightshift" if not existed else login / ".nightshift/runs/10_home/home-run")


def test_steps_whose_names_differ_only_in_non_ascii_letters_each_run(cli: Cli) -> None:
    cli.step("10_müller.sh", "sleep 0.5; echo from-müller\n")
    cli.step("10_möller.sh", "sleep 0.5; echo from-möller\n")

    result = cli.run(cli.root / "job", "--run-id", "same-run")

    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.decode().splitlines()) == ["from-möller", "from-müller"]
    assert b"reattaching" not in result.stderr


def test_run_ids_that_differ_only_in_punctuation_are_different_runs(cli: Cli) -> None:
    step = cli.step("10_ids.sh", "echo first\n")
    first = cli.run(step, "--run-id", "night run", "--keep-remote")
    step.write_text("echo second\n")

    second = cli.run(step, "--run-id", "night_run", "--keep-remote")

    assert first.stdout == b"first\n"
    assert second.returncode == 0, second.stderr
    assert second.stdout == b"second\n"  # its own run, not a reattach to the other's
    assert b"reattaching" not in second.stderr
    assert sorted(path.name for path in (cli.remote_dir / "10_ids").iterdir()) == ["night%20run", "night_run"]


def test_a_relative_remote_dir_beginning_with_a_dash_works(cli: Cli) -> None:
    step = cli.step("10_dash.sh", "echo dashed\n")
    argv = cli.target_args()
    index = argv.index("--remote-dir")
    del argv[index : index + 2]
    runs = Path(os.path.expanduser(f"~{cli.sshd.user}")) / "-runs"  # relative to where a login starts
    existed = runs.exists()
    try:
        result = cli.run(step, *argv, "--remote-dir=-runs", "--run-id", "dash-run", target=False)

        assert result.returncode == 0, result.stderr
        assert result.stdout == b"dashed\n"
        assert list(runs.iterdir()) == []  # the run directory was made there and cleared
    finally:
        if not existed:
            shutil.rmtree(runs, ignore_errors=True)
