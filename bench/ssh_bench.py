"""The SSH executor beside OpenSSH on one local sshd: throughput, a long line, first line, reattach."""

from __future__ import annotations

import argparse
import os
import platform
import select
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import paramiko  # noqa: E402

from devtools.sshd_harness import Sshd, make_sshd  # noqa: E402

RECONNECT_BACKOFF = 0.5  # RemoteSettings.reconnect_backoff: the first pause after a drop


class Bench:
    def __init__(self, sshd: Sshd, work: Path, baseline: Path | None = None) -> None:
        self.sshd = sshd
        self.work = work
        self.home = work / "home"
        (self.home / ".ssh").mkdir(parents=True)
        self.known_hosts = self.home / ".ssh" / "known_hosts"
        self.known_hosts.write_text(sshd.known_hosts_line())
        self.env = {**os.environ, "HOME": str(self.home), "PYTHONPATH": str(ROOT)}
        self.env.pop("SSH_AUTH_SOCK", None)
        #: another checkout's runner, run the same way (--baseline): "before" beside "after"
        self.baseline_env = {**self.env, "PYTHONPATH": str(baseline)} if baseline else None

    def step(self, name: str, text: str) -> Path:
        path = self.work / "job" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        return path

    def runner(self, step: Path) -> list[str]:
        return [
            sys.executable, "-m", "runner", str(step),
            "--host", "127.0.0.1", "--port", str(self.sshd.port), "--user", self.sshd.user,
            "--key", str(self.sshd.user_key), "--remote-dir", str(self.work / "remote"),
        ]  # fmt: skip

    def openssh(self, command: str) -> list[str]:
        return [*self.sshd.ssh_argv(self.known_hosts), command]


def _wall(argv: list[str], env: dict[str, str]) -> float:
    return _wall_rss(argv, env)[0]


def _wall_rss(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall time to the end, and the command's own peak resident memory in MiB (its rusage, not ours)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    took = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{argv[:4]}... exited with {process.returncode}")
    return took, usage.ru_maxrss / 1024  # KiB on Linux


def _first_line(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert process.stdout is not None
    process.stdout.readline()
    took = time.perf_counter() - started
    process.kill()
    process.wait()
    return took


def _median(samples: list[float]) -> float:
    return statistics.median(samples)


def throughput(bench: Bench, runs: int, lines: int, width: int) -> dict[str, float]:
    command = f"seq {lines}" if width <= 8 else f"yes {'x' * (width - 1)} | head -n {lines}"
    step = bench.step("10_throughput.sh", command + "\n")
    ours, theirs, before = [], [], []
    for _ in range(runs):  # interleaved, so machine noise hits all alike
        ours.append(_wall(bench.runner(step), bench.env))
        theirs.append(_wall(bench.openssh(command), bench.env))
        if bench.baseline_env:
            before.append(_wall(bench.runner(step), bench.baseline_env))
    figures = {"runner_s": _median(ours), "openssh_s": _median(theirs)}
    if before:
        figures["before_s"] = _median(before)
    return figures


def long_line(bench: Bench, runs: int, mib: int) -> dict[str, float]:
    """One line of `mib` MiB (no newline until the end): time and the runner's peak memory."""
    command = f"head -c {mib * 1024 * 1024} /dev/zero | tr '\\0' x; echo"
    step = bench.step("10_long_line.sh", command + "\n")
    samples: dict[str, list[tuple[float, float]]] = {"runner": [], "openssh": [], "before": []}
    for _ in range(runs):
        samples["runner"].append(_wall_rss(bench.runner(step), bench.env))
        samples["openssh"].append(_wall_rss(bench.openssh(command), bench.env))
        if bench.baseline_env:
            samples["before"].append(_wall_rss(bench.runner(step), bench.baseline_env))
    figures = {}
    for name, runs_of in samples.items():
        if runs_of:
            figures[f"{name}_s"] = _median([took for took, _ in runs_of])
            figures[f"{name}_rss_max_mib"] = max(rss for _, rss in runs_of)
    return figures


def first_line(bench: Bench, runs: int) -> dict[str, float]:
    step = bench.step("10_first.sh", "echo first\nsleep 3\n")
    ours, theirs = [], []
    for _ in range(runs):
        ours.append(_first_line(bench.runner(step), bench.env))
        theirs.append(_first_line(bench.openssh("echo first; sleep 3"), bench.env))
    python = [
        _wall([sys.executable, "-c", "import runner.remote, runner.__main__"], bench.env) for _ in range(runs)
    ]
    return {"runner_s": _median(ours), "openssh_s": _median(theirs), "python_imports_s": _median(python)}


def reattach(bench: Bench, drops: int) -> list[float]:
    """Seconds from a killed connection to the next line the runner prints, minus the backoff."""
    step = bench.step(
        "10_reattach.sh", "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo $i; sleep 0.01; done\n"
    )
    process = subprocess.Popen(
        bench.runner(step), env=bench.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert process.stdout is not None
    fd = process.stdout.fileno()
    os.read(fd, 65536)
    samples: list[float] = []
    try:
        for _ in range(drops):
            time.sleep(0.7)
            _drain(fd)
            if not bench.sshd.drop_connections():
                continue
            dropped = time.perf_counter()
            while True:
                ready, _, _ = select.select([fd], [], [], 10)
                if not ready:
                    raise RuntimeError("no output within 10 s of a drop")
                if os.read(fd, 65536):
                    break
            samples.append(time.perf_counter() - dropped - RECONNECT_BACKOFF)
    finally:
        process.kill()
        process.wait()
    return samples


def _drain(fd: int) -> None:
    while select.select([fd], [], [], 0)[0]:
        if not os.read(fd, 1 << 20):
            return


def _machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    openssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()
    return (
        f"{os.cpu_count()} x {cpu}; Linux {platform.release()}; Python {platform.python_version()}; "
        f"paramiko {paramiko.__version__}; {openssh}"
    )


def _timed(label: str, action: Callable[[], object]) -> object:
    print(f"... {label}", file=sys.stderr, flush=True)
    return action()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--drops", type=int, default=8)
    parser.add_argument("--long-line-mib", type=int, default=64)
    parser.add_argument(
        "--baseline", type=Path, help="another checkout whose runner runs beside this one (before/after)"
    )
    args = parser.parse_args()
    # As installed, the runner's modules are byte-compiled; without this, a machine that sets
    # PYTHONDONTWRITEBYTECODE (CI, the Fargate image) would compile them again in every run measured.
    for tree in (ROOT, args.baseline):
        if tree is not None:
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "runner")], check=True)
    with tempfile.TemporaryDirectory(prefix="nightshift-ssh-bench-") as folder:
        work = Path(folder)
        # `python -m runner` imports from the working directory first: from here, PYTHONPATH decides.
        os.chdir(work)
        sshd = make_sshd(work / "sshd")
        sshd.start()
        try:
            bench = Bench(sshd, work, args.baseline)
            short = _timed("throughput, seq", lambda: throughput(bench, args.runs, args.lines, 0))
            wide = _timed("throughput, 100-byte lines", lambda: throughput(bench, args.runs, args.lines, 100))
            long = _timed("one long line", lambda: long_line(bench, args.runs, args.long_line_mib))
            first = _timed("first line", lambda: first_line(bench, args.runs))
            drops = _timed("reattach", lambda: reattach(bench, args.drops))
        finally:
            sshd.stop()
    assert isinstance(short, dict) and isinstance(wide, dict) and isinstance(first, dict)
    assert isinstance(long, dict)
    assert isinstance(drops, list)
    print(f"machine: {_machine()}")
    print(f"runs per figure: {args.runs} (medians); the runner's modules byte-compiled, as installed")
    cases = ((f"{args.lines:,} lines of `seq`", short), (f"{args.lines:,} lines of 100 bytes", wide))
    for name, figures in cases:
        ours, theirs = args.lines / figures["runner_s"], args.lines / figures["openssh_s"]
        print(
            f"throughput, {name}: runner {figures['runner_s']:.3f} s ({ours / 1e6:.2f} M lines/s), "
            f"OpenSSH {figures['openssh_s']:.3f} s ({theirs / 1e6:.2f} M lines/s), ratio {ours / theirs:.2f}"
            + (
                f"; before: {figures['before_s']:.3f} s, "
                f"ratio {figures['openssh_s'] / figures['before_s']:.2f}"
                if "before_s" in figures
                else ""
            )
        )
    print(
        f"one line of {args.long_line_mib} MiB: runner {long['runner_s']:.3f} s, "
        f"OpenSSH {long['openssh_s']:.3f} s, "
        f"{long['runner_s'] / long['openssh_s']:.2f}x OpenSSH's time; peak RSS (max of the runs) "
        f"runner {long['runner_rss_max_mib']:.0f} MiB, OpenSSH {long['openssh_rss_max_mib']:.0f} MiB"
        + (
            f"; before: {long['before_s']:.3f} s, {long['before_rss_max_mib']:.0f} MiB"
            if "before_s" in long
            else ""
        )
    )
    print(
        f"first line: runner {first['runner_s'] * 1000:.0f} ms, OpenSSH {first['openssh_s'] * 1000:.0f} ms, "
        f"added {(first['runner_s'] - first['openssh_s']) * 1000:.0f} ms "
        f"(Python start-up and the runner's imports alone: {first['python_imports_s'] * 1000:.0f} ms)"
    )
    if drops:
        print(
            f"reattach (drop to next line, minus the {RECONNECT_BACKOFF} s backoff): median "
            f"{_median(drops) * 1000:.0f} ms, max {max(drops) * 1000:.0f} ms over {len(drops)} drops"
        )


if __name__ == "__main__":
    main()
