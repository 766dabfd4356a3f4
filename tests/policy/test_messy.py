"""Messy real-world encodings the policy must still clean."""

from __future__ import annotations

import struct
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from exporter.engine.rawfile import read_source
from exporter.engine.worker import _encode, _stamp
from exporter.policy.apply import apply_recipe
from exporter.policy.functions import InstanceContext
from exporter.policy.gate import burned_in_risk
from exporter.policy.profile import DEFAULT_OPTIONS, build_recipe
from exporter.policy.pseudonyms import Pseudonymizer
from exporter.policy.recipe import compile_recipe

RECIPE = compile_recipe(build_recipe(), "default")
REFERENCED = "1.2.826.0.1.3680043.8.498.111222333444555666"


def _base() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "0012345"
    ds.PatientName = "QUIMBYWELL^ADA"
    ds.Modality = "CT"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def _insert_raw(path: Path, before: int, tag: int, vr: bytes, value: bytes) -> None:
    """Insert an explicit VR little endian element that pydicom would not write."""
    data = path.read_bytes()
    start = pydicom.dcmread(path).get_item(before).value_tell - 8
    header = struct.pack("<HH", tag >> 16, tag & 0xFFFF) + vr
    if vr in (b"UN", b"OB", b"SQ", b"UT"):
        header += b"\0\0" + struct.pack("<I", len(value))
    else:
        header += struct.pack("<H", len(value))
    path.write_bytes(data[:start] + header + value + data[start:])


def _clean(path: Path) -> bytes:
    source = read_source(str(path))
    pseudonyms = Pseudonymizer(b"messy-data-test-secret-32-bytes!")
    apply_recipe(source.dataset, RECIPE, InstanceContext(pseudonyms, "P1", -30))
    _stamp(source.dataset, RECIPE, tuple(sorted(DEFAULT_OPTIONS)))
    return b"".join(_encode(source.dataset, source))


def test_a_sequence_stored_as_un_is_cleaned(tmp_path: Path) -> None:
    """A known sequence a converter wrote as UN still has its UIDs replaced."""
    item = Dataset()
    item.ReferencedSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    item.ReferencedSOPInstanceUID = REFERENCED
    inner = DicomBytesIO()
    inner.is_little_endian, inner.is_implicit_VR = True, True
    holder = Dataset()
    holder.ReferencedImageSequence = Sequence([item])
    write_dataset(inner, holder)
    # Keep only the value of the sequence element: after tag (4) and length (4).
    value = inner.getvalue()[8:]
    path = tmp_path / "un.dcm"
    _base().save_as(path, enforce_file_format=True)
    _insert_raw(path, 0x00100010, 0x00081140, b"UN", value)
    assert REFERENCED.encode() in path.read_bytes()

    cleaned = _clean(path)

    assert REFERENCED.encode() not in cleaned
    assert b"0012345" not in cleaned


def test_names_and_dates_outside_the_table_are_cleaned(tmp_path: Path) -> None:
    """Person names and dates of newer attributes than Table E.1-1 are cleaned."""
    ds = _base()
    ds.EvaluatorName = "BRACKENWELL^PERPETUA"
    ds.ExpiryDate = "20200115"
    path = tmp_path / "newer.dcm"
    ds.save_as(path, enforce_file_format=True)

    out = pydicom.dcmread(pydicom.filebase.DicomBytesIO(_clean(path)))

    assert "BRACKENWELL" not in str(out.EvaluatorName)
    assert out.ExpiryDate == "20191216"


def test_file_meta_misplaced_in_the_dataset_is_dropped(tmp_path: Path) -> None:
    """Group 0002 elements inside the dataset do not reach the export."""
    path = tmp_path / "meta.dcm"
    _base().save_as(path, enforce_file_format=True)
    _insert_raw(path, 0x00080016, 0x00020016, b"AE", b"RADIOLOGY_PACS1 ")

    cleaned = _clean(path)

    assert b"RADIOLOGY_PACS1" not in cleaned


def test_locators_and_free_text_outside_the_table_are_removed(tmp_path: Path) -> None:
    """A retrieve URL naming the host and the original study UID does not leave."""
    ds = _base()
    ds.RetrieveURL = f"https://pacs.stmungo-hospital.org/wado/studies/{REFERENCED}"
    ds.add_new(0x0040A160, "UT", "Patient QUIMBYWELL seen by Dr Brackenwell")
    path = tmp_path / "url.dcm"
    ds.save_as(path, enforce_file_format=True)

    cleaned = _clean(path)

    assert b"stmungo" not in cleaned
    assert REFERENCED.encode() not in cleaned
    assert b"QUIMBYWELL" not in cleaned


@pytest.mark.parametrize(
    ("elements", "expected"),
    [
        ({0x60000100: ("US", 16), 0x60000102: ("US", 12)}, "overlay 6000"),
        ({0x60000100: ("US", 1), 0x60000102: ("US", 0)}, "overlay 6000"),
        (
            {
                0x60000100: ("US", 1),
                0x60000102: ("US", 0),
                0x60003000: ("OW", b"\x00\x00"),
            },
            None,
        ),
    ],
)
def test_an_overlay_in_the_pixel_bits_is_held_back(
    elements: dict[int, tuple[str, object]], expected: str | None
) -> None:
    """An overlay kept in unused pixel bits survives removal: it is quarantined."""
    ds = _base()
    ds.BurnedInAnnotation = "NO"
    ds.add_new(0x60000010, "US", 8)
    ds.add_new(0x60000011, "US", 8)
    for tag, (vr, value) in elements.items():
        ds.add_new(tag, vr, value)

    risk = burned_in_risk(ds)

    assert (risk is None) if expected is None else (expected in str(risk))
