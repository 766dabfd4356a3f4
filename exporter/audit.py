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
from exporter.policy.explain import Explained

_CODES = {
    "X": "removed",
    "Z": "emptied",
    "D": "replaced with a dummy or pseudonym",
    "U": "UID replaced, consistently",
    "C": "cleaned",
    "K": "kept",
}
_STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#eee}.ok{color:#060}.bad{color:#a00;font-weight:bold}"
    "summary{cursor:pointer}h2{margin-top:1.5em;border-bottom:1px solid #ccc}"
)


# Marks the page once loaded: data-images="ok" when every image decoded, so a
# headless browser can tell (the report must read offline, images embedded).
_IMAGE_CHECK = (
    "<script>addEventListener('load',function(){var i=Array.from(document.images);"
    "document.documentElement.dataset.images=i.every(function(x){return x.complete"
    "&&x.naturalWidth>0})?'ok':'broken';});</script>"
)


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
    esc = html.escape
    counts = record.get("counts", {})
    verify = record.get("verify", {})
    recipe = record.get("recipe", {})
    title = f"Export {record.get('export_id', '')}: audit report"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        _verdict(counts, verify),
        "<h2>Summary</h2>",
        _table(
            ("", "count"),
            [(k.replace("_", " "), v) for k, v in counts.items() if isinstance(v, int)],
        ),
        "<h2>Verification</h2>",
        _verify_section(verify),
        "<h2>Manifest reconciliation</h2>",
        "<p>One line per manifest row, by row number "
        "(the row's values are not shown).</p>",
        _table(
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
        _table(
            ("reason", "instances"),
            sorted(counts.get("instances_not_exported_by_reason", {}).items()),
        )
        if counts.get("instances_not_exported_by_reason")
        else "<p>None.</p>",
        "<h2>Pixel data</h2>",
        _table(
            ("what was done", "instances"),
            sorted(counts.get("instances_exported_by_pixel_check", {}).items()),
        ),
        "<p>copied: byte for byte, not decoded; sampled: first frame read by OCR as "
        "its series' sample; ocr: every frame read, text painted over; rule: a "
        "recipe's %filter regions blanked.</p>",
        thumbnails,
        "<h2>Policy</h2>",
        _table(
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
        _table(
            ("Annex E code", "meaning", "attributes"),
            [
                (code, _CODES.get(code, ""), n)
                for code, n in sorted(Counter(r.code for r in explained).items())
            ],
        ),
        "<details><summary>The full table "
        f"({len(explained)} attributes and patterns)</summary>",
        _table(
            ("tag", "keyword", "action", "code", "decided by"),
            [(r.tag, r.keyword, r.action, r.code, r.decided_by) for r in explained],
        ),
        "</details>",
        _IMAGE_CHECK,
        "</body></html>",
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
    return _table(("", ""), rows)


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    esc = html.escape
    head = "".join(f"<th>{esc(str(h))}</th>" for h in header)
    thead = f"<thead><tr>{head}</tr></thead>" if any(header) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table>{thead}<tbody>{body}</tbody></table>"


# At most this many thumbnails: the page stays small enough to open anywhere.
MAX_THUMBNAILS = 48
THUMBNAIL_WIDTH = 240


def _thumbnails(out: Path, painted: dict[str, list[list[int]]]) -> str:
    """Cleaned images, first frame, with the cleaned boxes outlined in red."""
    if not painted:
        return ""
    try:
        from PIL import Image, ImageDraw
    except ImportError:
        return "<p>Thumbnails need the pixels extra (Pillow).</p>"
    import base64
    import io

    import pydicom

    from exporter.pixels.clean import Undecodable, decode

    figures = []
    for number, (path, boxes) in enumerate(sorted(painted.items())[:MAX_THUMBNAILS]):
        try:
            frames, _, view = decode(pydicom.dcmread(out / path), first_frame_only=True)
        except (OSError, Undecodable):
            continue
        image = Image.fromarray(view(frames[0]))
        scale = THUMBNAIL_WIDTH / image.width
        image = image.resize((THUMBNAIL_WIDTH, max(1, round(image.height * scale))))
        draw = ImageDraw.Draw(image)
        for x0, y0, x1, y1 in boxes:
            draw.rectangle(
                (x0 * scale, y0 * scale, x1 * scale - 1, y1 * scale - 1),
                outline=(230, 30, 30),
                width=2,
            )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        data = base64.b64encode(buffer.getvalue()).decode("ascii")
        figures.append(
            '<figure style="display:inline-block;margin:4px">'
            f'<img alt="cleaned image {number + 1}" src="data:image/png;base64,{data}">'
            f"<figcaption>image {number + 1}: {len(boxes)} regions cleaned"
            "</figcaption></figure>"
        )
    more = len(painted) - MAX_THUMBNAILS
    tail = f"<p>and {more} more cleaned images.</p>" if more > 0 else ""
    return (
        "<h3>Cleaned images (first frame; red: what was painted or blanked)</h3>"
        + "".join(figures)
        + tail
    )
