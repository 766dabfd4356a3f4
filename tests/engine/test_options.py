"""Options and layered recipes in ``run``: what the export claims, and does."""

from __future__ import annotations

import json
from pathlib import Path

import pydicom
import pytest

from exporter.engine.job import RunRequest, run_job
from exporter.errors import SettingsError
from exporter.synthetic import SyntheticSource, make_source, write_manifest


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    root = tmp_path_factory.mktemp("options")
    return make_source(
        root / "src", seed=8, patients=1, with_bad_files=False, with_burned_in=False
    )


def _run(source: SyntheticSource, tmp: Path, **kwargs: object) -> tuple[dict, list]:
    study = source.studies[0]
    manifest = write_manifest(tmp / "m.csv", [{"StudyInstanceUID": study.study_uid}])
    out = tmp / "out"
    run_job(RunRequest(manifest, str(source.root), out, tmp / "ws", **kwargs))  # type: ignore[arg-type]
    provenance = json.loads((out / "provenance.json").read_text())
    files = [pydicom.dcmread(p) for p in sorted((out / "dicom").rglob("*.dcm"))]
    return provenance, files


def _codes(ds: pydicom.Dataset) -> list[str]:
    return [item.CodeValue for item in ds.get("DeidentificationMethodCodeSequence", [])]


def test_default_options_are_claimed(source: SyntheticSource, tmp_path: Path) -> None:
    """The default profile claims Basic + Modified Dates + Patient Characteristics."""
    provenance, files = _run(source, tmp_path)
    assert provenance["recipe"]["options"] == [
        "retain_long_modified_dates",
        "retain_patient_characteristics",
    ]
    assert _codes(files[0]) == ["113100", "113107", "113108"]
    assert files[0].LongitudinalTemporalInformationModified == "MODIFIED"


def test_bare_basic_profile(source: SyntheticSource, tmp_path: Path) -> None:
    """No options: dates emptied, sex emptied, only the Basic Profile claimed."""
    provenance, files = _run(source, tmp_path, options=frozenset())
    assert provenance["recipe"]["options"] == []
    assert _codes(files[0]) == ["113100"]
    assert files[0].StudyDate == ""
    assert files[0].PatientSex == ""
    assert files[0].LongitudinalTemporalInformationModified == "REMOVED"


def test_unknown_option_stops_the_job(source: SyntheticSource, tmp_path: Path) -> None:
    """An option that is not a Table E.1-1 column is refused before any work."""
    with pytest.raises(SettingsError, match="unknown Annex E option"):
        _run(source, tmp_path, options=frozenset({"retain_everything"}))


def test_a_weakening_recipe_claims_nothing(
    source: SyntheticSource, tmp_path: Path
) -> None:
    """A layered recipe that keeps the name does so, and no conformance is claimed."""
    recipe = tmp_path / "keep-name.dicom"
    recipe.write_text("FORMAT dicom\n%header\nKEEP PatientName\n")
    provenance, files = _run(source, tmp_path, recipe=recipe)
    assert provenance["recipe"]["options"] is None
    assert provenance["recipe"]["name"].startswith("keep-name.dicom over ")
    assert _codes(files[0]) == []
    assert str(files[0].PatientName) == source.studies[0].patient.name


def test_a_strengthening_recipe_keeps_the_claim(
    source: SyntheticSource, tmp_path: Path
) -> None:
    """A layered recipe that removes more still claims the profile's options."""
    recipe = tmp_path / "strict.dicom"
    recipe.write_text("FORMAT dicom\n%header\nREMOVE PatientSex\nREMOVE Manufacturer\n")
    provenance, files = _run(source, tmp_path, recipe=recipe)
    assert provenance["recipe"]["options"] is not None
    assert "PatientSex" not in files[0] and "Manufacturer" not in files[0]


def test_run_takes_repeated_options(source: SyntheticSource, tmp_path: Path) -> None:
    """exporter run --option NAME --option NAME: exactly those options are claimed."""
    from typer.testing import CliRunner

    from exporter.cli import app

    study = source.studies[0]
    manifest = write_manifest(
        tmp_path / "m.csv", [{"StudyInstanceUID": study.study_uid}]
    )
    out = tmp_path / "out"
    args = ["run", str(manifest), "--source", str(source.root), "--out", str(out)]
    args += ["--workspace", str(tmp_path / "ws"), "--workers", "1", "-q"]
    args += ["--option", "retain_uids", "--option", "retain_device_identity"]

    result = CliRunner().invoke(app, args)

    assert result.exit_code == 0, result.output
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["recipe"]["options"] == ["retain_device_identity", "retain_uids"]
    (first, *_) = sorted((out / "dicom").rglob("*.dcm"))
    assert pydicom.dcmread(first).StudyInstanceUID == study.study_uid
