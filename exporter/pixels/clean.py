"""Clean Pixel Data for one instance: decode, scrub every frame, store uncompressed.

Policy: a cleaned image is written uncompressed (Explicit VR Little Endian) in
its own photometric interpretation, except YBR which becomes RGB; a lossy source
keeps LossyImageCompression 01. BurnedInAnnotation is set to NO only here, after
every frame was checked and nothing legible was left.
"""

from __future__ import annotations

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from exporter.pixels.frames import as_frames
from exporter.pixels.ocr import TextDetector, rapidocr_detector
from exporter.pixels.regions import Region
from exporter.pixels.scrub import scrub_frames


def clean_pixel_data(
    path: str,
    ds: Dataset,
    detect: TextDetector | None = rapidocr_detector,
    regions: list[Region] | None = None,
) -> str | None:
    """Put the scrubbed pixels of the file at ``path`` into the cleaned ``ds``.

    Returns
    -------
    str or None
        Why the pixels could not be cleaned (the instance stays quarantined),
        or None when ``ds`` now holds clean, uncompressed pixel data.
    """
    source = pydicom.dcmread(path, force=True)
    syntax = getattr(getattr(source, "file_meta", None), "TransferSyntaxUID", None)
    photometric = str(source.get("PhotometricInterpretation", "")).upper()
    if photometric == "PALETTE COLOR":
        return "palette colour images are not cleaned yet"
    try:
        pixels = source.pixel_array
    except Exception as exc:
        name = syntax.name if syntax is not None else "unknown transfer syntax"
        return f"cannot decode the pixel data ({name}: {type(exc).__name__})"
    if photometric.startswith("YBR"):
        # pydicom's pixel_array already returns RGB for every YBR variant
        # (YBR_FULL, YBR_FULL_422, and JPEG 2000's YBR_RCT and YBR_ICT).
        photometric = "RGB"
    frames = np.array(
        as_frames(
            pixels,
            int(source.get("NumberOfFrames", 1) or 1),
            int(source.get("SamplesPerPixel", 1) or 1),
        )
    )
    if regions:
        _clean_regions(frames, regions, photometric == "MONOCHROME1")
    if detect is not None:
        report = scrub_frames(frames, detect, monochrome1=photometric == "MONOCHROME1")
        if not report.clean:
            left = sum(len(r) for r in report.remaining)
            return f"text still found after scrubbing ({left} boxes)"

    data = frames.astype(frames.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    ds["PixelData"].VR = "OB" if frames.dtype.itemsize == 1 else "OW"
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    # PS3.3 C.7.6.1.1.5: once lossy, always flagged lossy, even uncompressed.
    if str(source.get("LossyImageCompression", "")) == "01" or syntax in _LOSSY:
        ds.LossyImageCompression = "01"
    ds.BurnedInAnnotation = "NO"
    return None


def _clean_regions(
    frames: np.ndarray, regions: list[Region], monochrome1: bool
) -> None:
    """deid's mask: regions marked 0 are cleaned, 1 kept, in file order, per frame."""
    keep = np.ones(frames.shape[1:3], dtype=bool)
    for value, box in regions:
        if box is None:
            keep[:, :] = bool(value)
        else:
            x0, y0, x1, y1 = box
            keep[y0:y1, x0:x1] = bool(value)
    fill = frames.max() if monochrome1 else frames.min()
    frames[:, ~keep] = fill


# Transfer syntaxes that are always lossy; JPEG 2000 (.91) and HTJ2K (.203)
# may be either, and then the source's own LossyImageCompression decides.
_LOSSY = {
    "1.2.840.10008.1.2.4.50",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51",  # JPEG Extended
    "1.2.840.10008.1.2.4.81",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2
    "1.2.840.10008.1.2.4.101",
    "1.2.840.10008.1.2.4.102",  # MPEG-4
    "1.2.840.10008.1.2.4.103",
    "1.2.840.10008.1.2.4.104",
    "1.2.840.10008.1.2.4.105",
    "1.2.840.10008.1.2.4.106",
    "1.2.840.10008.1.2.4.107",  # HEVC
    "1.2.840.10008.1.2.4.108",
}
