"""Date ranges and --from-stage on a cluster over SSH (the real sshd harness)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from tests.integration.ssh.conftest import Cli

pytestmark = pytest.mark.sshd
RUN_ID = r"\d{8}T\d{6}Z-[0-9a-f]{6}"


def normalized(stderr: bytes) -> list[str]:
    """The runner's lines with durations as T and column padding as one space."""
    return [
        re.sub(" +", " ", re.sub(r"\d+ min \d\d s|\d+\.\d s", "T", line))
        for line in stderr.decode().splitlines()
    ]


def pipeline(cli: Cli) -> Path:
    """Stage 10 leaves a marker per date (to prove a skipped stage ran nothing); 20 fails on June 2."""
    cli.step("10_load.sh", 'touch "$marks/load-$run_date"\necho "load $run_date"\n')
    cli.step(
        "20_report.sh",
        'echo "report $run_date"\n'
        'if [ "$run_date" = 2025-06-02 ]; then echo "no data for $run_date" >&2; exit 3; fi\n',
    )
    cli.step("30_publish.sh", 'echo "publish $run_date"\n')
    return cli.root / "job"


def test_a_range_over_ssh_runs_each_date_as_its_own_run(cli: Cli, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    folder = pipeline(cli)
    result = cli.run(
        folder, "--run-date", "2025-06-01..2025-06-03", "--from-stage", "20", "--var", f"marks={marks}",
        "--run-id", "nightly", "--keep-remote",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr.decode()
    assert result.stdout == (
        b"report 2025-06-01\npublish 2025-06-01\nreport 2025-06-02\nreport 2025-06-03\npublish 2025-06-03\n"
    )
    assert list(marks.iterdir()) == [], "the skipped stage 10 must not run on the cluster"
    # Each date has a run id and so a run directory of its own; nothing of stage 10 was uploaded.
    runs = cli.remote_dir / "job"
    assert sorted(p.relative_to(runs).as_posix() for p in runs.glob("*/*")) == [
        "nightly-2025-06-01/20_report", "nightly-2025-06-01/30_publish",
        "nightly-2025-06-02/20_report",
        "nightly-2025-06-03/20_report", "nightly-2025-06-03/30_publish",
    ]  # fmt: skip
    assert (runs / "nightly-2025-06-02" / "20_report" / "exit").read_text().strip() == "3"

    def kept(run_date: str, step: str) -> str:
        where = f"{runs}/nightly-{run_date}/{step}"
        return (
            f"nightshift: {step}.sh: run directory kept: {where} on {cli.sshd.user}@127.0.0.1:{cli.sshd.port}"
        )

    def one_date(run_date: str, number: int) -> list[str]:
        start = [
            f"nightshift: run date {run_date} ({number} of 3): started, run id nightly-{run_date}",
            "nightshift: stage 10 skipped (--from-stage 20): 10_load.sh",
            "nightshift: 20_report.sh: started (bash)",
        ]
        if run_date == "2025-06-02":
            return [
                *start,
                "no data for 2025-06-02",
                kept(run_date, "20_report"),
                "nightshift: 20_report.sh: failed (exit 3) in T",
                "nightshift: step stage status duration first error line",
                "nightshift: 10_load.sh 10 skipped -",
                "nightshift: 20_report.sh 20 failed (exit 3) T no data for 2025-06-02",
                "nightshift: 30_publish.sh 30 not run -",
                "nightshift: run date 2025-06-02: failed (exit 3) in T: 20_report.sh failed (exit 3)",
            ]
        return [
            *start,
            kept(run_date, "20_report"),
            "nightshift: 20_report.sh: succeeded in T",
            "nightshift: 30_publish.sh: started (bash)",
            kept(run_date, "30_publish"),
            "nightshift: 30_publish.sh: succeeded in T",
            "nightshift: step stage status duration",
            "nightshift: 10_load.sh 10 skipped -",
            "nightshift: 20_report.sh 20 succeeded T",
            "nightshift: 30_publish.sh 30 succeeded T",
            f"nightshift: run date {run_date}: succeeded in T",
        ]

    header, *lines = normalized(result.stderr)
    assert "run dates 2025-06-01 to 2025-06-03 (given with --run-date); variables: marks=" in header
    assert lines == [
        "nightshift: 3 run dates, 2025-06-01 to 2025-06-03, one after another"
        " (a failed date does not stop the later ones)",
        *one_date("2025-06-01", 1),
        *one_date("2025-06-02", 2),
        *one_date("2025-06-03", 3),
        "nightshift: run date status duration detail",
        "nightshift: 2025-06-01 succeeded T",
        "nightshift: 2025-06-02 failed (exit 3) T 20_report.sh failed (exit 3)",
        "nightshift: 2025-06-03 succeeded T",
        "nightshift: 3 dates: 2 succeeded, 1 failed",
    ]
    assert cli.leftovers() == []


def test_from_stage_over_ssh_runs_only_the_later_stages(cli: Cli, tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    folder = pipeline(cli)
    result = cli.run(folder, "--run-date", "2025-06-02", "--from-stage", "30", "--var", f"marks={marks}")
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b"publish 2025-06-02\n"
    assert list(marks.iterdir()) == []
    header, *lines = normalized(result.stderr)
    assert "run date 2025-06-02 (given with --run-date); variables: marks=" in header
    assert lines == [
        "nightshift: stage 10 skipped (--from-stage 30): 10_load.sh",
        "nightshift: stage 20 skipped (--from-stage 30): 20_report.sh",
        "nightshift: 30_publish.sh: started (bash)",
        "nightshift: 30_publish.sh: succeeded in T",
        "nightshift: step stage status duration",
        "nightshift: 10_load.sh 10 skipped -",
        "nightshift: 20_report.sh 20 skipped -",
        "nightshift: 30_publish.sh 30 succeeded T",
    ]
    assert list(cli.remote_dir.iterdir()) == []  # the run directory is gone
    assert cli.leftovers() == []


def test_a_date_that_cannot_reach_the_cluster_fails_and_the_next_date_still_tries(cli: Cli) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    step = cli.step("10_hello.sh", "echo hello\n")
    result = cli.run(
        step, "--run-date", "2025-06-01..2025-06-02", "--host", "127.0.0.1", "--port", str(port),
        "--key", str(cli.sshd.user_key), "--user", "nobody", "--connect-timeout", "2", target=False,
    )  # fmt: skip
    assert result.returncode == 255
    assert result.stdout == b""
    refused = f"nobody@127.0.0.1:{port}: cannot connect to 127.0.0.1:{port}: Connection refused"
    header, *lines = [re.sub(RUN_ID, "ID", line) for line in normalized(result.stderr)]
    assert (
        header
        == "nightshift: 10_hello: run dates 2025-06-01 to 2025-06-02 (given with --run-date); variables: none"
    )
    assert lines == [
        "nightshift: 2 run dates, 2025-06-01 to 2025-06-02, one after another"
        " (a failed date does not stop the later ones)",
        *[
            line
            for number, run_date in ((1, "2025-06-01"), (2, "2025-06-02"))
            for line in (
                f"nightshift: run date {run_date} ({number} of 2): started, run id ID",
                "nightshift: 10_hello.sh: started (bash)",
                f"nightshift: error: {refused}",
                f"nightshift: run date {run_date}: failed (exit 255) in T: {refused}",
            )
        ],
        "nightshift: run date status duration detail",
        f"nightshift: 2025-06-01 failed (exit 255) T {refused}",
        f"nightshift: 2025-06-02 failed (exit 255) T {refused}",
        "nightshift: 2 dates: 0 succeeded, 2 failed",
    ]
