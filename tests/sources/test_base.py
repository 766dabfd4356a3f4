"""What every source shares: the query key and its exact check."""

from __future__ import annotations

import pytest

from exporter.sources.base import query_value, same_key


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        ("0012345", "0012345"),
        ("1.2.840.10008.1", "1.2.840.10008.1"),
        ("AB-12_c", "AB-12_c"),
        ("MRN^77", "MRN*"),
        ("PAT 0042", "PAT*"),
        ("12*3", "12*"),
        ("12?3", "12*"),
        ("A\\B", "A*"),
        ("%41", ""),
        ("^X", ""),
    ],
)
def test_query_value_never_matches_less(value: str, sent: str) -> None:
    """Plain values go as written; others as a wildcard prefix, or universal."""
    assert query_value(value) == sent


@pytest.mark.parametrize(
    ("answered", "wanted", "same"),
    [
        ("MRN^77*1", "MRN^77*1", True),
        ("MRN^77*1 ", "MRN^77*1", True),  # DICOM pads to an even length
        ("MRN^77X1", "MRN^77*1", False),  # a wildcard match is not the key
        ("mrn^77*1", "MRN^77*1", False),  # nor a case-blind one
        (None, "A", False),
        ("", "A", False),
    ],
)
def test_same_key_is_exact(answered: object, wanted: str, same: bool) -> None:
    """Only an equal value (padding aside) counts as the row's key."""
    assert same_key(answered, wanted) is same
