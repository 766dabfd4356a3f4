"""Frames of a decoded image, and the 8-bit views text detection looks at."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def as_frames(
    pixels: NDArray[np.generic], frames: int, samples: int
) -> NDArray[np.generic]:
    """``pixels`` as pydicom decodes them, shaped (frames, rows, cols[, samples])."""
    if frames == 1 and pixels.ndim == (3 if samples > 1 else 2):
        return pixels[np.newaxis, ...]
    return pixels


def display(frame: NDArray[np.generic], monochrome1: bool = False) -> NDArray[np.uint8]:
    """An 8-bit RGB view of one frame for detection, stretched to its own range.

    Text is drawn at the extremes of a display; a min-max stretch keeps it
    contrasting whatever the bit depth or rescale.
    """
    data = frame.astype(np.float64)
    low, high = float(data.min()), float(data.max())
    scaled = (
        np.zeros_like(data) if high <= low else (data - low) * (255.0 / (high - low))
    )
    if monochrome1:
        scaled = 255.0 - scaled
    view = scaled.round().astype(np.uint8)
    if view.ndim == 2:
        view = np.stack([view] * 3, axis=-1)
    return view
