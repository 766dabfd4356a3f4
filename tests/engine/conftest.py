"""Every test here runs twice: on SQLite, and on PostgreSQL (tests/conftest.py).

A module fixture that makes a workspace asks for ``state_backend``, so that it
is made again for each backend.
"""

from __future__ import annotations

import pytest

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
