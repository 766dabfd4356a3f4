"""``exporter verify``: the workspace's noted values against an export folder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from exporter.state import Linkage, Witness
from exporter.verify.needles import Scoped, build_scoped
from exporter.verify.scan import Finding, scan_export


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


def verify_export(
    out: Path, engine: Engine, retained: Iterable[str] = ()
) -> list[Finding]:
    """Every place in ``out`` that holds a value the workspace noted."""
    return scan_export(out, needles_from(engine, retained))
