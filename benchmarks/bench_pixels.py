"""Benchmark of burned-in text scrubbing on generated images with known text.

Reports, per kind of image: recall (share of text pixels that no longer stand
out), over-scrubbing (share of other pixels changed), boxes left after the
last detection round, and frames per second. Run from the repository root:
``python benchmarks/bench_pixels.py [--images N]``.
"""

from __future__ import annotations

import argparse
import time

from exporter.pixels.ocr import rapidocr_detector
from exporter.pixels.scrub import scrub_frames
from exporter.pixels.textimages import make_text_image, over_scrubbing, recall

KINDS: dict[str, dict[str, object]] = {
    "grey 8-bit, text over anatomy": {"bits": 8},
    "grey 16-bit, text over anatomy": {"bits": 16},
    "colour, text over anatomy": {"colour": True},
    "grey 8-bit, 10-12 px text, plain": {"min_height": 10, "anatomy": False},
    "multi-frame (3), 8-bit": {"frames": 3, "lines": 2},
}


def main() -> None:
    """Generate, scrub and measure; print one line per kind of image."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=8, help="images per kind")
    parser.add_argument("--size", type=int, default=512, help="rows and columns")
    parser.add_argument(
        "--bundled", action="store_true", help="also scrub pydicom's own US/SC files"
    )
    args = parser.parse_args()

    rapidocr_detector(make_text_image(0, rows=64, columns=64).pixels[0])  # warm up
    print(f"{'kind':36} {'recall':>7} {'min':>7} {'over %':>7} {'left':>5} {'fps':>6}")
    for kind, settings in KINDS.items():
        recalls, overs, left, frames, seconds = [], [], 0, 0, 0.0
        for seed in range(args.images):
            image = make_text_image(
                1000 + seed,
                rows=args.size,
                columns=args.size,
                **settings,  # type: ignore[arg-type]
            )
            cleaned = image.pixels.copy()
            started = time.perf_counter()
            report = scrub_frames(cleaned, rapidocr_detector)
            seconds += time.perf_counter() - started
            frames += cleaned.shape[0]
            recalls.append(recall(image, cleaned))
            overs.append(over_scrubbing(image, cleaned))
            left += sum(len(r) for r in report.remaining)
        print(
            f"{kind:36} {sum(recalls) / len(recalls):7.4f} {min(recalls):7.4f} "
            f"{100 * sum(overs) / len(overs):7.3f} {left:5d} {frames / seconds:6.2f}"
        )
    if args.bundled:
        bundled()


def bundled() -> None:
    """Scrub pydicom's bundled ultrasound and secondary capture files; report each."""
    import warnings

    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.dataset import Dataset

    from exporter.pixels.clean import clean_pixel_data

    # Only files pydicom ships (others would be fetched over the network).
    names = [
        "examples_ybr_color.dcm",
        "examples_rgb_color.dcm",
        "examples_jpeg2k.dcm",
        "SC_rgb_jpeg_dcmtk.dcm",
        "SC_rgb_rle.dcm",
        "SC_ybr_full_422_uncompressed.dcm",
        "JPGExtended.dcm",
    ]
    print(f"\n{'file':36} {'modality':8} {'frames':>6} {'seconds':>8}  outcome")
    for name in names:
        path = get_testdata_file(name)
        if path is None:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            header = pydicom.dcmread(path, stop_before_pixels=True)
            started = time.perf_counter()
            why = clean_pixel_data(str(path), Dataset())
            seconds = time.perf_counter() - started
        frames = int(header.get("NumberOfFrames", 1) or 1)
        modality = str(header.get("Modality", ""))
        print(f"{name:36} {modality:8} {frames:6d} {seconds:8.2f}  {why or 'cleaned'}")


if __name__ == "__main__":
    main()
