"""Find burned-in text frame by frame and paint it over in the stored values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

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
    view: Callable[[NDArray[np.generic]], NDArray[np.uint8]] | None = None,
    fill: Literal["median", "mode"] = "median",
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
    view
        The 8-bit RGB image detection sees for a frame of stored values;
        by default the frame stretched to its range (``monochrome1`` inverted).
    fill
        What strokes are painted with: the median of the stored values around
        them, or their most common value (for indices into a palette, where a
        median means nothing).
    """
    look = view or (lambda frame: display(frame, monochrome1))
    report = ScrubReport()
    for index in range(frames.shape[0]):
        frame = frames[index]
        height, width = frame.shape[:2]
        painted: list[Box] = []
        remaining: list[Box] = []
        # Painting changes what the detector sees: look again, a few times.
        for _ in range(ROUNDS if verify else 1):
            seen = look(frame)
            boxes = [b.grown(MARGIN, width, height) for b in detect(seen)]
            remaining = boxes
            if not boxes:
                break
            for box in boxes:
                _paint(frame, seen, box, fill)
            painted += boxes
        else:
            remaining = detect(look(frame)) if verify else []
        report.boxes.append(painted)
        report.remaining.append(remaining if verify else [])
    return report


def _paint(
    frame: NDArray[np.generic],
    view: NDArray[np.uint8],
    box: Box,
    fill: Literal["median", "mode"] = "median",
) -> None:
    """Paint the strokes in ``box`` with the median (or mode) of what surrounds them.

    The strokes are the minority side of an Otsu split of the box (text is
    thin; bright or dark). The pixels bordering them are painted too when
    they look more like the strokes than the surroundings (anti-aliasing).
    Painting with the local median leaves no letter shapes and keeps the
    anatomy around.
    """
    region = frame[box.y0 : box.y1, box.x0 : box.x1]
    gray = view[box.y0 : box.y1, box.x0 : box.x1].astype(np.float64).mean(axis=-1)
    core = _strokes(gray)
    if not core.any() or core.all():
        return
    grown = _grow(core)
    outside = ~grown
    if not outside.any():
        outside = ~core
    ring = grown & ~core
    stroke_level = float(gray[core].mean())
    around_level = float(np.median(gray[outside]))
    strokes = core | (
        ring & (np.abs(gray - stroke_level) < np.abs(gray - around_level))
    )
    around = region[outside]
    if fill == "mode":
        values, counts = np.unique(around, axis=0, return_counts=True)
        region[strokes] = values[int(np.argmax(counts))]
        return
    region[strokes] = (
        np.median(around.astype(np.float64), axis=0).round().astype(region.dtype)
    )


def _grow(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """``mask`` dilated by one pixel (4-neighbourhood)."""
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    grown[:-1, :] |= mask[1:, :]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    return grown


def _strokes(gray: NDArray[np.float64]) -> NDArray[np.bool_]:
    """The minority class of an Otsu threshold."""
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
    # Bins up to the best split are the dark class: bright starts one edge on.
    threshold = edges[int(np.nanargmax(between)) + 1]
    bright = gray >= threshold
    return bright if bright.sum() <= bright.size / 2 else ~bright
