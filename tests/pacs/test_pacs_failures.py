"""A PACS through the command line: its errors, and a PACS that stops mid-job."""

from __future__ import annotations

from pathlib import Path

import orthanc_server as orthanc
import pytest
from typer.testing import CliRunner

pytest.importorskip("pynetdicom", reason="the pacs extra is not installed")

from exporter.cli import app
from exporter.engine.job import Progress, RunRequest, run_job
from exporter.sources import NetworkSettings
from exporter.sources.dimse import DimseSource
from exporter.synthetic import SyntheticSource, write_manifest


def _manifest(corpus: SyntheticSource, path: Path, count: int = 3) -> Path:
    studies = sorted(s.study_uid for s in corpus.studies)[:count]
    return write_manifest(path, [{"StudyInstanceUID": uid} for uid in studies])


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["run", *args, "--quiet", "--timeout", "5"])
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("spec", "extra", "message"),
    [
        (
            "dicom://ORTHANC@no-such-host.invalid:104",
            [],
            "cannot resolve the PACS host",
        ),
        ("dicom://ORTHANC@127.0.0.1:{closed}", [], "cannot open an association"),
        ("dicom://ORTHANC@127.0.0.1:{port}", ["--ae-title", "STRANGER"], "'STRANGER'"),
        ("dicom://ORTHANC@127.0.0.1:{port}", ["--ae-title", "X" * 17], "1 to 16"),
    ],
)
def test_cli_errors_name_the_problem(
    pacs: orthanc.Orthanc,
    corpus: SyntheticSource,
    tmp_path: Path,
    spec: str,
    extra: list[str],
    message: str,
) -> None:
    """Unknown host, closed port, an AE title the PACS does not know: exit 1, said."""
    manifest = _manifest(corpus, tmp_path / "m.csv", 1)
    source = spec.format(port=pacs.dicom_port, closed=orthanc.free_port())
    code, output = _cli(
        str(manifest),
        "--source",
        source,
        "--out",
        str(tmp_path / "out"),
        "--workspace",
        str(tmp_path / "ws"),
        *extra,
    )
    assert code == 1, output
    assert message in " ".join(output.split())
    assert corpus.studies[0].patient.patient_id not in output


class _StopAfterFirst(Progress):
    """Stops the PACS as soon as the first study is recorded."""

    def __init__(self, pacs: orthanc.Orthanc) -> None:
        self.pacs = pacs

    def advance(self, instances: int, nbytes: int) -> None:
        self.pacs.stop()


def test_pacs_stopped_mid_job_then_resumed(
    pacs: orthanc.Orthanc,
    corpus: SyntheticSource,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The studies after the stop fail with a reason; the rerun fetches only them."""
    manifest = _manifest(corpus, tmp_path / "m.csv", 3)
    network = NetworkSettings(timeout=5, retries=0)
    spec = f"dicom://{orthanc.PACS_AET}@127.0.0.1:{pacs.dicom_port}"
    out, ws = tmp_path / "out", tmp_path / "ws"
    fetched: list[str] = []
    original = DimseSource.retrieve

    def counting(self: DimseSource, study_uid: str, spool: Path):  # type: ignore[no-untyped-def]
        fetched.append(study_uid)
        return original(self, study_uid, spool)

    monkeypatch.setattr(DimseSource, "retrieve", counting)
    request = RunRequest(manifest, spec, out, ws, workers=1, network=network)
    try:
        first = run_job(request, _StopAfterFirst(pacs))
    finally:
        pacs.start_again()

    assert first.studies == 3 and not first.complete
    assert first.failed > 0
    assert any(
        r.startswith("failed: not retrieved from the source") for r in first.reasons
    )
    done_before = {p: p.stat().st_mtime_ns for p in (out / "dicom").rglob("*.dcm")}
    assert done_before  # the first study was exported
    fetched.clear()

    second = run_job(request)

    assert second.complete and second.failed == 0
    assert len(fetched) == 2  # the two studies that failed, not the first
    for path, mtime in done_before.items():
        assert path.stat().st_mtime_ns == mtime  # not fetched or written again
    folder = run_job(
        RunRequest(manifest, str(corpus.root), tmp_path / "f", ws, workers=1)
    )
    names = {
        p.relative_to(tmp_path / "f").as_posix()
        for p in (tmp_path / "f" / "dicom").rglob("*.dcm")
    }
    assert names == {
        p.relative_to(out).as_posix() for p in (out / "dicom").rglob("*.dcm")
    }
    assert folder.exported == second.exported


def test_dicomweb_wrong_password_and_url_credentials(
    pacs: orthanc.Orthanc,
    corpus: SyntheticSource,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 401 says which variables to check; a password in the URL is refused."""
    manifest = _manifest(corpus, tmp_path / "m.csv", 1)
    monkeypatch.setenv("EXPORTER_DICOMWEB_USER", orthanc.USER)
    monkeypatch.setenv("EXPORTER_DICOMWEB_PASSWORD", "not-the-password")
    place = ["--out", str(tmp_path / "out"), "--workspace", str(tmp_path / "ws")]
    code, output = _cli(str(manifest), "--source", pacs.dicomweb, *place)
    assert code == 1
    assert "answered 401" in output and "EXPORTER_DICOMWEB_USER" in output
    assert "not-the-password" not in output

    with_password = pacs.dicomweb.replace("http://", "http://exporter:secret@")
    code, output = _cli(str(manifest), "--source", with_password, *place)
    assert code == 1 and "not in the URL" in output and "secret" not in output


def test_a_spool_left_by_a_crash_is_removed(
    pacs: orthanc.Orthanc, corpus: SyntheticSource, tmp_path: Path
) -> None:
    """Files an interrupted run left in the spool are gone once the next run starts."""
    manifest = _manifest(corpus, tmp_path / "m.csv", 1)
    spec = f"dicom://{orthanc.PACS_AET}@127.0.0.1:{pacs.dicom_port}"
    request = RunRequest(
        manifest,
        spec,
        tmp_path / "out",
        tmp_path / "ws",
        workers=1,
        network=NetworkSettings(timeout=5, retries=0),
    )
    first = run_job(request)
    stale = tmp_path / "ws" / "jobs" / first.job_id / "spool" / "00000007"
    stale.mkdir(parents=True)
    (stale / "left-behind.dcm").write_bytes(b"un-anonymized")

    second = run_job(request)

    assert second.complete
    assert not (tmp_path / "ws" / "jobs" / first.job_id / "spool").exists() or not any(
        (tmp_path / "ws" / "jobs" / first.job_id / "spool").rglob("*")
    )
