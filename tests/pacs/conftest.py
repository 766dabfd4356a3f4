"""Fixtures: one real Orthanc per test session, loaded with a synthetic corpus."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import orthanc_server as orthanc
import pytest
from pydicom.data import get_testdata_file

from exporter.synthetic import SyntheticSource, make_source

# pydicom's compressed files (distinct SOP instances): RLE, JPEG baseline.
COMPRESSED = ("MR_small_RLE.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_rle.dcm")


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    """A multi-patient corpus, compressed and uncompressed, without bad files."""
    root = tmp_path_factory.mktemp("pacs-corpus")
    source = make_source(root / "src", seed=21, patients=3, with_bad_files=False)
    (root / "src" / "compressed").mkdir()
    for name in COMPRESSED:
        shutil.copy(get_testdata_file(name), root / "src" / "compressed" / name)
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
