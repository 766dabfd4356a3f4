"""Text detection with RapidOCR (PaddleOCR models in ONNX, shipped in its wheel).

Chosen over Tesseract (lower recall on small and coloured text, a system
binary) and EasyOCR/PaddleOCR (which download weights at run time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates, end-exclusive."""

    x0: int
    y0: int
    x1: int
    y1: int

    def grown(self, margin: int, width: int, height: int) -> Box:
        """The box grown by ``margin`` pixels, clipped to the image."""
        return Box(
            max(0, self.x0 - margin),
            max(0, self.y0 - margin),
            min(width, self.x1 + margin),
            min(height, self.y1 + margin),
        )


# A detection is kept when its text reads with this confidence, and is no
# taller than this share of the image (a line of text, not a region).
MIN_SCORE = 0.5
MAX_LINE_SHARE = 0.25


class TextDetector(Protocol):
    """Finds text boxes in an 8-bit RGB image."""

    def __call__(self, image: NDArray[np.uint8]) -> list[Box]: ...


class MissingExtra(RuntimeError):
    """The ``pixels`` extra is not installed."""


@cache
def _engine() -> Any:
    try:
        from rapidocr import RapidOCR
    except ImportError as exc:
        raise MissingExtra(
            "text detection needs the pixels extra: pip install 'exporter[pixels]'"
        ) from exc
    # RapidOCR logs each model it loads, and every empty result: keep it quiet
    # (before construction, and after, which sets its own level).
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    engine = RapidOCR()
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return engine


def rapidocr_lines(image: NDArray[np.uint8]) -> list[tuple[Box, str]]:
    """Each legible line RapidOCR reads in ``image`` (rows, columns, 3), boxed."""
    result = _engine()(image)
    boxes = getattr(result, "boxes", None)
    if boxes is None:
        return []
    texts = getattr(result, "txts", None) or [""] * len(boxes)
    scores = getattr(result, "scores", None) or [1.0] * len(boxes)
    height = image.shape[0]
    found = []
    for quad, text, score in zip(np.asarray(boxes), texts, scores, strict=False):
        xs, ys = quad[:, 0], quad[:, 1]
        box = Box(
            int(np.floor(xs.min())),
            int(np.floor(ys.min())),
            int(np.ceil(xs.max())) + 1,
            int(np.ceil(ys.max())) + 1,
        )
        # Texture (anatomy, noise) can look like text to the detector: keep a
        # box only when something legible was read in it, at a line's height.
        legible = any(c.isalnum() for c in str(text)) and float(score) >= MIN_SCORE
        if legible and box.y1 - box.y0 <= height * MAX_LINE_SHARE:
            found.append((box, str(text)))
    return found


def rapidocr_detector(image: NDArray[np.uint8]) -> list[Box]:
    """Text boxes RapidOCR finds and can read in ``image`` (rows, columns, 3)."""
    return [box for box, _ in rapidocr_lines(image)]


def ocr_text(image: NDArray[np.uint8]) -> list[str]:
    """The legible lines of text in ``image``, as read."""
    return [text for _, text in rapidocr_lines(image)]
