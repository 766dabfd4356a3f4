"""A batch of awkward real files: nothing stops the job, nothing goes missing."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from sqlmodel import Session, select

from exporter.engine.job import RunRequest, run_job
from exporter.state import IndexedFile, open_database
from exporter.workspace import open_workspace


def test_every_selected_instance_is_accounted_for(tmp_path: Path) -> None:
    """pydicom's test files (odd syntaxes, damage, captures): each has an outcome."""
    source = tmp_path / "source"
    source.mkdir()
    folder = Path(str(get_testdata_file("CT_small.dcm"))).parent
    for path in folder.glob("*.dcm"):
        shutil.copy(path, source / path.name)
    studies = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in source.iterdir():
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
            except Exception:
                continue
            uid = str(ds.get("StudyInstanceUID", ""))
            if uid and "SOPInstanceUID" in ds and len(uid) <= 64:
                studies.add(uid)
    manifest = tmp_path / "cohort.csv"
    manifest.write_text("StudyInstanceUID\n" + "\n".join(sorted(studies)) + "\n")
    ws = tmp_path / "ws"

    summary = run_job(
        RunRequest(manifest, str(source), tmp_path / "out", ws, workers=2)
    )

    with Session(open_database(open_workspace(ws).database_url)) as session:
        indexed = session.exec(
            select(IndexedFile).where(IndexedFile.skip_reason == None)  # noqa: E711
        ).all()
    selected = {f.sop_uid for f in indexed if f.study_uid in studies}
    assert summary.exported + summary.quarantined + summary.failed == len(selected)
    assert summary.exported > 0 and summary.quarantined > 0
    assert summary.rows == len(studies)
    dcm = list((tmp_path / "out" / "dicom").rglob("*.dcm"))
    assert len(dcm) == summary.exported
