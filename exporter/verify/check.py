"""``exporter verify``: the workspace's noted values against an export folder."""

from __future__ import annotations

import json
from collections.abc import Iterable
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from exporter.engine.files import write_atomic
from exporter.state import Linkage, Witness
from exporter.verify.needles import Scoped, build_scoped
from exporter.verify.scan import Finding, ReadText, scan_export


def needles_from(engine: Engine, retained: Iterable[str] = ()) -> Scoped:
    """Needles for every value noted in the workspace and every original UID.

    Kinds in ``retained`` (kept by the policy on purpose) are left out.
    """
    skip = set(retained)
    with Session(engine) as session:
        values = [
            (w.kind, w.value, w.patient)
            for w in session.exec(select(Witness)).all()
            if w.kind not in skip
        ]
        uids = session.exec(
            select(col(Linkage.original)).where(col(Linkage.kind) == "uid")
        ).all()
    return build_scoped(values, uids)


def ocr_reader() -> ReadText | None:
    """RapidOCR's line reader, or None when the pixels extra is not installed.

    The engine (1.5 s to load its models) is made on the first image read,
    so an export with no image to read does not pay for it.
    """
    if any(find_spec(name) is None for name in ("rapidocr", "onnxruntime")):
        return None
    from exporter.pixels.ocr import ocr_text

    return ocr_text


def verify_export(
    out: Path,
    engine: Engine,
    retained: Iterable[str] = (),
    reader: ReadText | None = None,
    cache_file: Path | None = None,
    workers: int = 1,
) -> list[Finding]:
    """Every place in ``out`` that holds a value the workspace noted.

    With a ``reader`` (see :func:`ocr_reader`), the images that may carry
    burned-in text, or whose text the export cleaned, are read by OCR too.
    With ``cache_file`` (in the workspace), files unchanged since the last
    check with the same needles and reader are not read again. ``workers``
    processes share the files.
    """
    needles = needles_from(engine, retained)
    version = f"{needles.digest()} ocr={reader is not None}"
    cache: dict[str, Any] = {}
    if cache_file is not None and cache_file.is_file():
        stored = json.loads(cache_file.read_text())
        if stored.get("version") == version:
            cache = stored["files"]
    findings = scan_export(out, needles, reader, cache, workers)
    if cache_file is not None:
        text = json.dumps({"version": version, "files": cache}, sort_keys=True)
        write_atomic(cache_file, text.encode())
    return findings
