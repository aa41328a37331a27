"""A deployed range's exit code is its first failed date's, in date order, as here and on a cluster."""

from __future__ import annotations

import threading

from runner.deployed import DeployedRequest
from tests.deployed.support import Watched, run_cli, start_directly
from tests.infra.moto_harness import Harness, StepScript


def test_the_exit_code_is_the_earliest_failed_dates_even_when_a_later_date_failed_first(
    adhoc: Harness,
) -> None:
    """Dates of a deployed range run side by side, so they end in any order; the exit code must not
    depend on it (README: "a range of dates exits ... with the first failed date's code").
    Fails before runner.ranges: exit 4, the code of 2025-06-02, which ended first."""
    step = "10_export.sh"
    adhoc.faults.exit_codes[step] = 4
    assert adhoc.run("2025-06-02")["status"] == "FAILED"
    # 2025-06-01 starts later, waits at a gate that opens once the CLI has reported 2025-06-02, then fails.
    adhoc.faults.exit_codes[step] = 5
    held = StepScript(gate_after=0, gate_timeout=600)  # opened by the test; the timeout is only a backstop
    adhoc.faults.scripts[step] = held
    start_directly(adhoc, "2025-06-01")
    assert held.reached_gate.wait(120)
    later_reported = threading.Event()
    stderr = Watched(b"run date 2025-06-02: failed (exit 4)", later_reported)

    def open_the_gate() -> None:
        if later_reported.wait(300):
            held.gate.set()

    opener = threading.Thread(target=open_the_gate)
    opener.start()

    result = run_cli(adhoc, DeployedRequest("follow", ("2025-06-01", "2025-06-02")), stderr=stderr)
    held.gate.set()
    opener.join()

    ended = [n.split(" in ")[0] for n in result.notices if n.startswith("run date 20")]
    assert ended == ["run date 2025-06-02: failed (exit 4)", "run date 2025-06-01: failed (exit 5)"]
    assert result.notices[-1] == "2 dates: 0 succeeded, 2 failed"
    assert result.code == 5
