"""Clean Pixel Data for one instance: decode, scrub every frame, store uncompressed.

Policy: a cleaned image is written uncompressed (Explicit VR Little Endian) in
its own photometric interpretation, except YBR which becomes RGB (pydicom
decodes it to RGB). PALETTE COLOR stays indexed: text is found in the colours
and painted with an index. A lossy source keeps LossyImageCompression 01, and
the compression it went through is added to the method and ratio history.
BurnedInAnnotation is set to NO only here, after every frame was checked and
nothing legible was left.
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from exporter.pixels.frames import as_frames, display
from exporter.pixels.ocr import TextDetector, rapidocr_detector
from exporter.pixels.regions import Region
from exporter.pixels.scrub import scrub_frames

View = Callable[[NDArray[np.generic]], NDArray[np.uint8]]


class Undecodable(Exception):
    """The pixel data cannot be decoded here; the message says why."""


def clean_pixel_data(
    path: str | bytes,
    ds: Dataset,
    detect: TextDetector | None = rapidocr_detector,
    regions: list[Region] | None = None,
    painted: list[tuple[int, int, int, int]] | None = None,
    pictures: list[NDArray[np.uint8]] | None = None,
) -> str | None:
    """Put the scrubbed pixels of the file at ``path`` into the cleaned ``ds``.

    Parameters
    ----------
    path
        The source file, or its bytes when the caller has read it already.
    detect
        The text detector, or None to clean the ``regions`` alone.
    regions
        deid's mask: boxes to clean (0) or keep (1), in order, in every frame.
    painted
        When given, receives the boxes (x0, y0, x1, y1) cleaned in any frame:
        the rule regions cleaned and the text boxes painted, for the report.
    pictures
        When given, receives two 8-bit views of the first frame, before and
        after cleaning, stretched alike (for the workspace's review page).

    Returns
    -------
    str or None
        Why the pixels could not be cleaned (the instance stays quarantined),
        or None when ``ds`` now holds clean, uncompressed pixel data.
    """
    source = _read(path)
    try:
        frames, photometric, view = decode(source)
    except Undecodable as exc:
        return str(exc)
    original = frames[0].copy() if pictures is not None else None
    boxes: set[tuple[int, int, int, int]] = set()
    if regions:
        _clean_regions(frames, regions, _darkest(source, frames, photometric))
        rows, columns = frames.shape[1:3]
        boxes |= {box or (0, 0, columns, rows) for keep, box in regions if not keep}
    if detect is not None:
        indexed = photometric == "PALETTE COLOR"
        report = scrub_frames(
            frames, detect, view=view, fill="mode" if indexed else "median"
        )
        if not report.clean:
            left = sum(len(r) for r in report.remaining)
            return f"text still found after scrubbing ({left} boxes)"
        boxes |= {(b.x0, b.y0, b.x1, b.y1) for frame in report.boxes for b in frame}
    if original is not None and pictures is not None:
        # One view over both side by side: the same stretch for each.
        both = view(np.concatenate([original, frames[0]], axis=1))
        half = original.shape[1]
        pictures += [both[:, :half], both[:, half:]]
    _store(ds, source, frames, photometric)
    if painted is not None:
        painted += sorted(boxes)
    return None


def sample_shows_text(path: str | bytes, detect: TextDetector) -> bool | None:
    """Whether the first frame of the file at ``path`` (or its bytes) shows text.

    None when the pixel data cannot be decoded (nothing could be looked at).
    """
    source = _read(path)
    try:
        frames, _, view = decode(source, first_frame_only=True)
    except Undecodable:
        return None
    return bool(detect(view(frames[0])))


def _read(path: str | bytes) -> Dataset:
    """The whole source dataset, from its path or from bytes already read."""
    return pydicom.dcmread(
        io.BytesIO(path) if isinstance(path, bytes) else path, force=True
    )


def decode(
    source: Dataset, first_frame_only: bool = False
) -> tuple[NDArray[np.generic], str, View]:
    """Stored values as (frames, rows, columns[, samples]), the photometric
    interpretation they are in, and the 8-bit view that detection looks at.

    Raises
    ------
    Undecodable
        With the reason, naming the transfer syntax.
    """
    syntax = getattr(getattr(source, "file_meta", None), "TransferSyntaxUID", None)
    photometric = str(source.get("PhotometricInterpretation", "")).upper()
    try:
        if first_frame_only and int(source.get("NumberOfFrames", 1) or 1) > 1:
            source.pixel_array_options(index=0)  # decode one frame, not all
        pixels = source.pixel_array
    except Exception as exc:
        name = syntax.name if syntax is not None else "unknown transfer syntax"
        raise Undecodable(
            f"cannot decode the pixel data ({name}: {type(exc).__name__})"
        ) from None
    if photometric.startswith("YBR"):
        # pydicom's pixel_array already returns RGB for every YBR variant
        # (YBR_FULL, YBR_FULL_422, and JPEG 2000's YBR_RCT and YBR_ICT).
        photometric = "RGB"
    frames = np.array(
        as_frames(
            pixels,
            1 if first_frame_only else int(source.get("NumberOfFrames", 1) or 1),
            int(source.get("SamplesPerPixel", 1) or 1),
        )
    )
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            apply_color_lut(frames[0][:1, :1], source)
        except Exception as exc:
            raise Undecodable(
                f"cannot read the palette colour lookup tables ({type(exc).__name__})"
            ) from None

        def view(frame: NDArray[np.generic]) -> NDArray[np.uint8]:
            return display(apply_color_lut(frame, source))

        return frames, photometric, view

    monochrome1 = photometric == "MONOCHROME1"
    return frames, photometric, lambda frame: display(frame, monochrome1)


def _darkest(source: Dataset, frames: NDArray[np.generic], photometric: str) -> int:
    """The stored value that displays darkest: what blanked regions are filled with."""
    if photometric == "MONOCHROME1":
        return int(frames.max())
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        used = np.unique(frames)
        colours = apply_color_lut(used, source).astype(np.int64).sum(axis=-1)
        return int(used[int(np.argmin(colours))])
    return int(frames.min())


def _clean_regions(
    frames: NDArray[np.generic], regions: list[Region], fill: int
) -> None:
    """deid's mask: regions marked 0 are cleaned, 1 kept, in file order, per frame."""
    keep = np.ones(frames.shape[1:3], dtype=bool)
    for value, box in regions:
        if box is None:
            keep[:, :] = bool(value)
        else:
            x0, y0, x1, y1 = box
            keep[y0:y1, x0:x1] = bool(value)
    frames[:, ~keep] = fill


def _store(
    ds: Dataset, source: Dataset, frames: NDArray[np.generic], photometric: str
) -> None:
    """Write the cleaned frames into ``ds`` uncompressed, with the flags that follow."""
    if int(source.get("BitsAllocated", 8)) == 1:
        from pydicom.pixels import pack_bits

        data = pack_bits(frames.reshape(-1).astype(np.uint8), pad=False)
    else:
        data = frames.astype(frames.dtype.newbyteorder("<"), copy=False).tobytes()
    if len(data) % 2:
        data += b"\x00"
    ds.PixelData = data
    ds["PixelData"].VR = "OW" if frames.dtype.itemsize > 1 else "OB"
    ds.PhotometricInterpretation = photometric
    if photometric == "RGB":
        ds.PlanarConfiguration = 0
    _lossy_history(ds, source, len(data))
    ds.BurnedInAnnotation = "NO"


def _lossy_history(ds: Dataset, source: Dataset, decoded_size: int) -> None:
    """PS3.3 C.7.6.1.1.5: once lossy, always flagged lossy, even uncompressed.

    A source stored in a lossy syntax whose header does not record that step
    gets it added to LossyImageCompressionMethod, with the ratio it achieved.
    """
    syntax = str(getattr(getattr(source, "file_meta", None), "TransferSyntaxUID", ""))
    method = _LOSSY.get(syntax)
    if method is None and str(source.get("LossyImageCompression", "")) != "01":
        return
    ds.LossyImageCompression = "01"
    if method is None:
        return
    methods = _multi(source.get("LossyImageCompressionMethod"))
    if method in methods:
        return
    ratios = _multi(source.get("LossyImageCompressionRatio"))
    stored = len(source.PixelData) if "PixelData" in source else 0
    ratio = f"{decoded_size / stored:.2f}" if stored else ""
    if len(ratios) == len(methods) and ratio:
        ds.LossyImageCompressionRatio = [*ratios, ratio]
    ds.LossyImageCompressionMethod = [*methods, method]


def _multi(element: object) -> list[str]:
    value = getattr(element, "value", None)
    if value is None or value == "":
        return []
    if isinstance(value, str | float | int):
        return [str(value)]
    return [str(v) for v in value]


# Transfer syntaxes that are always lossy, with their defined term for
# LossyImageCompressionMethod (PS3.3 C.7.6.1.1.5.1). JPEG 2000 (.91) and
# HTJ2K (.203) may be either; then the source's own LossyImageCompression decides.
_LOSSY = {
    "1.2.840.10008.1.2.4.50": "ISO_10918_1",  # JPEG Baseline
    "1.2.840.10008.1.2.4.51": "ISO_10918_1",  # JPEG Extended
    "1.2.840.10008.1.2.4.81": "ISO_14495_1",  # JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.100": "ISO_13818_2",  # MPEG2
    "1.2.840.10008.1.2.4.101": "ISO_13818_2",
    "1.2.840.10008.1.2.4.102": "ISO_14496_10",  # MPEG-4 AVC/H.264
    "1.2.840.10008.1.2.4.103": "ISO_14496_10",
    "1.2.840.10008.1.2.4.104": "ISO_14496_10",
    "1.2.840.10008.1.2.4.105": "ISO_14496_10",
    "1.2.840.10008.1.2.4.106": "ISO_14496_10",
    "1.2.840.10008.1.2.4.107": "ISO_23008_2",  # HEVC/H.265
    "1.2.840.10008.1.2.4.108": "ISO_23008_2",
}
