"""Every test here runs twice: on SQLite, and on PostgreSQL (tests/conftest.py).

A module fixture that makes a workspace asks for ``state_backend``, so that it
is made again for each backend.
"""

from __future__ import annotations

import shutil

import pytest
from runs import Corpus, build_corpus

# Their runs are processes of their own, started without --database-url and
# read back through state.db: a PostgreSQL pass would repeat the SQLite one.
# TODO: pass default_database_url(workspace) to those runs (tests/engine/runs.py)
# and read tasks through it, to resume killed runs on PostgreSQL too.
SQLITE_ONLY = {
    "test_resume.py": "runs exporter in subprocesses on the workspace's state.db",
    "test_cluster.py": "runs exporter in subprocesses on the workspace's state.db",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the PostgreSQL pass of the modules that cannot take it yet."""
    for item in items:
        reason = SQLITE_ONLY.get(item.path.name)
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("state_backend") if callspec else None
        if reason and backend == "postgresql" and item.path.parent.name == "engine":
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


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
