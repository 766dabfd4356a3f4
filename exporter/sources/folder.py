"""A folder of DICOM files as a source, indexed in the state database.

:meth:`FolderSource.scan` walks the folder and reads the header of each new or
changed file into the :class:`~exporter.state.models.IndexedFile` table; the
other methods answer from that table alone. A file the exporter cannot use
keeps a row with a skip reason, so every file under the folder is accounted for.
Headers are stepped through by a quick walk that hands pydicom only the values
the index needs; a file the walk does not take is read by pydicom itself.

Paths may hold patient names, so this module logs them at DEBUG only; INFO and
above carry counts.
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import struct
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, cast

import pydicom
import pydicom.uid
from pydicom import config as pydicom_config
from pydicom.charset import convert_encodings, default_encoding
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import (
    RawDataElement,
    convert_raw_data_element,
    empty_value_for_VR,
)
from pydicom.dataset import FileDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
)
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32, VR
from sqlalchemy import (
    Select,
    bindparam,
    delete,
    distinct,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlmodel import col

from exporter.cohort import Selection
from exporter.errors import SourceError
from exporter.sources.base import (
    InstanceRef,
    Retrieved,
    ScanReport,
    StudyRef,
    query_key,
)
from exporter.state.models import IndexedFile

logger = logging.getLogger(__name__)

EMPTY = "empty file"
NOT_DICOM = "not DICOM"
TRUNCATED = "truncated or unreadable header"
DICOMDIR = "DICOMDIR"
NO_UIDS = "no StudyInstanceUID or SOPInstanceUID"
DUPLICATE = "duplicate SOPInstanceUID"
UNREADABLE = "unreadable: "
"""Prefix of the reason for a file the OS refused; the OS message follows."""

# Media Storage Directory Storage, the SOP class of a DICOMDIR (PS3.10 8.6).
_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"

# The elements selection and planning need; pydicom adds SpecificCharacterSet.
_KEYWORDS = {
    "patient_id": "PatientID",
    "study_uid": "StudyInstanceUID",
    "series_uid": "SeriesInstanceUID",
    "sop_uid": "SOPInstanceUID",
    "sop_class_uid": "SOPClassUID",
    "accession_number": "AccessionNumber",
    "study_date": "StudyDate",
    "modality": "Modality",
}
_TAGS: list[BaseTag | int] = [Tag(keyword) for keyword in _KEYWORDS.values()]

# The 128-byte preamble and 'DICM' prefix (PS3.10 7.1).
_PREFIX = 132

# Rows written per transaction, and index rows read per query, during a scan.
_BATCH = 500
_PAGE = 2000

Row = dict[str, Any]


class FolderSource:
    """The DICOM files under one folder, found through the state database.

    Parameters
    ----------
    root
        The folder; it is resolved to an absolute path, and every file under
        it (symlinked files included, symlinked folders not) is indexed.
    engine
        The state database that holds the index.

    Raises
    ------
    SourceError
        If ``root`` is not an existing folder that can be listed.
    """

    name = "folder"

    def __init__(self, root: Path, engine: Engine) -> None:
        if not root.is_dir():
            raise SourceError(
                f"source folder {str(root)!r} does not exist or is not a folder; "
                "check the path"
            )
        if not os.access(root, os.R_OK | os.X_OK):
            raise SourceError(
                f"source folder {str(root)!r} cannot be read (permission denied); "
                "check its permissions"
            )
        self.root = root.resolve()
        self._root = str(self.root)
        self._engine = engine

    def scan(self, progress: Callable[[int], None] | None = None) -> ScanReport:
        """Bring the index of the folder up to date.

        A file whose size and modification time equal its index row is not
        read again; every other file has its header read (pixel data never).
        Rows of files that are gone are deleted. Work is committed every few
        hundred files, so an interrupted scan keeps most of what it did.

        Parameters
        ----------
        progress
            Called after each file with the number of files seen so far.

        Returns
        -------
        ScanReport
            The counts; ``skipped`` covers every file now under the folder.

        Raises
        ------
        SourceError
            If the folder itself can no longer be listed, or the database
            sorts paths in another order than Python does.
        """
        try:
            with os.scandir(self._root):
                pass
        except OSError as exc:
            raise SourceError(
                f"source folder {self._root!r} cannot be listed ({exc.strerror}); "
                "check that it still exists and can be read"
            ) from exc

        seen = indexed = reused = removed = 0
        writer = _Writer(self._engine)
        known = self._known_rows()
        row = next(known, None)

        # Walk and the index are both in path order: merge them.
        for entry in _walk(self._root):
            seen += 1
            while row is not None and row.path < entry.path:
                writer.delete(row.path)
                removed += 1
                row = next(known, None)

            if row is not None and row.path == entry.path:
                if _unchanged(row, entry):
                    reused += 1
                else:
                    writer.put(self._index(entry))
                    indexed += 1
                row = next(known, None)
            else:
                writer.put(self._index(entry))
                indexed += 1

            if progress is not None:
                progress(seen)

        # Rows past the last file belong to files that are gone.
        while row is not None:
            writer.delete(row.path)
            removed += 1
            row = next(known, None)
        writer.flush()

        self._mark_duplicates()
        skipped = self._skip_counts()
        logger.info(
            "scanned folder: %d files seen, %d read, %d unchanged, %d gone, "
            "%d skipped (%d duplicates)",
            seen,
            indexed,
            reused,
            removed,
            sum(skipped.values()),
            skipped.get(DUPLICATE, 0),
        )
        return ScanReport(
            files_seen=seen,
            files_indexed=indexed,
            files_reused=reused,
            skipped=skipped,
        )

    def find(self, selection: Selection) -> list[StudyRef]:
        """Return the indexed studies one manifest row selects.

        The row's key picks studies: StudyInstanceUID if given, else
        AccessionNumber, else PatientID, matched exactly. The row's date range
        and modality then narrow them (:meth:`Selection.matches_study`), using
        the study's most common StudyDate and the Modality of all its files.
        Skipped files never match and are never counted.

        Parameters
        ----------
        selection
            One manifest row.

        Returns
        -------
        list of StudyRef
            Sorted by study UID; empty when nothing matches.

        Raises
        ------
        ValueError
            If the selection has none of the three keys.
        """
        keyword, value = query_key(selection)
        column = _COLUMNS[keyword]
        combos, counts = _find_queries(column)
        values = {"root": self._root, "key": value}
        with self._engine.connect() as connection:
            combo_rows = connection.execute(combos, values).all()
            instances = {uid: n for uid, n in connection.execute(counts, values)}

        # Narrow by date and modality.
        found = []
        for study_uid, study in sorted(_gather(combo_rows).items()):
            if len(study.patients) > 1:
                logger.debug(
                    "row %d: a study's files disagree on PatientID (%d values); "
                    "using the most common",
                    selection.row,
                    len(study.patients),
                )
            study_date = _most_common(study.dates)
            if not selection.matches_study(study_date, sorted(study.modalities)):
                continue
            found.append(
                StudyRef(
                    study_uid=study_uid,
                    patient_id=_most_common(study.patients) or "",
                    instances=instances[study_uid],
                )
            )
        return found

    def instances(self, study_uid: str) -> list[InstanceRef]:
        """Return the files of one study, ordered by path.

        When several files hold the same SOPInstanceUID only the first by
        path is returned; :meth:`scan` lists the others in :meth:`skipped`.

        Parameters
        ----------
        study_uid
            A StudyInstanceUID that :meth:`find` returned.

        Returns
        -------
        list of InstanceRef
            ``item`` is the absolute file path.
        """
        values = {"root": self._root, "study": study_uid}
        with self._engine.connect() as connection:
            rows = connection.execute(_INSTANCES, values).all()

        # The scan marks duplicates; this also holds after an interrupted scan.
        refs = []
        sop_uids: set[str | None] = set()
        for path, sop_uid in rows:
            if sop_uid in sop_uids:
                logger.debug("%s: duplicate SOPInstanceUID, left out", path)
                continue
            sop_uids.add(sop_uid)
            refs.append(InstanceRef(item=path, sop_uid=sop_uid))
        return refs

    def retrieve(self, study_uid: str, spool: Path) -> Retrieved:
        """The study's files where they are (nothing is copied to ``spool``)."""
        return Retrieved(tuple(ref.item for ref in self.instances(study_uid)))

    def skipped(self) -> list[tuple[str, str]]:
        """Return (path, reason) of every skipped file under the folder, by path."""
        query = (
            select(col(IndexedFile.path), col(IndexedFile.skip_reason))
            .where(
                col(IndexedFile.root) == self._root,
                col(IndexedFile.skip_reason).is_not(None),
            )
            .order_by(col(IndexedFile.path))
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return [(path, reason or "") for path, reason in rows]

    def _known_rows(self) -> Iterator[_Known]:
        """Yield this folder's index rows in path order, a page at a time."""
        # Paging by key, not one open cursor: the scan writes between pages,
        # and every path it writes sorts before the next page. The folder's
        # paths share its prefix, so they are one range of the primary key.
        last = os.path.join(self._root, "")
        end = last[:-1] + chr(ord(os.sep) + 1)
        while True:
            query = (
                select(
                    col(IndexedFile.path),
                    col(IndexedFile.size),
                    col(IndexedFile.mtime_ns),
                    col(IndexedFile.skip_reason),
                )
                .where(
                    col(IndexedFile.path) > last,
                    col(IndexedFile.path) < end,
                    col(IndexedFile.root).concat("") == self._root,  # see _IN_FOLDER
                )
                .order_by(col(IndexedFile.path))
                .limit(_PAGE)
            )
            with self._engine.connect() as connection:
                page = [_Known(*row) for row in connection.execute(query)]

            # The merge in scan() compares paths as Python does, by code point,
            # like SQLite's BINARY collation; a locale collation would make it
            # drop rows of files that exist.
            for row in page:
                if row.path <= last:
                    raise SourceError(
                        "the state database sorts file paths by another rule than "
                        "code point order; use SQLite or a binary ('C') collation"
                    )
                last = row.path
                yield row
            if len(page) < _PAGE:
                return

    def _index(self, entry: _Entry) -> Row:
        """Build the index row of one file, reading its header if it can."""
        row: Row = dict.fromkeys(_KEYWORDS)
        row.update(
            path=entry.path,
            root=self._root,
            size=entry.size,
            mtime_ns=entry.mtime_ns,
            transfer_syntax_uid=None,
        )
        if entry.problem is not None:
            row["skip_reason"] = entry.problem
        else:
            row.update(_read_header(entry.path, entry.size))
        if row["skip_reason"] is not None:
            logger.debug("%s: skipped, %s", entry.path, row["skip_reason"])
        return row

    def _mark_duplicates(self) -> None:
        """Mark all but the first file (by path) of each SOPInstanceUID."""
        # The whole folder is read here, so the root index is the right one.
        # Only rows whose mark is wrong are written: a scan that changed
        # nothing writes nothing.
        reason = col(IndexedFile.skip_reason)
        candidate = (col(IndexedFile.root) == self._root) & or_(
            reason.is_(None), reason == DUPLICATE
        )
        # SOPInstanceUIDs with several files, or with a mark left over.
        repeated = (
            select(col(IndexedFile.sop_uid))
            .where(candidate)
            .group_by(col(IndexedFile.sop_uid))
            .having(or_(func.count() > 1, func.max(reason).is_not(None)))
        )
        rows = (
            select(col(IndexedFile.path), col(IndexedFile.sop_uid), reason)
            .where(candidate, col(IndexedFile.sop_uid).in_(repeated.scalar_subquery()))
            .order_by(col(IndexedFile.sop_uid), col(IndexedFile.path))
        )
        with self._engine.begin() as connection:
            marks: list[str] = []
            clears: list[str] = []
            previous = None
            for path, sop_uid, marked in connection.execute(rows):
                if (sop_uid == previous) != (marked == DUPLICATE):
                    (marks if sop_uid == previous else clears).append(path)
                previous = sop_uid
            for paths, value in ((marks, DUPLICATE), (clears, None)):
                for chunk in _chunks(paths, _BATCH):
                    connection.execute(
                        update(IndexedFile)
                        .where(col(IndexedFile.path).in_(chunk))
                        .values(skip_reason=value)
                    )

    def _skip_counts(self) -> dict[str, int]:
        """Count this folder's skipped files by reason."""
        reason = col(IndexedFile.skip_reason)
        query = (
            select(reason, func.count())
            .where(col(IndexedFile.root) == self._root, reason.is_not(None))
            .group_by(reason)
            .order_by(reason)
        )
        with self._engine.connect() as connection:
            rows = connection.execute(query).all()
        return {reason or "": n for reason, n in rows}


@dataclass
class _Study:
    """What the files of one study say, weighted by their number."""

    patients: Counter[str] = field(default_factory=Counter)
    dates: Counter[str] = field(default_factory=Counter)
    modalities: set[str] = field(default_factory=set)


def _gather(rows: Iterable[Any]) -> dict[str, _Study]:
    """Fold (study, patient, date, modality, files) rows into one entry per study."""
    studies: dict[str, _Study] = {}
    for study_uid, patient_id, study_date, modality, files in rows:
        study = studies.setdefault(study_uid, _Study())
        if patient_id is not None:
            study.patients[patient_id] += files
        if study_date is not None:
            study.dates[study_date] += files
        if modality is not None:
            study.modalities.add(modality)
    return studies


class _Known(NamedTuple):
    """What the index holds of a file, enough to tell whether it changed."""

    path: str
    size: int
    mtime_ns: int
    skip_reason: str | None


@dataclass(frozen=True)
class _Entry:
    """A file found by the walk; ``problem`` is a skip reason known before reading."""

    path: str
    size: int
    mtime_ns: int
    problem: str | None = None


class _Writer:
    """Collects index changes and commits them in batches."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._gone: list[str] = []
        self._rows: list[Row] = []

    def delete(self, path: str) -> None:
        """Drop the row of a file that is gone."""
        self._gone.append(path)
        self._flush_if_full()

    def put(self, row: Row) -> None:
        """Insert or replace the row of a file."""
        self._rows.append(row)
        self._flush_if_full()

    def flush(self) -> None:
        """Commit what was collected."""
        # Delete by path first: that replaces changed rows, and a row another
        # (nested) folder source indexed under the same path.
        paths = self._gone + [row["path"] for row in self._rows]
        if not paths:
            return
        with self._engine.begin() as connection:
            connection.execute(
                delete(IndexedFile).where(col(IndexedFile.path).in_(paths))
            )
            if self._rows:
                connection.execute(self._upsert(), self._rows)
        self._gone = []
        self._rows = []

    def _upsert(self) -> Any:
        """INSERT that overwrites a row with the same path.

        Two runs of one job (or two commands on one workspace) may index the
        same folder at once: the second's rows replace the first's, which hold
        the same values, instead of failing on the path's uniqueness.
        """
        dialect = postgresql if self._engine.dialect.name == "postgresql" else sqlite
        statement = dialect.insert(IndexedFile)
        columns = [c.name for c in IndexedFile.__table__.columns if c.name != "path"]  # type: ignore[attr-defined]
        return statement.on_conflict_do_update(
            index_elements=["path"],
            set_={name: statement.excluded[name] for name in columns},
        )

    def _flush_if_full(self) -> None:
        """Commit once a batch is full."""
        if len(self._gone) + len(self._rows) >= _BATCH:
            self.flush()


class _Reader:
    """A file for pydicom to parse that notes when it wants bytes past the end."""

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self._size = size
        # pydicom asks for the position once per element; a buffered file
        # answers with a system call each time, so keep it here.
        self._position = file.tell()
        self.overran = False

    def read(self, size: int = -1) -> bytes:
        """Read like the file does, noting a read cut short by the end of file."""
        start = self._position
        data = self._file.read(size)
        self._position += len(data)
        # pydicom reads the preamble and prefix whole even from a short file
        # that has neither, so a short read there says nothing.
        if 0 < len(data) < size and start >= _PREFIX:
            self.overran = True
        return data

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Seek like the file does, noting a skip that lands past the end."""
        self._position = self._file.seek(offset, whence)
        if self._position > self._size:
            self.overran = True
        return self._position

    def tell(self) -> int:
        """Return the position in the file."""
        return self._position


def _walk(root: str) -> Iterator[_Entry]:
    """Yield every file under ``root`` in the order SQL sorts their paths."""
    # An explicit stack instead of recursion: depth is the folder's, not ours.
    stack = [iter(_listing(root))]
    while stack:
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
        elif isinstance(item, str):
            stack.append(iter(_listing(item)))
        else:
            yield item


def _listing(directory: str) -> list[_Entry | str]:
    """List one folder: files as entries, sub-folders as paths to descend into."""
    try:
        with os.scandir(directory) as scan:
            found = list(scan)
    except OSError as exc:
        # Keep a row for the folder, so its files are not silently missing.
        logger.debug("%s: cannot list the folder", directory)
        return [_Entry(directory, 0, 0, _unreadable(exc))]

    # Sort a sub-folder as its name plus a separator, which is where its files'
    # paths sort among its siblings; the index merge relies on this order.
    keyed: list[tuple[str, _Entry | str]] = []
    for entry in found:
        name, problem = _storable(entry.name)
        path = os.path.join(directory, name)
        if problem is None and _is_folder(entry):
            keyed.append((name + os.sep, entry.path))
            continue
        item = _file(entry, path, problem)
        if item is not None:
            keyed.append((name, item))
    keyed.sort(key=lambda pair: pair[0])
    return [item for _key, item in keyed]


def _is_folder(entry: os.DirEntry[str]) -> bool:
    """Say whether an entry is a real folder; symlinked folders could loop."""
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def _file(entry: os.DirEntry[str], path: str, problem: str | None) -> _Entry | None:
    """Return the entry of a file to index, or None for what is not a file."""
    if problem is not None:
        return _Entry(path, 0, 0, problem)
    try:
        status = entry.stat()  # follows a symlinked file to its target
    except OSError as exc:
        return _Entry(path, 0, 0, _unreadable(exc))
    if stat.S_ISREG(status.st_mode):
        return _Entry(path, status.st_size, status.st_mtime_ns)

    # A symlinked folder, a pipe, a socket or a device: not a file to read.
    logger.debug("%s: not a regular file, ignored", path)
    return None


def _storable(name: str) -> tuple[str, str | None]:
    """Return a file name as the database can store it, and a problem if altered."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        # os.scandir kept undecodable bytes as surrogates; SQL text cannot
        # hold them, and a row with an altered path must never be opened.
        escaped = name.encode("utf-8", "surrogateescape")
        shown = escaped.decode("utf-8", "backslashreplace")
        return shown, UNREADABLE + "file name is not valid UTF-8"
    return name, None


def _unchanged(row: _Known, entry: _Entry) -> bool:
    """Say whether an index row still describes the file, so need not be reread."""
    # A file the OS refused may be readable now, without a new mtime.
    if entry.problem is not None or (row.skip_reason or "").startswith(UNREADABLE):
        return False
    return row.size == entry.size and row.mtime_ns == entry.mtime_ns


def _read_header(path: str, size: int) -> Row:
    """Read one file's header into index columns, or return its skip reason."""
    if size == 0:
        return {"skip_reason": EMPTY}
    try:
        with open(path, "rb") as file, warnings.catch_warnings():
            # pydicom's warnings about malformed values quote the values.
            warnings.simplefilter("ignore")
            row = _quick_parse(file, size)
            if row is not None:
                return row
            file.seek(0)
            return _parse(file, size)
    except OSError as exc:
        return {"skip_reason": _unreadable(exc)}


def _parse(file: BinaryIO, size: int) -> Row:
    """Parse a DICOM file's header; retry as a bare dataset if it has no 'DICM'."""
    reader = _Reader(file, size)
    try:
        dataset = _dcmread(reader, force=False)
        row = _columns(dataset)
        # Converting a file meta value can fail too (a damaged VR).
        directory = dataset.file_meta.get("MediaStorageSOPClassUID") == _DICOMDIR_CLASS
    except InvalidDicomError:
        return _parse_bare(file, size)
    except OSError:
        raise
    except Exception as exc:
        # Any parse failure skips this one file; the scan goes on.
        logger.debug("header parse failed: %s", type(exc).__name__)
        return {"skip_reason": TRUNCATED}

    if reader.overran:
        return {"skip_reason": TRUNCATED}
    if directory:
        return {"skip_reason": DICOMDIR}
    return row


def _parse_bare(file: BinaryIO, size: int) -> Row:
    """Parse a file without preamble or file meta (PS3.10 7.1) as a dataset."""
    file.seek(0)
    reader = _Reader(file, size)
    try:
        row = _columns(_dcmread(reader, force=True))
    except OSError:
        raise
    except Exception as exc:
        logger.debug("forced header parse failed: %s", type(exc).__name__)
        return {"skip_reason": NOT_DICOM}

    # Forced, pydicom makes a dataset of any bytes; only the UIDs show it is one.
    if row["study_uid"] is None and row["sop_uid"] is None:
        return {"skip_reason": NOT_DICOM}
    if reader.overran:
        return {"skip_reason": TRUNCATED}
    if row["sop_class_uid"] == _DICOMDIR_CLASS:
        return {"skip_reason": DICOMDIR}
    return row


def _dcmread(reader: _Reader, force: bool) -> FileDataset:
    """Read the header elements the index needs, stopping before pixel data."""
    return pydicom.dcmread(
        cast(BinaryIO, reader),
        stop_before_pixels=True,
        force=force,
        specific_tags=_TAGS,
    )


# The quick header walk ---------------------------------------------------------
#
# pydicom takes about a millisecond for a typical header, most of it stepping
# over elements the index does not need, which sets the cost of a first scan.
# The walk below steps over them itself, the way pydicom reads them, and gives
# pydicom only the elements the index needs to convert. It takes well-formed
# little-endian Part 10 files; anything else (big endian, deflate, no file
# meta, a command set, a DICOMDIR, an unknown VR, an undefined length pydicom
# would search through, an item that does not end where it says, anything past
# the end of the file) makes it give up, and pydicom reads the file as before.

_ITEM = 0xFFFEE000
_ITEM_END = 0xFFFEE00D
_SEQUENCE_END = 0xFFFEE0DD
_UNDEFINED = 0xFFFFFFFF
# Where pydicom's stop_before_pixels stops, at the top level only.
_PIXEL_TAGS = frozenset({0x7FE00010, 0x7FE00009, 0x7FE00008})
_VRS = frozenset(vr.value.encode() for vr in VR if len(vr.value) == 2)
_LONG_VRS = frozenset(vr.encode() for vr in EXPLICIT_VR_LENGTH_32)
_WANTED = frozenset(int(tag) for tag in _TAGS) | {0x00080005}  # and the charset
_COLUMN_TAGS = {column: int(Tag(keyword)) for column, keyword in _KEYWORDS.items()}
_SYNTAX_TAG = 0x00020010  # TransferSyntaxUID
_CLASS_TAG = 0x00020002  # MediaStorageSOPClassUID
_NOTHING: frozenset[int] = frozenset()
_CHUNK = 65536
_HEADER = struct.Struct("<HHI")  # group, element, and 4 more bytes
_LONG = struct.Struct("<I")
_GROUP = struct.Struct("<H")


class _GiveUp(Exception):
    """The quick walk met something it leaves to pydicom."""


class _Walk:
    """Steps over the elements of one header as pydicom reads them (PS3.5 7).

    The file is read a chunk at a time; ``found`` collects the top-level
    elements the index needs, as pydicom's raw elements.
    """

    def __init__(self, file: BinaryIO, size: int) -> None:
        self._file = file
        self.size = size
        self._base = 0
        self._data = file.read(min(size, _CHUNK))
        self.found: dict[int, RawDataElement] = {}

    def take(self, offset: int, length: int) -> bytes:
        """Return ``length`` bytes at ``offset``; give up past the end of file."""
        at = self._at(offset, length)
        return self._data[at : at + length]

    def _at(self, offset: int, length: int) -> int:
        """Return where the bytes at ``offset`` sit in the chunk, reading it."""
        at = offset - self._base
        if at >= 0 and at + length <= len(self._data):
            return at
        if offset + length > self.size:
            raise _GiveUp
        self._file.seek(offset)
        self._data = self._file.read(min(max(length, _CHUNK), self.size - offset))
        self._base = offset
        if len(self._data) < length:
            raise _GiveUp  # the file is shorter than when it was listed
        return 0

    def element(
        self, offset: int, implicit: bool
    ) -> tuple[int, bytes | None, int, int]:
        """Read an element's header: tag, VR, value length and value offset."""
        data = self._data
        at = offset - self._base
        if at < 0 or at + 12 > len(data):
            # Near the end of the chunk: read on (8 bytes, or 12 for a long VR).
            at = self._at(offset, min(12, max(8, self.size - offset)))
            data = self._data
        group, number, length = _HEADER.unpack_from(data, at)
        tag = group << 16 | number
        if implicit or tag == _ITEM_END:
            return tag, None, length, offset + 8
        vr = data[at + 4 : at + 6]
        if vr not in _VRS:
            raise _GiveUp  # pydicom would guess the encoding again
        if vr in _LONG_VRS:
            if at + 12 > len(data):
                raise _GiveUp
            (length,) = _LONG.unpack_from(data, at + 8)
            return tag, vr, length, offset + 12
        return tag, vr, length >> 16, offset + 8  # the 2 bytes after the VR

    def dataset(self, offset: int, end: int | None, implicit: bool, top: bool) -> int:
        """Walk a dataset (the top one, or an item); return where reading ends."""
        implicit = self._encoding(offset, implicit, top)
        wanted = _WANTED if top else _NOTHING
        limit = self.size if end is None else end
        while offset < limit:
            # The element's header, as element() reads it, kept inline: this
            # loop runs for every element of every file.
            data = self._data
            at = offset - self._base
            if at < 0 or at + 12 > len(data):
                at = self._at(offset, min(12, max(8, self.size - offset)))
                data = self._data
            group, number, length = _HEADER.unpack_from(data, at)
            tag = group << 16 | number
            value = offset + 8
            vr = None
            if not implicit and tag != _ITEM_END:
                vr = data[at + 4 : at + 6]
                if vr not in _VRS:
                    raise _GiveUp  # pydicom would guess the encoding again
                if vr not in _LONG_VRS:
                    length >>= 16  # the 2 bytes after the VR
                elif at + 12 > len(data):
                    raise _GiveUp
                else:
                    (length,) = _LONG.unpack_from(data, at + 8)
                    value += 4

            if group == 0xFFFE or (top and tag in _PIXEL_TAGS):
                return self._stop(tag, length, offset, value, end, top)
            if length == _UNDEFINED or tag in wanted:
                offset = self._value(tag, vr, length, value, implicit, top)
            else:
                offset = value + length

        # Past the limit: only the end of the file, or of a defined-length
        # item, exactly, is where pydicom stops without trouble.
        if offset != limit or (end is None and not top):
            raise _GiveUp
        return offset

    def sequence(self, offset: int, implicit: bool) -> int:
        """Walk the items of an undefined-length sequence; return its end."""
        while True:
            group, number, length = _HEADER.unpack_from(self._data, self._at(offset, 8))
            tag = group << 16 | number
            if tag == _SEQUENCE_END:
                return offset + 8
            if tag != _ITEM:
                raise _GiveUp
            start = offset + 8
            end = None if length == _UNDEFINED else start + length
            offset = self.dataset(start, end, implicit, top=False)

    def _encoding(self, offset: int, implicit: bool, top: bool) -> bool:
        """Return the VR encoding pydicom reads a dataset starting here with."""
        # pydicom checks the first VR against the encoding it expects; an item
        # may switch to implicit VR (PS3.5 6.2.2), the top dataset may not here.
        if not top and implicit:
            return True
        first = self.take(offset + 4, 2)
        looks_implicit = not (0x40 < first[0] < 0x5B and 0x40 < first[1] < 0x5B)
        if looks_implicit != implicit:
            if top:
                raise _GiveUp
            return True
        return implicit

    def _value(
        self,
        tag: int,
        vr: bytes | None,
        length: int,
        value: int,
        implicit: bool,
        top: bool,
    ) -> int:
        """Keep a value the index needs, or walk a sequence; return what follows."""
        if length != _UNDEFINED:
            self.found[tag] = _raw(self, BaseTag(tag), vr, length, value, implicit)
            return value + length
        if (top and tag in _WANTED) or not self._is_sequence(tag, vr, value):
            raise _GiveUp
        return self.sequence(value, implicit)

    def _stop(
        self, tag: int, length: int, offset: int, value: int, end: int | None, top: bool
    ) -> int:
        """Where a dataset ends at pixel data or an item delimiter, else give up."""
        if top and tag in _PIXEL_TAGS:
            return offset
        # Only an undefined-length item ends with a delimiter; any other item
        # tag here is out of place.
        if tag != _ITEM_END or top or end is not None or length != 0:
            raise _GiveUp
        return value

    def _is_sequence(self, tag: int, vr: bytes | None, value: int) -> bool:
        """Say whether pydicom reads an undefined-length element as a sequence."""
        if vr == b"UN" and pydicom_config.settings.infer_sq_for_un_vr:
            vr = b"SQ"
        if vr is None or (vr == b"UN" and pydicom_config.replace_un_with_known_vr):
            try:
                vr = dictionary_VR(tag).encode()
            except KeyError:
                # A private or unknown tag: pydicom looks for an item tag.
                group, number = struct.unpack("<HH", self.take(value, 4))
                if group << 16 | number == _ITEM:
                    vr = b"SQ"
        return vr == b"SQ"


def _raw(
    walk: _Walk, tag: BaseTag, vr: bytes | None, length: int, value: int, implicit: bool
) -> RawDataElement:
    """Return an element as pydicom's reader does before converting it."""
    name = None if vr is None else vr.decode()
    if length:
        data: bytes | None = walk.take(value, length)
    else:
        data = cast(bytes | None, empty_value_for_VR(name, raw=True))
    return RawDataElement(tag, name, length, data, value, implicit, True)


def _quick_parse(file: BinaryIO, size: int) -> Row | None:
    """Read a well-formed header without pydicom's parser; None to leave it to it."""
    try:
        return _quick_columns(_Walk(file, size))
    except _GiveUp:
        return None
    except Exception as exc:
        # Whatever the walk did not foresee, pydicom decides as before.
        logger.debug("quick header read gave up: %s", type(exc).__name__)
        return None


def _quick_columns(walk: _Walk) -> Row:
    """Walk the file meta and the header; return the index columns."""
    if walk.take(_PREFIX - 4, 4) != b"DICM":
        raise _GiveUp

    # File meta (PS3.10 7.1): explicit VR little endian, group 0002.
    first = walk.take(_PREFIX + 4, 2)
    if not (0x40 < first[0] < 0x5B and 0x40 < first[1] < 0x5B):
        raise _GiveUp
    meta: dict[int, RawDataElement] = {}
    offset = _PREFIX
    while _GROUP.unpack(walk.take(offset, 2))[0] == 2:
        tag, vr, length, value = walk.element(offset, implicit=False)
        if length == _UNDEFINED:
            raise _GiveUp
        meta[tag] = _raw(walk, BaseTag(tag), vr, length, value, implicit=False)
        offset = value + length
    # pydicom reads up to 12 bytes past the meta to find what follows it.
    if not meta or offset + 12 > walk.size:
        raise _GiveUp
    if _GROUP.unpack(walk.take(offset, 2))[0] == 0:
        raise _GiveUp  # a command set
    syntax = _converted(meta.get(_SYNTAX_TAG))
    if (
        syntax is None
        or syntax in (ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)
        or syntax in pydicom.uid.PrivateTransferSyntaxes
        or _converted(meta.get(_CLASS_TAG)) == _DICOMDIR_CLASS
    ):
        raise _GiveUp

    # The dataset, in the encoding pydicom reads it with for this syntax.
    walk.dataset(offset, None, syntax == ImplicitVRLittleEndian, top=True)

    # Values converted as pydicom's Dataset does: text in the dataset's
    # Specific Character Set (PS3.5 6.1), itself read in the default one.
    found = walk.found
    charset = found.get(0x00080005)
    encoding = default_encoding if charset is None else _encodings(*_key_of(charset))
    values = {
        column: _converted(found.get(tag), encoding)
        for column, tag in _COLUMN_TAGS.items()
    }
    return _row(values, syntax)


def _converted(
    raw: RawDataElement | None, encoding: str | tuple[str, ...] = default_encoding
) -> str | None:
    """Return the text of a raw element as pydicom converts it; None if absent."""
    if raw is None:
        return None
    return _text_of(*_key_of(raw), encoding)


def _key_of(raw: RawDataElement) -> tuple[int, str | None, bytes | None, bool, int]:
    """What a raw element's converted value depends on, beyond the encoding."""
    # pydicom's validation mode decides whether a malformed value raises.
    mode = pydicom_config.settings.reading_validation_mode
    return int(raw.tag), raw.VR, raw.value, raw.is_implicit_VR, mode


# Most values repeat from file to file (a series shares all but its SOP
# Instance UID), and pydicom's conversion is a pure function of these: convert
# each distinct one once. Failures are not remembered, so they reach pydicom.
@functools.lru_cache(maxsize=4096)
def _text_of(
    tag: int,
    vr: str | None,
    value: bytes | None,
    implicit: bool,
    mode: int,
    encoding: str | tuple[str, ...],
) -> str | None:
    """Convert one raw value with pydicom and return it as index text."""
    raw = RawDataElement(BaseTag(tag), vr, len(value or b""), value, 0, implicit, True)
    # A character set's encodings come as a list, the default one as a string.
    codecs = list(encoding) if isinstance(encoding, tuple) else encoding
    return _text(convert_raw_data_element(raw, encoding=codecs).value)


@functools.lru_cache(maxsize=256)
def _encodings(
    tag: int, vr: str | None, value: bytes | None, implicit: bool, mode: int
) -> tuple[str, ...]:
    """Return the Python encodings a Specific Character Set value names."""
    raw = RawDataElement(BaseTag(tag), vr, len(value or b""), value, 0, implicit, True)
    charset = convert_raw_data_element(raw, encoding=default_encoding).value
    return tuple(convert_encodings(charset))


def _columns(dataset: FileDataset) -> Row:
    """Return the index columns of a header pydicom parsed, with its skip reason."""
    values = {column: dataset.get(keyword) for column, keyword in _KEYWORDS.items()}
    # Without file meta the transfer syntax is pydicom's guess: record none.
    return _row(values, dataset.file_meta.get("TransferSyntaxUID"))


def _row(values: dict[str, Any], transfer_syntax: Any) -> Row:
    """Return the index columns of a header's values, with its skip reason."""
    row: Row = {column: _text(value) for column, value in values.items()}
    row["transfer_syntax_uid"] = _text(transfer_syntax)
    missing = row["study_uid"] is None or row["sop_uid"] is None
    row["skip_reason"] = NO_UIDS if missing else None
    return row


def _text(value: Any) -> str | None:
    """Return an element's value as text, or None when absent or empty."""
    if value is None:
        return None
    if isinstance(value, MultiValue):
        text = "\\".join(str(item) for item in value)
    else:
        text = str(value)
    return text.strip() or None


# The index column of each key query_key() can give.
_COLUMNS = {
    "StudyInstanceUID": "study_uid",
    "AccessionNumber": "accession_number",
    "PatientID": "patient_id",
}


# The queries find() and instances() run for every manifest row and study,
# built once with bound parameters: building them anew took most of the time
# of a find().
#
# A row of the folder (bound as "root"), kept off the root index: without
# ANALYZE statistics SQLite picks the root index, which reads every row of the
# folder, over the index of a key or study; 'root || ""' cannot use it.
_IN_FOLDER = col(IndexedFile.root).concat("") == bindparam("root")
_USABLE = _IN_FOLDER & col(IndexedFile.skip_reason).is_(None)

_INSTANCES = (
    select(col(IndexedFile.path), col(IndexedFile.sop_uid))
    .where(_USABLE, col(IndexedFile.study_uid) == bindparam("study"))
    .order_by(col(IndexedFile.path))
)


_Combos = Select[str | None, str | None, str | None, str | None, int]
_Counts = Select[str | None, int]


@functools.cache
def _find_queries(column: str) -> tuple[_Combos, _Counts]:
    """The queries of find() for one key column: combinations, instance counts."""
    key = col(getattr(IndexedFile, column)) == bindparam("key")
    matched = select(col(IndexedFile.study_uid)).where(_USABLE, key)
    in_matched = col(IndexedFile.study_uid).in_(matched.scalar_subquery())

    # One row per distinct (study, patient, date, modality), with file counts.
    combos = (
        select(
            col(IndexedFile.study_uid),
            col(IndexedFile.patient_id),
            col(IndexedFile.study_date),
            col(IndexedFile.modality),
            func.count(),
        )
        .where(_USABLE, in_matched)
        .group_by(
            col(IndexedFile.study_uid),
            col(IndexedFile.patient_id),
            col(IndexedFile.study_date),
            col(IndexedFile.modality),
        )
    )
    counts = (
        select(
            col(IndexedFile.study_uid),
            func.count(distinct(col(IndexedFile.sop_uid))),
        )
        .where(_USABLE, in_matched)
        .group_by(col(IndexedFile.study_uid))
    )
    return combos, counts


def _most_common(counts: Counter[str]) -> str | None:
    """Return the most frequent value, the smallest on a tie; None if empty."""
    if not counts:
        return None
    return min(counts.items(), key=lambda pair: (-pair[1], pair[0]))[0]


def _unreadable(exc: OSError) -> str:
    """The skip reason for a file or folder the OS refused."""
    return UNREADABLE + (exc.strerror or type(exc).__name__)


def _chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    """Yield consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
