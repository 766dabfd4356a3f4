"""Which run exports a study: atomic claims on tasks, with leases.

Several ``exporter run`` processes may work on one job at once (on one machine
or several, sharing a PostgreSQL state database and the storage). Before a
run fetches a study it claims the study's task with one conditional UPDATE
(compare and swap on the claim it read), so exactly one run wins; the claim
is a lease, renewed while the study is in flight and cleared when its result
is recorded. A claim whose lease ran out, or whose run is a process of this
machine that no longer exists (killed, crashed), may be taken over.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from exporter.state import Task

# A study in flight has its lease renewed every HEARTBEAT; a run that stops
# renewing (lost machine) leaves it to others after LEASE.
LEASE = timedelta(minutes=15)
HEARTBEAT = timedelta(minutes=1)


def runner_id() -> str:
    """This run's name in claims: host, process id and a random token."""
    return f"{socket.gethostname()}/{os.getpid()}/{secrets.token_hex(4)}"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime | None) -> datetime | None:
    """A stored timestamp as timezone-aware UTC (SQLite returns it naive)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def _alive_here(claimer: str) -> bool:
    """Whether ``claimer`` is a process of this machine that still runs.

    A claim from another machine counts as alive: only its lease can end it.
    """
    host, _, rest = claimer.partition("/")
    pid = rest.partition("/")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user: it exists
        return True
    return True


def free(claimer: str | None, until: datetime | None, me: str) -> bool:
    """Whether a task claimed by ``claimer`` until ``until`` may be taken by ``me``."""
    if claimer is None or claimer == me:
        return True
    lease = _aware(until)
    if lease is None or lease <= _now():
        return True
    return not _alive_here(claimer)


def claim(engine: Engine, task_id: int, me: str) -> bool:
    """Claim the pending task ``task_id`` for ``me``; True when ``me`` holds it.

    The UPDATE only succeeds on the claim that was read (or none), and on a
    task still pending: two runs racing for it cannot both win.
    """
    with Session(engine) as session:
        task = session.get(Task, task_id)
        if task is None or task.state != "pending":
            return False
        if not free(task.claimed_by, task.claimed_until, me):
            return False
        seen = task.claimed_by
        same_claim = (
            col(Task.claimed_by).is_(None)
            if seen is None
            else col(Task.claimed_by) == seen
        )
        swapped = session.exec(
            update(Task)
            .where(col(Task.id) == task_id, col(Task.state) == "pending", same_claim)
            .values(claimed_by=me, claimed_until=_now() + LEASE)
        )
        session.commit()
        return bool(swapped.rowcount == 1)


def renew(engine: Engine, task_ids: Iterable[int], me: str) -> None:
    """Extend the leases ``me`` holds on ``task_ids``."""
    _set_claims(engine, task_ids, me, me, _now() + LEASE)


def release(engine: Engine, task_ids: Iterable[int], me: str) -> None:
    """Give up the claims ``me`` holds on ``task_ids`` (a run that stops early)."""
    _set_claims(engine, task_ids, me, None, None)


def _set_claims(
    engine: Engine,
    task_ids: Iterable[int],
    me: str,
    claimer: str | None,
    until: datetime | None,
) -> None:
    """Set the claim of those of ``task_ids`` that ``me`` holds."""
    ids = list(task_ids)
    if not ids:
        return
    with Session(engine) as session:
        session.exec(
            update(Task)
            .where(col(Task.id).in_(ids), col(Task.claimed_by) == me)
            .values(claimed_by=claimer, claimed_until=until)
        )
        session.commit()


def held_elsewhere(tasks: Iterable[Task], me: str) -> list[Task]:
    """The ``tasks`` another live run holds a lease on right now."""
    return [t for t in tasks if not free(t.claimed_by, t.claimed_until, me)]
