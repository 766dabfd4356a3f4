"""Fixtures: one real Orthanc per test session, loaded with a synthetic corpus."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import orthanc_server as orthanc
import pydicom
import pytest
from pydicom.data import get_testdata_file

from exporter.synthetic import SyntheticSource, make_source

# pydicom's compressed files (distinct SOP instances): RLE, JPEG baseline.
COMPRESSED = ("MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm")

# Patient IDs a server may read as wildcards or fail to decode in a URL, each
# next to a near miss that a wildcard or a case-blind match would also find.
TRICKY_IDS = (
    "MRN^77*1",
    "MRN^77X1",
    "mrn^77*1",
    "PAT 0042?",
    "PAT 00421",
    "^LEADING",
    "%41BC",
    "ABC",
)


def _uid(*parts: str) -> str:
    return f"2.25.{uuid.uuid5(uuid.NAMESPACE_OID, '/'.join(parts)).int}"


def _write_tricky(folder: Path) -> None:
    """One single-instance study for each of ``TRICKY_IDS``."""
    folder.mkdir()
    template = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    for number, patient_id in enumerate(TRICKY_IDS):
        ds = template.copy()
        ds.PatientID = patient_id
        ds.AccessionNumber = f"TRK{number}"
        ds.StudyInstanceUID = _uid("tricky", patient_id)
        ds.SeriesInstanceUID = _uid("tricky", patient_id, "series")
        ds.SOPInstanceUID = _uid("tricky", patient_id, "instance")
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"tricky{number}.dcm")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    """A multi-patient corpus, compressed and uncompressed, without bad files."""
    root = tmp_path_factory.mktemp("pacs-corpus")
    source = make_source(root / "src", seed=21, patients=3, with_bad_files=False)
    (root / "src" / "compressed").mkdir()
    for name in COMPRESSED:
        shutil.copy(get_testdata_file(name), root / "src" / "compressed" / name)
    _write_tricky(root / "src" / "tricky")
    return source


@pytest.fixture(scope="session")
def pacs(
    tmp_path_factory: pytest.TempPathFactory, corpus: SyntheticSource
) -> Iterator[orthanc.Orthanc]:
    """Orthanc with the corpus stored; stopped at the end of the session."""
    if not orthanc.available():
        if os.environ.get("CI"):
            pytest.fail("Orthanc is not installed; .ci/run installs it")
        pytest.skip(
            "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"
        )
    server = orthanc.start(tmp_path_factory.mktemp("orthanc"))
    try:
        server.upload(sorted(p for p in Path(corpus.root).rglob("*") if p.is_file()))
        yield server
    finally:
        server.stop()
