"""``exporter verify``: the workspace's noted values against an export folder."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from exporter.state import Linkage, Witness
from exporter.verify.needles import Needles, build
from exporter.verify.scan import Finding, scan_export


def needles_from(engine: Engine) -> Needles:
    """Needles for every value noted in the workspace and every original UID."""
    with Session(engine) as session:
        values = [(w.kind, w.value) for w in session.exec(select(Witness)).all()]
        uids = session.exec(
            select(col(Linkage.original)).where(col(Linkage.kind) == "uid")
        ).all()
    return build(values, uids)


def verify_export(out: Path, engine: Engine) -> list[Finding]:
    """Every place in ``out`` that holds a value the workspace noted."""
    return scan_export(out, needles_from(engine))
