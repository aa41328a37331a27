"""The warm engine's pure parts: message framing, the fingerprint, socket paths of any length."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from runner.local.warm import protocol
from runner.local.warm.client import engine_alive, engine_fingerprint


def test_messages_are_cut_at_newlines_whatever_the_chunks() -> None:
    reader = protocol.Reader()
    assert reader.feed(b'{"event": "hel') == []
    assert reader.feed(b'lo"}\n{"event": "exit", "code": 1}\n{"ev') == [
        {"event": "hello"},
        {"event": "exit", "code": 1},
    ]
    assert reader.feed(b'ent": "queued"}\n') == [{"event": "queued"}]


def _fingerprint(spark_home: Path, java_home: Path, env: dict[str, str], cwd: Path) -> str:
    return engine_fingerprint(spark_home, java_home, ["--master", "local[*]"], env, cwd)


def test_the_fingerprint_changes_with_pyspark_java_environment_and_folder(tmp_path: Path) -> None:
    spark, java = tmp_path / "pyspark", tmp_path / "java"
    spark.mkdir()
    java.mkdir()
    (spark / "version.py").write_text('__version__: str = "3.5.6"\n')
    (java / "release").write_text('JAVA_VERSION="17.0.15"\n')
    env = {"LANG": "C.UTF-8", "HOME": "/root", "SHLVL": "1"}
    base = _fingerprint(spark, java, env, tmp_path)
    assert _fingerprint(spark, java, {**env, "SHLVL": "2", "OLDPWD": "/"}, tmp_path) == base
    assert _fingerprint(spark, java, {**env, "LANG": "C"}, tmp_path) != base
    assert _fingerprint(spark, java, {**env, "SPARK_CONF_DIR": "/etc/spark"}, tmp_path) != base
    assert _fingerprint(spark, java, env, tmp_path / "elsewhere") != base
    (java / "release").write_text('JAVA_VERSION="17.0.16"\n')
    assert _fingerprint(spark, java, env, tmp_path) != base
    java_changed = _fingerprint(spark, java, env, tmp_path)
    (spark / "version.py").write_text('__version__: str = "3.5.7"\n')
    assert _fingerprint(spark, java, env, tmp_path) != java_changed


def test_a_socket_deeper_than_sun_path_allows_still_binds(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    path = deep / protocol.SOCKET_NAME
    assert len(os.fsencode(path)) > 108
    with socket.socket(socket.AF_UNIX) as server, socket.socket(socket.AF_UNIX) as client:
        with protocol.socket_address(path) as address:
            server.bind(address)
        server.listen(1)
        with protocol.socket_address(path) as address:
            client.connect(address)
        conn, _ = server.accept()
        with conn:
            pid, uid, _ = protocol.peer_credentials(conn)
            assert (pid, uid) == (os.getpid(), os.getuid())
    assert path.exists()


def test_no_engine_without_its_lock_held(tmp_path: Path) -> None:
    assert not engine_alive(tmp_path)
    folder = protocol.make_engine_dir(tmp_path)
    assert folder.stat().st_mode & 0o777 == 0o700
    (folder / protocol.LOCK_NAME).touch()
    assert not engine_alive(tmp_path)
    with open(folder / protocol.LOCK_NAME) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert engine_alive(tmp_path)
