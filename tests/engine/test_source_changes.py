"""Rerunning after the source changed: nothing is skipped, nothing stale stays."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pyarrow.parquet as pq

from exporter.engine.job import RunRequest, run_job
from exporter.synthetic import make_source, write_manifest


def _rows(out: Path) -> dict[str, str]:
    with open(out / "reconciliation.csv", newline="") as handle:
        return {r["row"]: r["status"] for r in csv.DictReader(handle)}


def test_rerun_picks_up_new_studies_and_drops_removed_instances(tmp_path: Path) -> None:
    """A study that arrives later is exported; an instance that left is removed."""
    full = make_source(
        tmp_path / "full",
        seed=21,
        patients=2,
        with_bad_files=False,
        with_burned_in=False,
    )
    late, changed = full.studies[-1], full.studies[0]
    source = tmp_path / "source"
    shutil.copytree(full.root, source)
    patient_folder, study_folder = late.paths[0].relative_to(full.root).parts[:2]
    shutil.rmtree(source / patient_folder / study_folder)
    manifest = write_manifest(
        tmp_path / "cohort.csv",
        [{"StudyInstanceUID": s.study_uid} for s in full.studies],
    )
    request = RunRequest(manifest, str(source), tmp_path / "out", tmp_path / "ws")

    first = run_job(request)
    last_row = str(len(full.studies) + 1)
    assert _rows(request.out)[last_row] == "matched nothing"

    # The late study arrives; one instance of another study leaves the source.
    for path in late.paths:
        target = source / path.relative_to(full.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    (source / changed.paths[-1].relative_to(full.root)).unlink()
    second = run_job(request)

    assert _rows(request.out)[last_row] == "exported"
    assert second.exported == first.exported + len(late.paths) - 1
    listed = pq.read_table(request.out / "catalog" / "instances.parquet")
    files = sorted(
        p.relative_to(request.out).as_posix() for p in request.out.rglob("*.dcm")
    )
    assert files == sorted(listed.column("file_path").to_pylist())
