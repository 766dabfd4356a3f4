"""deid %filter rules: graylist regions cleaned, blacklist held back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def _ultrasound(
    path: Path, study: str, region: tuple[int, int, int, int] | None, **header: str
) -> np.ndarray:
    """A 128x160 US frame, bright everywhere, with an ultrasound region if given."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, UltrasoundImageStorage, generate_uid

    pixels = (np.arange(128 * 160, dtype=np.uint32) % 200 + 50).astype(np.uint8)
    pixels = pixels.reshape(128, 160)
    ds = Dataset()
    ds.SOPClassUID = UltrasoundImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "P-REGIONS"
    ds.Modality = "US"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    for keyword, value in header.items():
        setattr(ds, keyword, value)
    if region is not None:
        item = Dataset()
        x0, y0, x1, y1 = region
        item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
        item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
        ds.SequenceOfUltrasoundRegions = [item]
    ds.PixelData = pixels.tobytes()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return pixels


def _export(tmp: Path, recipe_text: str | None, **request: object) -> dict[str, Any]:
    """Export the folder ``tmp/src`` whole; the released pixels by source SOP."""
    study = pydicom.dcmread(next((tmp / "src").iterdir()), stop_before_pixels=True)
    manifest = write_manifest(
        tmp / "m.csv", [{"StudyInstanceUID": study.StudyInstanceUID}]
    )
    recipe = None
    if recipe_text is not None:
        recipe = tmp / "rules.dicom"
        recipe.write_text(recipe_text)
    out = tmp / "out"
    summary = run_job(
        RunRequest(
            manifest,
            str(tmp / "src"),
            out,
            tmp / "ws",
            recipe=recipe,
            **request,  # type: ignore[arg-type]
        )
    )
    released = [pydicom.dcmread(p) for p in sorted((out / "dicom").rglob("*.dcm"))]
    return {"summary": summary, "released": released}


REGIONS = """FORMAT dicom
%filter graylist
LABEL Keep the ultrasound regions
  contains Modality US
  coordinates all
  keepcoordinates from:SequenceOfUltrasoundRegions
"""


def test_keepcoordinates_from_ultrasound_regions_per_image(tmp_path: Path) -> None:
    """Each image keeps its own region; all else is blanked (deid's from: rule)."""
    from pydicom.uid import generate_uid

    study = generate_uid()
    regions = {"a": (10, 20, 60, 90), "b": (70, 5, 150, 40)}
    sources = {
        name: _ultrasound(
            tmp_path / "src" / f"{name}.dcm", study, box, SeriesNumber=str(i)
        )
        for i, (name, box) in enumerate(sorted(regions.items()), start=1)
    }
    result = _export(tmp_path, REGIONS)

    assert result["summary"].pixels_cleaned == 2
    by_series = {str(ds.SeriesNumber): ds for ds in result["released"]}
    for number, name in (("1", "a"), ("2", "b")):
        ds = by_series[number]
        x0, y0, x1, y1 = regions[name]
        cleaned, original = ds.pixel_array, sources[name]
        inside = np.zeros(original.shape, dtype=bool)
        inside[y0:y1, x0:x1] = True
        assert np.array_equal(cleaned[inside], original[inside])
        assert (cleaned[~inside] == original.min()).all()
        assert ds.BurnedInAnnotation == "NO"


def test_ctpcoordinates_are_left_top_width_height(tmp_path: Path) -> None:
    """CTP's x,y,w,h becomes deid's x0,y0,x1,y1."""
    from pydicom.uid import generate_uid

    original = _ultrasound(tmp_path / "src" / "a.dcm", generate_uid(), None)
    rules = "FORMAT dicom\n%filter graylist\nLABEL banner\n  contains Modality US\n"
    result = _export(tmp_path, rules + "  ctpcoordinates 8,4,100,20\n")

    (ds,) = result["released"]
    blank = np.zeros(original.shape, dtype=bool)
    blank[4:24, 8:108] = True
    assert (ds.pixel_array[blank] == original.min()).all()
    assert np.array_equal(ds.pixel_array[~blank], original[~blank])


def test_graylist_without_coordinates_holds_the_instance(tmp_path: Path) -> None:
    """A flag-only graylist rule marks a CT at risk: quarantined, rule named."""
    source = make_source(tmp_path / "src", seed=3, patients=1, with_bad_files=False)
    plain = next(s for s in source.studies if not s.burned_in)
    manifest = write_manifest(
        tmp_path / "m.csv", [{"StudyInstanceUID": plain.study_uid}]
    )
    recipe = tmp_path / "flag.dicom"
    recipe.write_text(
        "FORMAT dicom\n%filter graylist\nLABEL review\n  present StudyInstanceUID\n"
    )
    summary = run_job(
        RunRequest(
            manifest,
            str(tmp_path / "src"),
            tmp_path / "out",
            tmp_path / "ws",
            recipe=recipe,
        )
    )
    assert summary.exported == 0 and summary.quarantined > 0
    listing = next((tmp_path / "ws" / "jobs").iterdir()) / "not-exported.csv"
    assert "matched %filter graylist rule" in listing.read_text()


def test_whitelist_never_releases_a_capture(tmp_path: Path) -> None:
    """deid's catch-all whitelist (BurnedInAnnotation No) does not vouch for a US."""
    from pydicom.uid import generate_uid

    _ultrasound(
        tmp_path / "src" / "a.dcm", generate_uid(), None, BurnedInAnnotation="NO"
    )
    rules = (
        "FORMAT dicom\n%filter whitelist\nLABEL Marked clean\n"
        "  contains BurnedInAnnotation No\n"
    )
    result = _export(tmp_path, rules)
    assert result["summary"].quarantined == 1 and result["released"] == []


def test_deid_shipped_signatures_give_their_regions() -> None:
    """deid's own rules, read from the installed package, match a LightSpeed scout."""
    from pydicom.dataset import Dataset, FileDataset

    from exporter.pixels.regions import judge
    from exporter.policy.deid_filters import shipped_filters

    rules = shipped_filters("deid")
    assert "%header" not in rules.text.replace("# (deid's %header left out)", "")
    ds = Dataset()
    ds.Modality = "CT"
    ds.Manufacturer = "GE MEDICAL SYSTEMS"
    ds.ManufacturerModelName = "LightSpeed VCT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.SeriesDescription = "Localizer"
    verdict = judge(FileDataset("scout.dcm", ds), rules.filters or {})
    assert verdict.blacklisted is None
    assert (0, (0, 0, 80, 85)) in verdict.regions


def test_deid_ultrasound_filters_through_the_cli(tmp_path: Path) -> None:
    """`--filters deid-ultrasound`: the US keeps only its region, and is released."""
    from pydicom.uid import generate_uid
    from typer.testing import CliRunner

    from exporter.cli import app

    study = generate_uid()
    original = _ultrasound(tmp_path / "src" / "a.dcm", study, (16, 16, 96, 112))
    manifest = write_manifest(tmp_path / "m.csv", [{"StudyInstanceUID": study}])
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(manifest),
            "--source",
            str(tmp_path / "src"),
            "--out",
            str(tmp_path / "out"),
            "--workspace",
            str(tmp_path / "ws"),
            "--filters",
            "deid-ultrasound",
            "--workers",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    (path,) = (tmp_path / "out" / "dicom").rglob("*.dcm")
    cleaned = pydicom.dcmread(path).pixel_array
    assert np.array_equal(cleaned[16:112, 16:96], original[16:112, 16:96])
    assert (cleaned[:16] == original.min()).all()
    provenance = (tmp_path / "out" / "provenance.json").read_text()
    assert "deid.dicom.ultrasound" in provenance
