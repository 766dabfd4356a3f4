"""What an export says about itself: reconciliation, provenance, held-back list.

The reconciliation and provenance go into the export and name nothing from
the source: manifest rows by number, counts, digests. The list of instances
that did not leave names source files and stays in the workspace.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from exporter.engine.files import write_atomic

RECONCILIATION_COLUMNS = (
    "row",
    "status",
    "studies",
    "instances_exported",
    "instances_quarantined",
    "instances_failed",
    "reasons",
)


@dataclass(frozen=True)
class StudyCounts:
    """What became of one study's instances."""

    exported: int
    quarantined: int
    failed: int
    reasons: frozenset[str]


@dataclass(frozen=True)
class RowReport:
    """One manifest row in the reconciliation."""

    row: int
    status: str
    studies: int
    exported: int
    quarantined: int
    failed: int
    reasons: tuple[str, ...]


def reason_category(reason: str) -> str:
    """The part of a reason that is the same for every instance it applies to."""
    return reason.split(" (")[0].split(":")[0]


def reconcile(matches: Mapping[int, Sequence[StudyCounts]]) -> list[RowReport]:
    """One report per manifest row, from the studies each row selected."""
    reports = []
    for row in sorted(matches):
        studies = matches[row]
        exported = sum(s.exported for s in studies)
        held = sum(s.quarantined for s in studies)
        failed = sum(s.failed for s in studies)
        if not studies:
            status = "matched nothing"
        elif held + failed == 0:
            status = "exported"
        elif exported:
            status = "partly exported"
        else:
            status = "failed"
        reasons = tuple(sorted({r for s in studies for r in s.reasons}))
        reports.append(
            RowReport(row, status, len(studies), exported, held, failed, reasons)
        )
    return reports


def write_reconciliation(path: Path, reports: Iterable[RowReport]) -> None:
    """Write ``reconciliation.csv``: rows by number, statuses and counts."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECONCILIATION_COLUMNS)
    for r in reports:
        writer.writerow(
            [
                r.row,
                r.status,
                r.studies,
                r.exported,
                r.quarantined,
                r.failed,
                "; ".join(r.reasons),
            ]
        )
    write_atomic(path, buffer.getvalue().encode())


def write_provenance(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``provenance.json`` deterministically (sorted keys, no clock)."""
    text = json.dumps(record, indent=2, sort_keys=True) + "\n"
    write_atomic(path, text.encode())


def write_not_exported(path: Path, rows: Iterable[Sequence[str]]) -> None:
    """Write the workspace list of held-back instances, with source paths."""
    write_rows(path, ("source_item", "status", "reason", "quarantine_path"), rows)


def write_rows(
    path: Path, header: Sequence[str], rows: Iterable[Sequence[str]]
) -> None:
    """Write a CSV file atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue().encode())
