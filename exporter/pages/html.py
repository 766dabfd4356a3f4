"""What the pages share: the style, tables, the image check, embedded pictures."""

from __future__ import annotations

import base64
import html
from typing import Any

STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;max-width:70em;color:#222}"
    "table{border-collapse:collapse;margin:.5em 0}"
    "td,th{border:1px solid #bbb;padding:3px 8px;text-align:left;vertical-align:top}"
    "th{background:#eee}.ok{color:#060}.bad{color:#a00;font-weight:bold}"
    "summary{cursor:pointer}h2{margin-top:1.5em;border-bottom:1px solid #ccc}"
    "figure{display:inline-block;margin:4px;vertical-align:top}"
    "figcaption{font-size:85%;max-width:240px;overflow-wrap:anywhere}"
)

# Marks the page once loaded: data-images="ok" when every image decoded, so a
# headless browser can tell (the pages must read offline, images embedded).
IMAGE_CHECK = (
    "<script>addEventListener('load',function(){var i=Array.from(document.images);"
    "document.documentElement.dataset.images=i.every(function(x){return x.complete"
    "&&x.naturalWidth>0})?'ok':'broken';});</script>"
)


def head(title: str) -> list[str]:
    """The opening of a page, up to and including its title heading."""
    esc = html.escape
    return [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
    ]


def tail() -> list[str]:
    """The end of a page."""
    return [IMAGE_CHECK, "</body></html>"]


def table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    """An HTML table; every cell escaped. No header row when all are empty."""
    esc = html.escape
    heads = "".join(f"<th>{esc(str(h))}</th>" for h in header)
    thead = f"<thead><tr>{heads}</tr></thead>" if any(header) else ""
    body = "".join(
        "<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in row) + "</tr>"
        for row in rows
    )
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def figure(png: bytes, alt: str, caption: str) -> str:
    """A PNG embedded as a data URI, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )
