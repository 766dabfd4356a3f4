"""Small PNG pictures of a frame for the pages, cleaned boxes outlined in red."""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

WIDTH = 240
_RED = (230, 30, 30)


def thumbnail_png(
    view: NDArray[np.uint8], boxes: Iterable[Sequence[int]] = (), width: int = WIDTH
) -> bytes:
    """The 8-bit view of a frame (grey or RGB), ``width`` pixels wide, as PNG.

    ``boxes`` (x0, y0, x1, y1, in the frame's pixels, x1 and y1 exclusive) are
    outlined in red on top of the picture.
    """
    from PIL import Image, ImageDraw

    image = Image.fromarray(view).convert("RGB")
    scale = width / image.width
    image = image.resize((width, max(1, round(image.height * scale))))
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in boxes:
        left, top = x0 * scale, y0 * scale
        right, bottom = max(left, x1 * scale - 1), max(top, y1 * scale - 1)
        draw.rectangle((left, top, right, bottom), outline=_RED, width=2)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def first_frame_view(path: Path) -> NDArray[np.uint8] | None:
    """The 8-bit view of the first frame of the DICOM file at ``path``.

    None when the file cannot be read or its pixel data decoded here.
    """
    import pydicom

    from exporter.pixels.clean import Undecodable, decode

    try:
        frames, _, view = decode(pydicom.dcmread(path), first_frame_only=True)
    except (OSError, Undecodable, pydicom.errors.InvalidDicomError, AttributeError):
        return None
    return view(frames[0])
