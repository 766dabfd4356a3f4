"""Read and validate the cohort manifest, the CSV a research coordinator submits.

Each data row becomes one :class:`Selection`, or :func:`read_manifest` raises a
:class:`~exporter.errors.ManifestError` naming the file, row and column: nothing
is dropped without a word. Error messages never quote a value from the file
(identifiers and dates may be patient data); they name the row and column.

Row numbers are file lines: the header is row 1 and the first data line row 2,
as a spreadsheet shows them. A record whose quoted cell spans several lines is
numbered by the line it starts on.
"""

from __future__ import annotations

import csv
import datetime
import difflib
import hashlib
import io
import logging
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from exporter.errors import ManifestError

logger = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "PatientID",
    "AccessionNumber",
    "StudyInstanceUID",
    "StudyDateFrom",
    "StudyDateTo",
    "Modality",
    "SubjectID",
)
"""The accepted column headers, DICOM keywords matched without regard to case."""

KEY_COLUMNS: tuple[str, ...] = ("StudyInstanceUID", "AccessionNumber", "PatientID")
"""A row must fill at least one of these to select anything."""

_COLUMN_BY_LOWER = {column.lower(): column for column in COLUMNS}
_ACCEPTED = ", ".join(COLUMNS)
_KEYS = "StudyInstanceUID, AccessionNumber or PatientID"

_ISO_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_DA_DATE = re.compile(r"([0-9]{4})([0-9]{2})([0-9]{2})")
_MODALITY = re.compile(r"[A-Z0-9]{1,16}")
_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_UID_MAX = 64
_LO_MAX = 64
# A spreadsheet shows a long number such as an MRN as 1.23457E+11 and saves it so.
_SCIENTIFIC = re.compile(r"[0-9](\.[0-9]+)?[eE]\+?[0-9]+")
# In a C-FIND query '*' and '?' are wildcards and '\' separates a list of values
# (PS3.4 C.2.2.2, PS3.5 6.4); a key holding one could select other patients.
_QUERY_SPECIAL = frozenset("*?\\")


@dataclass(frozen=True)
class Selection:
    """One manifest row: which studies to export.

    The source matches the keys (``study_instance_uid``, ``accession_number``,
    ``patient_id``); the date range and modality then narrow whatever the keys
    matched, see :meth:`matches_study`.

    Attributes
    ----------
    row
        The file line the row starts on; the header is row 1.
    patient_id, accession_number, study_instance_uid
        The keys, exactly as written apart from surrounding whitespace.
        At least one is set.
    date_from, date_to
        Inclusive study date bounds; either may be open.
    modality
        Upper-case modality code; a study matches if any series has it.
    subject_id
        The research label that replaces ``patient_id`` in the export.
    """

    row: int
    patient_id: str | None
    accession_number: str | None
    study_instance_uid: str | None
    date_from: datetime.date | None
    date_to: datetime.date | None
    modality: str | None
    subject_id: str | None

    def matches_study(self, study_date: str | None, modalities: Iterable[str]) -> bool:
        """Say whether a study the keys matched passes this row's narrowing.

        Parameters
        ----------
        study_date
            The study's StudyDate, a DICOM DA value ``YYYYMMDD`` (PS3.5 6.2).
            ``None``, an empty string or a malformed value count as no date.
        modalities
            The Modality of each series in the study (or ModalitiesInStudy).
            A single string is read as one value or a backslash-separated list.

        Returns
        -------
        bool
            ``True`` if the study falls inside the date range (bounds included)
            and, when a modality is given, has at least one series of it.
            When a date bound is given and the study has no valid date, the
            study does not match: an undated study cannot be shown to lie inside
            the range, so it is left out rather than exported by default.
        """
        if self.date_from is not None or self.date_to is not None:
            date = _parse_da(study_date)
            if date is None:
                return False
            if self.date_from is not None and date < self.date_from:
                return False
            if self.date_to is not None and date > self.date_to:
                return False

        if self.modality is None:
            return True
        if isinstance(modalities, str):
            modalities = modalities.split("\\")
        return any(value.strip().upper() == self.modality for value in modalities)


@dataclass(frozen=True)
class Manifest:
    """A validated cohort manifest.

    Attributes
    ----------
    path
        The file as it was named to :func:`read_manifest`.
    selections
        One selection per data row, in file order.
    digest
        SHA-256 of the file bytes, hex; recorded in the job's provenance.
    subject_ids
        PatientID -> SubjectID for every patient a row gave a SubjectID.
    """

    path: str
    selections: tuple[Selection, ...]
    digest: str
    subject_ids: Mapping[str, str] = field(hash=False)


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a cohort manifest and check every row.

    The file is CSV in UTF-8, with or without a byte order mark. Its first row
    names the columns (see :data:`COLUMNS`); each further row selects studies
    by StudyInstanceUID, AccessionNumber or PatientID, optionally narrowed by
    StudyDateFrom, StudyDateTo (``YYYY-MM-DD`` or ``YYYYMMDD``) and Modality.
    Blank lines are skipped and whitespace around cells is removed.

    Parameters
    ----------
    path
        The manifest file.

    Returns
    -------
    Manifest
        The selections, the file digest and the PatientID -> SubjectID map.

    Raises
    ------
    ManifestError
        If the file cannot be read, is not UTF-8 or CSV, or any row breaks a
        rule. The message names the row and column, never the value.
    """
    # Read once, so that the digest covers exactly the bytes parsed.
    name = os.fspath(path)
    data = _read_bytes(name)
    records = _records(name, _decode(name, data))

    # Header: the first non-blank record.
    first = next(records, None)
    if first is None:
        raise ManifestError(
            name,
            None,
            None,
            "the file is empty; its first row must name the columns, for example "
            "PatientID,StudyDateFrom,StudyDateTo",
        )
    header_row, header_cells = first
    columns = _parse_header(name, header_row, header_cells)

    # Rows: each becomes a selection or raises.
    selections = tuple(
        _selection(name, row, _row_values(name, row, columns, cells))
        for row, cells in records
    )
    if not selections:
        raise ManifestError(
            name,
            None,
            None,
            "the file has a header but no data rows; add one row per patient, "
            "accession or study to export",
        )

    # Across rows: one SubjectID per patient and one patient per SubjectID.
    subject_ids = _subject_ids(name, selections)

    logger.info(
        "read cohort manifest %s: %d selections, %d subject ids",
        name,
        len(selections),
        len(subject_ids),
    )
    return Manifest(
        path=name,
        selections=selections,
        digest=hashlib.sha256(data).hexdigest(),
        subject_ids=MappingProxyType(subject_ids),
    )


def _read_bytes(name: str) -> bytes:
    """Return the file's bytes, turning OS errors into ManifestError."""
    try:
        with open(name, "rb") as file:
            return file.read()
    except FileNotFoundError as exc:
        raise ManifestError(
            name, None, None, "no such file; check the path and the current folder"
        ) from exc
    except IsADirectoryError as exc:
        raise ManifestError(
            name, None, None, "this is a folder; give the manifest CSV file"
        ) from exc
    except OSError as exc:
        raise ManifestError(
            name, None, None, f"cannot be read ({exc.strerror}); check its permissions"
        ) from exc


def _decode(name: str, data: bytes) -> str:
    """Decode UTF-8, dropping a leading byte order mark."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(
            name,
            None,
            None,
            f"the file is not UTF-8 (first bad byte on line {line}); save it as "
            "UTF-8, in a spreadsheet program as 'CSV UTF-8'",
        ) from exc


def _records(name: str, text: str) -> Iterator[tuple[int, list[str]]]:
    """Yield (start line, stripped cells) for each record that is not blank."""
    # csv.reader, not pandas: line_num gives the file line of every record, which
    # stays right when a quoted cell spans lines, and every cell stays a string
    # (an MRN "00123" keeps its zeros). strict=True fails on a stray quote
    # instead of swallowing the rest of the file into one cell; skipinitialspace
    # reads a hand-typed 'a, "b"' as quoted.
    reader = csv.reader(
        io.StringIO(text, newline=""), strict=True, skipinitialspace=True
    )
    previous = 0
    try:
        for cells in reader:
            row = previous + 1
            previous = reader.line_num
            stripped = [cell.strip() for cell in cells]
            if any(stripped):
                yield row, stripped
    except csv.Error as exc:
        raise ManifestError(
            name,
            previous + 1,
            None,
            f"not valid CSV ({exc}); a quoted cell must end with a closing double "
            "quote and a quote inside it is written twice",
        ) from exc


def _parse_header(name: str, row: int, cells: list[str]) -> list[str | None]:
    """Map each header cell to its column keyword; None for an unnamed cell."""
    columns = [_COLUMN_BY_LOWER.get(cell.lower()) for cell in cells]

    # A first row with no known column is most likely data: do not quote it.
    if not any(columns):
        raise ManifestError(
            name,
            row,
            None,
            f"the first row is not a header: none of its cells is a column name; "
            f"add a header row using {_ACCEPTED}",
        )

    seen: dict[str, int] = {}
    for position, (cell, column) in enumerate(zip(cells, columns, strict=True), 1):
        if column is None and cell:
            raise ManifestError(
                name,
                row,
                cell,
                f"unknown column{_did_you_mean(cell)}; the accepted columns are "
                f"{_ACCEPTED}",
            )
        if column is not None and column in seen:
            raise ManifestError(
                name,
                row,
                column,
                f"the column appears twice (cells {seen[column]} and {position}); "
                "keep one",
            )
        if column is not None:
            seen[column] = position

    if not any(key in seen for key in KEY_COLUMNS):
        raise ManifestError(
            name, row, None, f"no key column; add at least one of {_KEYS}"
        )
    return columns


def _did_you_mean(cell: str) -> str:
    """Return a ' (did you mean ...?)' hint for a misspelt column, or ''."""
    scored = [
        (difflib.SequenceMatcher(None, cell.lower(), lower).ratio(), column)
        for lower, column in _COLUMN_BY_LOWER.items()
    ]
    scored = sorted((item for item in scored if item[0] >= 0.6), reverse=True)
    if not scored:
        return ""
    # Offer a runner-up only when it is nearly as close as the best guess.
    close = [column for score, column in scored[:2] if score >= scored[0][0] - 0.1]
    return " (did you mean " + " or ".join(f"'{column}'" for column in close) + "?)"


def _row_values(
    name: str, row: int, columns: list[str | None], cells: list[str]
) -> dict[str, str]:
    """Return the row's non-empty cells by column keyword."""
    if len(cells) > len(columns):
        raise ManifestError(
            name,
            row,
            None,
            f"the row has {len(cells)} cells but the header names {len(columns)}; "
            "remove the extra cells, or put a value that contains a comma in "
            "double quotes",
        )

    values: dict[str, str] = {}
    # A short row is fine: its missing trailing cells are empty.
    for position, (column, cell) in enumerate(zip(columns, cells, strict=False), 1):
        if not cell:
            continue
        # Fail closed: a value under an unnamed column would otherwise be lost.
        if column is None:
            raise ManifestError(
                name,
                row,
                None,
                f"cell {position} has a value but its column has no header; name "
                "the column in the header row or clear the cell",
            )
        values[column] = cell
    return values


def _selection(name: str, row: int, values: dict[str, str]) -> Selection:
    """Validate one data row and build its selection."""
    if not any(key in values for key in KEY_COLUMNS):
        raise ManifestError(name, row, None, f"the row selects nothing: give {_KEYS}")

    patient_id = _identifier(name, row, "PatientID", values.get("PatientID"))
    accession = _identifier(name, row, "AccessionNumber", values.get("AccessionNumber"))
    uid = _uid(name, row, values.get("StudyInstanceUID"))
    date_from = _date(name, row, "StudyDateFrom", values.get("StudyDateFrom"))
    date_to = _date(name, row, "StudyDateTo", values.get("StudyDateTo"))
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ManifestError(
            name,
            row,
            "StudyDateFrom",
            "StudyDateFrom is later than StudyDateTo, so the range holds no day; "
            "swap the two dates",
        )

    return Selection(
        row=row,
        patient_id=patient_id,
        accession_number=accession,
        study_instance_uid=uid,
        date_from=date_from,
        date_to=date_to,
        modality=_modality(name, row, values.get("Modality")),
        subject_id=_subject_id(name, row, values.get("SubjectID"), patient_id),
    )


def _identifier(name: str, row: int, column: str, value: str | None) -> str | None:
    """Check a PatientID or AccessionNumber that a query will use as a key."""
    if value is None:
        return None
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ManifestError(
            name,
            row,
            column,
            "the value contains a line break or another control character; "
            "retype it on one line",
        )
    if _QUERY_SPECIAL.intersection(value):
        raise ManifestError(
            name,
            row,
            column,
            "the value contains '*', '?' or '\\', which a DICOM query reads as a "
            "wildcard or a list and could select other patients' studies; give "
            "one exact value per row",
        )
    if _SCIENTIFIC.fullmatch(value):
        raise ManifestError(
            name,
            row,
            column,
            "the value looks like a number a spreadsheet wrote in scientific "
            "notation; format the column as Text, retype the values and save again",
        )
    return value


def _uid(name: str, row: int, value: str | None) -> str | None:
    """Check a StudyInstanceUID against the UID rules of PS3.5 9.1."""
    if value is None:
        return None
    if len(value) > _UID_MAX:
        raise ManifestError(
            name,
            row,
            "StudyInstanceUID",
            f"the value is {len(value)} characters long; a DICOM UID has at most "
            f"{_UID_MAX} (PS3.5 9.1)",
        )
    if not _UID.fullmatch(value):
        raise ManifestError(
            name,
            row,
            "StudyInstanceUID",
            "the value is not a DICOM UID: expected groups of digits separated by "
            "single dots, with no letters or spaces (PS3.5 9.1)",
        )
    return value


def _date(name: str, row: int, column: str, value: str | None) -> datetime.date | None:
    """Parse a StudyDateFrom or StudyDateTo cell."""
    if value is None:
        return None
    for pattern in (_ISO_DATE, _DA_DATE):
        date = _match_date(pattern, value)
        if date is not None:
            return date
    raise ManifestError(
        name,
        row,
        column,
        "the value is not a valid date; write it as YYYY-MM-DD or YYYYMMDD, "
        "for example 2024-03-31 or 20240331",
    )


def _modality(name: str, row: int, value: str | None) -> str | None:
    """Upper-case and check a Modality cell (a DICOM CS code, PS3.3 C.7.3.1.1.1)."""
    if value is None:
        return None
    modality = value.upper()
    if not _MODALITY.fullmatch(modality):
        raise ManifestError(
            name,
            row,
            "Modality",
            "the value is not a modality code: use 1 to 16 letters or digits, "
            "such as CT, MR or US",
        )
    return modality


def _subject_id(
    name: str, row: int, value: str | None, patient_id: str | None
) -> str | None:
    """Check a SubjectID: it becomes the exported PatientID, a DICOM LO value."""
    if value is None:
        return None
    if patient_id is None:
        raise ManifestError(
            name,
            row,
            "SubjectID",
            "a SubjectID needs a PatientID on the same row: it is the research "
            "label for that patient",
        )
    if len(value) > _LO_MAX:
        raise ManifestError(
            name,
            row,
            "SubjectID",
            f"the value is {len(value)} characters long; at most {_LO_MAX} fit "
            "in the exported PatientID",
        )
    if "\\" in value or not all(" " <= char <= "~" for char in value):
        raise ManifestError(
            name,
            row,
            "SubjectID",
            "the value may hold only printable ASCII characters and no backslash; "
            "use letters, digits, '-' or '_'",
        )
    return value


def _subject_ids(name: str, selections: tuple[Selection, ...]) -> dict[str, str]:
    """Build PatientID -> SubjectID, refusing a label that is not one-to-one."""
    patient_rows: dict[str, int] = {}
    subject_by_patient: dict[str, tuple[str, int]] = {}
    patient_by_subject: dict[str, tuple[str, int]] = {}
    for selection in selections:
        if selection.patient_id is not None:
            patient_rows.setdefault(selection.patient_id, selection.row)
        if selection.subject_id is None or selection.patient_id is None:
            continue
        patient, subject, row = (
            selection.patient_id,
            selection.subject_id,
            selection.row,
        )

        earlier = subject_by_patient.setdefault(patient, (subject, row))
        if earlier[0] != subject:
            raise ManifestError(
                name,
                row,
                "SubjectID",
                f"rows {earlier[1]} and {row} give the same PatientID different "
                "SubjectIDs; one patient takes one SubjectID, make the rows agree",
            )
        earlier = patient_by_subject.setdefault(subject, (patient, row))
        if earlier[0] != patient:
            raise ManifestError(
                name,
                row,
                "SubjectID",
                f"rows {earlier[1]} and {row} give the same SubjectID to different "
                "PatientIDs; each SubjectID must name one patient",
            )

    # Fail closed: a label equal to a patient id would put that id in the export.
    for subject, (_patient, row) in patient_by_subject.items():
        if subject in patient_rows:
            raise ManifestError(
                name,
                row,
                "SubjectID",
                f"the SubjectID equals the PatientID on row {patient_rows[subject]}; "
                "a research label must not be a patient identifier, choose another",
            )
    return {patient: subject for patient, (subject, _row) in subject_by_patient.items()}


def _match_date(pattern: re.Pattern[str], value: str) -> datetime.date | None:
    """Return the calendar date ``value`` spells in ``pattern``, or None."""
    match = pattern.fullmatch(value)
    if match is None:
        return None
    try:
        return datetime.date(*(int(group) for group in match.groups()))
    except ValueError:
        return None


def _parse_da(value: str | None) -> datetime.date | None:
    """Parse a DICOM DA value ``YYYYMMDD``; None if absent or malformed."""
    if not value:
        return None
    return _match_date(_DA_DATE, value.strip())
