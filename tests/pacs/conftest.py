"""Fixtures: one real Orthanc per test session, loaded with a synthetic corpus."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import orthanc_server as orthanc
import pytest

from exporter.synthetic import SyntheticSource, make_source


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    """A multi-patient corpus, compressed and uncompressed, without bad files."""
    root = tmp_path_factory.mktemp("pacs-corpus")
    return make_source(root / "src", seed=21, patients=3, with_bad_files=False)


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
