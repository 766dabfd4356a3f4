"""deid %filter rules: graylist regions cleaned, blacklist held back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from exporter.engine.job import RunRequest, run_job
from exporter.errors import RecipeError
from exporter.policy.recipe import compile_recipe
from exporter.synthetic import SyntheticSource, make_source, write_manifest

GRAYLIST = """FORMAT dicom
%filter graylist
LABEL Ultrasound banner
  contains Modality US
  coordinates 0,0,256,48
%header
REMOVE StudyDescription
"""
BLACKLIST = """FORMAT dicom
%filter blacklist
LABEL Secondary capture
  contains Modality OT
%header
REMOVE StudyDescription
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    root = tmp_path_factory.mktemp("filters")
    return make_source(root / "src", seed=12, patients=1, with_bad_files=False)


def _run(source: SyntheticSource, tmp: Path, recipe_text: str) -> tuple[int, int, Path]:
    recipe = tmp / "filters.dicom"
    recipe.write_text(recipe_text)
    captures = [s for s in source.studies if s.burned_in]
    manifest = write_manifest(
        tmp / "m.csv", [{"StudyInstanceUID": s.study_uid} for s in captures]
    )
    out = tmp / "out"
    summary = run_job(
        RunRequest(manifest, str(source.root), out, tmp / "ws", recipe=recipe)
    )
    return summary.pixels_cleaned, summary.quarantined, out


def test_graylist_region_is_cleaned_and_released(
    source: SyntheticSource, tmp_path: Path
) -> None:
    """The US matches the graylist: its banner region is blanked and it is released."""
    cleaned, quarantined, out = _run(source, tmp_path, GRAYLIST)
    assert cleaned == 1
    assert quarantined == 1  # the secondary capture: no rule, no OCR asked
    (us,) = [
        p
        for p in (out / "dicom").rglob("*.dcm")
        if pydicom.dcmread(p, stop_before_pixels=True).Modality == "US"
    ]
    ds = pydicom.dcmread(us)
    assert ds.BurnedInAnnotation == "NO"
    banner = ds.pixel_array[:48, :]
    assert np.ptp(banner) == 0  # one flat value: no text left


def test_blacklist_holds_the_instance(source: SyntheticSource, tmp_path: Path) -> None:
    """The secondary capture matches the blacklist: quarantined with the rule named."""
    cleaned, quarantined, _ = _run(source, tmp_path, BLACKLIST)
    assert cleaned == 0 and quarantined == 2
    listing = next((tmp_path / "ws" / "jobs").iterdir()) / "not-exported.csv"
    assert "matched %filter blacklist rule" in listing.read_text()


def test_filter_lines_are_checked() -> None:
    """A malformed %filter line is refused with its line number."""
    with pytest.raises(RecipeError, match=r"x.dicom, line 4: coordinates are"):
        compile_recipe(
            "FORMAT dicom\n%filter graylist\nLABEL x\ncoordinates 1,2,3\n", "x.dicom"
        )
    with pytest.raises(RecipeError, match=r"line 2: %filter needs a list name"):
        compile_recipe("FORMAT dicom\n%filter greylist\n", "x.dicom")
