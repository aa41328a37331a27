#!/usr/bin/env bash
# The test suite's wall time per tier, as `make test-TIER` runs it (pytest-xdist workers), then a table.
# Usage: bench/suite_timing.sh [TIER ...]   (default: every tier; TEST_WORKERS=N to change the workers)
# Serial, as before pytest-xdist: TEST_WORKERS=0 bench/suite_timing.sh
set -uo pipefail
cd "$(dirname "$0")/.."
tiers=("$@")
[ ${#tiers[@]} -gt 0 ] || tiers=(unit local warm ssh lambdas infra deployed)
workers=${TEST_WORKERS:-3}
logs=$(mktemp -d)
rows=()
status=0
for tier in "${tiers[@]}"; do
  load=$(cut -d' ' -f1 /proc/loadavg)
  start=$(date +%s)
  make --no-print-directory "test-$tier" TEST_WORKERS="$workers" >"$logs/$tier.log" 2>&1
  code=$?
  wall=$(( $(date +%s) - start ))
  [ $code -eq 0 ] || status=1
  summary=$(grep -E '^=+ .* in [0-9.]+s' "$logs/$tier.log" | tail -1 | tr -d '=' | sed 's/^ *//; s/ *$//')
  rows+=("$(printf '| %-8s | %6ss | %5s | %4s | %s |' "$tier" "$wall" "$load" "$code" "${summary:-see $logs/$tier.log}")")
done
echo "workers: $workers  machine: $(nproc) cores  logs: $logs"
echo "| tier     |   wall  | load1 | exit | pytest |"
echo "|----------|---------|-------|------|--------|"
printf '%s\n' "${rows[@]}"
exit $status
