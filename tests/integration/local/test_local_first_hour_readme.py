"""The README's "Your first pipeline in five steps", block by block, exactly as written, from a clean state dir."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from runner.local.warm.client import engine_alive, stop_engine
from tests.conftest import ROOT, TEST_IDLE_MINUTES

SECTION = "## Your first pipeline in five steps"
_BLOCK = re.compile(r"^```(?P<language>\w+)\n(?P<body>.*?)^```$", re.M | re.S)


def readme_blocks() -> list[tuple[str, str]]:
    """The section's fenced blocks in order: (language, text)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    return [(match["language"], match["body"]) for match in _BLOCK.finditer(section)]


def test_the_readme_first_pipeline_runs_as_written(tmp_path: Path) -> None:
    blocks = readme_blocks()
    assert [language for language, _ in blocks] == ["sh", "sh", "sh", "sh", "sh", "text"]
    # A project of its own (its root marked as a repository's), with the repository's .venv in it.
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".venv").symlink_to(ROOT / ".venv")
    state = project / ".nightshift"
    environ = {**os.environ, "PYTHONPATH": str(ROOT), "NIGHTSHIFT_ENGINE_IDLE_MINUTES": TEST_IDLE_MINUTES}
    results: list[subprocess.CompletedProcess[bytes]] = []
    try:
        for language, body in blocks:
            if language == "text":
                # What the README shows is what the block before it printed.
                printed = results[-1].stdout.decode().splitlines()
                assert [line.split() for line in printed] == [line.split() for line in body.splitlines()]
                continue
            if "--run-date" in body:
                assert not state.exists()  # the run starts from a clean state dir
            result = subprocess.run(
                ["bash", "-e", "-c", body],
                cwd=project,
                env=environ,
                capture_output=True,
                timeout=900,
                check=False,
            )
            assert result.returncode == 0, (body, result.stderr.decode())
            results.append(result)
    finally:
        stop_engine(state)
    assert not engine_alive(state)
    dry_and_run = results[3].stderr.decode().splitlines()
    assert dry_and_run[0] == (
        "nightshift: orders: run date 2025-06-04 (given with --run-date); variables: db=shop"
    )
    assert (
        "nightshift: stage 10, step 10_orders.sql: spark-sql here, warm: the engine of .nightshift"
        in (dry_and_run[1])
    )
    # The engine was started for this run, in the project's own state dir.
    assert any("starting the warm engine" in line for line in dry_and_run), dry_and_run
    summary = [line.split() for line in dry_and_run if line.startswith("nightshift: 20_revenue.sql ")]
    assert summary[0][:4] == ["nightshift:", "20_revenue.sql", "20", "succeeded"]
    assert (state / "warehouse" / "shop.db" / "daily_revenue").is_dir()
