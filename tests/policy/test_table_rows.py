"""Every row of PS3.15 Table E.1-1, for the Basic Profile and each option column.

Generated from the CSV: for each concrete row, the compiled profile for the
Basic Profile alone and for each option whose cell is filled must act as the
table says (or, where exporter has no cleaner yet, more strictly).
"""

from __future__ import annotations

from functools import cache

import pytest
from pydicom.datadict import dictionary_VR

from exporter.policy.annex_e import AnnexERow, decide, table_e1_1
from exporter.policy.explain import _STRENGTH, Explained, explain
from exporter.policy.profile import build_recipe
from exporter.policy.recipe import compile_recipe

ROWS = [row for row in table_e1_1() if not row.is_pattern]


@cache
def _explained(options: frozenset[str]) -> dict[str, Explained]:
    recipe = compile_recipe(build_recipe(options), "profile")
    rows, findings = explain(recipe, options)
    assert findings == []
    return {r.tag: r for r in rows}


def _is_sequence(row: AnnexERow) -> bool:
    try:
        return bool(dictionary_VR(row.tag_int) == "SQ")
    except KeyError:
        return False


def _acceptable(expected: str, got: Explained | None, row: AnnexERow) -> bool:
    """The compiled action does what the table asks, or removes more."""
    if got is None:
        # No rule: the element is kept and, if a sequence, its items cleaned
        # (which is how a sequence is cleaned under Clean Structured Content).
        return expected in ("K", "U*") or (expected == "C" and _is_sequence(row))
    if expected == got.code:
        return True
    if expected in ("Z", "D") and got.code in ("Z", "D", "X"):
        return True  # PS3.15 allows a dummy for Z; D on a sequence empties it
    if expected == "K" and got.code == "C":
        return "func:age_cap" in got.action  # kept, ages over 89 capped
    if expected == "C":
        return _STRENGTH[got.code] > _STRENGTH["C"]  # no cleaner yet: stricter
    return False


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.tag} {r.keyword or r.name}")
def test_row_for_basic_and_each_option(row: AnnexERow) -> None:
    """The Basic Profile, and each option filled in this row, act as the table says."""
    tag = f"({row.tag})"
    checks = [frozenset()] + [frozenset({option}) for option in row.options]
    for options in checks:
        expected, decided_by = decide(row, options)
        got = _explained(options).get(tag)
        does = got.action if got else "nothing"
        assert _acceptable(expected, got, row), (
            f"{row.tag} {row.name} with {sorted(options) or 'no option'}: table says "
            f"{expected} ({decided_by}), profile does {does}"
        )
