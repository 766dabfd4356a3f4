"""``exporter linkage export``: the honest broker's mapping, written on request.

The file identifies patients by design. It is written only with an explicit
acknowledgement, never into an export folder (nor any folder inside one),
atomically, readable by its owner only.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from exporter.engine.files import write_atomic
from exporter.errors import SettingsError
from exporter.state import Job, Linkage

KINDS = ("patient", "uid", "date_offset")


def export_linkage(engine: Engine, out: Path, kind: str | None = None) -> int:
    """Write the mapping to ``out``; return the number of rows.

    With ``kind``, the file has the two columns ``id_old,id_new`` of that kind
    (as the MIDI-B validation tools read it); without, a ``kind`` column first.

    Raises
    ------
    SettingsError
        For an unknown kind, or a target inside an export folder.
    """
    if kind is not None and kind not in KINDS:
        raise SettingsError(f"unknown linkage kind {kind!r}; choose {', '.join(KINDS)}")
    out = out.expanduser().resolve()
    _refuse_export_folder(engine, out)
    with Session(engine) as session:
        query = select(Linkage).order_by(col(Linkage.kind), col(Linkage.original))
        if kind is not None:
            query = query.where(col(Linkage.kind) == kind)
        rows = session.exec(query).all()
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id_old", "id_new"] if kind else ["kind", "id_old", "id_new"])
    for row in rows:
        values = [row.original, row.pseudonym]
        writer.writerow(values if kind else [row.kind, *values])
    write_atomic(out, buffer.getvalue().encode("utf-8"))
    os.chmod(out, 0o600)
    return len(rows)


def _refuse_export_folder(engine: Engine, out: Path) -> None:
    """An export folder is one a job wrote, or one that looks like an export."""
    with Session(engine) as session:
        exports = {
            Path(p).resolve() for p in session.exec(select(col(Job.out_dir))).all()
        }
    for folder in out.parents:
        looks_like = (folder / "provenance.json").is_file() and (
            folder / "catalog"
        ).is_dir()
        if folder in exports or looks_like:
            raise SettingsError(
                f"{out} is inside the export folder {folder}: the linkage identifies "
                "patients and must never travel with an export; write it elsewhere"
            )
