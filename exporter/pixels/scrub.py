"""Find burned-in text frame by frame and paint it over in the stored values."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from exporter.pixels.frames import display
from exporter.pixels.ocr import Box, TextDetector

# Text strokes anti-alias into the pixels around a detected box.
MARGIN = 3
# Detection rounds per frame; what is still found after the last is reported.
ROUNDS = 3


@dataclass
class ScrubReport:
    """What was found and painted, frame by frame."""

    boxes: list[list[Box]] = field(default_factory=list)
    remaining: list[list[Box]] = field(default_factory=list)

    @property
    def found(self) -> int:
        """Text boxes found before scrubbing."""
        return sum(len(b) for b in self.boxes)

    @property
    def clean(self) -> bool:
        """No text found after scrubbing."""
        return not any(self.remaining)


def scrub_frames(
    frames: NDArray[np.generic],
    detect: TextDetector,
    monochrome1: bool = False,
    verify: bool = True,
) -> ScrubReport:
    """Paint the text strokes of every detected box of every frame.

    Parameters
    ----------
    frames
        Stored values, (frames, rows, columns[, samples]); changed in place.
    detect
        The text detector (see ``exporter.pixels.ocr``).
    monochrome1
        Whether low values are bright (PS3.3 C.7.6.3.1.2).
    verify
        Look again after painting; what is still found is reported.
    """
    report = ScrubReport()
    for index in range(frames.shape[0]):
        frame = frames[index]
        height, width = frame.shape[:2]
        painted: list[Box] = []
        remaining: list[Box] = []
        # Painting changes what the detector sees: look again, a few times.
        for _ in range(ROUNDS if verify else 1):
            view = display(frame, monochrome1)
            boxes = [b.grown(MARGIN, width, height) for b in detect(view)]
            remaining = boxes
            if not boxes:
                break
            for box in boxes:
                _paint(frame, view, box)
            painted += boxes
        else:
            remaining = detect(display(frame, monochrome1)) if verify else []
        report.boxes.append(painted)
        report.remaining.append(remaining if verify else [])
    return report


def _paint(frame: NDArray[np.generic], view: NDArray[np.uint8], box: Box) -> None:
    """Paint the strokes in ``box`` with the median of what surrounds them.

    The strokes are the minority side of an Otsu split of the box (text is
    thin; bright or dark), grown by one pixel for anti-aliasing. Painting them
    with the local median leaves no letter shapes and keeps the anatomy around.
    """
    region = frame[box.y0 : box.y1, box.x0 : box.x1]
    gray = view[box.y0 : box.y1, box.x0 : box.x1].astype(np.float64).mean(axis=-1)
    strokes = _strokes(gray)
    if not strokes.any() or strokes.all():
        return
    around = region[~strokes].astype(np.float64)
    fill = np.median(around, axis=0).round().astype(region.dtype)
    region[strokes] = fill


def _strokes(gray: NDArray[np.float64]) -> NDArray[np.bool_]:
    """The minority class of an Otsu threshold, dilated by one pixel."""
    histogram, edges = np.histogram(gray, bins=256, range=(0, 256))
    weights = histogram.cumsum().astype(np.float64)
    means = (histogram * edges[:-1]).cumsum()
    total, mean_all = weights[-1], means[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mean_all * weights - total * means) ** 2 / (
            weights * (total - weights)
        )
    if np.all(np.isnan(between)):
        return np.zeros(gray.shape, dtype=bool)  # one flat value: nothing drawn
    threshold = edges[int(np.nanargmax(between))]
    bright = gray > threshold
    strokes = bright if bright.sum() <= bright.size / 2 else ~bright
    grown = strokes.copy()
    grown[1:, :] |= strokes[:-1, :]
    grown[:-1, :] |= strokes[1:, :]
    grown[:, 1:] |= strokes[:, :-1]
    grown[:, :-1] |= strokes[:, 1:]
    return grown
