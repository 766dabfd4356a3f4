"""Alembic's environment: runs the revisions on the connection open_database gives.

There is no alembic.ini: :mod:`exporter.state.db` builds the configuration in
code and passes an open connection, inside the transaction that holds the
migration lock, as ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

from exporter.state import models  # noqa: F401  (registers the tables)

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "the state database is migrated by exporter.state.open_database, "
        "which passes the connection; the alembic command line is not set up"
    )
context.configure(connection=connection, target_metadata=SQLModel.metadata)
with context.begin_transaction():
    context.run_migrations()
