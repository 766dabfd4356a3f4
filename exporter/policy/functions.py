"""Value functions a recipe may call with ``func:NAME``.

Each function receives the instance context and the element, and is used both
by exporter's own engine and, through an adapter, by deid's engine in the
differential test; that is what makes the two comparable.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydicom.datadict import dictionary_has_tag, repeater_has_tag
from pydicom.dataelem import DataElement
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from exporter.policy import text
from exporter.policy.annex_e import safe_private, safe_private_creators
from exporter.policy.pseudonyms import Pseudonymizer


@dataclass
class InstanceContext:
    """What the functions need to know about the instance being cleaned."""

    pseudonyms: Pseudonymizer
    patient_pseudonym: str
    date_offset_days: int
    # Results of pure rules by (tag, VR, original bytes, character set), shared
    # by the instances of one patient's study: a series repeats its header, so
    # most elements are cleaned once and copied after. None turns it off.
    memo: dict[tuple[Any, ...], Any] | None = None
    # Identifying words of the instance being cleaned (policy.text), for
    # func:clean_text; set per instance, before any rule runs.
    tokens: frozenset[str] = frozenset()
    # Parsed catalog values by (tag, raw bytes), shared the same way.
    values: dict[tuple[Any, ...], Any] | None = None


Function = Callable[[InstanceContext, DataElement], Any]

# Dummy values per VR (PS3.15 E.1.1: "a non-zero length value that may be a
# dummy value and consistent with the VR").
_DUMMY_TEXT = {
    "AE": "ANONYMOUS",
    "AS": "000D",
    "CS": "ANONYMIZED",
    "DA": "19000101",
    "DS": "0",
    "DT": "19000101000000.000000",
    "IS": "0",
    "LO": "ANONYMIZED",
    "LT": "ANONYMIZED",
    "PN": "ANONYMIZED",
    "SH": "ANONYMIZED",
    "ST": "ANONYMIZED",
    "TM": "000000.00",
    "UC": "ANONYMIZED",
    "UR": "ANONYMIZED",
    "UT": "ANONYMIZED",
}
_NUMERIC = {"FL", "FD", "SL", "SS", "UL", "US", "SV", "UV"}
_BYTES = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}

_AGE = re.compile(r"^(\d{3})([DWMY])$")
# HIPAA Safe Harbor: ages over 89 are aggregated into one category, 90 or older.
_MAX_AGE_YEARS = 89


def dummy(ctx: InstanceContext, elem: DataElement) -> Any:
    """A VR-valid dummy value; an empty sequence for SQ, a new UID for UI."""
    if elem.VR == "SQ":
        return Sequence()
    if elem.VR == "UI":
        return uid(ctx, elem)
    if elem.VR in _NUMERIC:
        return 0
    if elem.VR in _BYTES:
        return b"\x00\x00"
    return _DUMMY_TEXT.get(elem.VR, "ANONYMIZED")


def uid(ctx: InstanceContext, elem: DataElement) -> Any:
    """Instance UIDs mapped to keyed ``2.25.`` pseudonyms; registry UIDs kept."""
    value = elem.value
    if value is None or value == "":
        return value
    if isinstance(value, (list, MultiValue)):
        return [ctx.pseudonyms.uid(str(v)) for v in value]
    return ctx.pseudonyms.uid(str(value))


def patient_id(ctx: InstanceContext, elem: DataElement) -> str:
    """The patient's pseudonym (the manifest's SubjectID when given)."""
    return ctx.patient_pseudonym


def date_shift(ctx: InstanceContext, elem: DataElement) -> int:
    """The patient's date offset in days, for ``JITTER``."""
    return ctx.date_offset_days


def age_cap(ctx: InstanceContext, elem: DataElement) -> str:
    """The age kept, except that ages over 89 years become ``090Y``."""
    value = str(elem.value or "").strip()
    match = _AGE.match(value)
    if not match:
        # Fail closed: an age we cannot read could be anything.
        return ""
    number, unit = int(match.group(1)), match.group(2)
    years = {"Y": number, "M": number / 12, "W": number / 52, "D": number / 365}
    if years[unit] > _MAX_AGE_YEARS:
        return "090Y"
    return value


def clean_text(ctx: InstanceContext, elem: DataElement) -> Any:
    """The text with identifying words, dates, phones and digit runs taken out."""
    value = elem.value
    if value is None or value == "":
        return value
    if isinstance(value, (list, MultiValue)):
        return [text.clean_text(str(v), ctx.tokens) for v in value]
    return text.clean_text(str(value), ctx.tokens)


def is_private(ctx: InstanceContext, elem: DataElement) -> bool:
    """True for private elements and private creators (odd groups)."""
    return bool(elem.tag.group & 1)


def is_unsafe_private(ctx: InstanceContext, elem: DataElement) -> bool:
    """True for a private element not in Table E.3.10-1 (PS3.15 E.3.10).

    A private creator stays when its block holds a safe attribute; a private
    attribute stays only when its creator and element offset are listed.
    The creator is matched without trailing spaces, as writers pad it.
    """
    tag = elem.tag
    if not tag.group & 1:
        return False
    if 0x0010 <= tag.element <= 0x00FF:
        creator = str(elem.value or "").strip()
        return (tag.group, creator) not in safe_private_creators()
    creator = (elem.private_creator or "").strip()
    return (tag.group, creator, tag.element & 0xFF) not in safe_private()


def is_curve(ctx: InstanceContext, elem: DataElement) -> bool:
    """True for any element of the retired curve groups 5000-501E (PS3.3 C.10)."""
    group = elem.tag.group
    return 0x5000 <= group <= 0x501E and not group & 1


def _in_overlay(elem: DataElement, element: int) -> bool:
    group = elem.tag.group
    return 0x6000 <= group <= 0x601E and not group & 1 and elem.tag.element == element


def is_overlay_data(ctx: InstanceContext, elem: DataElement) -> bool:
    """True for Overlay Data (60xx,3000) in any overlay group."""
    return _in_overlay(elem, 0x3000)


def is_overlay_comments(ctx: InstanceContext, elem: DataElement) -> bool:
    """True for Overlay Comments (60xx,4000) in any overlay group."""
    return _in_overlay(elem, 0x4000)


def is_overlay_text(ctx: InstanceContext, elem: DataElement) -> bool:
    """True for Overlay Description (60xx,0022) and Overlay Label (60xx,1500)."""
    return _in_overlay(elem, 0x0022) or _in_overlay(elem, 0x1500)


def is_unknown_public(ctx: InstanceContext, elem: DataElement) -> bool:
    """True for a public element that no dictionary names: its content is unknown."""
    tag = elem.tag
    if tag.group & 1 or tag.element == 0:
        return False
    return not (dictionary_has_tag(tag) or repeater_has_tag(tag))


# Functions that read nothing but the element's tag: the engine may call them
# on an unparsed (raw) element.
TAG_ONLY = frozenset(
    {
        "is_private",
        "is_curve",
        "is_overlay_data",
        "is_overlay_comments",
        "is_overlay_text",
        "is_unknown_public",
    }
)

# Conditions that are false for every element of an even (public) group.
PRIVATE_ONLY = frozenset({"is_private", "is_unsafe_private"})

# Functions whose result depends only on the element's value and the context:
# the engine may reuse their result for an identical value.
PURE = TAG_ONLY | {"uid", "dummy", "patient_id", "date_shift", "age_cap"}

FUNCTIONS: dict[str, Function] = {
    "dummy": dummy,
    "uid": uid,
    "patient_id": patient_id,
    "date_shift": date_shift,
    "age_cap": age_cap,
    "clean_text": clean_text,
    "is_private": is_private,
    "is_unsafe_private": is_unsafe_private,
    "is_curve": is_curve,
    "is_overlay_data": is_overlay_data,
    "is_overlay_comments": is_overlay_comments,
    "is_overlay_text": is_overlay_text,
    "is_unknown_public": is_unknown_public,
}
