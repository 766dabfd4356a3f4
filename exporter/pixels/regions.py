"""deid %filter rules: which instances are blacklisted, and which regions to clean.

deid evaluates the criteria (manufacturer, model, modality, ...) on the
original header; its result names the list that matched and the coordinates
to clean (0) or keep (1), in its convention ``x0,y0,x1,y1``.

Two departures from deid, both towards keeping text in: a whitelist match
never vouches for an image (deid's own rules whitelist anything whose
BurnedInAnnotation says No), and a graylist match without coordinates marks
the instance as at risk, to be read by OCR or quarantined.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset

Region = tuple[int, tuple[int, int, int, int] | None]  # (keep 1 / clean 0, box or all)


@dataclass(frozen=True)
class Verdict:
    """What the %filter rules say about one instance."""

    blacklisted: str | None = None  # the matching rule's name
    regions: list[Region] = field(default_factory=list)
    matched: str | None = None  # the graylist rule that gave the regions
    flagged: str | None = None  # a graylist rule that matched with no coordinates


def judge(ds: Dataset, filters: dict[str, Any]) -> Verdict:
    """Evaluate deid's %filter rules on the original ``ds``."""
    from deid.dicom.pixels.detect import has_burned_pixels
    from deid.logger import bot

    bot.level = 0
    # deid writes the coordinates it reads from a header (from:Field) into the
    # rules it was given: without a copy, the next image would get these. The
    # copy (3 ms for deid's own rules) is made only when a rule reads a header.
    rules = copy.deepcopy(filters) if _reads_headers(filters) else filters
    with contextlib.redirect_stdout(io.StringIO()):
        result = has_burned_pixels(ds, deid=rules)
    bot.history.clear()
    if not result.get("flagged"):
        return Verdict()
    regions: list[Region] = []
    matched = flagged = None
    for item in result.get("results", []):
        reason = " ".join(str(item.get("reason") or "").split())
        if item.get("group") == "blacklist":
            return Verdict(blacklisted=reason or "blacklist")
        if item.get("group") != "graylist":
            continue  # whitelist: never trusted
        if not item.get("coordinates"):
            flagged = flagged or reason or "graylist"
            continue
        matched = matched or reason or "graylist"
        for keep, coordinates in item["coordinates"]:
            for text in coordinates if isinstance(coordinates, list) else [coordinates]:
                regions.append((int(keep), _box(str(text))))
    return Verdict(regions=regions, matched=matched, flagged=flagged)


def _reads_headers(filters: dict[str, Any]) -> bool:
    """Whether any rule takes its coordinates from a header field (from:)."""
    lists = filters.get("filter")
    if not isinstance(lists, dict):
        return False
    return any(
        isinstance(coordinates, str) and coordinates.startswith("from:")
        for items in lists.values()
        for item in items or ()
        for _, coordinates in item.get("coordinates", ())
    )


def _box(text: str) -> tuple[int, int, int, int] | None:
    if text.strip().lower() == "all":
        return None
    x0, y0, x1, y1 = (int(v) for v in text.split(","))
    return (x0, y0, x1, y1)
