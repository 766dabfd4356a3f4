"""Benchmark of burned-in text scrubbing on generated images with known text.

Reports, per kind of image: recall (share of text pixels that no longer stand
out), over-scrubbing (share of other pixels changed), boxes left after the
last detection round, and frames per second. Run from the repository root:
``python benchmarks/bench_pixels.py [--images N] [--bundled] [--modalities]``.

``--modalities`` runs whole exports (``run_job``, one worker) of generated
series per modality with and without Clean Pixel Data and reports instances
per second: what the policy costs where it reads every frame (US, secondary
capture) and where it reads one sample per series (CT, MR).
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
    parser.add_argument(
        "--modalities",
        action="store_true",
        help="also time whole exports per modality, with and without cleaning",
    )
    parser.add_argument(
        "--only-modalities", action="store_true", help="skip the image kinds"
    )
    args = parser.parse_args()
    if args.only_modalities:
        modalities()
        return

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
    if args.modalities:
        modalities()


# Per modality: SOP class, rows x columns, frames, colour, text lines, instances.
MODALITIES: dict[str, tuple[str, int, int, int, bool, int, int]] = {
    "CT 512x512 16-bit, no text": (
        "1.2.840.10008.5.1.4.1.1.2",
        512,
        512,
        1,
        False,
        0,
        64,
    ),
    "MR 256x256 16-bit, no text": (
        "1.2.840.10008.5.1.4.1.1.4",
        256,
        256,
        1,
        False,
        0,
        64,
    ),
    "US 640x480 RGB, text": ("1.2.840.10008.5.1.4.1.1.6.1", 480, 640, 1, True, 4, 16),
    "US cine 640x480 x10, text": (
        "1.2.840.10008.5.1.4.1.1.3.1",
        480,
        640,
        10,
        False,
        3,
        4,
    ),
    "SC 1024x768 RGB, text": ("1.2.840.10008.5.1.4.1.1.7", 768, 1024, 1, True, 6, 16),
}


def modalities() -> None:
    """Export generated series of each modality; instances and frames per second."""
    import tempfile
    from pathlib import Path

    from exporter.engine.job import RunRequest, run_job
    from exporter.policy.profile import DEFAULT_OPTIONS
    from exporter.synthetic import write_manifest

    print(
        f"\n{'modality':30} {'inst':>5} {'frames':>6} {'plain inst/s':>13} "
        f"{'cleaned inst/s':>15} {'frames/s':>9} {'checks'}"
    )
    for kind, spec in MODALITIES.items():
        with tempfile.TemporaryDirectory(prefix="bench-pixels-") as tmp:
            root = Path(tmp)
            study, frames = _write_series(root / "src", spec)
            manifest = write_manifest(root / "m.csv", [{"StudyInstanceUID": study}])
            rates = []
            summary = None
            for name, options in (
                ("plain", DEFAULT_OPTIONS),
                ("clean", DEFAULT_OPTIONS | {"clean_pixel_data"}),
            ):
                # The first run indexes the folder and warms the OCR engine;
                # the second, into a new export folder, is timed.
                for run in ("warm", "timed"):
                    started = time.perf_counter()
                    summary = run_job(
                        RunRequest(
                            manifest,
                            str(root / "src"),
                            root / f"out-{name}-{run}",
                            root / f"ws-{name}",
                            workers=1,
                            options=options,
                        )
                    )
                rates.append(spec[-1] / (time.perf_counter() - started))
            assert summary is not None
            checks = ", ".join(
                f"{k} {v}" for k, v in sorted(summary.pixel_checks.items())
            )
            held = f", {summary.quarantined} held" if summary.quarantined else ""
            count = spec[-1]
            print(
                f"{kind:30} {count:5d} {frames:6d} {rates[0]:13.1f} "
                f"{rates[1]:15.2f} {rates[1] * frames / count:9.2f} {checks}{held}"
            )


def _write_series(
    root: object, spec: tuple[str, int, int, int, bool, int, int]
) -> tuple[str, int]:
    """One series of generated instances; the study UID and all frames written."""
    from pathlib import Path

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    sop_class, rows, columns, frames, colour, lines, count = spec
    folder = Path(str(root))
    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    modality = {"2": "CT", "4": "MR", "7": "OT"}.get(sop_class.rsplit(".", 1)[-1], "US")
    for index in range(count):
        image = make_text_image(
            index,
            rows=rows,
            columns=columns,
            bits=8 if modality in ("US", "OT") else 16,
            colour=colour,
            frames=frames,
            lines=lines,
        )
        ds = Dataset()
        ds.SOPClassUID = sop_class
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID = "BENCH"
        ds.Modality = modality
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        ds.InstanceNumber = index + 1
        ds.Rows, ds.Columns = rows, columns
        ds.SamplesPerPixel = 3 if colour else 1
        ds.PhotometricInterpretation = "RGB" if colour else "MONOCHROME2"
        if colour:
            ds.PlanarConfiguration = 0
        if frames > 1:
            ds.NumberOfFrames = frames
        bits = 8 * image.pixels.dtype.itemsize
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits, bits - 1
        ds.PixelRepresentation = 0
        ds.PixelData = np.ascontiguousarray(image.pixels).tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"{index:04d}.dcm", enforce_file_format=True)
    return study, frames * count


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
        "examples_palette.dcm",
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
