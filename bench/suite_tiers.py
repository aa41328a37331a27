"""Sum a `make test` log's `--durations=0` lines per tier: the seconds its tests took on the workers."""

from __future__ import annotations

import argparse
import re
from collections import defaultdict
from pathlib import Path

DURATION = re.compile(r"^(?P<seconds>\d+\.\d+)s (?:setup|call|teardown)\s+tests/(?P<path>[^:]+)::")
SUMMARY = re.compile(r"^=+ (?P<summary>.* in [0-9.]+s.*?) =+$")


def tier(path: str) -> str:
    """integration/warm/x.py -> warm; infra/x.py -> infra (the folders of tests/conftest.py's TIERS)."""
    parts = path.split("/")
    return parts[1] if parts[0] == "integration" else parts[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("logs", nargs="+", type=Path, help="make test's output, PYTEST_ADDOPTS=--durations=0")
    args = parser.parse_args()
    columns: list[tuple[str, dict[str, float], str]] = []
    for log in args.logs:
        seconds: dict[str, float] = defaultdict(float)
        summary = "?"
        for line in log.read_text(errors="replace").splitlines():
            if match := DURATION.match(line):
                seconds[tier(match["path"])] += float(match["seconds"])
            elif match := SUMMARY.match(line):
                summary = match["summary"]
        columns.append((log.name, seconds, summary))
    tiers = sorted({name for _, seconds, _ in columns for name in seconds}, key=lambda n: -columns[0][1][n])
    print("| tier | " + " | ".join(name for name, _, _ in columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for name in [*tiers, "all"]:
        totals = [sum(s.values()) if name == "all" else s.get(name, 0.0) for _, s, _ in columns]
        cells = [f"{total:.0f} s" for total in totals]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print("| pytest's summary | " + " | ".join(summary for _, _, summary in columns) + " |")


if __name__ == "__main__":
    main()
