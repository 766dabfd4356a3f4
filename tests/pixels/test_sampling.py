"""Clean Pixel Data samples series not expected to carry text, and escalates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

pytest.importorskip("rapidocr", reason="the pixels extra is not installed")

from exporter.engine import job
from exporter.engine.job import RunRequest, run_job
from exporter.pixels.frames import display
from exporter.pixels.ocr import rapidocr_detector
from exporter.pixels.textimages import make_text_image
from exporter.policy.profile import DEFAULT_OPTIONS
from exporter.synthetic import write_manifest

WITH_TEXT = {2, 4, 5}  # slices with a name burned in, by position in the series


def _ct_series(root: Path, count: int) -> str:
    """One CT series of ``count`` 192x192 slices, ORIGINAL, no BurnedInAnnotation."""
    study, series = generate_uid(), generate_uid()
    for index in range(count):
        image = make_text_image(
            index, rows=192, columns=192, bits=16, lines=2 if index in WITH_TEXT else 0
        )
        ds = Dataset()
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID = "P-SAMPLE"
        ds.Modality = "CT"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.InstanceNumber = index + 1
        ds.Rows = ds.Columns = 192
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 0
        ds.PixelData = image.pixels[0].tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(root / f"slice{index:03d}.dcm", enforce_file_format=True)
    return study


def _export(tmp_path: Path, slices: int) -> tuple[job.JobSummary, Path]:
    """Export a generated CT series of ``slices`` with Clean Pixel Data, 1 worker."""
    (tmp_path / "src").mkdir()
    study = _ct_series(tmp_path / "src", slices)
    manifest = write_manifest(tmp_path / "m.csv", [{"StudyInstanceUID": study}])
    request = RunRequest(
        manifest,
        str(tmp_path / "src"),
        tmp_path / "out",
        tmp_path / "ws",
        workers=1,
        options=DEFAULT_OPTIONS | {"clean_pixel_data"},
    )
    return run_job(request), tmp_path / "out"


def test_text_seen_in_one_shard_sends_every_shard_to_ocr(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shard 0's sample is clean, shard 1's is not: shard 0 is read again whole.

    Slice 2 has text and sits in shard 0, behind a clean sample; without the
    second look it would be released with its text.
    """
    monkeypatch.setattr(job, "SHARD_SIZE", 4)
    summary, out = _export(tmp_path, 8)

    assert summary.exported == 8 and summary.quarantined == 0
    for path in (out / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert rapidocr_detector(display(ds.pixel_array)) == [], ds.InstanceNumber
        assert ds.BurnedInAnnotation == "NO"
    counts = json.loads((out / "provenance.json").read_text())["counts"]
    assert counts["instances_exported_by_pixel_check"] == {"ocr": 8}


def test_clean_series_is_released_on_its_sample(tmp_path: Path) -> None:
    """No text in the sample: one instance read, the others copied byte for byte."""
    summary, out = _export(tmp_path, 2)  # slices 0 and 1: no text
    assert summary.exported == 2 and summary.pixels_cleaned == 0
    counts = json.loads((out / "provenance.json").read_text())["counts"]
    assert counts["instances_exported_by_pixel_check"] == {"copied": 1, "sampled": 1}
    for path in (out / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert "BurnedInAnnotation" not in ds  # not checked whole: not claimed
        source = pydicom.dcmread(
            tmp_path / "src" / f"slice{ds.InstanceNumber - 1:03d}.dcm"
        )
        assert ds.PixelData == source.PixelData
        assert np.array_equal(ds.pixel_array, source.pixel_array)
