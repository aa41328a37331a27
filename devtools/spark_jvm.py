"""The options of every JVM the tests start: C1 alone, and a class-data archive of Spark's classes."""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path

import pyspark
from filelock import FileLock

from runner.errors import JavaNotFound
from runner.local.executor import _spark_home
from runner.local.java import find_java_home

#: C1 alone: a spark-sql start spends half its CPU in C2's compiler threads, which on two cores run
#: instead of the other workers' JVMs. The JIT's tier changes no byte a query prints.
C1_ONLY = "-XX:TieredStopAtLevel=1"
#: The JVM says on stdout when it cannot use an archive (another Java, another classpath: the SSH
#: "cluster"'s conf folder comes first on it); it then loads every class as without one, silently.
QUIET_CDS = ("-Xlog:cds=off", "-Xlog:cds+dynamic=off")
#: What the archive's JVM runs: the classes of a Hive table's write and read, as most steps load.
WARM_UP_SQL = (
    "CREATE TABLE t (a INT, b STRING) STORED AS PARQUET; INSERT INTO t VALUES (1, 'x');"
    " SELECT b, count(*) FROM t GROUP BY b ORDER BY b; DROP TABLE t;"
)


def archive_path(cache: Path, java_home: Path) -> Path:
    """Where the archive of this Java and this Spark lives: a new Java or pyspark is a new file."""
    release = java_home / "release"
    parts = [
        str(java_home.resolve()),
        release.read_text() if release.is_file() else "",
        str(_spark_home()),
        pyspark.__version__,
    ]
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    return cache / f"spark-{key}.jsa"


def make_archive(archive: Path, java_home: Path) -> bool:
    """Dump the classes one spark-sql loads into ARCHIVE (once per Java and Spark, kept between
    sessions under a file lock); whether it exists now. A Java that cannot dump one leaves none."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{archive}.lock"):
        if archive.is_file():
            return True
        partial = archive.with_suffix(".partial")
        environ = {
            name: value
            for name, value in os.environ.items()
            if name not in ("SPARK_CONF_DIR", "SPARK_SUBMIT_OPTS")
        }
        options = [f"-XX:ArchiveClassesAtExit={partial}", C1_ONLY, *QUIET_CDS]
        environ.update(
            JAVA_HOME=str(java_home), SPARK_LOCAL_IP="127.0.0.1", SPARK_SUBMIT_OPTS=" ".join(options)
        )
        with tempfile.TemporaryDirectory() as folder:  # its metastore_db and warehouse
            subprocess.run(
                [str(_spark_home() / "bin" / "spark-sql"), "-e", WARM_UP_SQL], cwd=folder, env=environ, capture_output=True, timeout=600,
                check=False,
            )  # fmt: skip
        if partial.is_file() and partial.stat().st_size > 0:
            partial.replace(archive)
        return archive.is_file()


def jvm_options(cache: Path) -> str:
    """SPARK_SUBMIT_OPTS for the tests' JVMs: C1 alone, and the class archive when one could be made."""
    try:
        java_home = find_java_home()
    except JavaNotFound:  # the tests that need Java say so themselves
        return C1_ONLY
    archive = archive_path(cache, java_home)
    # A path with a space would need quotes in SPARK_SUBMIT_OPTS and in the SSH server's SetEnv.
    if any(character.isspace() for character in str(archive)) or not make_archive(archive, java_home):
        return C1_ONLY
    return " ".join([C1_ONLY, f"-XX:SharedArchiveFile={archive}", *QUIET_CDS])
