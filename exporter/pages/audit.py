"""The audit report of an export: one static HTML page a reviewer can read offline.

It is built from the export's own records (provenance.json, reconciliation.csv)
and the policy's explain table, so it can say nothing the export does not
already say; the export's verify pass reads it like every other file.
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
from exporter.policy.explain import Explained

_CODES = {
    "X": "removed",
    "Z": "emptied",
    "D": "replaced with a dummy or pseudonym",
    "U": "UID replaced, consistently",
    "C": "cleaned",
    "K": "kept",
}


def write_report(
    out: Path,
    explained: list[Explained],
    painted: dict[str, list[list[int]]] | None = None,
) -> Path:
    """Write ``report.html`` into the export folder ``out`` from its records.

    ``painted`` maps export paths of cleaned images to the boxes cleaned in
    them: their thumbnails show those boxes outlined.
    """
    record = json.loads((out / "provenance.json").read_text())
    rows = list(csv.DictReader((out / "reconciliation.csv").open()))
    page = render(record, rows, explained, _thumbnails(out, painted or {}))
    path = out / "report.html"
    write_atomic(path, page.encode("utf-8"))
    return path


def render(
    record: dict[str, Any],
    reconciliation: list[dict[str, str]],
    explained: list[Explained],
    thumbnails: str = "",
) -> str:
    """The report page; deterministic (no clock, no machine names)."""
    counts = record.get("counts", {})
    verify = record.get("verify", {})
    recipe = record.get("recipe", {})
    title = f"Export {record.get('export_id', '')}: audit report"
    parts = [
        *head(title),
        _verdict(counts, verify),
        "<h2>Summary</h2>",
        table(
            ("", "count"),
            [(k.replace("_", " "), v) for k, v in counts.items() if isinstance(v, int)],
        ),
        "<h2>Verification</h2>",
        _verify_section(verify),
        "<h2>Manifest reconciliation</h2>",
        "<p>One line per manifest row, by row number "
        "(the row's values are not shown).</p>",
        table(
            (
                "row",
                "status",
                "studies",
                "exported",
                "quarantined",
                "failed",
                "reasons",
            ),
            [
                (
                    r.get("row", ""),
                    r.get("status", ""),
                    r.get("studies", ""),
                    r.get("instances_exported", r.get("exported", "")),
                    r.get("instances_quarantined", r.get("quarantined", "")),
                    r.get("instances_failed", r.get("failed", "")),
                    r.get("reasons", ""),
                )
                for r in reconciliation
            ],
        ),
        "<h2>Instances not exported, by reason</h2>",
        table(
            ("reason", "instances"),
            sorted(counts.get("instances_not_exported_by_reason", {}).items()),
        )
        if counts.get("instances_not_exported_by_reason")
        else "<p>None.</p>",
        "<h2>Pixel data</h2>",
        table(
            ("what was done", "instances"),
            sorted(counts.get("instances_exported_by_pixel_check", {}).items()),
        ),
        "<p>copied: byte for byte, not decoded; sampled: first frame read by OCR as "
        "its series' sample; ocr: every frame read, text painted over; rule: a "
        "recipe's %filter regions blanked.</p>",
        thumbnails,
        "<h2>Policy</h2>",
        table(
            ("", ""),
            [
                ("recipe", recipe.get("name", "")),
                ("recipe sha256", recipe.get("sha256", "")),
                ("PS3.15 Annex E edition", recipe.get("annex_e_edition", "")),
                (
                    "Annex E options claimed",
                    ", ".join(recipe.get("options") or []) or "none (custom recipe)",
                ),
                ("tool", json.dumps(record.get("tool", {}), sort_keys=True)),
            ],
        ),
        "<h3>What the policy does, attribute by attribute</h3>",
        table(
            ("Annex E code", "meaning", "attributes"),
            [
                (code, _CODES.get(code, ""), n)
                for code, n in sorted(Counter(r.code for r in explained).items())
            ],
        ),
        "<details><summary>The full table "
        f"({len(explained)} attributes and patterns)</summary>",
        table(
            ("tag", "keyword", "action", "code", "decided by"),
            [(r.tag, r.keyword, r.action, r.code, r.decided_by) for r in explained],
        ),
        "</details>",
        *tail(),
    ]
    return "\n".join(parts) + "\n"


def _verdict(counts: dict[str, Any], verify: dict[str, Any]) -> str:
    held = counts.get("instances_quarantined", 0) + counts.get("instances_failed", 0)
    if verify.get("checked") and not verify.get("findings"):
        verdict = '<p class="ok">Verified: no identifying value seen in the export.</p>'
    elif verify.get("checked"):
        verdict = (
            f'<p class="bad">{verify.get("findings")} identifying values found in the '
            "export: do not share it.</p>"
        )
    else:
        verdict = '<p class="bad">Not verified.</p>'
    if held:
        verdict += f"<p>{held} instances were not exported (see below).</p>"
    return verdict


def _verify_section(verify: dict[str, Any]) -> str:
    if not verify.get("checked"):
        return f"<p>{html.escape(str(verify.get('warning', 'not verified')))}</p>"
    rows = [
        ("findings", verify.get("findings", 0)),
        (
            "pixel data read by OCR",
            "yes" if verify.get("pixel_data_read_by_ocr") else "no",
        ),
        (
            "kept on purpose by the policy (not looked for)",
            ", ".join(verify.get("retained_by_policy", [])) or "none",
        ),
    ]
    rows += [(f"found: {kind}", n) for kind, n in verify.get("by_kind", {}).items()]
    return table(("", ""), rows)


# At most this many thumbnails: the page stays small enough to open anywhere.
MAX_THUMBNAILS = 48


def _thumbnails(out: Path, painted: dict[str, list[list[int]]]) -> str:
    """Cleaned images, first frame, with the cleaned boxes outlined in red."""
    if not painted:
        return ""
    try:
        from exporter.pixels.thumbnail import first_frame_view, thumbnail_png
    except ImportError:
        return "<p>Thumbnails need the pixels extra (Pillow).</p>"
    figures = []
    for number, (path, boxes) in enumerate(sorted(painted.items())[:MAX_THUMBNAILS]):
        view = first_frame_view(out / path)
        if view is None:
            continue
        figures.append(
            figure(
                thumbnail_png(view, boxes),
                f"cleaned image {number + 1}",
                f"image {number + 1}: {len(boxes)} regions cleaned",
            )
        )
    more = len(painted) - MAX_THUMBNAILS
    more_text = f"<p>and {more} more cleaned images.</p>" if more > 0 else ""
    return (
        "<h3>Cleaned images (first frame; red: what was painted or blanked)</h3>"
        + "".join(figures)
        + more_text
    )
