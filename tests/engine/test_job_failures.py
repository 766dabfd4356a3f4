"""Failures inside the engine fail instances, never the whole batch."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporter.engine import job
from exporter.engine.job import RunRequest, run_job
from exporter.engine.worker import StudyResult, StudyTask
from exporter.synthetic import make_source, write_manifest


def test_a_shard_that_raises_fails_its_instances_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected error in one study is recorded; the other studies export."""
    source = make_source(
        tmp_path / "src", seed=5, patients=2, with_bad_files=False, with_burned_in=False
    )
    manifest = write_manifest(
        tmp_path / "cohort.csv",
        [{"StudyInstanceUID": s.study_uid} for s in source.studies],
    )
    doomed = source.studies[0].study_uid
    real = job.export_shard

    def flaky(shard: StudyTask) -> StudyResult:
        if shard.study_uid == doomed:
            raise RuntimeError("boom")
        return real(shard)

    monkeypatch.setattr(job, "export_shard", flaky)

    summary = run_job(
        RunRequest(manifest, str(tmp_path / "src"), tmp_path / "out", tmp_path / "ws")
    )

    assert summary.failed == len(source.studies[0].paths)
    assert summary.exported == sum(len(s.paths) for s in source.studies[1:])
    assert summary.reasons == {"failed: internal error": summary.failed}
    assert not summary.complete
