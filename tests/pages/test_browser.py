"""The pages in a real browser: headless Chromium renders them offline.

The audit report (export) and the review page (workspace) each.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from exporter.engine.job import RunRequest, run_job
from exporter.policy.profile import DEFAULT_OPTIONS
from exporter.synthetic import make_source, write_manifest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# As the machine's notes say: no background networking, a fresh profile.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed; .ci/run installs it")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    root = tmp_path_factory.mktemp("report")
    source = make_source(root / "src", seed=9, patients=1, with_bad_files=False)
    patient = source.studies[0].patient.patient_id
    manifest = write_manifest(root / "m.csv", [{"PatientID": patient}])
    # Clean Pixel Data: the captures are cleaned, so the report has thumbnails.
    options = DEFAULT_OPTIONS | {"clean_pixel_data"}
    summary = run_job(
        RunRequest(
            manifest, str(source.root), root / "out", root / "ws", options=options
        )
    )
    page = (root / "out" / "report.html").read_text()
    assert summary.pixels_cleaned == 2
    assert page.count('src="data:image/png;base64,') == summary.pixels_cleaned
    assert summary.review is not None
    return {"report": root / "out" / "report.html", "review": summary.review}


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", ["report", "review"])
def test_screenshot_shows_the_page(
    pages: dict[str, Path], name: str, tmp_path: Path
) -> None:
    """A screenshot with content: not one flat colour; thumbnails in red outline."""
    from PIL import Image

    shot = tmp_path / "report.png"
    result = _chromium(
        tmp_path,
        "--window-size=1200,2400",
        f"--screenshot={shot}",
        pages[name].as_uri(),
    )
    assert shot.is_file(), result.stderr[-2000:]
    rgb = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert rgb.shape[:2] == (2400, 1200)
    assert rgb.std() > 5  # text and tables, not a blank page
    red = (rgb[..., 0] > 200) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)
    assert red.sum() > 100  # the outlines of the cleaned boxes are drawn


@pytest.mark.parametrize(
    ("name", "title"), [("report", "audit report"), ("review", "review")]
)
def test_every_image_loads_offline(
    pages: dict[str, Path], name: str, title: str, tmp_path: Path
) -> None:
    """The page's own check (every image decoded) reads ok after load."""
    result = _chromium(
        tmp_path, "--dump-dom", "--virtual-time-budget=5000", pages[name].as_uri()
    )
    assert 'data-images="ok"' in result.stdout, result.stderr[-2000:]
    assert f": {title}" in result.stdout
