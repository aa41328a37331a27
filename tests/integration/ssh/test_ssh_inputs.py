"""The input gate on a cluster: the runner checks [inputs] on the master, through its `hadoop fs`.

The sshd plays the master node; it has no Hadoop, so the harness puts a stand-in `hadoop` on the
sessions' PATH (sshd_harness.FAKE_HADOOP: `fs -test -f` and `fs -count` over this machine's files).
The check itself is the real one: a generated bash file uploaded and run like any step.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.integration.local.test_local_inputs import line_with, wait_until_listed
from tests.integration.ssh.conftest import Cli

TOML = """
[variables]
raw_path = "file://{master}"

[variables.local]
raw_path = "local-data-that-the-cluster-never-sees"

[inputs]
objects = ["${{raw_path}}/events/dt=${{run_date}}/_SUCCESS"]
prefixes = ["${{raw_path}}/users/dt=${{run_date}}/"]
wait_minutes = 1
poll_minutes = 0.02
"""


def pipeline(cli: Cli) -> tuple[Path, Path]:
    master = cli.root / "master-data"
    folder = cli.root / "gated"
    folder.mkdir()
    (folder / "pipeline.toml").write_text(TOML.format(master=master))
    (folder / "10_load.sh").write_text(f'echo "ran $run_date"\necho "$run_date" >> {cli.root / "ran.txt"}\n')
    return folder, master


def arrive(master: Path, run_date: str, *, marker: bool = True) -> None:
    users = master / "users" / f"dt={run_date}"
    users.mkdir(parents=True, exist_ok=True)
    (users / "part-0").write_text("1\n")
    if marker:
        (master / "events" / f"dt={run_date}").mkdir(parents=True, exist_ok=True)
        (master / "events" / f"dt={run_date}" / "_SUCCESS").write_text("")


def ran(cli: Cli) -> list[str]:
    record = cli.root / "ran.txt"
    return record.read_text().split() if record.exists() else []


def test_missing_on_the_master_stops_before_any_step(cli: Cli) -> None:
    folder, master = pipeline(cli)
    arrive(master, "2025-06-01", marker=False)
    result = cli.run(folder, "--run-date", "2025-06-01")
    assert result.returncode == 75, result.stderr
    assert result.stdout == b""
    assert result.stderr.decode().splitlines()[-1] == (
        f"nightshift: error: inputs missing for 2025-06-01: file://{master}/events/dt=2025-06-01/_SUCCESS"
        " (--wait waits for them up to [inputs] wait_minutes)"
    )
    assert ran(cli) == []
    assert not list(cli.remote_dir.rglob("*.sh")), "the check's run directory is removed like a step's"


def test_there_on_the_master_runs_the_pipeline(cli: Cli) -> None:
    folder, master = pipeline(cli)
    arrive(master, "2025-06-01")
    result = cli.run(folder, "--run-date", "2025-06-01")
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"ran 2025-06-01\n"
    assert "nightshift: inputs: all 2 there for 2025-06-01" in result.stderr.decode().splitlines()
    assert ran(cli) == ["2025-06-01"]


def test_wait_polls_the_master_until_they_arrive(cli: Cli) -> None:
    folder, master = pipeline(cli)
    users = master / "users" / "dt=2025-06-01"
    users.mkdir(parents=True)  # the prefix's folder, empty: not there yet, and each check lists it
    process = cli.start(folder, "--run-date", "2025-06-01", "--wait")
    assert process.stderr is not None
    waiting = line_with(process.stderr, "nightshift: inputs: ")
    assert waiting.startswith("nightshift: inputs: waiting for 2 of 2 for 2025-06-01: "), waiting
    # Two more checks on the master find nothing (each lists the folder twice: its `hadoop fs -count`).
    wait_until_listed(users, 4)
    assert process.poll() is None and ran(cli) == []
    arrive(master, "2025-06-01")
    assert process.wait(60) == 0
    rest = process.stderr.read().decode()
    found = re.search(r"nightshift: inputs: all 2 there for 2025-06-01 after \d+ s \((\d+) checks\)", rest)
    assert found and int(found[1]) >= 4, rest
    assert ran(cli) == ["2025-06-01"]


def test_no_wait_skips_the_check_on_the_master(cli: Cli) -> None:
    folder, _ = pipeline(cli)
    result = cli.run(folder, "--run-date", "2025-06-01", "--no-wait")
    assert result.returncode == 0, result.stderr
    assert ran(cli) == ["2025-06-01"]
