"""Retain Safe Private: Table E.3.10-1 attributes stay, every other private goes."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from exporter.engine.job import RunRequest, run_job
from exporter.policy.annex_e import safe_private
from exporter.policy.functions import is_unsafe_private
from exporter.synthetic import write_manifest

SAFE_CREATOR = "GEMS_ACQU_01"  # (0019,xx23) Table Speed is in Table E.3.10-1


def _dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "0099881"
    ds.Modality = "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BurnedInAnnotation = "NO"
    gems = ds.private_block(0x0019, SAFE_CREATOR + " ", create=True)  # padded creator
    gems.add_new(0x23, "DS", "39.375")  # safe: Table Speed
    gems.add_new(0xFF, "LO", "HOLLOWAY^MARGARET")  # same block, not listed
    acme = ds.private_block(0x0009, "ACME PHI 1.0", create=True)
    acme.add_new(0x10, "LO", "HOLLOWAY^MARGARET 0099881")
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def test_the_table_is_loaded_with_its_creators() -> None:
    """All 479 rows of Table E.3.10-1 are known, keyed by group, creator, offset."""
    assert len(safe_private()) == 479
    assert (0x0019, SAFE_CREATOR, 0x23) in safe_private()


@pytest.mark.parametrize(
    ("tag", "unsafe"),
    [
        (0x00190010, False),  # the creator of a block holding a safe attribute
        (0x00191023, False),  # Table Speed under GEMS_ACQU_01
        (0x001910FF, True),  # same block, not in the table
        (0x00090010, True),  # a creator with no safe attribute
        (0x00091010, True),
        (0x00100010, False),  # public: not this rule's business
    ],
)
def test_unsafe_private_by_creator_and_offset(tag: int, unsafe: bool) -> None:
    """Safe means: this creator, this group, this offset, as Table E.3.10-1 lists."""
    ds = _dataset()
    ds.PatientName = "HOLLOWAY^MARGARET"
    assert is_unsafe_private(None, ds[tag]) is unsafe  # type: ignore[arg-type]


def _export(tmp_path: Path, options: frozenset[str] | None) -> tuple[Path, int]:
    """Export the one-instance source; the exported file and the count."""
    ds = _dataset()
    source = tmp_path / "source"
    source.mkdir()
    ds.save_as(source / "ct.dcm", enforce_file_format=True)
    manifest = write_manifest(
        tmp_path / "m.csv", [{"StudyInstanceUID": str(ds.StudyInstanceUID)}]
    )
    out = tmp_path / "out"
    summary = run_job(
        RunRequest(manifest, str(source), out, tmp_path / "ws", options=options)
    )
    (path,) = list((out / "dicom").rglob("*.dcm"))
    return path, summary.exported


def test_export_keeps_safe_private_and_removes_the_rest(tmp_path: Path) -> None:
    """With the option, the safe attribute and its creator stay, nothing else."""
    path, exported_count = _export(tmp_path, frozenset({"retain_safe_private"}))

    assert exported_count == 1
    exported = pydicom.dcmread(path)
    assert exported[0x00191023].value == "39.375"
    assert exported[0x00190010].value.strip() == SAFE_CREATOR
    assert 0x001910FF not in exported
    assert not [e for e in exported if e.tag.group == 0x0009]
    assert b"HOLLOWAY" not in path.read_bytes()
    codes = [i.CodeValue for i in exported.DeidentificationMethodCodeSequence]
    assert "113111" in codes
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["recipe"]["options"] == ["retain_safe_private"]


def test_without_the_option_every_private_element_goes(tmp_path: Path) -> None:
    """The default profile removes safe private attributes too."""
    path, _ = _export(tmp_path, None)
    assert not [e for e in pydicom.dcmread(path) if e.tag.group & 1]
