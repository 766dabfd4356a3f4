"""review.html: the workspace page with what the export must not show."""

from __future__ import annotations

import base64
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from exporter.engine.job import JobSummary, RunRequest, run_job
from exporter.pages.review import MAX_ROWS, render
from exporter.policy.profile import DEFAULT_OPTIONS
from exporter.synthetic import SyntheticSource, make_source, write_manifest

PICTURE = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')


@dataclass
class Job:
    summary: JobSummary
    out: Path
    ws: Path

    @property
    def page(self) -> str:
        assert self.summary.review is not None
        return self.summary.review.read_text()


def _run(root: Path, source: SyntheticSource, options: frozenset[str]) -> Job:
    patient = source.studies[0].patient.patient_id
    manifest = write_manifest(root / "m.csv", [{"PatientID": patient}])
    request = RunRequest(
        manifest, str(source.root), root / "out", root / "ws", options=options
    )
    return Job(run_job(request), root / "out", root / "ws")


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    root = tmp_path_factory.mktemp("review-source")
    return make_source(root, seed=9, patients=1, with_bad_files=False)


@pytest.fixture(scope="module")
def cleaned(tmp_path_factory: pytest.TempPathFactory, source: SyntheticSource) -> Job:
    """Clean Pixel Data on: the two captures are scrubbed and released."""
    pytest.importorskip("rapidocr")
    job = _run(
        tmp_path_factory.mktemp("cleaned"),
        source,
        DEFAULT_OPTIONS | {"clean_pixel_data"},
    )
    assert job.summary.pixels_cleaned == 2
    return job


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory, source: SyntheticSource) -> Job:
    """The default policy: the two captures stay in the quarantine."""
    job = _run(tmp_path_factory.mktemp("held"), source, DEFAULT_OPTIONS)
    assert job.summary.quarantined == 2
    return job


def _pictures(page: str) -> list[np.ndarray]:
    from PIL import Image

    return [
        np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        for data in PICTURE.findall(page)
    ]


def _white(picture: np.ndarray) -> int:
    """Pixels of burned-in white text (the outlines are red, anatomy grey)."""
    return int((picture.min(axis=2) > 200).sum())


def test_written_into_the_job_folder_never_the_export(cleaned: Job) -> None:
    """review.html sits in the workspace's job folder, owner-only; the export
    holds neither it nor any picture from before cleaning."""
    review = cleaned.summary.review
    assert review == cleaned.ws / "jobs" / cleaned.summary.job_id / "review.html"
    assert review.stat().st_mode & 0o777 == 0o600
    in_export = [p.name for p in cleaned.out.rglob("*")]
    assert "review.html" not in in_export
    assert not [name for name in in_export if name.endswith(".png")]
    report = (cleaned.out / "report.html").read_text()
    assert len(PICTURE.findall(report)) == cleaned.summary.pixels_cleaned


def test_shows_each_cleaned_image_before_and_after(cleaned: Job) -> None:
    """Two pictures per cleaned image: the text is there before, gone after."""
    pictures = _pictures(cleaned.page)
    assert len(pictures) == 2 * cleaned.summary.pixels_cleaned
    for before, after in zip(pictures[::2], pictures[1::2], strict=True):
        assert before.shape == after.shape
        assert _white(before) > 50, "the burned-in text shows before cleaning"
        assert _white(after) < _white(before) / 20, "text left after cleaning"
    assert "Cleaned images: before and after" in cleaned.page
    assert "Quarantine</h2>\n<p>None.</p>" in cleaned.page


def test_shows_the_quarantine_with_reasons(held: Job) -> None:
    """Each held instance: its reason, a picture of it, the source file."""
    page = held.page
    quarantined = [
        line.split(",")
        for line in (held.summary.review.parent / "not-exported.csv")
        .read_text()
        .splitlines()[1:]
    ]
    assert len(quarantined) == 2
    assert "No image was cleaned." in page
    assert "(ultrasound without BurnedInAnnotation NO)" in page
    assert "(BurnedInAnnotation is YES)" in page
    assert len(PICTURE.findall(page)) == 2
    for source_item, *_ in quarantined:
        assert source_item in page  # the workspace page may name source files
    assert all(_white(p) > 50 for p in _pictures(page))


def test_a_redone_study_keeps_one_pair_per_image(tmp_path: Path) -> None:
    """A study exported again replaces its pictures; none pile up."""
    pytest.importorskip("rapidocr")
    source = make_source(tmp_path / "src", seed=9, patients=1, with_bad_files=False)
    job = _run(tmp_path, source, DEFAULT_OPTIONS | {"clean_pixel_data"})
    painted = sorted(job.out.glob("dicom/*/*/*/*.dcm"))
    cleaned = [p for p in painted if p.name in job.page]
    assert len(cleaned) == 2
    cleaned[0].unlink()  # its study is redone by the next run

    again = _run(tmp_path, source, DEFAULT_OPTIONS | {"clean_pixel_data"})

    pictures = list((again.summary.review.parent / "parts" / "pictures").rglob("*"))
    assert len([p for p in pictures if p.suffix == ".png"]) == 4
    assert len(PICTURE.findall(again.page)) == 4


def test_long_listings_point_to_the_csv(tmp_path: Path) -> None:
    """More failed rows than a page shows: the rest are counted, the CSV named."""
    failed = [
        {"source_item": f"f{n}.dcm", "status": "failed", "reason": "unreadable"}
        for n in range(MAX_ROWS + 7)
    ]
    page = render(tmp_path, {"export_id": "x", "counts": {}}, failed, [])
    assert page.count("<td>unreadable</td>") == MAX_ROWS
    assert "and 7 more rows: see <code>not-exported.csv</code>" in page
