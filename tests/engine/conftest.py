"""Every test here runs twice: on SQLite, and on PostgreSQL (tests/conftest.py).

A module fixture that makes a workspace asks for ``state_backend``, so that it
is made again for each backend. Runs in processes of their own (runs.py) get
the workspace's database as --database-url.
"""

from __future__ import annotations

import shutil

import pytest
from runs import Corpus, build_corpus


@pytest.fixture(scope="module", autouse=True)
def each_state_backend(drop_state_databases: None) -> None:
    """Run this folder's tests once per state backend."""


@pytest.fixture(scope="module")
def corpus(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Corpus:
    """The corpus of the runs in processes of their own (runs.py), with the
    export one uninterrupted run makes of it; one per module."""
    return build_corpus(tmp_path_factory.mktemp(request.module.__name__))


@pytest.fixture
def fresh(corpus: Corpus) -> Corpus:
    """The corpus with no export folder left by an earlier test."""
    shutil.rmtree(corpus.out, ignore_errors=True)
    return corpus
