"""Clean free text (PS3.15 Clean Descriptors): take out what identifies, keep the rest.

The identifying tokens come from the same dataset, before any rule runs:
patient names and IDs, accession, birth date, physicians, operators,
institution and station. They are removed wherever they appear in a
description, in any spelling ("John Smith" for SMITH^JOHN), as are dates in
common formats, phone numbers and long runs of digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

_NAME_KEYWORDS = (
    "PatientName",
    "OtherPatientNames",
    "PatientBirthName",
    "PatientMotherBirthName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "NameOfPhysiciansReadingStudy",
    "PhysiciansOfRecord",
    "RequestingPhysician",
    "OperatorsName",
    "ConsultingPhysicianName",
    "ResponsiblePerson",
)
_ID_KEYWORDS = (
    "PatientID",
    "OtherPatientIDs",
    "IssuerOfPatientID",
    "AccessionNumber",
    "StudyID",
    "AdmissionID",
    "RequestedProcedureID",
    "PerformedProcedureStepID",
    "DeviceSerialNumber",
)
_PLACE_KEYWORDS = (
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "StationName",
    "PatientAddress",
    "PatientTelephoneNumbers",
)
_MONTHS = (
    "jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    "sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?"
)
_PATTERNS = [
    # Dates: 2019-03-04, 04/03/2019, 4.3.19, 4 Mar 2019, March 4, 2019
    re.compile(r"\b\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b"),
    re.compile(r"\b\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}\b"),
    re.compile(
        rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:{_MONTHS})\.?,?\s+\d{{2,4}}\b", re.I
    ),
    re.compile(
        rf"\b(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{2,4}}\b", re.I
    ),
    # Phone numbers: (207) 555-0139, +44 20 7946 0958, 555.123.4567
    re.compile(
        r"(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)\s?)?\d{2,4}[\s.-]\d{3,4}(?:[\s.-]\d{2,4})?\b"
    ),
    # Long digit runs: MRNs, accessions, dates without separators.
    re.compile(r"\d{5,}"),
]
_SPACES = re.compile(r"[ \t]{2,}")
_EMPTY_BRACKETS = re.compile(r"[(\[]\s*[)\]]")
_BEFORE_PUNCTUATION = re.compile(r"[ \t]+([,;:)\]])")
_MIN_TOKEN = 2


def _values(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value in (None, ""):
        return []
    items = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    return [str(v) for v in items]


def identifying_tokens(ds: Dataset) -> frozenset[str]:
    """The words of ``ds`` that identify someone or somewhere, lower-cased."""
    tokens: set[str] = set()
    for keyword in _NAME_KEYWORDS:
        for name in _values(ds, keyword):
            # PN: family^given^middle^prefix^suffix, possibly with = groups.
            tokens.update(re.split(r"[\^=\s,.]+", name))
    for keyword in _ID_KEYWORDS:
        for value in _values(ds, keyword):
            tokens.add(value.strip())
    # Places as written, and line by line: their words alone are often common
    # ones ("General", "Street") that a description needs.
    for keyword in _PLACE_KEYWORDS:
        for value in _values(ds, keyword):
            tokens.add(value.strip())
            tokens.update(line.strip() for line in re.split(r"[\r\n^]+", value))
    birth = "".join(_values(ds, "PatientBirthDate"))
    if len(birth) == 8 and birth.isdigit():
        tokens.update({birth, f"{birth[:4]}-{birth[4:6]}-{birth[6:]}"})
    return frozenset(t.lower() for t in tokens if len(t.strip()) >= _MIN_TOKEN)


def _token_pattern(tokens: Iterable[str]) -> re.Pattern[str] | None:
    words = sorted({t for t in tokens if t}, key=len, reverse=True)
    if not words:
        return None
    alternatives = "|".join(re.escape(w) for w in words)
    return re.compile(rf"(?<![\w]){'(?:' + alternatives + ')'}(?![\w])", re.I)


def clean_text(text: str, tokens: frozenset[str]) -> str:
    """``text`` without identifying tokens, dates, phone numbers and digit runs."""
    pattern = _token_pattern(tokens)
    if pattern is not None:
        text = pattern.sub("", text)
    for rule in _PATTERNS:
        text = rule.sub("", text)
    text = _EMPTY_BRACKETS.sub("", text)
    text = _BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", text))
    return text.strip(" ,;:-")
