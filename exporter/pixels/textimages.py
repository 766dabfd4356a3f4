"""Synthetic images with burned-in text at known places, to measure scrubbing.

Deterministic from a seed. Text is drawn with Pillow's bundled font at the
sizes, places and colours real scanners use: banners in corners, lines over
anatomy, grey or coloured, on 8-bit or 16-bit, single or multi-frame.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from exporter.pixels.ocr import Box

_WORDS = (
    "QUIMBYWELL^ADALINE",
    "MRN 0012345",
    "ACC A998877",
    "DOB 1956-03-12",
    "2019-03-04 14:22:07",
    "ST MUNGO GENERAL",
    "DR BRACKENWELL",
    "L KIDNEY LONG",
)


@dataclass(frozen=True)
class TextImage:
    """Stored values, and where text was drawn (box and the pixels it changed)."""

    pixels: NDArray[np.generic]  # (frames, rows, columns[, 3])
    boxes: tuple[Box, ...]
    text_mask: NDArray[np.bool_]  # (frames, rows, columns): pixels the text changed


def make_text_image(
    seed: int,
    *,
    rows: int = 512,
    columns: int = 512,
    bits: int = 8,
    colour: bool = False,
    frames: int = 1,
    lines: int = 4,
    min_height: int = 10,
    anatomy: bool = True,
) -> TextImage:
    """An image with ``lines`` of text per frame, of at least ``min_height`` px."""
    from PIL import Image, ImageDraw, ImageFont

    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    top = (1 << bits) - 1
    background = _background(rows, columns, noise, anatomy) * (top * 0.45)
    stack, masks, boxes = [], [], []
    for _ in range(frames):
        canvas = Image.new("L", (columns, rows), 0)
        draw = ImageDraw.Draw(canvas)
        for line in range(lines):
            size = rng.randint(min_height, min_height + 14)
            font = ImageFont.load_default(size=size)
            text = rng.choice(_WORDS)
            left, upper, right, lower = (
                int(v) for v in draw.textbbox((0, 0), text, font=font)
            )
            width, height = right - left, lower - upper
            x = rng.randint(2, max(2, columns - width - 2))
            band = rows // lines
            y = rng.randint(
                line * band, max(line * band, (line + 1) * band - height - 2)
            )
            draw.text((x - left, y - upper), text, fill=255, font=font)
            boxes.append(Box(x, y, x + width, y + height))
        mask = np.asarray(canvas) > 96
        frame = background.copy()
        frame[mask] = top * rng.uniform(0.85, 1.0)
        if colour:
            tint = np.array([1.0, rng.uniform(0.7, 1.0), rng.uniform(0.2, 1.0)])
            frame = np.stack([background] * 3, axis=-1)
            frame[mask] = top * tint
        dtype = np.uint8 if bits <= 8 else np.uint16
        stack.append(np.clip(frame, 0, top).round().astype(dtype))
        masks.append(mask)
    return TextImage(np.stack(stack), tuple(boxes), np.stack(masks))


def _background(
    rows: int, columns: int, noise: np.random.Generator, anatomy: bool
) -> NDArray[np.float64]:
    """A dark field, with a bright disc of noisy 'anatomy' in the middle."""
    field = np.full((rows, columns), 0.05)
    if anatomy:
        yy, xx = np.mgrid[0:rows, 0:columns]
        disc = ((yy - rows / 2) ** 2 + (xx - columns / 2) ** 2) < (
            min(rows, columns) / 3
        ) ** 2
        field[disc] = 0.5 + 0.2 * noise.random(int(disc.sum()))
    return field


def recall(image: TextImage, cleaned: NDArray[np.generic]) -> float:
    """Share of the text pixels that no longer stand out from the background."""
    original = image.pixels
    text = image.text_mask
    if not text.any():
        return 1.0
    changed = (
        np.any(cleaned != original, axis=-1)
        if cleaned.ndim == 4
        else cleaned != original
    )
    return float((changed & text).sum() / text.sum())


def over_scrubbing(image: TextImage, cleaned: NDArray[np.generic]) -> float:
    """Share of the non-text pixels the scrubbing changed."""
    original = image.pixels
    changed = (
        np.any(cleaned != original, axis=-1)
        if cleaned.ndim == 4
        else cleaned != original
    )
    others = ~image.text_mask
    return float((changed & others).sum() / max(1, others.sum()))
