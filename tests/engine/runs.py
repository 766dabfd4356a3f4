"""Runs of ``exporter run`` in a process of their own, killed or not.

Shared by the resume and cluster tests: a corpus with the export an
uninterrupted run makes of it, and helpers to start, kill and compare runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool
from sqlmodel import Session, select

import exporter.workspace
from exporter.engine.files import TMP_MARK
from exporter.state import Job, Task, open_database
from exporter.synthetic import make_source, write_manifest
from exporter.workspace import ENV_DATABASE, ENV_WORKSPACE

# One project secret for every workspace here: the same pseudonyms everywhere.
SECRET = "5e" * 32 + "\n"
POLL_SECONDS = 0.01
START_TIMEOUT = 60.0
RUN_TIMEOUT = 180.0


@dataclass(frozen=True)
class Corpus:
    """A source, its manifest, and the export an uninterrupted run makes of it."""

    root: Path
    source: Path
    manifest: Path
    studies: int
    instances: int
    reference: dict[str, str]

    @property
    def out(self) -> Path:
        """The export folder of every run: the folder is part of the export id."""
        return self.root / "export"

    def workspace(self, name: str) -> Path:
        """A new workspace holding the shared project secret.

        Named ``name``, or ``name-2``... when a test of the other state backend
        made that one already (the corpus serves both).
        """
        ws, number = self.root / name, 1
        while ws.exists():
            number += 1
            ws = self.root / f"{name}-{number}"
        ws.mkdir()
        key = ws / "secret.key"
        key.write_text(SECRET, encoding="ascii")
        key.chmod(0o600)
        return ws

    def command(self, workspace: Path) -> list[str]:
        """The ``exporter run`` command line of this corpus."""
        return [
            sys.executable,
            "-m",
            "exporter",
            "run",
            str(self.manifest),
            "--source",
            str(self.source),
            "--out",
            str(self.out),
            "--workspace",
            str(workspace),
            "--database-url",
            state_url(workspace),
            "--workers",
            "2",
            "--quiet",
        ]


def build_corpus(root: Path) -> Corpus:
    """The corpus under ``root``, with a reference export made by one
    uninterrupted run on the local process pool."""
    # Big enough that a run takes seconds, so that it can be killed part way.
    source = make_source(
        root / "source",
        seed=3,
        patients=4,
        studies_per_patient=3,
        instances_per_series=8,
        rows=256,
        columns=256,
        with_bad_files=False,
        with_burned_in=False,
    )
    # Rows by patient, and the last patient's studies by accession number.
    *patients, last = dict.fromkeys(s.patient.patient_id for s in source.studies)
    rows = [{"PatientID": patient} for patient in patients]
    rows += [
        {"AccessionNumber": s.accession}
        for s in source.studies
        if s.patient.patient_id == last
    ]
    manifest = write_manifest(root / "cohort.csv", rows)
    partial = Corpus(
        root=root,
        source=source.root,
        manifest=manifest,
        studies=len(source.studies),
        instances=sum(len(study.paths) for study in source.studies),
        reference={},
    )

    finish(partial.command(partial.workspace("reference-workspace")))
    reference = snapshot(partial.out)
    shutil.rmtree(partial.out)
    return dataclasses.replace(partial, reference=reference)


# Helpers -----------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of a run: no workspace or database from the caller."""
    return {
        k: v for k, v in os.environ.items() if k not in (ENV_WORKSPACE, ENV_DATABASE)
    }


def finish(command: list[str]) -> float:
    """Run ``command`` to the end, require exit 0, and return its wall time."""
    started = time.monotonic()
    done = subprocess.run(
        command,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def start(command: list[str]) -> subprocess.Popen[bytes]:
    """Start a run in a session of its own: it and its workers form one group."""
    return subprocess.Popen(
        command,
        env=child_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def kill_when(command: list[str], out: Path, ready: Callable[[], bool]) -> None:
    """Start ``command`` and SIGKILL it with its workers as soon as ``ready()``."""
    proc = start(command)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if proc.poll() is not None or (out / "provenance.json").exists():
                pytest.fail(
                    "the run finished before it could be killed; enlarge the corpus "
                    f"(exit {proc.wait()})"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"no kill point within {START_TIMEOUT} s")
            time.sleep(POLL_SECONDS)
    finally:
        kill_group(proc)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "provenance.json").exists()


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group of ``proc`` and wait until none of it runs."""
    with contextlib.suppress(ProcessLookupError):  # the whole group already ended
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 30
    while group_alive(proc.pid):
        assert time.monotonic() < deadline, "worker processes outlived SIGKILL"
        time.sleep(POLL_SECONDS)


def group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies excepted)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def has_dicom(out: Path) -> bool:
    """Whether the export holds at least one DICOM file yet."""
    return out.exists() and next(out.rglob("*.dcm"), None) is not None


def state_url(workspace: Path) -> str:
    """The state database of ``workspace`` under the backend being tested.

    SQLite's ``state.db``, or in the PostgreSQL pass the database of its own
    that tests/conftest.py gives each workspace; runs get it as --database-url.
    """
    return exporter.workspace.default_database_url(workspace)


_ENGINES: dict[str, Engine] = {}


def tasks_done(workspace: Path) -> int:
    """Studies marked done in the state database, read while a run writes it."""
    url = state_url(workspace)
    query = "SELECT count(*) FROM task WHERE state = 'done'"
    if url.startswith("sqlite"):
        uri = f"file:{workspace / 'state.db'}?mode=ro"
        try:
            with sqlite3.connect(uri, uri=True, timeout=1) as db:
                (count,) = db.execute(query).fetchone()
        except sqlite3.OperationalError:  # not created yet, or busy
            return 0
        return int(count)
    engine = _ENGINES.setdefault(url, create_engine(url, poolclass=NullPool))
    try:
        with engine.connect() as connection:
            return int(connection.execute(text(query)).scalar_one())
    except SQLAlchemyError:  # not migrated yet
        return 0


def plant_partial_writes(out: Path) -> None:
    """Leave what a kill inside an atomic write leaves: a cut temporary file."""
    done = next(out.rglob("*.dcm"))
    half = done.read_bytes()[: done.stat().st_size // 2]
    (done.parent / f"{TMP_MARK}99999-{done.name}").write_bytes(half)
    (out / f"{TMP_MARK}99999-provenance.json").write_bytes(b'{"export_id": ')


def snapshot(root: Path) -> dict[str, str]:
    """The sha256 of every file under ``root``, by relative path."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def leftovers(*roots: Path) -> list[Path]:
    """Temporary files of a killed run still under ``roots``."""
    return [p for root in roots for p in root.rglob("*") if TMP_MARK in p.name]


def tasks(workspace: Path) -> tuple[list[Job], list[Task]]:
    """The jobs and tasks recorded in a workspace's state database."""
    engine = open_database(state_url(workspace))
    try:
        with Session(engine) as session:
            return list(session.exec(select(Job)).all()), list(
                session.exec(select(Task)).all()
            )
    finally:
        engine.dispose()


def assert_complete(corpus: Corpus, workspace: Path) -> None:
    """The export equals the reference, holds every instance, and all is done."""
    assert snapshot(corpus.out) == corpus.reference
    assert len(list(corpus.out.rglob("*.dcm"))) == corpus.instances
    assert leftovers(corpus.out, workspace) == []
    jobs, done = tasks(workspace)
    assert [job.state for job in jobs] == ["finished"]
    assert len(done) == corpus.studies
    assert {task.state for task in done} == {"done"}
