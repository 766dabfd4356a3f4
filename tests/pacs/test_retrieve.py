"""One manifest, three ways to the same export: folder, C-GET and C-MOVE."""

from __future__ import annotations

import io
from pathlib import Path

import orthanc_server as orthanc
import pyarrow.parquet as pq
import pydicom
import pytest
from conftest import COMPRESSED
from pydicom.data import get_testdata_file

pytest.importorskip("pynetdicom", reason="the pacs extra is not installed")

from exporter.engine.job import JobSummary, RunRequest, run_job
from exporter.sources import NetworkSettings
from exporter.synthetic import SyntheticSource, write_manifest


def _spec(pacs: orthanc.Orthanc) -> str:
    return f"dicom://{orthanc.PACS_AET}@127.0.0.1:{pacs.dicom_port}"


def _network(pacs: orthanc.Orthanc, **settings: object) -> NetworkSettings:
    return NetworkSettings(
        store_address="127.0.0.1",
        store_port=pacs.store_port,
        timeout=10,
        retries=0,
        **settings,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def manifest(corpus: SyntheticSource, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every synthetic study of two patients, and the compressed studies."""
    patients = sorted({s.patient.patient_id for s in corpus.studies})[:2]
    studies = {s.study_uid for s in corpus.studies if s.patient.patient_id in patients}
    studies |= {
        pydicom.dcmread(get_testdata_file(n), stop_before_pixels=True).StudyInstanceUID
        for n in COMPRESSED
    }
    path = tmp_path_factory.mktemp("manifest") / "m.csv"
    return write_manifest(path, [{"StudyInstanceUID": uid} for uid in sorted(studies)])


def _export(
    source: str, out: Path, workspace: Path, manifest: Path, **request: object
) -> tuple[JobSummary, dict[str, bytes]]:
    summary = run_job(
        RunRequest(manifest, source, out, workspace, workers=1, **request)  # type: ignore[arg-type]
    )
    files = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in (out / "dicom").rglob("*.dcm")
    }
    return summary, files


def test_folder_get_and_move_give_the_same_export(
    pacs: orthanc.Orthanc, corpus: SyntheticSource, manifest: Path, tmp_path: Path
) -> None:
    """Byte-identical DICOM files and catalogs, compressed data kept as stored."""
    ws = tmp_path / "ws"  # one workspace: one secret
    folder, by_folder = _export(str(corpus.root), tmp_path / "folder", ws, manifest)
    got, by_get = _export(
        _spec(pacs), tmp_path / "get", ws, manifest, network=_network(pacs)
    )
    moved, by_move = _export(
        _spec(pacs), tmp_path / "move", ws, manifest, network=_network(pacs, move=True)
    )

    assert folder.exported > 20 and folder.failed == 0
    assert by_get.keys() == by_folder.keys() == by_move.keys()
    for name, data in by_folder.items():
        assert by_get[name] == data, name
        assert by_move[name] == data, name
    for summary in (got, moved):
        assert (summary.exported, summary.quarantined, summary.failed) == (
            folder.exported,
            folder.quarantined,
            folder.failed,
        )
        assert summary.complete == folder.complete
    # Held back (derived MR, captures) the same way, compressed data as stored.
    held = [_quarantine(ws, summary) for summary in (folder, got, moved)]
    assert held[0] == held[1] == held[2] and held[0]
    syntaxes = {
        str(
            pydicom.dcmread(
                io.BytesIO(data), stop_before_pixels=True
            ).file_meta.TransferSyntaxUID
        )
        for data in held[1].values()
    }
    assert {"1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50"} <= syntaxes  # RLE, JPEG
    for name in ("instances", "series", "studies"):
        a = (tmp_path / "folder" / "catalog" / f"{name}.parquet").read_bytes()
        b = (tmp_path / "get" / "catalog" / f"{name}.parquet").read_bytes()
        assert _table(a) == _table(b), name
    # Nothing stays in the spool once the studies are exported.
    assert not any((ws / "jobs").glob("*/spool/*/*"))


def _table(data: bytes) -> list[dict[str, object]]:
    return pq.read_table(io.BytesIO(data)).to_pylist()


def _quarantine(ws: Path, summary: JobSummary) -> dict[str, bytes]:
    root = ws / "jobs" / summary.job_id / "quarantine"
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.dcm")}


def test_dicomweb_gives_the_same_export(
    pacs: orthanc.Orthanc,
    corpus: SyntheticSource,
    manifest: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """QIDO-RS and WADO-RS, credentials from the environment: byte-identical."""
    monkeypatch.setenv("EXPORTER_DICOMWEB_USER", orthanc.USER)
    monkeypatch.setenv("EXPORTER_DICOMWEB_PASSWORD", orthanc.PASSWORD)
    ws = tmp_path / "ws"
    folder, by_folder = _export(str(corpus.root), tmp_path / "folder", ws, manifest)
    web, by_web = _export(pacs.dicomweb, tmp_path / "web", ws, manifest)

    assert by_web.keys() == by_folder.keys() and by_folder
    for name, data in by_folder.items():
        assert by_web[name] == data, name
    assert (web.exported, web.quarantined, web.failed) == (
        folder.exported,
        folder.quarantined,
        folder.failed,
    )
    assert _quarantine(ws, web) == _quarantine(ws, folder)
