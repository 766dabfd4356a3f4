"""Atomic file writes and the export's path layout."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
TMP_MARK = ".tmp-"


def safe_component(text: str) -> str:
    """A path component from a pseudonym: letters, digits, dot, dash, underscore."""
    cleaned = _UNSAFE.sub("_", text).strip(".") or "_"
    return cleaned[:64]


def review_picture(job_dir: Path, ordinal: int, name: str, when: str) -> Path:
    """The workspace picture of a cleaned image ``when`` "before" or "after".

    ``name`` is the stem of the exported file (its new SOP Instance UID).
    """
    return job_dir / "parts" / "pictures" / f"{ordinal:08d}" / f"{name}.{when}.png"


def write_atomic(target: Path, data: bytes | Sequence[bytes | memoryview]) -> None:
    """Write ``data`` (or its chunks, in order) so readers see all or nothing."""
    tmp = target.with_name(f"{TMP_MARK}{os.getpid()}-{target.name}")
    chunks = [data] if isinstance(data, bytes) else data
    try:
        handle = open(tmp, "wb")  # noqa: SIM115  (closed below)
    except FileNotFoundError:
        # The folder is made on first use only: one call saved per file.
        target.parent.mkdir(parents=True, exist_ok=True)
        handle = open(tmp, "wb")  # noqa: SIM115
    with handle:
        for chunk in chunks:
            handle.write(chunk)
    os.replace(tmp, target)


def sweep_partial(root: Path) -> int:
    """Delete temporary files a killed run left under ``root``; returns the count."""
    removed = 0
    if not root.exists():
        return 0
    for path in root.rglob(f"{TMP_MARK}*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed
