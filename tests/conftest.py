"""Fixtures for every test: a PostgreSQL server, fresh databases, state backends.

``postgres_server`` is ``$EXPORTER_TEST_POSTGRES_URL`` when set (a server URL,
``postgresql+psycopg://postgres@127.0.0.1:PORT/postgres``; .ci/run sets it),
else a throwaway cluster started here when PostgreSQL is installed, else the
tests that need it are skipped (and fail under ``$CI``).

Folders whose conftest asks for ``state_backend`` (tests/engine, tests/verify,
tests/pages) run twice: once as they are, with SQLite in each workspace, and
once with every workspace given a fresh PostgreSQL database of its own.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import postgres_server as postgres
import pytest

import exporter.workspace

ENV_SERVER = "EXPORTER_TEST_POSTGRES_URL"
# Which state backends the folders that ask for one run on; a comma-separated
# subset in $EXPORTER_TEST_BACKENDS (.ci/run's pass on a Dask cluster: sqlite).
BACKENDS = tuple(
    os.environ.get("EXPORTER_TEST_BACKENDS", "sqlite,postgresql").split(",")
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """The URL of a PostgreSQL server that tests may create databases on."""
    url = os.environ.get(ENV_SERVER)
    if url:
        yield url
        return
    if not postgres.available():
        if os.environ.get("CI"):
            pytest.fail(
                f"PostgreSQL or psycopg is not installed and {ENV_SERVER} is not set"
            )
        pytest.skip(
            "PostgreSQL is not installed (apt-get install postgresql; "
            "pip install -e '.[postgres]')"
        )
    server = postgres.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def postgres_database(postgres_server: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped after the test."""
    url = postgres.create_database(postgres_server)
    try:
        yield url
    finally:
        postgres.drop_database(url)


class DatabasePerWorkspace:
    """Gives each workspace folder its own new PostgreSQL database."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.urls: dict[Path, str] = {}

    def __call__(self, root: Path) -> str:
        if root not in self.urls:
            self.urls[root] = postgres.create_database(self.server)
        return self.urls[root]

    def drop_all(self) -> None:
        """Drop every database given out so far."""
        while self.urls:
            postgres.drop_database(self.urls.popitem()[1])


@pytest.fixture(scope="session", params=BACKENDS)
def state_backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """The state database of every workspace: SQLite, or PostgreSQL (one each).

    With PostgreSQL, a workspace opened without --database-url gets a database
    of its own instead of state.db, so that tests with several workspaces
    (each its own secret) never share one. The databases are dropped at the
    end of each test module (``drop_state_databases``).
    """
    if request.param == "sqlite":
        yield "sqlite"
        return
    databases = DatabasePerWorkspace(request.getfixturevalue("postgres_server"))
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(exporter.workspace.ENV_DATABASE, raising=False)
        patch.setattr(exporter.workspace, "default_database_url", databases)
        request.config.stash[_DATABASES] = databases
        try:
            yield "postgresql"
        finally:
            del request.config.stash[_DATABASES]
            databases.drop_all()


_DATABASES = pytest.StashKey[DatabasePerWorkspace]()


@pytest.fixture(scope="module")
def drop_state_databases(
    state_backend: str, request: pytest.FixtureRequest
) -> Iterator[None]:
    """Drop, at the end of the module, the databases its workspaces were given."""
    yield
    databases = request.config.stash.get(_DATABASES, None)
    if databases is not None:
        databases.drop_all()
