"""Content digests of a pipeline folder's files: what was deployed, compared with what is here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

#: hex digits kept per file: enough to tell two versions apart, short enough for one SSM parameter
DIGEST_LENGTH = 16


def folder_digests(folder: Path) -> dict[str, str]:
    """Each file of the folder (its path relative to the folder) and a digest of its bytes.

    Hidden files and __pycache__ are left out: the runner image's build context leaves them out too.
    """
    digests: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(
            part.startswith(".") or part == "__pycache__" for part in relative.parts
        ):
            continue
        digests[relative.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()[:DIGEST_LENGTH]
    return digests


def encode(digests: dict[str, str]) -> str:
    """The digests as one compact JSON text (the deployed record)."""
    return json.dumps(digests, sort_keys=True, separators=(",", ":"))


def decode(text: str) -> dict[str, str]:
    value = json.loads(text)
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("expected an object of file names to digests")
    return {str(k): v for k, v in value.items()}


def differences(deployed: dict[str, str], here: dict[str, str]) -> list[str]:
    """The files that differ, each with how: "20_x.sql (changed)", "(only here)", "(only deployed)"."""
    changed = [
        f"{name} (changed)" for name in sorted(deployed.keys() & here.keys()) if deployed[name] != here[name]
    ]
    added = [f"{name} (only here)" for name in sorted(here.keys() - deployed.keys())]
    removed = [f"{name} (only deployed)" for name in sorted(deployed.keys() - here.keys())]
    return changed + added + removed
