"""What the pytest-xdist workers of one session make once and share: a folder made under a file lock."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock, Timeout


def shared_root(inside: Path) -> Path:
    """The folder every pytest-xdist worker of this session sees (the parent of the workers' own), for
    a path inside a worker's temp dir; without workers, the session's temp dir."""
    for parent in inside.parents:
        if parent.name.startswith("popen-gw"):
            return parent.parent
    return inside.parent


def session_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared folder of this session (see shared_root)."""
    return shared_root(tmp_path_factory.getbasetemp() / "shared")


def made_once(folder: Path, make: Callable[[Path], object]) -> Path:
    """FOLDER, made by MAKE once per session: the first worker to ask makes it under a file lock, the
    others wait for it and read it. A MAKE that raised leaves no mark, so the next to ask makes it again."""
    with FileLock(f"{folder}.lock"):
        _make(folder, make)
    return folder


def made_once_unless_busy(folder: Path, make: Callable[[Path], object]) -> bool:
    """made_once without waiting: False while another process or thread is making FOLDER (it is in
    hand), else True once FOLDER is made, by this call or before it."""
    lock = FileLock(f"{folder}.lock", blocking=False)
    try:
        lock.acquire()
    except Timeout:
        return False
    try:
        _make(folder, make)
    finally:
        lock.release()
    return True


def _make(folder: Path, make: Callable[[Path], object]) -> None:
    done = folder.with_name(f"{folder.name}.done")
    if not done.exists():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        make(folder)
        done.touch()
