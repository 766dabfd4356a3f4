"""Burned-in text found by OCR and painted over, on generated images."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rapidocr", reason="the pixels extra is not installed")

from exporter.pixels.ocr import rapidocr_detector
from exporter.pixels.scrub import scrub_frames
from exporter.pixels.textimages import (
    make_text_image,
    over_scrubbing,
    recall,
)

CASES = {
    "MONOCHROME2 8-bit": {"bits": 8},
    "MONOCHROME2 16-bit": {"bits": 16},
    "RGB": {"colour": True},
    "multi-frame": {"frames": 3, "lines": 2},
    "small text, no anatomy": {"min_height": 10, "anatomy": False, "lines": 6},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_text_is_found_and_painted(case: str) -> None:
    """Recall of text pixels at least 0.99, over-scrubbing under 1%, nothing left."""
    image = make_text_image(7, rows=384, columns=384, **CASES[case])  # type: ignore[arg-type]
    cleaned = image.pixels.copy()

    report = scrub_frames(cleaned, rapidocr_detector)

    assert report.found >= len(image.boxes) // 2
    assert report.clean, report.remaining
    assert recall(image, cleaned) >= 0.99
    assert over_scrubbing(image, cleaned) < 0.01


def test_monochrome1_is_painted_with_its_own_background() -> None:
    """MONOCHROME1: bright means low; the fill is the displayed darkest (maximum)."""
    image = make_text_image(3, rows=256, columns=256, bits=16, lines=2, anatomy=False)
    inverted = (65535 - image.pixels.astype(np.int64)).astype(np.uint16)
    cleaned = inverted.copy()

    report = scrub_frames(cleaned, rapidocr_detector, monochrome1=True)

    assert report.found >= 1 and report.clean
    assert cleaned[image.text_mask].min() == inverted.max()


def test_an_image_without_text_is_left_alone() -> None:
    """No text: not a pixel changes."""
    image = make_text_image(5, rows=256, columns=256, lines=0)
    cleaned = image.pixels.copy()

    report = scrub_frames(cleaned, rapidocr_detector)

    assert report.found == 0
    assert np.array_equal(cleaned, image.pixels)
