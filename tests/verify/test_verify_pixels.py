"""verify reads burned-in text: a name drawn into a released ultrasound is found."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytest.importorskip("rapidocr", reason="the pixels extra is not installed")

from exporter.engine.job import RunRequest, run_job
from exporter.policy.profile import DEFAULT_OPTIONS
from exporter.state import open_database
from exporter.synthetic import make_source, write_manifest
from exporter.verify.check import ocr_reader, verify_export
from exporter.workspace import open_workspace


def test_burned_in_name_is_read_and_reported(tmp_path: Path) -> None:
    """Clean after scrubbing; a name drawn back into the pixels is found by OCR."""
    from PIL import Image, ImageDraw, ImageFont

    source = make_source(tmp_path / "src", seed=4, patients=1, with_bad_files=False)
    us = next(s for s in source.studies if s.modality == "US")
    manifest = write_manifest(tmp_path / "m.csv", [{"StudyInstanceUID": us.study_uid}])
    out, ws = tmp_path / "out", tmp_path / "ws"
    summary = run_job(
        RunRequest(
            manifest,
            str(source.root),
            out,
            ws,
            options=DEFAULT_OPTIONS | {"clean_pixel_data"},
        )
    )
    assert summary.pixels_cleaned == 1 and summary.findings is not None
    assert not summary.findings  # the cleaned export reads clean
    assert json.loads((out / "provenance.json").read_text())["verify"][
        "pixel_data_read_by_ocr"
    ]

    planted = tmp_path / "planted"
    shutil.copytree(out, planted)
    (path,) = (planted / "dicom").rglob("*.dcm")
    ds = pydicom.dcmread(path)
    pixels = ds.pixel_array.copy()
    family, given = us.patient.name.split("^")[:2]
    canvas = Image.new("L", (pixels.shape[1], pixels.shape[0]), 0)
    ImageDraw.Draw(canvas).text(
        (20, 20), f"{family} {given}", fill=255, font=ImageFont.load_default(size=22)
    )
    mask = np.asarray(canvas) > 96
    pixels[mask] = pixels.max() if pixels.ndim == 2 else 255
    ds.PixelData = pixels.tobytes()
    ds.save_as(path)

    engine = open_database(open_workspace(ws).database_url)
    findings = [str(f) for f in verify_export(planted, engine, (), ocr_reader())]

    assert any("pixel data, frame 1: name" in f for f in findings), findings
    assert all(family not in f and given not in f for f in findings)
