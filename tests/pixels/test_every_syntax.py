"""Clean Pixel Data on every photometric interpretation, bit depth and syntax.

Two matrices. pydicom's bundled files cover the transfer syntaxes that only
other toolkits write (JPEG, JPEG-LS, big endian, deflate, 1 and 32 bits): a
region is blanked and the written file must decode to the source's pixels
with only that region changed. Generated images with text at known places go
through OCR in every syntax pydicom can encode, and must come out clean.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

pytest.importorskip("rapidocr", reason="the pixels extra is not installed")

from exporter.pixels.clean import clean_pixel_data
from exporter.pixels.ocr import rapidocr_detector
from exporter.pixels.textimages import make_text_image, over_scrubbing, recall

# One bundled file per syntax, photometric interpretation and bit depth.
BUNDLED = [
    "image_dfl.dcm",  # deflated, MONOCHROME2 8-bit
    "MR_small_bigendian.dcm",  # big endian, 16-bit
    "SC_rgb_small_odd_big_endian.dcm",  # big endian RGB, odd length
    "liver_1frame.dcm",  # 1-bit
    "rtdose.dcm",  # implicit, 32-bit, 15 frames
    "MR_small_implicit.dcm",
    "examples_rgb_color.dcm",
    "examples_palette.dcm",  # PALETTE COLOR
    "SC_ybr_full_422_uncompressed.dcm",
    "examples_ybr_color.dcm",  # JPEG baseline YBR_FULL_422, 30 frames
    "SC_rgb_jpeg_dcmtk.dcm",  # JPEG baseline YBR_FULL
    "JPGExtended.dcm",  # JPEG extended, 12 bits in 16
    "SC_rgb_jpeg_gdcm.dcm",  # JPEG lossless SV1
    "MR_small_jpeg_ls_lossless.dcm",
    "JPEGLSNearLossless_16.dcm",
    "SC_rgb_jls_lossy_line.dcm",
    "MR_small_jp2klossless.dcm",
    "GDCMJ2K_TextGBR.dcm",  # JPEG 2000 lossless, YBR_RCT
    "693_J2KI.dcm",  # JPEG 2000
    "SC_rgb_rle_16bit_2frame.dcm",
    "SC_rgb_rle_32bit.dcm",
    "rtdose_rle.dcm",  # RLE 32-bit, 15 frames
    "MR_small_RLE.dcm",
]
CORNER = (0, (0, 0, 8, 4))  # deid's x0,y0,x1,y1: blank the top-left 8x4


def _as_written(ds: Dataset) -> Dataset:
    """``ds`` written as the exporter writes a cleaned instance, and read back."""
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    pydicom.dcmwrite(
        buffer, ds, implicit_vr=False, little_endian=True, enforce_file_format=True
    )
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_file_is_decoded_cleaned_and_written_whole(name: str) -> None:
    """Only the blanked region changes; the file decodes to the same pixels."""
    path = str(get_testdata_file(name))
    source = pydicom.dcmread(path)
    expected = source.pixel_array.copy()
    frames = int(source.get("NumberOfFrames", 1) or 1)
    if frames == 1:
        expected = expected[np.newaxis]
    photometric = str(source.PhotometricInterpretation)
    ds = pydicom.dcmread(path, stop_before_pixels=True)

    assert clean_pixel_data(path, ds, detect=None, regions=[CORNER]) is None

    written = _as_written(ds)
    cleaned = written.pixel_array.reshape(expected.shape)
    if photometric == "MONOCHROME1":
        fill = expected.max()
    elif photometric == "PALETTE COLOR":
        fill = cleaned[0, 0, 0]
    else:
        fill = expected.min()
    assert (cleaned[:, :4, :8] == fill).all()
    outside = np.ones(expected.shape[1:3], dtype=bool)
    outside[:4, :8] = False
    assert np.array_equal(cleaned[:, outside], expected[:, outside])
    assert written.BurnedInAnnotation == "NO"
    if photometric.startswith("YBR"):
        assert written.PhotometricInterpretation == "RGB"
    else:
        assert written.PhotometricInterpretation == photometric


def test_undecodable_syntax_gives_the_reason() -> None:
    """JPEG-lossy.dcm (12-bit extended) cannot be decoded here: said, not guessed."""
    path = str(get_testdata_file("JPEG-lossy.dcm"))
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    why = clean_pixel_data(path, ds, detect=None, regions=[CORNER])
    assert why is not None and why.startswith("cannot decode the pixel data (JPEG")
    assert "BurnedInAnnotation" not in ds


def test_lossy_history_is_completed() -> None:
    """A JPEG-LS near-lossless source that does not say so gets its history."""
    path = str(get_testdata_file("JPEGLSNearLossless_08.dcm"))
    assert "LossyImageCompression" not in pydicom.dcmread(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert clean_pixel_data(path, ds, detect=None, regions=[CORNER]) is None
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_14495_1"
    assert float(ds.LossyImageCompressionRatio) > 1


# Generated images with text: each photometric interpretation, depth, frames,
# and every syntax pydicom encodes here.
GENERATED = {
    "MONOCHROME2 8-bit, explicit": ({"bits": 8}, "MONOCHROME2", ExplicitVRLittleEndian),
    "MONOCHROME2 16-bit, implicit": (
        {"bits": 16},
        "MONOCHROME2",
        ImplicitVRLittleEndian,
    ),
    "MONOCHROME1 16-bit, explicit": (
        {"bits": 16},
        "MONOCHROME1",
        ExplicitVRLittleEndian,
    ),
    "MONOCHROME2 8-bit, deflated": (
        {"bits": 8},
        "MONOCHROME2",
        DeflatedExplicitVRLittleEndian,
    ),
    "MONOCHROME2 16-bit, RLE": ({"bits": 16}, "MONOCHROME2", RLELossless),
    "MONOCHROME2 16-bit, JPEG 2000 lossless": (
        {"bits": 16},
        "MONOCHROME2",
        JPEG2000Lossless,
    ),
    "MONOCHROME2 8-bit, JPEG 2000 lossy": ({"bits": 8}, "MONOCHROME2", JPEG2000),
    "RGB, explicit": ({"colour": True}, "RGB", ExplicitVRLittleEndian),
    "RGB, RLE": ({"colour": True}, "RGB", RLELossless),
    "YBR_FULL, explicit": ({"colour": True}, "YBR_FULL", ExplicitVRLittleEndian),
    "multi-frame, RLE": ({"frames": 3, "lines": 2}, "MONOCHROME2", RLELossless),
}


def _write(
    path: Path, pixels: np.ndarray, photometric: str, syntax: pydicom.uid.UID
) -> None:
    """A secondary capture holding ``pixels`` (frames first) in ``syntax``."""
    frames, rows, columns = pixels.shape[:3]
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 3 if pixels.ndim == 4 else 1
    ds.BitsAllocated = ds.BitsStored = 8 * pixels.dtype.itemsize
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.PhotometricInterpretation = photometric
    if ds.SamplesPerPixel == 3:
        ds.PlanarConfiguration = 0
    if frames > 1:
        ds.NumberOfFrames = frames
    data = pixels if frames > 1 else pixels[0]
    if photometric == "YBR_FULL":
        from pydicom.pixels import convert_color_space

        data = convert_color_space(data, "RGB", "YBR_FULL")
    ds.file_meta = FileMetaDataset()
    if syntax in (JPEG2000Lossless, JPEG2000, RLELossless):
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = data.tobytes()
        kwargs = {"j2k_cr": [20]} if syntax == JPEG2000 else {}
        ds.compress(syntax, data, **kwargs)  # type: ignore[arg-type]
        if syntax == JPEG2000:
            ds.LossyImageCompression = "01"
    else:
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = data.tobytes()
    ds.save_as(path, enforce_file_format=True)


@pytest.mark.parametrize("case", sorted(GENERATED))
def test_generated_text_is_scrubbed_in_every_syntax(case: str, tmp_path: Path) -> None:
    """Recall at least 0.99 and over-scrubbing under 1% after the file round trip."""
    params, photometric, syntax = GENERATED[case]
    image = make_text_image(11, rows=320, columns=320, **params)  # type: ignore[arg-type]
    pixels = image.pixels
    if photometric == "MONOCHROME1":
        pixels = (np.iinfo(pixels.dtype).max - pixels).astype(pixels.dtype)
    path = tmp_path / "text.dcm"
    _write(path, pixels, photometric, syntax)
    source = pydicom.dcmread(path)
    decoded = source.pixel_array.reshape(pixels.shape)  # YBR decodes to RGB
    ds = pydicom.dcmread(path, stop_before_pixels=True)

    assert clean_pixel_data(str(path), ds) is None

    written = _as_written(ds)
    cleaned = written.pixel_array.reshape(pixels.shape)
    baseline = dataclasses.replace(image, pixels=decoded)
    assert recall(baseline, cleaned) >= 0.99
    if syntax == JPEG2000:
        # Lossy coding (here 20:1) smears the strokes into their surroundings:
        # the two pixels around them count as text, and the bar is 2%.
        mask = image.text_mask
        for _ in range(2):
            mask = _grow(mask)
        baseline = dataclasses.replace(baseline, text_mask=mask)
        assert over_scrubbing(baseline, cleaned) < 0.02
    else:
        assert over_scrubbing(baseline, cleaned) < 0.01
    for frame in cleaned:
        view = frame if frame.ndim == 3 else np.stack([frame] * 3, axis=-1)
        scaled = (view.astype(np.float64) * 255 / max(1, view.max())).astype(np.uint8)
        if photometric == "MONOCHROME1":
            scaled = 255 - scaled
        assert rapidocr_detector(scaled) == []
    assert written.BurnedInAnnotation == "NO"
    assert (written.get("LossyImageCompression") == "01") is (syntax == JPEG2000)


def _grow(mask: np.ndarray) -> np.ndarray:
    grown = mask.copy()
    grown[:, 1:, :] |= mask[:, :-1, :]
    grown[:, :-1, :] |= mask[:, 1:, :]
    grown[:, :, 1:] |= mask[:, :, :-1]
    grown[:, :, :-1] |= mask[:, :, 1:]
    return grown


def test_big_endian_capture_is_cleaned_through_an_export(tmp_path: Path) -> None:
    """The worker rewrites a big endian source little endian (save_as refuses)."""
    import shutil

    from exporter.engine.job import RunRequest, run_job
    from exporter.policy.profile import DEFAULT_OPTIONS
    from exporter.synthetic import write_manifest

    name = "SC_rgb_small_odd_big_endian.dcm"
    (tmp_path / "src").mkdir()
    shutil.copy(get_testdata_file(name), tmp_path / "src" / name)
    original = pydicom.dcmread(get_testdata_file(name))
    manifest = write_manifest(
        tmp_path / "m.csv", [{"StudyInstanceUID": original.StudyInstanceUID}]
    )
    summary = run_job(
        RunRequest(
            manifest,
            str(tmp_path / "src"),
            tmp_path / "out",
            tmp_path / "ws",
            options=DEFAULT_OPTIONS | {"clean_pixel_data"},
        )
    )
    assert summary.exported == 1 and summary.pixels_cleaned == 1
    (path,) = (tmp_path / "out" / "dicom").rglob("*.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(ds.pixel_array, original.pixel_array)
