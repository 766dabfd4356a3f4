"""The review page of a job, in the workspace: for reviewers inside the institution.

Unlike the audit report it shows what the export must not: each cleaned image
as it was before cleaning next to the exported result, the quarantine with a
picture of each held-back image, the source items that failed, and where
verify found identifying values. It is written into the job's folder of the
workspace, which can never be inside an export, and is never copied there.
"""

from __future__ import annotations

import csv
import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

from exporter.engine.files import write_atomic
from exporter.pages.html import figure, head, table, tail

REVIEW_PAGE = "review.html"
# Pictures per section, and rows per table: the page stays quick to open; the
# CSV files next to it list everything.
MAX_PICTURES = 48
MAX_ROWS = 500

_WARNING = (
    '<p class="bad">Identifying: this page shows images as they were before '
    "cleaning and the quarantined instances, with whatever text is burned into "
    "them, and source file names. Keep it inside the institution; it is not part "
    "of the export and must not be attached to tickets.</p>"
)


def write_review(job_dir: Path, out: Path, painted: dict[str, list[list[int]]]) -> Path:
    """Write ``review.html`` into the job folder ``job_dir`` and return its path.

    ``out`` is the export (for the cleaned images as exported); ``painted``
    maps their export paths to the boxes cleaned in them.
    """
    record = json.loads((out / "provenance.json").read_text())
    held = _rows(job_dir / "not-exported.csv")
    findings = _rows(job_dir / "verify.csv")
    page = render(
        job_dir,
        record,
        held,
        findings,
        _before_and_after(job_dir, painted),
        _quarantine_pictures(job_dir, held),
    )
    path = job_dir / REVIEW_PAGE
    write_atomic(path, page.encode("utf-8"))
    path.chmod(0o600)  # identifying, like the linkage: the owner only
    return path


def render(
    job_dir: Path,
    record: dict[str, Any],
    held: list[dict[str, str]],
    findings: list[dict[str, str]],
    pairs: str = "",
    quarantine_pictures: str = "",
) -> str:
    """The review page from the job's records and its pictures (HTML)."""
    counts = record.get("counts", {})
    quarantined = [r for r in held if r.get("status") == "quarantined"]
    failed = [r for r in held if r.get("status") != "quarantined"]
    parts = [
        *head(f"Export {record.get('export_id', '')}: review (workspace only)"),
        _WARNING,
        "<p>The export's own report is <code>report.html</code> in the export "
        "folder; this page adds what only the workspace may hold.</p>",
        table(
            ("", "instances"),
            [
                ("exported", counts.get("instances_exported", 0)),
                ("burned-in text cleaned", counts.get("instances_pixels_cleaned", 0)),
                ("quarantined", len(quarantined)),
                ("failed", len(failed)),
                ("verify findings", len(findings)),
            ],
        ),
        "<h2>Cleaned images: before and after</h2>",
        pairs or "<p>No image was cleaned.</p>",
        "<h2>Quarantine</h2>",
        _quarantine(quarantined, quarantine_pictures, job_dir),
        "<h2>Failed</h2>",
        _listing(
            ("source item", "reason"),
            [(r["source_item"], r["reason"]) for r in failed],
            "not-exported.csv",
        )
        if failed
        else "<p>None.</p>",
        "<h2>Verify findings</h2>",
        _listing(
            ("file", "place", "kind of value"),
            [(r["file"], r["place"], r["kind"]) for r in findings],
            "verify.csv",
        )
        if findings
        else "<p>None.</p>",
        *tail(),
    ]
    return "\n".join(parts) + "\n"


def _inside(job_dir: Path, path: str) -> str:
    """``path`` relative to the job folder when it lies inside it."""
    where = Path(path)
    return str(where.relative_to(job_dir)) if where.is_relative_to(job_dir) else path


def _quarantine(rows: list[dict[str, str]], pictures: str, job_dir: Path) -> str:
    if not rows:
        return "<p>None.</p>"
    by_reason = Counter(r["reason"] for r in rows)
    return (
        "<p>Held back in the workspace, de-identified except for their pixel "
        "data; release them by fixing the cause and running the job again.</p>"
        + table(("reason", "instances"), sorted(by_reason.items()))
        + pictures
        + _listing(
            ("source item", "reason", "quarantined file"),
            [
                (r["source_item"], r["reason"], _inside(job_dir, r["quarantine_path"]))
                for r in rows
            ],
            "not-exported.csv",
        )
    )


def _listing(
    header: tuple[str, ...], rows: list[tuple[str, ...]], csv_name: str
) -> str:
    """A table of at most MAX_ROWS rows, pointing to the CSV for the rest."""
    shown = table(header, rows[:MAX_ROWS])
    if len(rows) > MAX_ROWS:
        shown += (
            f"<p>and {len(rows) - MAX_ROWS} more rows: see "
            f"<code>{html.escape(csv_name)}</code> next to this page.</p>"
        )
    return shown


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _pictures_available() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def _before_and_after(job_dir: Path, painted: dict[str, list[list[int]]]) -> str:
    """Each cleaned image before and after, as the worker pictured them."""
    if not painted:
        return ""
    kept = {p.name: p for p in (job_dir / "parts" / "pictures").glob("*/*.png")}
    figures = []
    for number, (path, boxes) in enumerate(sorted(painted.items())[:MAX_PICTURES]):
        label = f"image {number + 1}"
        pair = []
        for when in ("before", "after"):
            picture = kept.get(f"{Path(path).stem}.{when}.png")
            caption = f"{label}: {when}"
            if when == "after":
                caption += f", as exported ({len(boxes)} regions cleaned): {path}"
            pair.append(
                figure(picture.read_bytes(), f"{label} {when}", caption)
                if picture is not None
                else f"<p>{label}: no picture {when} cleaning was kept.</p>"
            )
        figures.append(f"<div>{''.join(pair)}</div>")
    more = len(painted) - MAX_PICTURES
    return (
        "<p>First frame, before and after shown with the same contrast stretch; "
        "red: the regions painted or blanked. Check that no text is left in the "
        "pictures on the right.</p>"
        + "".join(figures)
        + (f"<p>and {more} more cleaned images.</p>" if more > 0 else "")
    )


def _quarantine_pictures(job_dir: Path, held: list[dict[str, str]]) -> str:
    """The first frame of each quarantined file that can be decoded here."""
    files = [
        (Path(r["quarantine_path"]), r["reason"])
        for r in held
        if r.get("status") == "quarantined" and r.get("quarantine_path")
    ]
    if not files:
        return ""
    if not _pictures_available():
        return "<p>Pictures need the pixels extra (Pillow).</p>"
    from exporter.pixels.thumbnail import first_frame_view, thumbnail_png

    figures = []
    for number, (path, reason) in enumerate(files[:MAX_PICTURES]):
        view = first_frame_view(path) if path.is_file() else None
        if view is None:
            continue
        figures.append(
            figure(
                thumbnail_png(view),
                f"quarantined image {number + 1}",
                f"quarantined {number + 1}: {reason}; {_inside(job_dir, str(path))}",
            )
        )
    more = len(files) - MAX_PICTURES
    return "".join(figures) + (
        f"<p>and {more} more quarantined files.</p>" if more > 0 else ""
    )
