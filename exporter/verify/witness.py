"""The identifying values of an original instance, noted before it is cleaned.

They are kept in the workspace (the honest broker's side) so that
``exporter verify`` can look for them in the export. Only what identifies a
person, a place or a device is noted; original UIDs are in the linkage table
already.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence

from exporter.engine.rawfile import raw_identity

# keyword -> kind, for the attributes that identify whatever their VR.
KINDS = {
    "PatientID": "patient id",
    "OtherPatientIDs": "patient id",
    "IssuerOfPatientID": "issuer",
    "AccessionNumber": "accession number",
    "StudyID": "study id",
    "AdmissionID": "admission id",
    "RequestedProcedureID": "procedure id",
    "PerformedProcedureStepID": "procedure id",
    "ScheduledProcedureStepID": "procedure id",
    "PlacerOrderNumberImagingServiceRequest": "order number",
    "FillerOrderNumberImagingServiceRequest": "order number",
    "PatientBirthDate": "birth date",
    "StudyDate": "study date",
    "PatientAddress": "address",
    "InstitutionAddress": "institution address",
    "PatientTelephoneNumbers": "phone number",
    "PersonTelephoneNumbers": "phone number",
    "InstitutionName": "institution",
    "InstitutionalDepartmentName": "institution",
    "StationName": "station",
    "DeviceSerialNumber": "device serial",
    "MilitaryRank": "other",
    "MedicalRecordLocator": "patient id",
    "RegionOfResidence": "address",
    "CountryOfResidence": "address",
}


_BY_TAG = {int(tag_for_keyword(k) or 0): kind for k, kind in KINDS.items()}


# Kinds looked for in their own patient's files only (see Witness.patient).
PER_PATIENT = frozenset({"birth date", "study date"})


def retained_kinds(kept_keywords: Iterable[str]) -> frozenset[str]:
    """Kinds the policy keeps on purpose (an option or a KEEP): not findings.

    A kind counts as kept when any attribute noted under it is kept, e.g.
    station and device serial under Retain Device Identity.
    """
    kept = set(kept_keywords)
    return frozenset(kind for keyword, kind in KINDS.items() if keyword in kept)


def witness(ds: Dataset) -> set[tuple[str, str]]:
    """(kind, value) of every identifying value of ``ds``, sequences included.

    Person names (any PN element, at any depth) are kind ``name``.
    """
    found: set[tuple[str, str]] = set()
    for kind, value in _walk(ds):
        value = value.strip()
        if value:
            found.add((kind, value))
    return found


# What the elements of earlier instances held, by tag, VR, encoding, character
# sets and raw bytes: a series repeats its header, so most elements are
# decoded once per worker instead of once per instance. Bounded: it starts
# again when full.
_SEEN: dict[tuple[object, ...], tuple[tuple[str, str], ...]] = {}
_SEEN_LIMIT = 50_000


def _walk(ds: Dataset) -> Iterator[tuple[str, str]]:
    # One pass; raw elements stay raw unless they are noted or are names or
    # sequences, and then only when their bytes were not seen before.
    for raw in ds.elements():
        kind = _BY_TAG.get(raw.tag)
        vr = raw.VR or _dictionary_vr(raw.tag)
        if kind is None and vr not in ("PN", "SQ"):
            continue
        key = raw_identity(ds, raw)
        if key is None:
            yield from _element(ds, raw.tag, kind)
            continue
        noted = _SEEN.get(key)
        if noted is None:
            if len(_SEEN) >= _SEEN_LIMIT:
                _SEEN.clear()
            noted = _SEEN[key] = tuple(_element(ds, raw.tag, kind))
        yield from noted


def _element(ds: Dataset, tag: int, kind: str | None) -> Iterator[tuple[str, str]]:
    """What one element (decoded here) and the items under it hold."""
    elem = ds[tag]
    if kind is not None:
        yield from ((kind, v) for v in _strings(elem.value))
    elif elem.VR == "PN":
        yield from (("name", v) for v in _strings(elem.value))
    elif isinstance(elem.value, Sequence):
        for item in elem.value:
            yield from _walk(item)


def _dictionary_vr(tag: int) -> str | None:
    try:
        return str(dictionary_VR(tag))
    except KeyError:
        return None  # private or unknown: read as UN, not a name


def _strings(value: object) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple | MultiValue):
        return [str(v) for v in value if v not in (None, "")]
    return [str(value)]
