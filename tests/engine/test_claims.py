"""Claims on tasks (exporter.engine.claims): one run per study, leases, takeover."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from runs import Corpus, assert_complete, child_env, snapshot
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from exporter.engine.claims import LEASE, claim, free, release, renew, runner_id
from exporter.state import Job, Task, open_database

RACERS = 6


@pytest.fixture
def url(tmp_path: Path, state_backend: str, request: pytest.FixtureRequest) -> str:
    """A new state database on the backend under test."""
    if state_backend == "postgresql":
        return str(request.getfixturevalue("postgres_database"))
    return f"sqlite:///{tmp_path / 'state.db'}"


def _with_tasks(url: str, count: int) -> Engine:
    engine = open_database(url)
    with Session(engine) as session:
        session.add(
            Job(
                id="job",
                manifest_path="m.csv",
                manifest_digest="d",
                source="folder",
                out_dir="/out",
                recipe_digest="r",
            )
        )
        for n in range(count):
            session.add(
                Task(job_id="job", ordinal=n + 1, study_uid=f"1.2.{n}", patient_id="p")
            )
        session.commit()
    return engine


def _task(engine: Engine, task_id: int = 1) -> Task:
    with Session(engine) as session:
        task = session.get(Task, task_id)
        assert task is not None
        return task


def _race(url: str, start: object, wins: object) -> None:
    engine = open_database(url)
    start.wait()  # type: ignore[attr-defined]
    if claim(engine, 1, runner_id()):
        wins.put(os.getpid())  # type: ignore[attr-defined]
    engine.dispose()


def test_racing_claims_have_one_winner(url: str) -> None:
    """Processes claiming one task at the same moment: exactly one holds it."""
    _with_tasks(url, 1).dispose()
    context = multiprocessing.get_context("spawn")
    start, wins = context.Barrier(RACERS), context.Queue()
    racers = [
        context.Process(target=_race, args=(url, start, wins)) for _ in range(RACERS)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(timeout=60)
        assert racer.exitcode == 0
    winners = []
    while not wins.empty():
        winners.append(wins.get())
    assert len(winners) == 1
    assert _task(open_database(url)).claimed_by.split("/")[1] == str(winners[0])


def test_a_held_task_is_not_taken(url: str) -> None:
    """A live run's claim stands; the holder may claim again; release frees it."""
    engine = _with_tasks(url, 1)
    me, other = runner_id(), runner_id()
    assert claim(engine, 1, me)
    assert not claim(engine, 1, f"elsewhere.example/{os.getpid()}/x")
    assert claim(engine, 1, me)
    release(engine, [1], me)
    assert _task(engine).claimed_by is None
    assert claim(engine, 1, other)


def test_a_dead_runs_claim_is_taken_at_once(url: str) -> None:
    """Its process on this machine is gone: the claim is free before the lease ends."""
    engine = _with_tasks(url, 1)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    ghost = f"{runner_id().split('/')[0]}/{dead.stdout.strip()}/gone"
    with Session(engine) as session:
        task = session.get(Task, 1)
        assert task is not None
        task.claimed_by, task.claimed_until = ghost, datetime.now(UTC) + LEASE
        session.add(task)
        session.commit()
    assert claim(engine, 1, runner_id())


def test_an_ended_lease_is_taken_and_a_renewed_one_is_not(url: str) -> None:
    """Another machine's claim ends with its lease; renewing keeps it."""
    engine = _with_tasks(url, 2)
    far = "elsewhere.example/1/x"
    assert claim(engine, 1, far) and claim(engine, 2, far)
    with Session(engine) as session:
        for task in session.exec(select(Task)).all():
            task.claimed_until = datetime.now(UTC) - timedelta(seconds=1)
            session.add(task)
        session.commit()
    renew(engine, [2], far)
    assert claim(engine, 1, runner_id())
    assert not claim(engine, 2, runner_id())


def test_done_tasks_are_never_claimed(url: str) -> None:
    """Only a pending task can be claimed."""
    engine = _with_tasks(url, 1)
    with Session(engine) as session:
        task = session.get(Task, 1)
        assert task is not None
        task.state = "done"
        session.add(task)
        session.commit()
    assert not claim(engine, 1, runner_id())


@pytest.mark.parametrize(
    ("claimer", "until", "expected"),
    [
        (None, None, True),
        ("me", datetime.now(UTC) + LEASE, True),
        ("elsewhere.example/1/x", datetime.now(UTC) + LEASE, False),
        ("elsewhere.example/1/x", datetime.now(UTC) - LEASE, True),
        ("elsewhere.example/1/x", None, True),
    ],
)
def test_free(claimer: str | None, until: datetime | None, expected: bool) -> None:
    """Free: unclaimed, our own, or a lease that ended."""
    assert free(claimer, until, "me") is expected


# Two runs of one job at once ----------------------------------------------------


def test_two_runs_of_one_job_share_it(corpus: Corpus) -> None:
    """Started together on one workspace: both exit 0, the export is the
    reference, and each study was exported by one of them only."""
    ws = corpus.workspace("two-runs")
    command = [*corpus.command(ws)[:-3], "--workers", "1", "--verbose"]
    runs = [
        subprocess.Popen(
            command,
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert_complete(corpus, ws)
    assert snapshot(corpus.out) == corpus.reference
    claimed = [err.count("claimed study") for _, err in outputs]
    assert sum(claimed) == corpus.studies, claimed
