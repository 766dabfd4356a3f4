"""Open the state database: migrate it to the current schema, check its owner.

The schema changes only through the Alembic revisions in ``migrations/``,
which ship inside the package and run from here, with a configuration built
in code. A database made by an older exporter with ``create_all`` (tables, no
``alembic_version``) is recognised when its layout is that of revision 0001,
stamped so, and upgraded. Upgrades hold a lock, so that processes opening the
same new database at once migrate it once: SQLite takes its write lock
(``BEGIN IMMEDIATE``), PostgreSQL an advisory lock, for the transaction.

A database belongs to one workspace: the first open records a keyed
fingerprint of the workspace secret, and any other workspace is refused, since
its pseudonyms would mix with the first one's.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, create_engine, event, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from exporter.errors import SettingsError
from exporter.state.models import WorkspaceIdentity, utcnow

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
LEGACY_REVISION = "0001"
"""The revision whose layout ``create_all`` made before there were migrations."""

# Keys the one advisory lock of every exporter database on a PostgreSQL server
# (advisory locks are per database); any fixed 64-bit number will do.
_PG_LOCK_KEY = 0x6578706F72746572  # "exporter"
# HMAC message of the fingerprint; the pseudonyms' messages are a kind, a NUL
# and a value, and no kind is called this.
_IDENTITY_LABEL = b"workspace-identity\x00"


_WAL_ATTEMPTS = 300  # 0.1 s apart: the 30 s of busy_timeout


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # First the wait, so that switching a new file to WAL waits for another
    # process doing the same instead of failing.
    cursor.execute("PRAGMA busy_timeout=30000")
    # WAL lets a reader (progress, a second command) run beside the writer and
    # makes each commit durable without rewriting the whole file. Switching a
    # new file to WAL can report "locked" at once, without the wait, while
    # another process switches it: try again for as long as the wait would.
    for attempt in range(_WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.1)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def shown_url(url: str | URL) -> str:
    """``url`` fit for a message or a log: without its password.

    A password in the query string (``?password=...``) is left out as well.
    """
    parsed = make_url(url)
    query = {k: v for k, v in parsed.query.items() if "password" not in k.lower()}
    # URL.set() leaves a field alone when given None: build it anew instead.
    bare = URL.create(
        parsed.drivername,
        username=parsed.username,
        host=parsed.host,
        port=parsed.port,
        database=parsed.database,
        query=query,
    )
    return bare.render_as_string(hide_password=False)


def fingerprint(secret: bytes) -> str:
    """The workspace's identity as recorded in its database (never the secret)."""
    return hmac.new(secret, _IDENTITY_LABEL, hashlib.sha256).hexdigest()


def open_database(
    url: str, workspace_secret: bytes | None = None, *, create: bool = True
) -> Engine:
    """Open the state database at ``url``, migrated to the current schema.

    Parameters
    ----------
    url
        A SQLAlchemy URL: ``sqlite:///path`` (the workspace's default) or
        ``postgresql+psycopg://user@host/database`` (the ``postgres`` extra).
    workspace_secret
        The secret of the workspace using the database. The first open records
        its fingerprint; a database another workspace recorded is refused.
        ``None`` skips the check (tools and tests that only read).
    create
        Whether an empty database may be given the schema; ``False`` for
        commands that read an existing workspace.

    Returns
    -------
    Engine
        SQLite connections use WAL and wait up to 30 s for a lock.

    Raises
    ------
    SettingsError
        When the URL cannot be used, the database cannot be reached, holds a
        layout exporter does not know (or none, with ``create=False``), was
        made by a newer exporter, or belongs to another workspace. Messages
        show the URL without its password.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SettingsError(
            "the state database URL cannot be read; give a SQLAlchemy URL such "
            "as sqlite:///path/state.db or postgresql+psycopg://user@host/database"
        ) from None
    shown = shown_url(parsed)
    try:
        engine = create_engine(parsed)
    except (ImportError, NoSuchModuleError) as exc:
        raise SettingsError(
            f"state database {shown}: no driver for {parsed.drivername!r} "
            f"({type(exc).__name__}); for PostgreSQL install exporter[postgres] "
            "and use postgresql+psycopg://"
        ) from exc
    if engine.dialect.name not in ("sqlite", "postgresql"):
        raise SettingsError(
            f"state database {shown}: exporter supports SQLite and PostgreSQL only"
        )
    if engine.dialect.name == "sqlite":
        if not create and parsed.database and not Path(parsed.database).is_file():
            raise SettingsError(
                f"state database {shown} does not exist; give the database "
                "(--database-url) and workspace the export was made with"
            )
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _upgrade(engine, shown, create)
        if workspace_secret is not None:
            _claim(engine, shown, fingerprint(workspace_secret))
    except DBAPIError as exc:
        engine.dispose()
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "failed"
        message = f"cannot open the state database {shown}: {reason}"
        raise SettingsError(message) from exc
    except SettingsError:
        engine.dispose()
        raise
    return engine


@cache
def _scripts() -> ScriptDirectory:
    """The revisions shipped in the package (read once per process)."""
    return ScriptDirectory(str(MIGRATIONS))


def _config(connection: Connection) -> Config:
    """An Alembic configuration in code: no alembic.ini is needed at run time."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def _revision(connection: Connection) -> str | None:
    """The database's schema revision; ``None`` before any migration."""
    return MigrationContext.configure(connection).get_current_revision()


def _upgrade(engine: Engine, shown: str, create: bool) -> None:
    """Bring the schema to the newest revision, once, under the lock."""
    head = _scripts().get_current_head()
    with engine.connect() as connection:
        if _revision(connection) == head:
            return  # the usual case: nothing to do, no lock taken
    with _migration_lock(engine) as connection:
        current = _revision(connection)  # again: another process may have won
        if current == head:
            return
        if current is None:
            tables = _layout(connection)
            if tables:
                _check_legacy(tables, shown)
                command.stamp(_config(connection), LEGACY_REVISION)
                logger.info("state database: recognised exporter 0.1.0 tables")
            elif not create:
                raise SettingsError(
                    f"state database {shown} holds no exporter state; give the "
                    "database (--database-url) and workspace the export was made with"
                )
        else:
            try:
                _scripts().get_revision(current)
            except CommandError:
                raise SettingsError(
                    f"state database {shown} has schema revision {current!r}, which "
                    "this exporter does not know: it was made by a newer exporter; "
                    "upgrade exporter to open it"
                ) from None
        command.upgrade(_config(connection), "head")
        logger.info("state database: schema upgraded from %s to %s", current, head)


@contextmanager
def _migration_lock(engine: Engine) -> Iterator[Connection]:
    """A connection in a transaction that no other process migrates beside."""
    if engine.dialect.name == "postgresql":
        with engine.begin() as connection:
            # Held to the end of the transaction; PostgreSQL's DDL is
            # transactional, so a failed upgrade leaves nothing half done.
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY}
            )
            yield connection
        return
    # SQLite: the whole upgrade in one BEGIN IMMEDIATE transaction, which takes
    # the write lock at once (a second process waits, then finds it done) and
    # makes the DDL atomic. Python's sqlite3 would commit before each DDL
    # statement, so it is told to leave transactions to us.
    locking = create_engine(engine.url, poolclass=NullPool)

    @event.listens_for(locking, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_pragmas(dbapi_connection, record)
        dbapi_connection.isolation_level = None

    @event.listens_for(locking, "begin")
    def _begin(connection: Connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with locking.begin() as connection:
            yield connection
    finally:
        locking.dispose()


def _layout(connection: Connection) -> dict[str, set[str]]:
    """Table name -> column names, of every table but Alembic's own."""
    inspector = inspect(connection)
    return {
        table: {column["name"] for column in inspector.get_columns(table)}
        for table in inspector.get_table_names()
        if table != "alembic_version"
    }


@cache
def _legacy_layout() -> dict[str, set[str]]:
    """The tables and columns revision 0001 creates (built in memory, once)."""
    engine = create_engine("sqlite://", poolclass=NullPool)
    with engine.begin() as connection:
        command.upgrade(_config(connection), LEGACY_REVISION)
        return _layout(connection)


def _check_legacy(tables: dict[str, set[str]], shown: str) -> None:
    """Refuse tables without a revision unless they are exactly revision 0001's."""
    # TODO: a database made before the witness table existed (development
    # versions before verify) is refused too, where create_all would have
    # added the table; create the missing 0001 tables first if such turn up.
    expected = _legacy_layout()
    problems = [f"no table {t}" for t in sorted(expected.keys() - tables.keys())]
    problems += [
        f"table {t} is not exporter's" for t in sorted(tables.keys() - expected.keys())
    ]
    for table in sorted(expected.keys() & tables.keys()):
        missing = sorted(expected[table] - tables[table])
        extra = sorted(tables[table] - expected[table])
        if missing:
            problems.append(f"{table} lacks {', '.join(missing)}")
        if extra:
            problems.append(f"{table} has {', '.join(extra)} besides")
    if problems:
        listed = "; ".join(problems[:4]) + ("; ..." if len(problems) > 4 else "")
        raise SettingsError(
            f"state database {shown} has tables but no schema revision, and they "
            f"are not those an earlier exporter made ({listed}); give an empty "
            "database or the workspace's own one, or finish its jobs with the "
            "exporter version that made it and start a new state database"
        )


def _claim(engine: Engine, shown: str, mine: str) -> None:
    """Record the workspace's fingerprint on first use; refuse another one's."""
    table = WorkspaceIdentity.__table__  # type: ignore[attr-defined]
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    with engine.begin() as connection:
        recorded = connection.execute(select(table.c.fingerprint)).scalar()
        if recorded is None:
            row = {"id": 1, "fingerprint": mine, "created_at": utcnow()}
            # Two first opens at once: the first row stays, the other is compared.
            connection.execute(
                dialect.insert(table).values(row).on_conflict_do_nothing()
            )
            recorded = connection.execute(select(table.c.fingerprint)).scalar_one()
    if not hmac.compare_digest(recorded, mine):
        raise SettingsError(
            f"state database {shown} belongs to another workspace (made with "
            "another secret): pseudonyms would mix. Give this workspace its own "
            "database (--database-url or EXPORTER_DATABASE_URL), or use the "
            "workspace that database belongs to"
        )
