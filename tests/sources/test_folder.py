"""Tests for exporter.sources (the folder source and open_source)."""

from __future__ import annotations

import datetime
import errno
import logging
import os
import random
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file, get_testdata_files
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.fileset import FileSet
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from exporter.cohort import Selection
from exporter.errors import SourceError
from exporter.sources import FolderSource, open_source
from exporter.sources import folder as folder_module
from exporter.state.db import open_database
from exporter.state.models import IndexedFile
from exporter.synthetic import make_source

CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
SERIES_BY_MODALITY = {"CT": 1, "MR": 2, "SR": 3}


# Helpers -----------------------------------------------------------------------


def ct_dataset(
    sop_uid: str,
    *,
    study_uid: str = "1.2.826.0.1.1",
    series_uid: str | None = None,
    patient_id: str | None = "007",
    accession: str | None = "ACC1",
    study_date: str | None = "20240115",
    modality: str = "CT",
) -> Dataset:
    """Return a minimal CT image dataset with the given identifiers."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CT_IMAGE if modality != "SR" else BASIC_TEXT_SR
    ds.SOPInstanceUID = sop_uid
    if study_date is not None:
        ds.StudyDate = study_date
    if accession is not None:
        ds.AccessionNumber = accession
    ds.Modality = modality
    ds.PatientName = "Doe^John"
    if patient_id is not None:
        ds.PatientID = patient_id
    ds.ImageComments = "x" * 200
    if study_uid:
        ds.StudyInstanceUID = study_uid
    series = SERIES_BY_MODALITY[modality]
    ds.SeriesInstanceUID = series_uid or f"{study_uid or '1.2.826'}.{series}"
    ds.Rows = 2
    ds.Columns = 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    ds.PixelData = b"\0" * 8
    return ds


def write(path: Path, ds: Dataset, *, meta: bool = True) -> Path:
    """Write ``ds`` as a Part 10 file, or as a bare implicit VR dataset."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if meta:
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(path, enforce_file_format=True)
    else:
        ds.save_as(path, implicit_vr=True, little_endian=True)
    return path


def write_ct(
    path: Path, sop_uid: str, *, meta: bool = True, **fields: str | None
) -> Path:
    """Write a minimal CT file; ``fields`` go to :func:`ct_dataset`."""
    return write(path, ct_dataset(sop_uid, **fields), meta=meta)


def selection(**fields: object) -> Selection:
    """Return a manifest row with only the given fields set."""
    values: dict[str, object] = {
        "row": 2,
        "patient_id": None,
        "accession_number": None,
        "study_instance_uid": None,
        "date_from": None,
        "date_to": None,
        "modality": None,
        "subject_id": None,
    }
    values.update(fields)
    return Selection(**values)  # type: ignore[arg-type]


def rows(engine: Engine) -> dict[str, IndexedFile]:
    """Return the index rows by path."""
    with Session(engine) as session:
        return {row.path: row for row in session.exec(select(IndexedFile))}


def reasons(source: FolderSource) -> dict[str, str]:
    """Return skip reasons by file name."""
    return {Path(path).name: reason for path, reason in source.skipped()}


def refuse(name: str, mode: str = "r") -> object:
    """Stand in for open() on a file the OS will not let us read."""
    raise PermissionError(errno.EACCES, "Permission denied", name)


def touch_later(path: Path) -> None:
    """Move a file's mtime a second on, so a scan sees it changed."""
    status = path.stat()
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    """A fresh state database in the test folder."""
    return open_database(f"sqlite:///{tmp_path / 'state.db'}")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """An empty source folder."""
    folder = tmp_path / "dicom"
    folder.mkdir()
    return folder


@pytest.fixture
def source(root: Path, engine: Engine) -> FolderSource:
    """A folder source over ``root``."""
    return FolderSource(root, engine)


# Indexing ----------------------------------------------------------------------


class TestScanIndexes:
    def test_header_fields(self, root: Path, source: FolderSource, engine: Engine):
        """Every index column is filled from the header and the file's stat."""
        path = write_ct(root / "a" / "1.dcm", "1.2.3.1", accession="A-9")

        report = source.scan()

        row = rows(engine)[str(path.resolve())]
        status = path.stat()
        assert report.files_seen == report.files_indexed == 1
        assert row.root == str(root.resolve())
        assert (row.size, row.mtime_ns) == (status.st_size, status.st_mtime_ns)
        assert row.skip_reason is None
        assert row.patient_id == "007"
        assert row.study_uid == "1.2.826.0.1.1"
        assert row.series_uid == "1.2.826.0.1.1.1"
        assert row.sop_uid == "1.2.3.1"
        assert row.sop_class_uid == CT_IMAGE
        assert row.accession_number == "A-9"
        assert row.study_date == "20240115"
        assert row.modality == "CT"
        assert row.transfer_syntax_uid == ExplicitVRLittleEndian

    def test_bare_dataset_without_transfer_syntax(
        self, root: Path, source: FolderSource, engine: Engine
    ):
        """A dataset with no preamble and no file meta is indexed, syntax None."""
        path = write_ct(root / "bare", "1.2.3.1", meta=False)

        source.scan()

        row = rows(engine)[str(path)]
        assert row.skip_reason is None
        assert row.sop_uid == "1.2.3.1"
        assert row.transfer_syntax_uid is None

    def test_file_meta_without_preamble(
        self, root: Path, source: FolderSource, engine: Engine
    ):
        """File meta without the preamble and 'DICM' still gives the syntax."""
        full = write_ct(root.parent / "full.dcm", "1.2.3.1")
        path = root / "nopreamble"
        path.write_bytes(full.read_bytes()[132:])

        source.scan()

        row = rows(engine)[str(path)]
        assert row.skip_reason is None
        assert row.transfer_syntax_uid == ExplicitVRLittleEndian

    def test_leading_zero_patient_id(self, root: Path, source: FolderSource):
        """A PatientID with leading zeros is stored and matched as text."""
        write_ct(root / "1.dcm", "1.2.3.1", patient_id="000123")

        source.scan()

        assert source.find(selection(patient_id="000123"))[0].patient_id == "000123"
        assert source.find(selection(patient_id="123")) == []

    def test_symlinks(self, root: Path, tmp_path: Path, source: FolderSource):
        """A symlinked file is indexed under its link; a symlinked folder is not."""
        outside = write_ct(tmp_path / "outside" / "1.dcm", "1.2.3.1")
        (root / "link.dcm").symlink_to(outside)
        (root / "loop").symlink_to(root, target_is_directory=True)
        (root / "elsewhere").symlink_to(outside.parent, target_is_directory=True)

        report = source.scan()

        assert report.files_seen == 1
        refs = source.instances("1.2.826.0.1.1")
        assert [ref.item for ref in refs] == [str(root.resolve() / "link.dcm")]

    def test_progress_counts_files(self, root: Path, source: FolderSource):
        """The progress callback gets the running number of files seen."""
        for number in range(3):
            write_ct(root / f"{number}.dcm", f"1.2.3.{number}")
        calls: list[int] = []

        source.scan(calls.append)

        assert calls == [1, 2, 3]

    def test_logs_counts_not_paths(
        self, tmp_path: Path, engine: Engine, caplog: pytest.LogCaptureFixture
    ):
        """INFO logging of a scan names no path, even of a skipped file."""
        root = tmp_path / "Doe^John"
        write_ct(root / "MRN007" / "1.dcm", "1.2.3.1")
        (root / "MRN007" / "notes.txt").write_text("Doe John")
        caplog.set_level(logging.INFO, logger="exporter")

        FolderSource(root, engine).scan()

        assert caplog.records
        assert "Doe" not in caplog.text
        assert "MRN007" not in caplog.text


# Skip reasons ------------------------------------------------------------------


def make_text(path: Path) -> None:
    """A text file."""
    path.write_text("Patient: Doe^John\n" * 20)


def make_empty(path: Path) -> None:
    """A file of no bytes."""
    path.write_bytes(b"")


def make_cut_in_read_value(path: Path) -> None:
    """A Part 10 file cut inside the StudyInstanceUID value."""
    data = write_ct(path, "1.2.3.9", study_uid="1.2.826.0.1.999999").read_bytes()
    path.write_bytes(data[: data.index(b"1.2.826.0.1.999999") + 8])


def make_cut_in_skipped_value(path: Path) -> None:
    """A Part 10 file cut inside an element the scan does not read."""
    data = write_ct(path, "1.2.3.9").read_bytes()
    path.write_bytes(data[: data.index(b"x" * 200) + 50])


def make_bare_cut(path: Path) -> None:
    """A bare dataset cut inside an element after both UIDs."""
    data = write_ct(path, "1.2.3.9", meta=False).read_bytes()
    path.write_bytes(data[: data.index(b"x" * 200) + 50])


def make_dicomdir(path: Path) -> None:
    """A DICOMDIR written by pydicom's FileSet, next to its one instance."""
    ds = ct_dataset("1.2.3.9")
    # The directory records need these (PS3.3 F.5).
    ds.StudyTime = "120000"
    ds.StudyID = "1"
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    write(path.parent / "src" / "1.dcm", ds)
    file_set = FileSet()
    file_set.add(path.parent / "src" / "1.dcm")
    file_set.write(path.parent / "set")
    (path.parent / "set" / "DICOMDIR").rename(path)


def make_no_uids(path: Path) -> None:
    """A Part 10 file without StudyInstanceUID."""
    write_ct(path, "1.2.3.9", study_uid="")


class TestSkipReasons:
    @pytest.mark.parametrize(
        ("make", "reason"),
        [
            (make_text, "not DICOM"),
            (make_empty, "empty file"),
            (make_cut_in_read_value, "truncated or unreadable header"),
            (make_cut_in_skipped_value, "truncated or unreadable header"),
            (make_bare_cut, "truncated or unreadable header"),
            (make_dicomdir, "DICOMDIR"),
            (make_no_uids, "no StudyInstanceUID or SOPInstanceUID"),
        ],
    )
    def test_reason(self, make, reason: str, root: Path, source: FolderSource):
        """Each kind of unusable file is skipped with its exact label."""
        make(root / "bad")

        report = source.scan()

        assert reasons(source)["bad"] == reason
        assert report.skipped[reason] == 1

    def test_permission_denied(
        self, root: Path, source: FolderSource, monkeypatch: pytest.MonkeyPatch
    ):
        """A file the OS refuses to open is skipped with the OS message."""
        path = write_ct(root / "locked.dcm", "1.2.3.1")
        monkeypatch.setattr(folder_module, "open", refuse, raising=False)
        report = source.scan()

        assert source.skipped() == [(str(path), "unreadable: Permission denied")]
        assert report.skipped == {"unreadable: Permission denied": 1}

    @pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
    def test_permission_denied_by_mode(self, root: Path, source: FolderSource):
        """A file without read permission is skipped with the OS message."""
        path = write_ct(root / "locked.dcm", "1.2.3.1")
        path.chmod(0)

        source.scan()

        assert reasons(source) == {"locked.dcm": "unreadable: Permission denied"}

    def test_broken_symlink(self, root: Path, source: FolderSource):
        """A symlink to nothing is skipped as unreadable."""
        (root / "dangling.dcm").symlink_to(root / "missing.dcm")

        source.scan()

        assert reasons(source) == {
            "dangling.dcm": "unreadable: No such file or directory"
        }

    def test_folder_that_cannot_be_listed(
        self, root: Path, source: FolderSource, monkeypatch: pytest.MonkeyPatch
    ):
        """A sub-folder the OS will not list keeps a row with the OS message."""
        write_ct(root / "a.dcm", "1.2.3.1")
        (root / "locked").mkdir()
        listing = os.scandir

        def scandir(path: str) -> object:
            if path.endswith("locked"):
                raise PermissionError(errno.EACCES, "Permission denied", path)
            return listing(path)

        monkeypatch.setattr(os, "scandir", scandir)
        report = source.scan()

        assert reasons(source) == {"locked": "unreadable: Permission denied"}
        assert report.files_seen == 2

    def test_undecodable_file_name(self, root: Path, source: FolderSource):
        """A file name that is not UTF-8 is skipped, and rescans keep working."""
        os.close(os.open(os.fsencode(root) + b"/\xff.dcm", os.O_CREAT | os.O_WRONLY))
        write_ct(root / "a.dcm", "1.2.3.1")

        source.scan()
        report = source.scan()

        assert reasons(source) == {
            "\\xff.dcm": "unreadable: file name is not valid UTF-8"
        }
        assert (report.files_seen, report.files_reused) == (2, 1)

    def test_unexpected_parse_error(
        self, root: Path, source: FolderSource, monkeypatch: pytest.MonkeyPatch
    ):
        """Any error inside the DICOM parser skips the file as unreadable header."""

        def explode(*args: object, **kwargs: object) -> object:
            raise RuntimeError("parser bug")

        write_ct(root / "1.dcm", "1.2.3.1")
        monkeypatch.setattr(pydicom, "dcmread", explode)
        monkeypatch.setattr(folder_module, "_quick_parse", no_quick_walk)

        source.scan()

        assert reasons(source) == {"1.dcm": "truncated or unreadable header"}

    def test_damaged_file_meta_value(self, root: Path, source: FolderSource):
        """A file meta element with a damaged VR skips its file, not the scan."""
        path = write_ct(root / "bad.dcm", "1.2.3.1")
        data = path.read_bytes()
        element = data.index(b"\x02\x00\x02\x00UI")  # MediaStorageSOPClassUID
        path.write_bytes(data[: element + 4] + b"U\xa8" + data[element + 6 :])
        write_ct(root / "good.dcm", "1.2.3.2")

        report = source.scan()

        assert reasons(source) == {"bad.dcm": "truncated or unreadable header"}
        assert report.files_indexed == 2

    def test_bad_files_do_not_stop_the_scan(self, root: Path, source: FolderSource):
        """Good files around every kind of bad file are all indexed."""
        write_ct(root / "a.dcm", "1.2.3.1")
        for number, make in enumerate(
            [make_text, make_empty, make_cut_in_skipped_value, make_no_uids]
        ):
            make(root / f"b{number}")
            write_ct(root / f"c{number}.dcm", f"1.2.3.2{number}")

        report = source.scan()

        assert report.files_seen == 9
        assert len(source.instances("1.2.826.0.1.1")) == 5
        assert report.skipped == {
            "empty file": 1,
            "no StudyInstanceUID or SOPInstanceUID": 1,
            "not DICOM": 1,
            "truncated or unreadable header": 1,
        }


# The quick header walk ---------------------------------------------------------


def no_quick_walk(file: object, size: int) -> None:
    """Stand in for the quick header walk, leaving every file to pydicom."""
    return None


def columns(path: Path, *, quick: bool) -> dict[str, object]:
    """Return a file's index columns, read with or without the quick walk."""
    size = path.stat().st_size
    if quick:
        return folder_module._read_header(str(path), size)
    original = folder_module._quick_parse
    folder_module._quick_parse = no_quick_walk  # type: ignore[assignment]
    try:
        return folder_module._read_header(str(path), size)
    finally:
        folder_module._quick_parse = original


def walked(path: Path) -> dict[str, object] | None:
    """Return what the quick walk alone makes of a file; None if it gives up."""
    with path.open("rb") as file, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return folder_module._quick_parse(file, path.stat().st_size)


def undefined_lengths(ds: Dataset) -> Dataset:
    """Give ``ds`` a nested sequence written with undefined lengths throughout."""
    code = Dataset()
    code.CodeValue = "121311"
    code.CodingSchemeDesignator = "DCM"
    item = Dataset()
    item.ReferencedSOPClassUID = CT_IMAGE
    item.ReferencedSOPInstanceUID = "1.2.3.77"
    item.PurposeOfReferenceCodeSequence = [code]
    item["PurposeOfReferenceCodeSequence"].is_undefined_length = True
    item.is_undefined_length_sequence_item = True
    ds.ReferencedImageSequence = [item, Dataset()]
    ds["ReferencedImageSequence"].is_undefined_length = True
    return ds


def without_pixels(ds: Dataset) -> Dataset:
    """Remove the pixel data, so the header runs to the end of the file."""
    del ds.PixelData
    return ds


def with_charset(charset: str | list[str], patient_id: str) -> Dataset:
    """A dataset whose PatientID and accession need its character set to read."""
    ds = ct_dataset("1.2.3.8", patient_id=patient_id, accession="Nº" + patient_id)
    ds.SpecificCharacterSet = charset
    return ds


def write_implicit(path: Path, ds: Dataset) -> Path:
    """Write ``ds`` as a Part 10 file in Implicit VR Little Endian."""
    write(path, ds)
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    return path


def private_sequence(path: Path) -> Path:
    """An implicit VR file with an undefined-length private sequence."""
    ds = ct_dataset("1.2.3.5")
    block = ds.private_block(0x0009, "EXPORTER TEST", create=True)
    item = Dataset()
    item.add_new(0x00091010, "LO", "inside")
    block.add_new(0x20, "SQ", [item])
    ds[0x00091020].is_undefined_length = True
    return write_implicit(path, ds)


def long_header(path: Path) -> Path:
    """A file whose UIDs come after a private value longer than a read chunk."""
    ds = ct_dataset("1.2.3.6")
    block = ds.private_block(0x0009, "EXPORTER TEST", create=True)
    block.add_new(0x10, "OB", b"\x01" * (folder_module._CHUNK + 1000))
    return write(path, ds)


# Files the quick walk reads itself: each kind, and the same in implicit VR.
ORDINARY: dict[str, Callable[[Path], Path]] = {
    "explicit VR": lambda path: write_ct(path, "1.2.3.1"),
    "implicit VR": lambda path: write_implicit(path, ct_dataset("1.2.3.2")),
    "undefined lengths": lambda path: write(
        path, undefined_lengths(ct_dataset("1.2.3.3"))
    ),
    "undefined lengths, implicit VR": lambda path: write_implicit(
        path, undefined_lengths(ct_dataset("1.2.3.4"))
    ),
    "private sequence, implicit VR": private_sequence,
    "header longer than a chunk": long_header,
    "no pixel data": lambda path: write(path, without_pixels(ct_dataset("1.2.3.7"))),
    "Latin-1 identifiers": lambda path: write(
        path, with_charset("ISO_IR 100", "Ærø-0012")
    ),
    "UTF-8 identifiers": lambda path: write(
        path, with_charset("ISO_IR 192", "Zoë-日本-7")
    ),
    "ISO 2022 identifiers": lambda path: write(
        path, with_charset(["", "ISO 2022 IR 87"], "ヤマダ-7")
    ),
}

PYDICOM_FILES = sorted(
    Path(name) for name in get_testdata_files() if Path(name).is_file()
)


class TestQuickWalk:
    @pytest.mark.parametrize("make", ORDINARY.values(), ids=ORDINARY.keys())
    def test_reads_ordinary_files(self, make, tmp_path: Path):
        """Ordinary files are read by the walk, with pydicom's columns."""
        path = make(tmp_path / "file.dcm")

        quick = walked(path)

        assert quick is not None
        assert quick == columns(path, quick=False)
        assert quick["sop_uid"] is not None

    @pytest.mark.parametrize(
        "name",
        ["ExplVR_BigEnd.dcm", "image_dfl.dcm", "rtstruct.dcm", "SC_rgb_jpeg.dcm"],
    )
    def test_leaves_the_rest_to_pydicom(self, name: str):
        """Big endian, deflate, no file meta, a lying transfer syntax: pydicom."""
        path = Path(get_testdata_file(name))  # type: ignore[arg-type]

        assert walked(path) is None
        assert columns(path, quick=True) == columns(path, quick=False)

    @pytest.mark.parametrize("path", PYDICOM_FILES, ids=lambda path: path.name)
    def test_pydicom_test_files(self, path: Path):
        """Every test file pydicom ships gets the same columns either way."""
        assert columns(path, quick=True) == columns(path, quick=False)

    @pytest.mark.parametrize("make", ORDINARY.values(), ids=ORDINARY.keys())
    def test_damaged_copies(self, make, tmp_path: Path):
        """Cut or altered, a file gets pydicom's verdict, or the walk gives up."""
        data = make(tmp_path / "file.dcm").read_bytes()
        rng = random.Random(7)
        copies = [data[:cut] for cut in rng.sample(range(1, len(data)), 80)]
        for _copy in range(80):
            damaged = bytearray(data)
            for _byte in range(rng.randint(1, 3)):
                damaged[rng.randrange(min(len(data), 2000))] = rng.randrange(256)
            copies.append(bytes(damaged))

        path = tmp_path / "damaged.dcm"
        walked_ones = 0
        for copy in copies:
            path.write_bytes(copy)
            expected = columns(path, quick=False)
            if walked(path) is not None:
                walked_ones += 1
                assert columns(path, quick=True) == expected
        assert walked_ones > 0

    def test_synthetic_source(self, tmp_path: Path, engine: Engine):
        """A synthetic source's index is the same with and without the walk."""
        make_source(tmp_path / "a", patients=2, instances_per_series=2)
        shutil.copytree(tmp_path / "a", tmp_path / "b", symlinks=True)
        FolderSource(tmp_path / "a", engine).scan()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(folder_module, "_quick_parse", no_quick_walk)
            FolderSource(tmp_path / "b", engine).scan()

        def by_name(folder: str) -> dict[str, tuple[object, ...]]:
            prefix = str((tmp_path / folder).resolve())
            return {
                path[len(prefix) :]: (
                    row.skip_reason,
                    row.patient_id,
                    row.study_uid,
                    row.series_uid,
                    row.sop_uid,
                    row.sop_class_uid,
                    row.accession_number,
                    row.study_date,
                    row.modality,
                    row.transfer_syntax_uid,
                )
                for path, row in rows(engine).items()
                if path.startswith(prefix + os.sep)
            }

        assert by_name("a") == by_name("b")
        assert len(by_name("a")) > 10

    def test_error_inside_the_walk(
        self, root: Path, source: FolderSource, monkeypatch: pytest.MonkeyPatch
    ):
        """A failure the walk did not foresee leaves the file to pydicom."""

        def explode(walk: object) -> object:
            raise RuntimeError("walk bug")

        write_ct(root / "1.dcm", "1.2.3.1")
        monkeypatch.setattr(folder_module, "_quick_columns", explode)

        source.scan()

        assert source.skipped() == []
        assert [ref.sop_uid for ref in source.instances("1.2.826.0.1.1")] == ["1.2.3.1"]


# Incremental re-scan -----------------------------------------------------------


class TestRescan:
    def test_unchanged_files_are_reused(self, root: Path, source: FolderSource):
        """A second scan reads nothing when no file changed."""
        for number in range(3):
            write_ct(root / f"{number}.dcm", f"1.2.3.{number}")
        make_text(root / "notes.txt")
        source.scan()

        report = source.scan()

        assert (report.files_seen, report.files_indexed, report.files_reused) == (
            4,
            0,
            4,
        )
        assert report.skipped == {"not DICOM": 1}

    def test_nothing_changed_writes_nothing(
        self, root: Path, source: FolderSource, engine: Engine
    ):
        """A rescan of an unchanged folder, duplicates included, only reads."""
        write_ct(root / "a.dcm", "1.2.3.1")
        write_ct(root / "b.dcm", "1.2.3.1")
        make_text(root / "notes.txt")
        source.scan()
        statements: list[str] = []
        event.listen(
            engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *args: statements.append(statement),
        )

        report = source.scan()

        assert report.skipped == {"duplicate SOPInstanceUID": 1, "not DICOM": 1}
        assert statements
        assert not [s for s in statements if s.split()[0] != "SELECT"]

    def test_touched_file_is_read_again(
        self, root: Path, source: FolderSource, engine: Engine
    ):
        """A file with a new mtime is read again and its row replaced."""
        write_ct(root / "1.dcm", "1.2.3.1")
        path = write_ct(root / "2.dcm", "1.2.3.2", accession="OLD")
        source.scan()
        write_ct(path, "1.2.3.2", accession="NEW")
        touch_later(path)

        report = source.scan()

        assert (report.files_indexed, report.files_reused) == (1, 1)
        assert rows(engine)[str(path)].accession_number == "NEW"

    def test_deleted_files_are_dropped(
        self, root: Path, source: FolderSource, engine: Engine
    ):
        """Rows of deleted files and folders go; the rest stay."""
        keep = write_ct(root / "b" / "keep.dcm", "1.2.3.1")
        gone = write_ct(root / "b" / "gone.dcm", "1.2.3.2")
        write_ct(root / "c" / "1.dcm", "1.2.3.3")
        make_text(root / "c" / "notes.txt")
        source.scan()
        gone.unlink()
        for path in sorted((root / "c").iterdir()):
            path.unlink()
        (root / "c").rmdir()

        report = source.scan()

        assert list(rows(engine)) == [str(keep)]
        assert (report.files_seen, report.files_reused) == (1, 1)
        assert source.skipped() == []
        assert report.skipped == {}

    def test_unreadable_file_is_tried_again(
        self, root: Path, source: FolderSource, monkeypatch: pytest.MonkeyPatch
    ):
        """A file once refused by the OS is read again although unchanged."""
        write_ct(root / "1.dcm", "1.2.3.1")
        with monkeypatch.context() as patch:
            patch.setattr(folder_module, "open", refuse, raising=False)
            source.scan()

        report = source.scan()

        assert (report.files_indexed, report.files_reused) == (1, 0)
        assert source.skipped() == []

    def test_merge_order_with_tricky_names(
        self, root: Path, source: FolderSource, monkeypatch: pytest.MonkeyPatch
    ):
        """Names that sort around a folder's separator are all reused on rescan."""
        monkeypatch.setattr(folder_module, "_BATCH", 2)
        monkeypatch.setattr(folder_module, "_PAGE", 3)
        names = ["a!", "a-b", "a.dcm", "a0", "a/x", "a/y/z", "a b/c", "b", "é", "Z"]
        for number, name in enumerate(names):
            write_ct(root / name, f"1.2.3.{number}")
        first = source.scan()
        (root / "a.dcm").unlink()
        write_ct(root / "a/new", "1.2.3.99")

        report = source.scan()

        assert first.files_indexed == 10
        assert (report.files_seen, report.files_indexed, report.files_reused) == (
            10,
            1,
            9,
        )
        items = [Path(ref.item) for ref in source.instances("1.2.826.0.1.1")]
        assert len(items) == 10
        assert items == sorted(items, key=str)

    def test_other_folder_rows_are_kept(self, tmp_path: Path, engine: Engine):
        """Scanning one folder leaves the index of another folder alone."""
        write_ct(tmp_path / "one" / "1.dcm", "1.2.3.1")
        write_ct(tmp_path / "two" / "1.dcm", "1.2.3.2", study_uid="1.2.9")
        one = FolderSource(tmp_path / "one", engine)
        two = FolderSource(tmp_path / "two", engine)
        one.scan()
        two.scan()

        report = one.scan()

        assert report.files_reused == 1
        assert [ref.sop_uid for ref in two.instances("1.2.9")] == ["1.2.3.2"]
        assert two.find(selection(study_instance_uid="1.2.826.0.1.1")) == []


# find --------------------------------------------------------------------------


@pytest.fixture
def cohort(root: Path, source: FolderSource) -> FolderSource:
    """A scanned folder: patient 007 with three studies, patient 008 with one."""
    write_ct(root / "p1" / "s1" / "1", "1.9.1.1", study_uid="1.9.1", accession="A1")
    write_ct(root / "p1" / "s1" / "2", "1.9.1.2", study_uid="1.9.1", accession="A1")
    write_ct(
        root / "p1" / "s1" / "3",
        "1.9.1.3",
        study_uid="1.9.1",
        accession="A1",
        modality="SR",
    )
    write_ct(
        root / "p1" / "s2" / "1",
        "1.9.2.1",
        study_uid="1.9.2",
        accession="A2",
        study_date="20230601",
        modality="MR",
    )
    write_ct(
        root / "p1" / "s3" / "1",
        "1.9.3.1",
        study_uid="1.9.3",
        accession="A3",
        study_date=None,
    )
    write_ct(
        root / "p2" / "s4" / "1",
        "1.9.4.1",
        study_uid="1.9.4",
        accession="A4",
        patient_id="008",
    )
    source.scan()
    return source


class TestFind:
    def test_by_study_uid(self, cohort: FolderSource):
        """A StudyInstanceUID selects that study, with its instance count."""
        refs = cohort.find(selection(study_instance_uid="1.9.1"))

        assert [(ref.study_uid, ref.patient_id, ref.instances) for ref in refs] == [
            ("1.9.1", "007", 3)
        ]

    def test_by_accession(self, cohort: FolderSource):
        """An AccessionNumber selects its study."""
        refs = cohort.find(selection(accession_number="A4"))

        assert [(ref.study_uid, ref.patient_id) for ref in refs] == [("1.9.4", "008")]

    def test_by_patient_sorted_by_uid(self, cohort: FolderSource):
        """A PatientID selects all the patient's studies, sorted by study UID."""
        refs = cohort.find(selection(patient_id="007"))

        assert [ref.study_uid for ref in refs] == ["1.9.1", "1.9.2", "1.9.3"]

    def test_study_uid_wins_over_other_keys(self, cohort: FolderSource):
        """With several keys the StudyInstanceUID decides, then AccessionNumber."""
        by_uid = selection(
            study_instance_uid="1.9.2", accession_number="A1", patient_id="008"
        )
        by_accession = selection(accession_number="A1", patient_id="008")

        assert [ref.study_uid for ref in cohort.find(by_uid)] == ["1.9.2"]
        assert [ref.study_uid for ref in cohort.find(by_accession)] == ["1.9.1"]

    def test_nothing_matches(self, cohort: FolderSource):
        """An unknown key gives an empty list."""
        assert cohort.find(selection(patient_id="999")) == []

    @pytest.mark.parametrize(
        ("date_from", "date_to", "expected"),
        [
            (datetime.date(2024, 1, 1), None, ["1.9.1"]),
            (None, datetime.date(2023, 12, 31), ["1.9.2"]),
            (datetime.date(2024, 1, 15), datetime.date(2024, 1, 15), ["1.9.1"]),
            (datetime.date(2022, 1, 1), datetime.date(2022, 12, 31), []),
        ],
    )
    def test_date_range(self, cohort: FolderSource, date_from, date_to, expected):
        """A date range narrows a patient's studies; undated studies drop out."""
        refs = cohort.find(
            selection(patient_id="007", date_from=date_from, date_to=date_to)
        )

        assert [ref.study_uid for ref in refs] == expected

    @pytest.mark.parametrize(
        ("modality", "expected"),
        [("SR", ["1.9.1"]), ("CT", ["1.9.1", "1.9.3"]), ("MR", ["1.9.2"])],
    )
    def test_modality(self, cohort: FolderSource, modality: str, expected):
        """A modality keeps the studies with at least one file of it."""
        refs = cohort.find(selection(patient_id="007", modality=modality))

        assert [ref.study_uid for ref in refs] == expected

    def test_skipped_rows_never_match(
        self, cohort: FolderSource, engine: Engine, root: Path
    ):
        """An index row with a skip reason is neither matched nor counted."""
        with Session(engine) as session:
            session.add(
                IndexedFile(
                    path=str(root.resolve() / "zz"),
                    root=str(root.resolve()),
                    size=1,
                    mtime_ns=1,
                    skip_reason="truncated or unreadable header",
                    patient_id="007",
                    study_uid="1.9.5",
                    sop_uid="1.9.5.1",
                )
            )
            session.commit()

        refs = cohort.find(selection(patient_id="007"))

        assert [ref.study_uid for ref in refs] == ["1.9.1", "1.9.2", "1.9.3"]

    def test_disagreeing_patient_ids(
        self, root: Path, source: FolderSource, caplog: pytest.LogCaptureFixture
    ):
        """The most common PatientID of a study wins; DEBUG notes it by count."""
        for number, patient in enumerate(["B", "A", "A"]):
            write_ct(root / f"{number}", f"1.2.3.{number}", patient_id=patient)
        source.scan()
        caplog.set_level(logging.DEBUG, logger="exporter")

        refs = source.find(selection(patient_id="B"))

        assert [(ref.patient_id, ref.instances) for ref in refs] == [("A", 3)]
        assert "disagree on PatientID (2 values)" in caplog.text

    def test_no_patient_id(self, root: Path, source: FolderSource):
        """A study whose files carry no PatientID reports an empty one."""
        write_ct(root / "1", "1.2.3.1", patient_id=None, accession="A1")
        source.scan()

        assert source.find(selection(accession_number="A1"))[0].patient_id == ""

    def test_no_key(self, cohort: FolderSource):
        """A selection with no key is refused, naming its row."""
        with pytest.raises(ValueError, match="manifest row 2 has no StudyInstanceUID"):
            cohort.find(selection(modality="CT"))


# instances and duplicates ------------------------------------------------------


class TestInstances:
    def test_ordered_by_path(self, cohort: FolderSource, root: Path):
        """A study's files come back ordered by path, with their SOP UIDs."""
        refs = cohort.instances("1.9.1")

        base = root.resolve() / "p1" / "s1"
        assert [(ref.item, ref.sop_uid) for ref in refs] == [
            (str(base / "1"), "1.9.1.1"),
            (str(base / "2"), "1.9.1.2"),
            (str(base / "3"), "1.9.1.3"),
        ]

    def test_unknown_study(self, cohort: FolderSource):
        """A study the index does not hold has no instances."""
        assert cohort.instances("1.9.99") == []

    def test_duplicate_sop_instance(self, root: Path, source: FolderSource):
        """The first copy by path is kept; the others are skipped as duplicates."""
        write_ct(root / "b" / "copy.dcm", "1.2.3.1")
        write_ct(root / "a" / "copy.dcm", "1.2.3.1")
        write_ct(root / "c" / "copy.dcm", "1.2.3.1")
        write_ct(root / "c" / "other.dcm", "1.2.3.2")

        report = source.scan()

        base = root.resolve()
        assert [ref.item for ref in source.instances("1.2.826.0.1.1")] == [
            str(base / "a" / "copy.dcm"),
            str(base / "c" / "other.dcm"),
        ]
        assert source.skipped() == [
            (str(base / "b" / "copy.dcm"), "duplicate SOPInstanceUID"),
            (str(base / "c" / "copy.dcm"), "duplicate SOPInstanceUID"),
        ]
        assert report.skipped == {"duplicate SOPInstanceUID": 2}
        assert source.find(selection(patient_id="007"))[0].instances == 2

    def test_duplicate_promoted_when_first_copy_goes(
        self, root: Path, source: FolderSource
    ):
        """After the kept copy is deleted, the next copy by path takes its place."""
        write_ct(root / "a.dcm", "1.2.3.1")
        write_ct(root / "b.dcm", "1.2.3.1")
        source.scan()
        (root / "a.dcm").unlink()

        report = source.scan()

        assert [Path(ref.item).name for ref in source.instances("1.2.826.0.1.1")] == [
            "b.dcm"
        ]
        assert source.skipped() == []
        assert report.files_reused == 1


# open_source -------------------------------------------------------------------


class TestOpenSource:
    def test_folder(self, root: Path, engine: Engine):
        """A folder path opens a folder source with a log-safe name."""
        source = open_source(str(root), engine)

        assert isinstance(source, FolderSource)
        assert source.name == "folder"
        assert source.root == root.resolve()

    @pytest.mark.parametrize(
        ("spec", "message"),
        [
            ("dicom://pacs:104/ARCHIVE", r"is not dicom://CALLED_AE@host:port"),
            ("ftp://pacs.example/dicom", r"is a URL of a kind not supported; a source"),
        ],
    )
    def test_url(self, spec: str, message: str, engine: Engine):
        """A malformed or unknown URL is refused with what is accepted."""
        with pytest.raises(SourceError, match=message):
            open_source(spec, engine)

    def test_missing_folder(self, tmp_path: Path, engine: Engine):
        """A path to nothing is refused, naming it."""
        missing = str(tmp_path / "nowhere")

        with pytest.raises(SourceError, match=r"source folder '.*nowhere' does not"):
            open_source(missing, engine)

    def test_file(self, tmp_path: Path, engine: Engine):
        """A path to a file is refused with what is accepted."""
        path = tmp_path / "manifest.csv"
        path.write_text("PatientID\n")

        with pytest.raises(SourceError, match=r"manifest.csv' is not a folder; a "):
            open_source(str(path), engine)

    def test_unreadable_folder(
        self, root: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
    ):
        """A folder that cannot be listed is refused, naming it."""
        monkeypatch.setattr(os, "access", lambda *args, **kwargs: False)

        with pytest.raises(SourceError, match=r"'.*dicom' cannot be read"):
            open_source(str(root), engine)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_scans_writing_one_path_at_once_do_not_fail(
    tmp_path: Path, backend: str, request: pytest.FixtureRequest
) -> None:
    """Two runs indexing one folder together: a row the other run has just
    written is replaced, not a uniqueness error (as on PostgreSQL before)."""
    url = (
        request.getfixturevalue("postgres_database")
        if backend == "postgresql"
        else f"sqlite:///{tmp_path / 'state.db'}"
    )
    engine = open_database(url)
    row = {
        c.name: None
        for c in IndexedFile.__table__.columns  # type: ignore[attr-defined]
    }
    row.update(path="/data/a.dcm", root="/data", size=10, mtime_ns=1)
    first = folder_module._Writer(engine)
    first.put(dict(row))
    first.flush()
    # The other run read the index before the first wrote: it inserts the row
    # again, without a delete that would have made room.
    second = folder_module._Writer(engine)
    with engine.begin() as connection:
        connection.execute(second._upsert(), [dict(row, size=11)])
    with Session(engine) as session:
        rows = session.exec(select(IndexedFile)).all()
    assert [(r.path, r.size) for r in rows] == [("/data/a.dcm", 11)]
