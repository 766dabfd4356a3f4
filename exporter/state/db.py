"""Open the state database and create its tables."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlmodel import SQLModel, create_engine

from exporter.state import models  # noqa: F401  (registers the tables)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets a reader (progress, a second command) run beside the writer and
    # makes each commit durable without rewriting the whole file.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def open_database(url: str) -> Engine:
    """Create an engine for ``url`` and make sure every table exists.

    Parameters
    ----------
    url
        A SQLAlchemy URL; ``sqlite:///path`` in the workspace by default.
    """
    engine = create_engine(url)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
    SQLModel.metadata.create_all(engine)
    return engine
