"""exporter linkage export: the honest broker's CSV, on request, never in an export."""

from __future__ import annotations

import csv
import stat
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from exporter.cli import app
from exporter.engine.job import RunRequest, run_job
from exporter.synthetic import SyntheticSource, make_source, write_manifest


@pytest.fixture(scope="module")
def made(
    tmp_path_factory: pytest.TempPathFactory, state_backend: str
) -> tuple[SyntheticSource, Path, Path]:
    root = tmp_path_factory.mktemp("linkage")
    source = make_source(root / "src", seed=41, patients=1, with_bad_files=False)
    study = source.studies[0]
    manifest = write_manifest(root / "m.csv", [{"StudyInstanceUID": study.study_uid}])
    run_job(RunRequest(manifest, str(source.root), root / "out", root / "ws"))
    return source, root / "out", root / "ws"


def _invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["linkage", "export", *args])
    return result.exit_code, result.output


def test_the_mapping_leads_back_to_the_originals(
    made: tuple[SyntheticSource, Path, Path], tmp_path: Path
) -> None:
    """Patient and UID rows: the exported file's new UIDs map to the source's."""
    source, out, ws = made
    target = tmp_path / "private" / "linkage.csv"
    code, output = _invoke(
        "--out",
        str(target),
        "--workspace",
        str(ws),
        "--i-understand-this-identifies-patients",
    )
    assert code == 0, output
    rows = list(csv.DictReader(target.open()))
    assert {r["kind"] for r in rows} == {"patient", "uid", "date_offset"}
    uids = {r["id_new"]: r["id_old"] for r in rows if r["kind"] == "uid"}
    exported = pydicom.dcmread(next((out / "dicom").rglob("*.dcm")))
    assert uids[exported.StudyInstanceUID] == source.studies[0].study_uid
    patients = {r["id_old"]: r["id_new"] for r in rows if r["kind"] == "patient"}
    assert patients[source.studies[0].patient.patient_id] == exported.PatientID
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert "keep it private" in output


def test_one_kind_has_the_two_midi_b_columns(
    made: tuple[SyntheticSource, Path, Path], tmp_path: Path
) -> None:
    """--kind uid: exactly id_old,id_new."""
    target = tmp_path / "uids.csv"
    code, _ = _invoke(
        "--out",
        str(target),
        "--workspace",
        str(made[2]),
        "--kind",
        "uid",
        "--i-understand-this-identifies-patients",
    )
    assert code == 0
    header = target.read_text().splitlines()[0]
    assert header == "id_old,id_new"


def test_refused_without_the_acknowledgement(
    made: tuple[SyntheticSource, Path, Path], tmp_path: Path
) -> None:
    """No flag, no file."""
    code, output = _invoke(
        "--out", str(tmp_path / "l.csv"), "--workspace", str(made[2])
    )
    assert code == 2 and "identifies patients" in output
    assert not (tmp_path / "l.csv").exists()


def test_refused_inside_an_export(made: tuple[SyntheticSource, Path, Path]) -> None:
    """Never into an export folder, at any depth."""
    target = made[1] / "catalog" / "linkage.csv"
    code, output = _invoke(
        "--out",
        str(target),
        "--workspace",
        str(made[2]),
        "--i-understand-this-identifies-patients",
    )
    assert code == 1 and "inside the export folder" in output
    assert not target.exists()
