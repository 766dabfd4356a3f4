"""PS3.15 Annex E: Table E.1-1 and the options of the confidentiality profile.

The tables ship as CSV in ``exporter/data`` (edition and provenance in
``exporter/data/PROVENANCE.md``); nothing here depends on ``../shared``.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

EDITION = "2026d"

# Option column of Table E.1-1 -> (CID 7050 code value, code meaning).
OPTIONS: dict[str, tuple[str, str]] = {
    "retain_safe_private": ("113111", "Retain Safe Private Option"),
    "retain_uids": ("113110", "Retain UIDs Option"),
    "retain_device_identity": ("113109", "Retain Device Identity Option"),
    "retain_institution_identity": ("113112", "Retain Institution Identity Option"),
    "retain_patient_characteristics": (
        "113108",
        "Retain Patient Characteristics Option",
    ),
    "retain_long_full_dates": (
        "113106",
        "Retain Longitudinal Temporal Information Full Dates Option",
    ),
    "retain_long_modified_dates": (
        "113107",
        "Retain Longitudinal Temporal Information Modified Dates Option",
    ),
    "clean_descriptors": ("113105", "Clean Descriptors Option"),
    "clean_structured_content": ("113104", "Clean Structured Content Option"),
    "clean_graphics": ("113103", "Clean Graphics Option"),
    # Not a column of Table E.1-1: the engine scrubs burned-in text (OCR).
    "clean_pixel_data": ("113101", "Clean Pixel Data Option"),
}
BASIC_PROFILE_CODE = ("113100", "Basic Application Confidentiality Profile")

# When two options in force fill the same cell differently, the first in this
# list wins. Only two pairs ever disagree (see PROVENANCE.md): Full vs Modified
# Dates, which are alternatives and refused together, and Device Identity (K)
# vs Modified Dates (C) on calibration dates, where the shifted date wins
# because it protects more and still keeps intervals.
OPTION_PRECEDENCE = (
    "retain_long_modified_dates",
    "retain_long_full_dates",
    "clean_structured_content",
    "clean_descriptors",
    "clean_graphics",
    "retain_safe_private",
    "retain_uids",
    "retain_device_identity",
    "retain_institution_identity",
    "retain_patient_characteristics",
)

# Compound codes of Table E.1-1a depend on the attribute's Type in the IOD being
# written. Without module tables we take, for each, the action that is valid
# whatever the Type (PS3.15 allows a dummy for Z and an empty value for Type 3),
# which is never weaker than removal: nothing of the original value survives.
COMPOUND_RESOLUTION = {
    "Z/D": "D",
    "X/Z": "Z",
    "X/D": "D",
    "X/Z/D": "D",
    "X/Z/U*": "U*",
}


@dataclass(frozen=True)
class AnnexERow:
    """One row of Table E.1-1."""

    tag: str  # "GGGG,EEEE" or a pattern: "50xx,xxxx", "60xx,3000", "gggg,eeee"
    keyword: str
    name: str
    basic: str
    options: dict[str, str]
    retired: bool

    @property
    def is_pattern(self) -> bool:
        """True for the curve, overlay and private rows that match many tags."""
        return "x" in self.tag or "g" in self.tag

    @property
    def tag_int(self) -> int:
        """The tag as an integer (only for rows that are a single tag)."""
        group, element = self.tag.split(",")
        return (int(group, 16) << 16) | int(element, 16)


def _read_csv(name: str) -> list[dict[str, str]]:
    text = resources.files("exporter.data").joinpath(name).read_text("utf-8")
    return list(csv.DictReader(text.splitlines()))


@cache
def table_e1_1() -> tuple[AnnexERow, ...]:
    """All 657 rows of Table E.1-1, in published order."""
    rows = []
    for record in _read_csv("annex-e-attributes.csv"):
        rows.append(
            AnnexERow(
                tag=record["tag"],
                keyword=record["keyword"],
                name=record["name"],
                basic=record["basic_profile"],
                options={k: record[k] for k in OPTIONS if record.get(k)},
                retired=record["retired"] == "Y",
            )
        )
    return tuple(rows)


@cache
def safe_private() -> frozenset[tuple[int, str, int]]:
    """Table E.3.10-1: (group, private creator, element offset) known to be safe."""
    return frozenset(
        (
            int(r["group"], 16),
            r["private_creator"].strip(),
            int(r["element_offset"], 16),
        )
        for r in _read_csv("safe-private-attributes.csv")
    )


@cache
def safe_private_creators() -> frozenset[tuple[int, str]]:
    """(group, private creator) of the blocks that hold a safe attribute."""
    return frozenset((group, creator) for group, creator, _ in safe_private())


def decide(row: AnnexERow, options: frozenset[str]) -> tuple[str, str]:
    """The action code for one row under ``options``, and what decided it.

    Returns
    -------
    tuple
        ``(code, decided_by)`` where ``code`` is a simple action (D, Z, X, K,
        C, U or U*) and ``decided_by`` names the option, or ``basic``.
    """
    for option in OPTION_PRECEDENCE:
        if option in options and option in row.options:
            return row.options[option], option
    return COMPOUND_RESOLUTION.get(row.basic, row.basic), "basic"


def decided_text(row: AnnexERow, options: frozenset[str]) -> str:
    """``code (option)``, naming any option in force that the precedence overruled."""
    code, decided_by = decide(row, options)
    overruled = [
        f"{o} {row.options[o]}"
        for o in OPTION_PRECEDENCE
        if o in options
        and o in row.options
        and o != decided_by
        and row.options[o] != code
    ]
    text = f"{code} ({decided_by}"
    if overruled:
        text += ", over " + ", ".join(overruled)
    return text + ")"


def validate_options(options: frozenset[str]) -> None:
    """Refuse unknown options and the two date options together."""
    unknown = sorted(options - OPTIONS.keys())
    if unknown:
        raise ValueError(
            f"unknown Annex E option(s) {', '.join(unknown)}; "
            f"choose from {', '.join(OPTIONS)}"
        )
    if {"retain_long_full_dates", "retain_long_modified_dates"} <= options:
        raise ValueError(
            "Retain Longitudinal Temporal Information: choose Full Dates or "
            "Modified Dates, not both"
        )
