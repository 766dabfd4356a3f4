"""The small interface every source kind implements.

A source answers three questions for the engine: which studies does a manifest
row select (:meth:`Source.find`), which instances make up a study
(:meth:`Source.instances`), and which items could not be used and why
(:meth:`Source.skipped`), and how to get a study's files
(:meth:`Source.retrieve`). Sources that keep an index (a folder) build it with
:meth:`Source.scan`; the others return an empty report.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from exporter.cohort import Selection


@dataclass(frozen=True)
class StudyRef:
    """A study a selection row matched.

    Attributes
    ----------
    study_uid
        The original StudyInstanceUID.
    patient_id
        The study's PatientID; ``""`` when its instances carry none.
    instances
        How many distinct instances the source holds for the study.
    """

    study_uid: str
    patient_id: str
    instances: int


@dataclass(frozen=True)
class InstanceRef:
    """One instance of a study, as the source can fetch it again.

    Attributes
    ----------
    item
        The source's handle on the instance; for a folder, the absolute path.
    sop_uid
        The SOPInstanceUID, when the source knows it before fetching.
    """

    item: str
    sop_uid: str | None


@dataclass(frozen=True)
class ScanReport:
    """Counts from one :meth:`Source.scan`; never names a file or identifier.

    Attributes
    ----------
    files_seen
        Files found; ``files_indexed + files_reused``.
    files_indexed
        Files whose header was read in this scan (new, changed or unreadable
        before).
    files_reused
        Unchanged files whose earlier index row was kept without reading them.
    skipped
        Skip reason -> number of files under the source that carry it.
    """

    files_seen: int
    files_indexed: int
    files_reused: int
    skipped: Mapping[str, int]


# The reason every instance a source could not deliver fails with; a study
# with such failures is retried on the next run.
NOT_RETRIEVED = "not retrieved from the source"


@dataclass(frozen=True)
class Retrieved:
    """A study made ready to read: its files, and what did not arrive.

    Attributes
    ----------
    items
        Paths of the study's files, in the order they are exported.
    missing
        (item, reason) for each instance expected and not received; the
        reason starts with :data:`NOT_RETRIEVED` and never quotes a value.
    """

    items: tuple[str, ...]
    missing: tuple[tuple[str, str], ...] = ()


class Source(Protocol):
    """Where studies live: a folder, a DIMSE peer or a DICOMweb service."""

    name: str
    """A description safe to log: it holds no path, host or identifier."""

    def scan(self, progress: Callable[[int], None] | None = None) -> ScanReport:
        """Bring the source's index up to date; ``progress`` gets files seen."""
        ...

    def find(self, selection: Selection) -> list[StudyRef]:
        """Return the studies one manifest row selects, sorted by study UID."""
        ...

    def instances(self, study_uid: str) -> list[InstanceRef]:
        """Return a study's instances in a deterministic order."""
        ...

    def skipped(self) -> list[tuple[str, str]]:
        """Return (item, reason) for every item the source will not export."""
        ...

    def retrieve(self, study_uid: str, spool: Path) -> Retrieved:
        """Make a study's files readable, fetching them into ``spool`` if needed.

        A folder's files are read where they are; a PACS's are stored in
        ``spool``, which the engine removes once the study is exported. Never
        raises for an instance that could not be had: it is listed as missing.
        """
        ...


def upper_values(value: Any) -> list[str]:
    """A query answer's value (one string, or several) as upper-case strings."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value.upper()]
    return [str(v).upper() for v in value]


# Characters a query value carries as written. Anything else may be read as a
# wildcard (``*``, ``?``, PS3.4 C.2.2.2.4), a value separator (``\\``), or be
# left undecoded by a DICOMweb server (``^``, ``%``, space, ...).
_PLAIN = frozenset(string.ascii_letters + string.digits + ".-_")


def query_key(selection: Selection) -> tuple[str, str]:
    """The attribute a manifest row selects by, and its value."""
    if selection.study_instance_uid:
        return "StudyInstanceUID", selection.study_instance_uid
    if selection.accession_number:
        return "AccessionNumber", selection.accession_number
    if selection.patient_id:
        return "PatientID", selection.patient_id
    raise ValueError(
        f"manifest row {selection.row} has no StudyInstanceUID, AccessionNumber "
        "or PatientID, so it selects nothing"
    )


def query_value(value: str) -> str:
    """What to send a server for a key ``value``, so that it cannot match less.

    A plain value is sent as it is. Otherwise its plain prefix is sent with a
    ``*`` (a wildcard match, which returns at least the studies wanted), or an
    empty value (universal match) when it starts with a special character.
    Either way the answers must then be checked with :func:`same_key`.
    """
    for position, char in enumerate(value):
        if char not in _PLAIN:
            return f"{value[:position]}*" if position else ""
    return value


def same_key(answered: Any, wanted: str) -> bool:
    """Whether a query answer's key equals the manifest's value exactly.

    Servers match wildcards, ignore case or pad values; the answer counts
    only when its value, without DICOM's padding spaces, is the one asked for.
    """
    return str(answered if answered is not None else "").strip() == wanted.strip()
