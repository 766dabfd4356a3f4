"""exporter verify: every planted value in every place; nothing in a clean export."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pydicom
import pytest
from typer.testing import CliRunner

from exporter.cli import app
from exporter.engine.job import RunRequest, run_job
from exporter.state import open_database
from exporter.synthetic import (
    PlantedStudy,
    SyntheticSource,
    make_source,
    write_manifest,
)
from exporter.verify.check import verify_export
from exporter.workspace import open_workspace


@pytest.fixture(scope="module")
def made(
    tmp_path_factory: pytest.TempPathFactory, state_backend: str
) -> tuple[SyntheticSource, Path, Path]:
    """A clean export of two patients, and its workspace."""
    root = tmp_path_factory.mktemp("verify")
    source = make_source(root / "src", seed=31, patients=2, with_bad_files=False)
    patients = sorted({s.patient.patient_id for s in source.studies})
    manifest = write_manifest(root / "m.csv", [{"PatientID": p} for p in patients])
    summary = run_job(RunRequest(manifest, str(source.root), root / "out", root / "ws"))
    assert summary.findings is not None and not summary.findings
    return source, root / "out", root / "ws"


@pytest.fixture
def export(made: tuple[SyntheticSource, Path, Path], tmp_path: Path) -> Path:
    """A private copy of the clean export, to plant values in."""
    copy = tmp_path / "export"
    shutil.copytree(made[1], copy)
    return copy


def _findings(export: Path, ws: Path) -> list[str]:
    engine = open_database(open_workspace(ws).database_url)
    return [str(f) for f in verify_export(export, engine)]


def _first_dicom(export: Path) -> Path:
    return sorted((export / "dicom").rglob("*.dcm"))[0]


def _rewrite(path: Path, change: Callable[[pydicom.Dataset], None]) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def _study(made: tuple[SyntheticSource, Path, Path]) -> PlantedStudy:
    return made[0].studies[0]


def _plants(study: PlantedStudy) -> dict[str, tuple[str, str]]:
    """Kind -> (a value as free text writes it, the kind verify reports)."""
    family, given = study.patient.name.split("^")[:2]
    birth = study.patient.birth_date
    return {
        "name": (f"{given.title()} {family.title()}", "name"),
        "patient id": (study.patient.patient_id, "patient id"),
        "accession": (study.accession, "accession number"),
        "birth date": (f"{birth[6:]}/{birth[4:6]}/{birth[:4]}", "birth date"),
        "uid": (study.study_uid, "original UID"),
    }


@pytest.mark.parametrize(
    "kind", ["name", "patient id", "accession", "birth date", "uid"]
)
@pytest.mark.parametrize(
    "place", ["element", "private", "sequence", "file name", "parquet"]
)
def test_each_kind_is_found_in_each_place(
    made: tuple[SyntheticSource, Path, Path], export: Path, kind: str, place: str
) -> None:
    """A planted value is found, named by file, place and kind, never quoted."""
    value, reported = _plants(_study(made))[kind]
    target = _first_dicom(export)
    # Dates are looked for in their own patient's files: plant in that patient's.
    patient_folder = None
    if kind == "birth date":
        for folder in sorted((export / "dicom").iterdir()):
            first = sorted(folder.rglob("*.dcm"))[0]
            text = (export / "catalog" / "instances.parquet").read_bytes()
            if text:
                ds = pydicom.dcmread(first, stop_before_pixels=True)
                if ds.PatientID == _pseudonym(made, _study(made)):
                    patient_folder, target = folder, first
        assert patient_folder is not None

    if place == "element":
        _rewrite(target, lambda ds: setattr(ds, "StudyComments", f"seen {value} today"))
        where = "(0032,4000)"
    elif place == "private":

        def private(ds: pydicom.Dataset) -> None:
            block = ds.private_block(0x0099, "PLANTED", create=True)
            block.add_new(0x01, "LO", value)

        _rewrite(target, private)
        where = "(0099,1001)"
    elif place == "sequence":

        def sequence(ds: pydicom.Dataset) -> None:
            item = pydicom.Dataset()
            item.CodeMeaning = f"about {value}"
            ds.ConceptNameCodeSequence = [item]

        _rewrite(target, sequence)
        where = "(0040,A043)[0].(0008,0104)"
    elif place == "file name":
        target.rename(target.with_name(f"{value.replace('/', '-')}.dcm"))
        where = "path"
    else:
        table = pq.read_table(export / "catalog" / "instances.parquet")
        column = table.column("body_part").to_pylist()
        column[0] = value
        patients = table.column("patient_pseudonym").to_pylist()
        if kind == "birth date":
            row = patients.index(_pseudonym(made, _study(made)))
            column[0], column[row] = None, value
        index = table.column_names.index("body_part")
        table = table.set_column(index, "body_part", pa.array(column, pa.string()))
        pq.write_table(table, export / "catalog" / "instances.parquet")
        where = "column body_part"

    findings = _findings(export, made[2])

    assert any(where in f and f.endswith(reported) for f in findings), findings
    assert all(value not in f for f in findings)


def _pseudonym(made: tuple[SyntheticSource, Path, Path], study: PlantedStudy) -> str:
    engine = open_database(open_workspace(made[2]).database_url)
    from sqlmodel import Session, select

    from exporter.state import Linkage

    with Session(engine) as session:
        row = session.exec(
            select(Linkage).where(
                Linkage.kind == "patient", Linkage.original == study.patient.patient_id
            )
        ).one()
    return row.pseudonym


def test_a_clean_export_has_no_findings(
    made: tuple[SyntheticSource, Path, Path],
) -> None:
    """The export as written: nothing, and provenance says it was checked."""
    assert _findings(made[1], made[2]) == []
    record = json.loads((made[1] / "provenance.json").read_text())
    assert record["verify"]["checked"] is True and record["verify"]["findings"] == 0


def test_the_source_itself_is_full_of_findings(
    made: tuple[SyntheticSource, Path, Path],
) -> None:
    """Control: the same scan over the original files finds every kind.

    Dates are looked for in a patient's own export files only, which the
    source folder has none of.
    """
    kinds = {f.rsplit(": ", 1)[1] for f in _findings(made[0].root, made[2])}
    assert {"name", "patient id", "accession number", "original UID"} <= kinds
    assert {"address", "phone number", "institution", "device serial"} <= kinds


def test_workers_share_the_files_and_find_the_same(
    made: tuple[SyntheticSource, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes, a few files each: the same findings in the same order."""
    from exporter.verify import scan

    monkeypatch.setattr(scan, "_CHUNK", 2)
    engine = open_database(open_workspace(made[2]).database_url)
    one = verify_export(made[0].root, engine)
    two = verify_export(made[0].root, engine, workers=2)
    assert len(one) > 10 and two == one


def test_raw_bytes_outside_elements_are_read(
    made: tuple[SyntheticSource, Path, Path], export: Path
) -> None:
    """A value in the preamble, where no element is, is still found."""
    target = _first_dicom(export)
    data = bytearray(target.read_bytes())
    planted = _study(made).patient.patient_id.encode()
    data[10 : 10 + len(planted)] = planted
    target.write_bytes(bytes(data))
    assert any(": bytes: patient id" in f for f in _findings(export, made[2]))


def test_cli_exit_codes_and_no_values_printed(
    made: tuple[SyntheticSource, Path, Path], export: Path
) -> None:
    """exporter verify: 0 when clean, 1 with findings, the value never printed."""
    runner = CliRunner()
    clean = runner.invoke(app, ["verify", str(made[1]), "--workspace", str(made[2])])
    assert clean.exit_code == 0, clean.output
    assert "nothing identifying found" in clean.output

    name = _study(made).patient.name
    _rewrite(_first_dicom(export), lambda ds: setattr(ds, "ImageComments", name))
    dirty = runner.invoke(app, ["verify", str(export), "--workspace", str(made[2])])
    assert dirty.exit_code == 1
    assert "(0020,4000): name" in dirty.output
    for part in name.split("^"):
        assert len(part) < 3 or part not in dirty.output  # an initial is any letter

    missing = runner.invoke(
        app, ["verify", str(export), "--workspace", str(export / "x")]
    )
    assert missing.exit_code == 1 and "no workspace" in missing.output


def test_run_reports_findings_and_fails(
    made: tuple[SyntheticSource, Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A policy that lets a name through: run exits 3 and says verify found it."""
    recipe = tmp_path / "leaky.dicom"
    recipe.write_text("FORMAT dicom\n%header\nKEEP OperatorsName\n")
    study = _study(made)
    manifest = write_manifest(
        tmp_path / "m.csv", [{"StudyInstanceUID": study.study_uid}]
    )
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(manifest),
            "--source",
            str(made[0].root),
            "--out",
            str(tmp_path / "out"),
            "--workspace",
            str(tmp_path / "ws"),
            "--recipe",
            str(recipe),
            "--workers",
            "1",
            "--quiet",
        ],
    )
    assert result.exit_code == 3, result.output
    assert "verify:" in result.output and "x name found in the export" in result.output
    record = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert record["verify"]["by_kind"]["name"] > 0


def test_a_value_that_runs_into_binary_letters_is_found(tmp_path: Path) -> None:
    """b"Family" followed by the tag bytes b"T\\x00" of (0054,xxxx): found all the same.

    Read as raw bytes the name becomes "familyt"; the element walk reads it whole.
    """
    from pydicom.dataset import FileMetaDataset

    from exporter.verify.needles import build_scoped
    from exporter.verify.scan import scan_export

    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.128"
    ds.SOPInstanceUID = "2.25.1"
    ds.ImageComments = "Adaline Quimbywell"  # 18 bytes: no padding after it
    ds.NumberOfSlices = 1  # (0054,0081): its tag starts with b"T\x00"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    (tmp_path / "dicom").mkdir()
    ds.save_as(tmp_path / "dicom" / "one.dcm", enforce_file_format=True)
    assert b"QuimbywellT\x00" in (tmp_path / "dicom" / "one.dcm").read_bytes()

    needles = build_scoped([("name", "QUIMBYWELL^ADALINE", "")])
    findings = [str(f) for f in scan_export(tmp_path, needles)]

    assert "dicom/one.dcm: (0020,4000): name" in findings


def test_a_rerun_reads_again_what_changed_since(
    made: tuple[SyntheticSource, Path, Path], tmp_path: Path
) -> None:
    """Verify remembers clean files; one changed after the run is read again."""
    source = made[0]
    study = _study(made)
    manifest = write_manifest(
        tmp_path / "m.csv", [{"StudyInstanceUID": study.study_uid}]
    )
    request = RunRequest(manifest, str(source.root), tmp_path / "out", tmp_path / "ws")
    assert run_job(request).findings == {}
    assert (next((tmp_path / "ws" / "jobs").iterdir()) / "verify-cache.json").is_file()

    # Same size (a changed size would make the rerun export the study again):
    # the patient id written over the start of the recipe digest in place.
    target = _first_dicom(tmp_path / "out")
    data = target.read_bytes()
    at = data.index(b"sha256:") + len(b"sha256:")
    planted = study.patient.patient_id.encode() + b" "
    target.write_bytes(data[:at] + planted + data[at + len(planted) :])
    again = run_job(request)

    assert again.findings is not None and again.findings["patient id"] >= 1
    assert not again.complete
