"""Clean Descriptors: identifying words out of free text, clinical words kept."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset

from exporter.policy.text import clean_text, identifying_tokens


@pytest.fixture
def tokens() -> frozenset[str]:
    ds = Dataset()
    ds.PatientName = "QUIMBYWELL^ADALINE^J"
    ds.PatientID = "0012345"
    ds.AccessionNumber = "A998877"
    ds.PatientBirthDate = "19560312"
    ds.ReferringPhysicianName = "BRACKENWELL^PERPETUA"
    ds.OperatorsName = ["FENWORTH^OSWIN", "TALLOWBY^RUE"]
    ds.InstitutionName = "St Mungo General Hospital"
    ds.StationName = "CTSCAN07"
    return identifying_tokens(ds)


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        ("CT CHEST W CONTRAST", "CT CHEST W CONTRAST"),
        ("CT chest for Adaline Quimbywell", "CT chest for"),
        ("Quimbywell, Adaline: follow-up liver lesion", "follow-up liver lesion"),
        ("MRN 0012345 acc A998877 abdomen", "MRN acc abdomen"),
        ("per Dr. Brackenwell at St Mungo General Hospital", "per Dr. at"),
        ("tech oswin fenworth, station CTSCAN07", "tech, station"),
        ("DOB 1956-03-12, seen 03/04/2019 and 12 Mar 2019", "DOB, seen and"),
        ("call (207) 555-0139 or 555.123.4567", "call or"),
        ("lesion 12 mm, series 3", "lesion 12 mm, series 3"),
        ("ref 88812345 pending", "ref pending"),
        ("Called back (MRN 0012345): motion", "Called back (MRN): motion"),
        ("lesion (0012345) stable", "lesion stable"),
    ],
)
def test_clean_text(text: str, cleaned: str, tokens: frozenset[str]) -> None:
    """Names in any spelling, IDs, dates, phones and long numbers go; the rest stays."""
    assert clean_text(text, tokens) == cleaned


def test_common_words_of_a_place_are_not_tokens(tokens: frozenset[str]) -> None:
    """'General' alone stays: only the place as written is identifying."""
    assert "general" not in tokens
    assert clean_text("general anaesthesia", tokens) == "general anaesthesia"
