"""Clean Pixel Data in an export: captures released scrubbed, or held with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset

pytest.importorskip("rapidocr", reason="the pixels extra is not installed")

from exporter.engine.job import RunRequest, run_job
from exporter.pixels.clean import clean_pixel_data
from exporter.pixels.ocr import Box, rapidocr_detector
from exporter.policy.profile import DEFAULT_OPTIONS
from exporter.synthetic import make_source, write_manifest


def test_export_releases_captures_scrubbed(tmp_path: Path) -> None:
    """US and secondary capture: scrubbed, BurnedInAnnotation NO, no text left."""
    source = make_source(tmp_path / "src", seed=4, patients=1, with_bad_files=False)
    captures = [s for s in source.studies if s.burned_in]
    manifest = write_manifest(
        tmp_path / "m.csv", [{"StudyInstanceUID": s.study_uid} for s in captures]
    )
    out = tmp_path / "out"

    summary = run_job(
        RunRequest(
            manifest,
            str(tmp_path / "src"),
            out,
            tmp_path / "ws",
            options=DEFAULT_OPTIONS | {"clean_pixel_data"},
        )
    )

    assert summary.quarantined == 0 and summary.pixels_cleaned == 2
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["counts"]["instances_pixels_cleaned"] == 2
    assert "113101" in json.dumps(provenance) or provenance["recipe"]["options"]
    mrn = source.studies[0].patient.patient_id
    for path in (out / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        assert ds.BurnedInAnnotation == "NO"
        assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        view = np.stack([ds.pixel_array.astype(np.uint8)] * 3, axis=-1)
        assert rapidocr_detector(view) == [], path.name
        assert mrn.encode() not in path.read_bytes()


def test_without_the_option_captures_stay_quarantined(tmp_path: Path) -> None:
    """The default profile does not scrub: the captures are held back."""
    source = make_source(tmp_path / "src", seed=4, patients=1, with_bad_files=False)
    captures = [s for s in source.studies if s.burned_in]
    manifest = write_manifest(
        tmp_path / "m.csv", [{"StudyInstanceUID": s.study_uid} for s in captures]
    )
    summary = run_job(
        RunRequest(manifest, str(tmp_path / "src"), tmp_path / "out", tmp_path / "ws")
    )
    assert summary.quarantined == 2 and summary.pixels_cleaned == 0
    provenance = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert provenance["counts"]["instances_not_exported_by_reason"] == {
        "quarantined: may carry burned-in text": 2
    }


def test_text_that_cannot_be_removed_keeps_the_instance_held(tmp_path: Path) -> None:
    """A detector that still sees text after painting: a reason, not a release."""

    def stubborn(image: np.ndarray) -> list[Box]:
        return [Box(0, 0, 4, 4)]

    ds = Dataset()
    why = clean_pixel_data(
        str(get_testdata_file("SC_rgb_dcmtk_+eb+cr.dcm")), ds, stubborn
    )
    assert why is not None and why.startswith("text still found after scrubbing")
    assert "BurnedInAnnotation" not in ds


def test_palette_colour_is_cleaned_in_its_indices() -> None:
    """pydicom's PALETTE COLOR US: text read in colour, painted with an index."""
    from pydicom.pixels import apply_color_lut

    path = str(get_testdata_file("examples_palette.dcm"))
    original = pydicom.dcmread(path)
    assert rapidocr_detector(_rgb8(apply_color_lut(original.pixel_array, original)))
    ds = pydicom.dcmread(path, stop_before_pixels=True)

    assert clean_pixel_data(path, ds) is None

    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    assert ds.BurnedInAnnotation == "NO"
    cleaned = np.frombuffer(ds.PixelData, np.uint8)[: original.pixel_array.size]
    indices = cleaned.reshape(original.pixel_array.shape)
    assert set(np.unique(indices)) <= set(np.unique(original.pixel_array))
    assert rapidocr_detector(_rgb8(apply_color_lut(indices, ds))) == []
    assert (indices != original.pixel_array).mean() < 0.05


def _rgb8(rgb: np.ndarray) -> np.ndarray:
    """A 16-bit palette's colours as the 8-bit image OCR reads."""
    return (rgb.astype(np.float64) * 255 / max(1, rgb.max())).astype(np.uint8)


@pytest.mark.parametrize(
    "name",
    ["SC_ybr_full_422_uncompressed.dcm", "SC_rgb_jpeg_dcmtk.dcm"],
)
def test_ybr_is_cleaned_to_rgb_once(name: str) -> None:
    """YBR (FULL, 422) without text comes out RGB with the original colours, once."""
    ds = Dataset()
    why = clean_pixel_data(str(get_testdata_file(name)), ds)
    assert why is None
    assert ds.PhotometricInterpretation == "RGB" and ds.BurnedInAnnotation == "NO"
    original = pydicom.dcmread(get_testdata_file(name)).pixel_array  # as RGB
    cleaned = np.frombuffer(ds.PixelData, dtype=np.uint8)[: original.size]
    assert np.abs(cleaned.astype(int) - original.reshape(-1).astype(int)).mean() < 1


@pytest.mark.parametrize(
    ("name", "lossy"),
    [
        ("SC_rgb_jpeg_dcmtk.dcm", True),  # JPEG baseline
        ("JPGExtended.dcm", True),
        ("JPEGLSNearLossless_08.dcm", True),
        ("MR_small_RLE.dcm", False),
        ("SC_rgb_rle.dcm", False),
        ("JPEG2000.dcm", True),  # its header says lossy: kept
    ],
)
def test_compressed_sources_are_decoded_and_flagged(name: str, lossy: bool) -> None:
    """pylibjpeg decodes each syntax; a lossy source stays flagged lossy."""
    ds = Dataset()
    why = clean_pixel_data(str(get_testdata_file(name)), ds)
    assert why is None
    assert (ds.get("LossyImageCompression") == "01") is lossy
    assert len(ds.PixelData) % 2 == 0


def test_catalog_records_what_was_done_to_the_pixels(tmp_path: Path) -> None:
    """pixel_check: ocr for the scrubbed captures, one sample per other series."""
    import pyarrow.parquet as pq

    source = make_source(tmp_path / "src", seed=4, patients=1, with_bad_files=False)
    manifest = write_manifest(
        tmp_path / "m.csv", [{"PatientID": source.studies[0].patient.patient_id}]
    )
    out = tmp_path / "out"
    run_job(
        RunRequest(
            manifest,
            str(tmp_path / "src"),
            out,
            tmp_path / "ws",
            options=DEFAULT_OPTIONS | {"clean_pixel_data"},
        )
    )
    table = pq.read_table(out / "catalog" / "instances.parquet").to_pylist()
    checks = {(r["modality"], r["pixel_check"]) for r in table}
    assert ("US", "ocr") in checks and ("OT", "ocr") in checks
    # Every other series: its first instance read as a sample, the rest copied.
    others = [r for r in table if r["modality"] not in ("US", "OT")]
    series = {r["series_uid"] for r in others}
    sampled = [r["series_uid"] for r in others if r["pixel_check"] == "sampled"]
    assert sorted(sampled) == sorted(series)
    assert {r["pixel_check"] for r in others} == {"sampled", "copied"}
    provenance = json.loads((out / "provenance.json").read_text())
    by_check = provenance["counts"]["instances_exported_by_pixel_check"]
    assert by_check["sampled"] == len(series) and by_check["ocr"] == 2


def test_jpeg2000_ultrasound_with_text_is_scrubbed() -> None:
    """pydicom's JPEG 2000 (YBR_RCT) ultrasound: decoded, text painted, RGB out."""
    name = "examples_jpeg2k.dcm"
    ds = Dataset()
    assert clean_pixel_data(str(get_testdata_file(name)), ds) is None
    assert ds.PhotometricInterpretation == "RGB"
    original = pydicom.dcmread(get_testdata_file(name)).pixel_array
    cleaned = np.frombuffer(ds.PixelData, dtype=np.uint8)[: original.size]
    changed = cleaned != original.reshape(-1)
    assert 0 < changed.mean() < 0.05  # its burned-in text, and little else
