"""Tests for exporter.state.db: migrations, old databases, the owning workspace."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, select

from exporter.errors import SettingsError
from exporter.state import IndexedFile, Job, Linkage, Task, open_database
from exporter.state.db import MIGRATIONS, fingerprint, shown_url
from exporter.state.models import WorkspaceIdentity

SECRET = bytes(range(32))
OTHER_SECRET = bytes(range(1, 33))
HEAD = ScriptDirectory(str(MIGRATIONS)).get_current_head()
# Accepted and ignored by the test server's trust authentication.
PASSWORD = "pw-never-shown"

# The tables exporter 0.1.0 made with SQLModel.metadata.create_all, before
# there were migrations: what revision 0001 must equal.
LEGACY = sa.MetaData()
_INDEXED = {"patient_id", "study_uid", "accession_number"}
sa.Table(
    "indexedfile",
    LEGACY,
    sa.Column("path", sa.String(), primary_key=True),
    sa.Column("root", sa.String(), nullable=False, index=True),
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("mtime_ns", sa.Integer(), nullable=False),
    *(
        sa.Column(name, sa.String(), index=name in _INDEXED)
        for name in (
            "skip_reason",
            "patient_id",
            "study_uid",
            "series_uid",
            "sop_uid",
            "sop_class_uid",
            "accession_number",
            "study_date",
            "modality",
            "transfer_syntax_uid",
        )
    ),
)
sa.Table(
    "job",
    LEGACY,
    sa.Column("id", sa.String(), primary_key=True),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True)),
    *(
        sa.Column(name, sa.String(), nullable=False)
        for name in (
            "manifest_path",
            "manifest_digest",
            "source",
            "out_dir",
            "recipe_digest",
            "state",
        )
    ),
)
sa.Table(
    "task",
    LEGACY,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("job_id", sa.String(), nullable=False, index=True),
    sa.Column("ordinal", sa.Integer(), nullable=False),
    sa.Column("study_uid", sa.String(), nullable=False),
    sa.Column("patient_id", sa.String(), nullable=False),
    sa.Column("subject_id", sa.String()),
    sa.Column("instances", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(), nullable=False),
    *(
        sa.Column(name, sa.Integer(), nullable=False)
        for name in ("exported", "quarantined", "failed", "bytes_out")
    ),
    sa.Column("pixels_cleaned", sa.Integer(), nullable=False),
)
sa.Table(
    "rowmatch",
    LEGACY,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("job_id", sa.String(), nullable=False, index=True),
    sa.Column("row", sa.Integer(), nullable=False),
    sa.Column("study_uid", sa.String()),
)
sa.Table(
    "outcome",
    LEGACY,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("job_id", sa.String(), nullable=False, index=True),
    sa.Column("task_id", sa.Integer(), nullable=False, index=True),
    sa.Column("source_item", sa.String(), nullable=False),
    sa.Column("status", sa.String(), nullable=False),
    sa.Column("reason", sa.String(), nullable=False),
    sa.Column("quarantine_path", sa.String()),
)
sa.Table(
    "linkage",
    LEGACY,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("original", sa.String(), nullable=False),
    sa.Column("pseudonym", sa.String(), nullable=False),
    sa.UniqueConstraint("kind", "original"),
)
sa.Table(
    "witness",
    LEGACY,
    sa.Column("id", sa.Integer(), primary_key=True),
    sa.Column("kind", sa.String(), nullable=False),
    sa.Column("value", sa.String(), nullable=False),
    sa.Column("patient", sa.String(), nullable=False),
    sa.UniqueConstraint("kind", "value", "patient"),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database of each kind; PostgreSQL's URL carries a password."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.db'}"
    plain = make_url(request.getfixturevalue("postgres_database"))
    return plain.set(password=PASSWORD).render_as_string(hide_password=False)


def differences(engine: Engine, metadata: sa.MetaData) -> list[object]:
    """What Alembic finds between the database and ``metadata``."""
    with engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), metadata))


def revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade_to(url: str, target: str) -> None:
    """Run the shipped revisions up to ``target`` only."""
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = connection
        command.upgrade(config, target)
    engine.dispose()


def legacy_database(url: str, *changes: str) -> None:
    """What exporter 0.1.0 left (create_all, rows, no alembic_version), changed."""
    engine = sa.create_engine(url)
    LEGACY.create_all(engine)
    with engine.begin() as connection:
        connection.execute(
            LEGACY.tables["job"].insert(),
            {
                "id": "job1",
                "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
                "manifest_path": "m.csv",
                "manifest_digest": "d",
                "source": "s",
                "out_dir": "/out",
                "recipe_digest": "r",
                "state": "finished",
            },
        )
        connection.execute(
            LEGACY.tables["linkage"].insert(),
            {"kind": "uid", "original": "1.2.3", "pseudonym": "2.25.9"},
        )
        for change in changes:
            connection.execute(sa.text(change))
    engine.dispose()


class TestFreshDatabase:
    def test_head_has_the_schema_of_the_models(self, url: str):
        """Upgraded to head, the database differs from the models in nothing."""
        engine = open_database(url, SECRET)

        assert revision(engine) == HEAD
        assert differences(engine, SQLModel.metadata) == []

    def test_revision_0001_is_what_create_all_made(self, url: str):
        """Revision 0001 alone creates exactly exporter 0.1.0's tables."""
        upgrade_to(url, "0001")

        assert differences(sa.create_engine(url), LEGACY) == []

    def test_opening_twice_is_a_no_op(self, url: str):
        """A second open changes no schema, keeps the rows, and takes no lock."""
        engine = open_database(url, SECRET)
        with Session(engine) as session:
            session.add(Linkage(kind="uid", original="1.2.3", pseudonym="2.25.1"))
            session.commit()
        statements: list[str] = []

        def note(*args: object) -> None:
            statements.append(str(args[2]))

        sa.event.listen(Engine, "before_cursor_execute", note)
        try:
            again = open_database(url, SECRET)
        finally:
            sa.event.remove(Engine, "before_cursor_execute", note)

        assert revision(again) == HEAD
        with Session(again) as session:
            assert len(session.exec(select(Linkage)).all()) == 1
        assert statements
        assert [s for s in statements if s.split()[0] not in ("SELECT", "PRAGMA")] == []

    def test_concurrent_first_opens_all_succeed(self, url: str):
        """Processes opening one new database at once migrate it once, without error."""
        code = (
            "import sys; from exporter.state import open_database; "
            "open_database(sys.argv[1], bytes(range(32)))"
        )
        runs = [
            subprocess.Popen(
                [sys.executable, "-c", code, url],
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(3)
        ]
        errors = [run.communicate(timeout=120)[1] for run in runs]

        assert [run.returncode for run in runs] == [0, 0, 0], errors
        engine = open_database(url, SECRET)
        assert revision(engine) == HEAD
        with Session(engine) as session:
            assert len(session.exec(select(WorkspaceIdentity)).all()) == 1

    def test_text_sorts_by_code_point(self, url: str):
        """Paths come back in Python's order, whatever the database's locale."""
        engine = open_database(url)
        paths = ["/d/B", "/d/a", "/d/_x", "/d/a b", "/d/ab", "/d/é", "/d/Z.dcm"]
        with Session(engine) as session:
            for path in paths:
                session.add(IndexedFile(path=path, root="/d", size=1, mtime_ns=1))
            session.commit()
            query = select(IndexedFile.path).order_by(sa.asc(IndexedFile.path))
            assert list(session.exec(query).all()) == sorted(paths)

    def test_sizes_and_times_have_64_bits(self, url: str):
        """A nanosecond mtime and a size past 4 GiB are kept exactly."""
        engine = open_database(url)
        mtime, size = 1_780_000_000_123_456_789, 5 * 2**30
        with Session(engine) as session:
            session.add(IndexedFile(path="/big", root="/", size=size, mtime_ns=mtime))
            session.commit()
            row = session.get(IndexedFile, "/big")
            assert row is not None and (row.size, row.mtime_ns) == (size, mtime)

    def test_task_claims_are_timezone_aware(self, url: str):
        """claimed_by and claimed_until start empty; a lease end reads back in UTC."""
        engine = open_database(url)
        until = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC) + timedelta(hours=2)
        with Session(engine) as session:
            task = Task(job_id="j", ordinal=1, study_uid="1.2", patient_id="p")
            session.add(task)
            session.commit()
            assert (task.claimed_by, task.claimed_until) == (None, None)
            task.claimed_by, task.claimed_until = "runner-1", until
            session.add(task)
            session.commit()
            session.expire_all()
            stored = session.get(Task, task.id)
            assert stored is not None and stored.claimed_until == until
            assert stored.claimed_until.tzinfo is not None


class TestOlderDatabase:
    def test_create_all_database_is_stamped_and_upgraded(self, url: str):
        """exporter 0.1.0's tables are recognised as 0001, upgraded, rows kept."""
        legacy_database(url)

        engine = open_database(url, SECRET)

        assert revision(engine) == HEAD
        assert differences(engine, SQLModel.metadata) == []
        with Session(engine) as session:
            job = session.get(Job, "job1")
            assert job is not None and job.state == "finished"
            assert job.created_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
            links = session.exec(select(Linkage)).all()
            assert [(x.original, x.pseudonym) for x in links] == [("1.2.3", "2.25.9")]

    @pytest.mark.parametrize(
        ("change", "said"),
        [
            ("ALTER TABLE task DROP COLUMN pixels_cleaned", "task lacks pixels_"),
            ("ALTER TABLE job ADD COLUMN notes VARCHAR", "job has notes besides"),
            ("CREATE TABLE notes (id INTEGER PRIMARY KEY)", "table notes is not"),
            ("DROP TABLE witness", "no table witness"),
        ],
        ids=["column missing", "column added", "table added", "table missing"],
    )
    def test_an_unknown_layout_is_refused(self, url: str, change: str, said: str):
        """Tables without a revision that are not 0001's: refused, saying what to do."""
        legacy_database(url, change)

        with pytest.raises(SettingsError, match="no schema revision") as caught:
            open_database(url, SECRET)

        message = str(caught.value)
        assert said in message
        assert shown_url(url) in message and "give an empty database" in message
        assert PASSWORD not in message

    def test_a_newer_revision_is_refused(self, url: str):
        """A database a newer exporter migrated is not touched."""
        engine = open_database(url)
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE alembic_version SET version_num='9999'"))

        with pytest.raises(SettingsError, match="made by a newer exporter") as caught:
            open_database(url)

        assert PASSWORD not in str(caught.value)


class TestWorkspaceIdentity:
    def test_another_workspace_is_refused(self, url: str):
        """A database that one workspace claimed is refused to another."""
        open_database(url, SECRET)

        with pytest.raises(SettingsError, match="belongs to another workspace") as got:
            open_database(url, OTHER_SECRET)

        assert shown_url(url) in str(got.value)
        assert PASSWORD not in str(got.value)
        open_database(url, SECRET)  # its own workspace still opens it

    def test_only_a_fingerprint_is_stored(self, url: str):
        """The database holds an HMAC of a fixed label, not the secret."""
        engine = open_database(url, SECRET)

        with Session(engine) as session:
            (row,) = session.exec(select(WorkspaceIdentity)).all()
        assert row.fingerprint == fingerprint(SECRET)
        assert SECRET.hex() not in row.fingerprint
        assert fingerprint(SECRET) != fingerprint(OTHER_SECRET)

    def test_an_older_database_is_claimed_by_its_first_workspace(self, url: str):
        """A stamped 0.1.0 database has no owner yet: the first opener becomes it."""
        legacy_database(url)
        open_database(url, SECRET)

        with pytest.raises(SettingsError, match="belongs to another workspace"):
            open_database(url, OTHER_SECRET)


class TestReadOnlyCommands:
    def test_an_empty_database_is_refused(self, url: str, tmp_path: Path):
        """create=False (verify, linkage) refuses a database with no exporter state."""
        with pytest.raises(SettingsError, match=r"holds no exporter state|not exist"):
            open_database(url, SECRET, create=False)

        assert not (tmp_path / "state.db").exists()

    def test_an_existing_database_opens(self, url: str):
        """create=False opens a database that a run made."""
        open_database(url, SECRET)

        assert revision(open_database(url, SECRET, create=False)) == HEAD


class TestUrls:
    @pytest.mark.parametrize(
        ("url", "shown"),
        [
            (
                "postgresql+psycopg://alice:s3cret@db.example:5433/state",
                "postgresql+psycopg://alice@db.example:5433/state",
            ),
            (
                "postgresql+psycopg://alice@db/state?password=s3cret&sslmode=require",
                "postgresql+psycopg://alice@db/state?sslmode=require",
            ),
            ("sqlite:////ws/state.db", "sqlite:////ws/state.db"),
        ],
    )
    def test_a_password_is_never_shown(self, url: str, shown: str):
        """Messages show the URL without its password, in the netloc or the query."""
        assert shown_url(url) == shown

    def test_an_unreachable_server_is_one_clear_error(self):
        """No server there: a SettingsError naming the URL, without the password."""
        url = f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:9/nothing?connect_timeout=5"
        pytest.importorskip("psycopg")

        with pytest.raises(SettingsError, match="cannot open the state database") as e:
            open_database(url)

        assert "postgresql+psycopg://u@127.0.0.1:9/nothing" in str(e.value)
        assert PASSWORD not in str(e.value)

    @pytest.mark.parametrize(
        ("url", "said"),
        [
            ("not a url", "cannot be read"),
            ("mysql+nodriver://u@h/db", "no driver"),
        ],
    )
    def test_unusable_urls_are_refused(self, url: str, said: str):
        """A URL that is no URL, or names a database kind exporter does not run on."""
        with pytest.raises(SettingsError, match=said):
            open_database(url)
