"""Run a job: plan studies into tasks, execute them on workers, finalize.

Resumable by construction: a task is marked done only after its files and
catalog parts are in place, files are written atomically and
deterministically, so re-running the same command redoes exactly the
unfinished studies and yields the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, CancelledError, Future, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow.parquet as pq
import pydicom
from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from exporter import __version__
from exporter.catalog import SCHEMA_VERSION, TABLES, merge_parts
from exporter.cohort import Manifest, read_manifest
from exporter.engine.claims import (
    HEARTBEAT,
    claim,
    held_elsewhere,
    release,
    renew,
    runner_id,
)
from exporter.engine.executors import (
    DEFAULT_DASHBOARD,
    Pool,
    check_cluster,
    open_pool,
    resolve_cluster,
)
from exporter.engine.files import sweep_partial
from exporter.engine.worker import (
    StudyResult,
    StudyTask,
    clear_previous_output,
    export_shard,
    write_study_parts,
)
from exporter.errors import ExporterError, SettingsError
from exporter.pages.audit import write_report
from exporter.pages.review import write_review
from exporter.policy.annex_e import EDITION, validate_options
from exporter.policy.deid_filters import with_filters
from exporter.policy.explain import Explained, explain
from exporter.policy.profile import DEFAULT_OPTIONS, build_recipe
from exporter.policy.recipe import CompiledRecipe, compile_recipe, compose, load_recipe
from exporter.report import (
    StudyCounts,
    reason_category,
    reconcile,
    write_not_exported,
    write_provenance,
    write_reconciliation,
    write_rows,
)
from exporter.sources import (
    NOT_RETRIEVED,
    NetworkSettings,
    check_source,
    open_source,
)
from exporter.sources.base import Source
from exporter.state import (
    Job,
    Linkage,
    Outcome,
    RowMatch,
    Task,
    Witness,
    open_database,
)
from exporter.verify.check import ocr_reader, verify_export
from exporter.verify.witness import retained_kinds
from exporter.workspace import Workspace, check_separation, open_workspace, resolve_root

logger = logging.getLogger(__name__)

_LINKAGE_BATCH = 5000
# Instances per unit of work: small enough that a large study spreads over
# every worker, large enough that handing work out costs little.
SHARD_SIZE = 64
DEFAULT_RECIPE_NAME = "exporter:basic-profile (recipes/basic-profile.dicom)"


@dataclass(frozen=True)
class RunRequest:
    """The inputs of ``exporter run``."""

    manifest: Path
    source: str
    out: Path
    workspace: Path | None = None
    recipe: Path | None = None
    workers: int = 1
    database_url: str | None = None
    options: frozenset[str] | None = None  # Annex E options; None: the default
    filters: tuple[str, ...] = ()  # deid's shipped %filter sets, by name
    network: NetworkSettings = field(default_factory=NetworkSettings)  # a PACS
    verify: bool = True  # look for the noted identifying values in the export
    cluster: str | None = None  # local:N or a Dask scheduler; None: local pool
    dashboard: str = DEFAULT_DASHBOARD  # a local Dask cluster's dashboard


class Progress:
    """Callbacks the engine reports through; the CLI draws them. Silent here."""

    def note(self, message: str) -> None:
        """A one-line message for the user (never identifying)."""

    def start(self, studies: int) -> None:
        """Execution starts with this many studies left."""

    def advance(self, instances: int, nbytes: int) -> None:
        """A study finished."""

    def stop(self) -> None:
        """Execution ended."""


@dataclass
class JobSummary:
    """Counts of one job, safe to print."""

    job_id: str
    out_dir: Path
    workspace: Path
    export_id: str = ""
    rows: int = 0
    rows_status: Counter[str] = field(default_factory=Counter)
    studies: int = 0
    exported: int = 0
    quarantined: int = 0
    failed: int = 0
    bytes_out: int = 0
    pixels_cleaned: int = 0
    # Released instances by what was done to their pixels (catalog pixel_check).
    pixel_checks: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)
    source_skipped: Counter[str] = field(default_factory=Counter)
    # What verify found, by kind of value; None when it did not run.
    findings: Counter[str] | None = None
    # The workspace's review page (before/after pictures, quarantine).
    review: Path | None = None

    @property
    def complete(self) -> bool:
        """Every selected instance was exported and every row matched."""
        return (
            self.quarantined == 0
            and self.failed == 0
            and self.rows_status["matched nothing"] == 0
            and not self.findings
        )


def _recipe(request: RunRequest) -> tuple[CompiledRecipe, tuple[str, ...] | None]:
    """The policy in force, and the Annex E options it can claim.

    The built-in profile with the requested options (the default ones when
    none are named); a ``--recipe`` is layered on it. Options are claimed in
    the files and the provenance only when the policy is at least as strong
    as Table E.1-1 asks for them.
    """
    options = DEFAULT_OPTIONS if request.options is None else request.options
    try:
        validate_options(options)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    name = DEFAULT_RECIPE_NAME if options == DEFAULT_OPTIONS else "exporter:profile"
    policy = compile_recipe(build_recipe(options), name)
    if request.recipe is not None:
        user = load_recipe(request.recipe)
        # Only the file's name: a full path may name a person.
        policy = compose(policy, user, f"{request.recipe.name} over {name}")
    policy = with_filters(policy, request.filters)
    _, findings = explain(policy, options)
    return policy, None if findings else tuple(sorted(options))


def _export_id(manifest: Manifest, source: Source, recipe: CompiledRecipe) -> str:
    """Names the export: the same inputs give the same id, wherever it is written."""
    key = "\n".join([manifest.digest, source.name, recipe.digest])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def _job_id(export_id: str, out: Path) -> str:
    """Names the job's state: one export written to one folder."""
    return hashlib.sha256(f"{export_id}\n{out}".encode()).hexdigest()[:16]


def _plan(session: Session, job: Job, manifest: Manifest, source: Source) -> int:
    """Match every manifest row again and bring the tasks up to date.

    One task per distinct study, in manifest order. Runs on every start, so a
    study that reached the source since the last run is added (never skipped
    in silence), and a finished study whose instance count changed is redone.
    Returns how many studies were added or reopened.
    """
    # One planner at a time: this update holds the job's row (PostgreSQL) or
    # the database's write lock (SQLite) until the commit below, so two runs
    # starting together never add a study twice.
    session.commit()
    session.exec(update(Job).where(col(Job.id) == job.id).values(state=Job.state))
    tasks = {
        t.study_uid: t for t in session.exec(select(Task).where(Task.job_id == job.id))
    }
    session.exec(delete(RowMatch).where(col(RowMatch.job_id) == job.id))
    changed = 0
    for selection in manifest.selections:
        refs = source.find(selection)
        if not refs:
            session.add(RowMatch(job_id=job.id, row=selection.row, study_uid=None))
        for ref in refs:
            session.add(
                RowMatch(job_id=job.id, row=selection.row, study_uid=ref.study_uid)
            )
            task = tasks.get(ref.study_uid)
            if task is None:
                task = tasks[ref.study_uid] = Task(
                    job_id=job.id,
                    ordinal=len(tasks) + 1,
                    study_uid=ref.study_uid,
                    patient_id=ref.patient_id,
                    subject_id=manifest.subject_ids.get(ref.patient_id),
                    instances=ref.instances,
                )
                session.add(task)
                changed += 1
            elif task.instances != ref.instances:
                task.instances, task.state = ref.instances, "pending"
                session.add(task)
                changed += 1
    job.state = "running"
    session.add(job)
    session.commit()
    return changed


def _record(engine: Engine, job_id: str, result: StudyResult) -> None:
    with Session(engine) as session:
        session.exec(delete(Outcome).where(col(Outcome.task_id) == result.task_id))
        for item, status, reason, qpath in result.outcomes:
            session.add(
                Outcome(
                    job_id=job_id,
                    task_id=result.task_id,
                    source_item=item,
                    status=status,
                    reason=reason,
                    quarantine_path=qpath,
                )
            )
        rows = [
            {"kind": kind, "original": original, "pseudonym": pseudonym}
            for (kind, original), pseudonym in result.linkage.items()
        ]
        # A pseudonym is derived, so a row already there holds the same value:
        # keep the first. Batches stay under SQLite's bound-parameter limit.
        dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
        for table, values in (
            (Linkage, rows),
            (
                Witness,
                [
                    {"kind": k, "value": v, "patient": p}
                    for k, v, p in sorted(result.witness)
                ],
            ),
        ):
            for start in range(0, len(values), _LINKAGE_BATCH):
                batch = values[start : start + _LINKAGE_BATCH]
                statement = dialect.insert(table).values(batch).on_conflict_do_nothing()
                session.exec(statement)
        task = session.get(Task, result.task_id)
        assert task is not None
        # What the source could not deliver is asked for again by the next run.
        short = any(o[2].startswith(NOT_RETRIEVED) for o in result.outcomes)
        task.state = "pending" if short else "done"
        task.exported = result.exported
        task.quarantined = result.quarantined
        task.failed = result.failed
        task.bytes_out = result.bytes_out
        task.pixels_cleaned = result.pixels_cleaned
        task.claimed_by = task.claimed_until = None
        session.add(task)
        session.commit()


def _shards(task: StudyTask) -> list[StudyTask]:
    """Split a study into shards of at most ``SHARD_SIZE`` instances.

    The split depends on the study alone, never on the number of workers, so
    the export is the same whatever ``--workers`` says.
    """
    chunks = [
        task.items[i : i + SHARD_SIZE] for i in range(0, len(task.items), SHARD_SIZE)
    ] or [()]
    return [replace(task, items=chunk, shard=n) for n, chunk in enumerate(chunks)]


def _execute(
    tasks: Iterable[StudyTask],
    pool: Pool,
    on_result: Callable[[StudyResult], None],
    heartbeat: Callable[[], None] = lambda: None,
) -> None:
    """Run every study, shard by shard, and report each study once it is whole.

    Studies are read from ``tasks`` only as workers need them, and forgotten
    once recorded: memory holds the studies in flight, not the cohort.
    ``heartbeat`` is called at least every ``HEARTBEAT`` while shards run on
    workers (and between shards run here), to renew the claims.
    """
    by_id: dict[int, StudyTask] = {}
    expected: dict[int, int] = {}
    gathered: dict[int, list[StudyResult]] = defaultdict(list)

    def generate() -> Iterator[StudyTask]:
        for task in tasks:
            clear_previous_output(task)
            pieces = _shards(task)
            by_id[task.task_id], expected[task.task_id] = task, len(pieces)
            yield from pieces

    shards = generate()

    def collect(result: StudyResult) -> None:
        gathered[result.task_id].append(result)
        if len(gathered[result.task_id]) < expected[result.task_id]:
            return
        parts = sorted(gathered.pop(result.task_id), key=lambda r: r.shard)
        task = by_id[result.task_id]
        parts = _recheck(task, parts)
        whole = parts[0]
        for part in parts[1:]:
            whole.merge(part)
        whole.outcomes += [(item, "failed", why, None) for item, why in task.missing]
        del expected[whole.task_id]
        write_study_parts(by_id.pop(whole.task_id), whole)
        on_result(whole)

    if pool.executor is None:
        for shard in shards:
            collect(_guarded(shard, export_shard))
            heartbeat()
        return
    pending: dict[Future[StudyResult], StudyTask] = {}

    def drain() -> None:
        done: set[Future[StudyResult]] = set()
        while not done:
            done, _ = wait(
                pending,
                timeout=HEARTBEAT.total_seconds(),
                return_when=FIRST_COMPLETED,
            )
            heartbeat()
        for future in done:
            shard = pending.pop(future)
            collect(_guarded(shard, _Finished(future)))

    # Keep a bounded number of shards in flight: memory stays flat.
    for shard in shards:
        pending[pool.executor.submit(export_shard, shard)] = shard
        if len(pending) >= 2 * pool.slots:
            drain()
    while pending:
        drain()


def _recheck(task: StudyTask, parts: list[StudyResult]) -> list[StudyResult]:
    """Read whole, in every shard, the series in which a sample showed text.

    Each shard samples the series it holds on its own. When one shard saw
    text in a series that another released on the strength of its own clean
    sample, that other shard is exported again here with the series read by
    OCR, and the files it released that are now held back leave the export.
    """
    text = set().union(*(part.text_series for part in parts))
    if not text or not any(part.released_unread & text for part in parts):
        return parts
    pieces = _shards(task)
    checked = []
    for part in parts:
        if part.released_unread & text:
            shard = replace(pieces[part.shard], ocr_series=frozenset(text))
            again = _guarded(shard, export_shard)
            kept = {row["file_path"] for row in again.rows}
            for row in part.rows:
                if row["file_path"] not in kept:
                    (Path(task.out_dir) / row["file_path"]).unlink(missing_ok=True)
            part = again
        checked.append(part)
    return checked


@dataclass(frozen=True)
class _Finished:
    """The result of a shard a worker ran, fetched like running it here."""

    future: Future[StudyResult]

    def __call__(self, shard: StudyTask) -> StudyResult:
        return self.future.result()


def _guarded(shard: StudyTask, run: Callable[[StudyTask], StudyResult]) -> StudyResult:
    """Run one shard; an unexpected error fails its instances, not the job.

    A worker process that dies (killed, out of memory) breaks the pool: that
    stops the job with an error, and running the same command resumes it.
    """
    try:
        return run(shard)
    except BrokenProcessPool as exc:
        raise ExporterError(
            "a worker process died (killed or out of memory?); run the same "
            "command again to resume, perhaps with fewer --workers"
        ) from exc
    except CancelledError as exc:
        raise ExporterError(
            "the cluster dropped the job's work (scheduler gone?); run the same "
            "command again to resume"
        ) from exc
    except Exception as exc:
        if _lost_cluster(exc):
            raise ExporterError(
                "lost the connection to the Dask cluster; run the same command "
                "again to resume"
            ) from exc
        logger.debug(
            "shard %s of task %s failed", shard.shard, shard.task_id, exc_info=True
        )
        reason = f"internal error: {type(exc).__name__}"
        return StudyResult(
            task_id=shard.task_id,
            shard=shard.shard,
            outcomes=[(item, "failed", reason, None) for item in shard.items],
        )


# How often a run waiting for studies another run holds looks again.
WAIT_SECONDS = 2.0


def _waiting_for(
    session: Session,
    job_id: str,
    attempted: set[int],
    me: str,
    progress: Progress,
) -> list[Task]:
    """The pending studies this run has not tried yet, once it may claim them.

    Studies another live run holds are waited for (their claim ends when that
    run records them, stops, or its lease runs out), so that this run ends
    with the whole job done and its catalogs complete. Returns an empty list
    when nothing is left for this run.
    """
    noted = False
    while True:
        session.expire_all()
        left = [
            t
            for t in session.exec(
                select(Task)
                .where(Task.job_id == job_id, Task.state == "pending")
                .order_by(col(Task.ordinal))
            ).all()
            if (t.id or 0) not in attempted
        ]
        held = held_elsewhere(left, me)
        if len(held) < len(left):
            return [t for t in left if t not in held]
        if not left:
            return []
        if not noted:
            progress.note(
                f"waiting for {len(held)} studies another run of this job is exporting"
            )
            noted = True
        time.sleep(WAIT_SECONDS)


def _lost_cluster(exc: Exception) -> bool:
    """Whether ``exc`` says the Dask cluster went away (not that a shard failed).

    A shard that kept killing its workers (Dask's KilledWorker) is a failure
    of that shard; a closed connection or a timeout talking to the scheduler
    is not, and the job stops so that a rerun resumes it.
    """
    kind = type(exc)
    if kind.__name__ == "KilledWorker":
        return False
    return kind.__module__.startswith("distributed.") or isinstance(exc, TimeoutError)


def _finalize(
    session: Session,
    job: Job,
    ws: Workspace,
    out: Path,
    recipe: CompiledRecipe,
    options: tuple[str, ...] | None,
    summary: JobSummary,
) -> None:
    tasks = session.exec(
        select(Task).where(Task.job_id == job.id).order_by(col(Task.ordinal))
    ).all()
    metadata = {
        "exporter.export_id": summary.export_id,
        "exporter.recipe_sha256": recipe.digest,
        "exporter.version": __version__,
        "exporter.schema_version": SCHEMA_VERSION,
    }
    catalog = out / "catalog"
    catalog.mkdir(parents=True, exist_ok=True)
    parts = ws.job_dir(job.id) / "parts"
    for name, schema in TABLES.items():
        files = [parts / name / f"{t.ordinal:08d}.parquet" for t in tasks]
        merge_parts(
            [f for f in files if f.exists()],
            schema,
            catalog / f"{name}.parquet",
            metadata,
        )
    checks = pq.read_table(catalog / "instances.parquet", columns=["pixel_check"])
    summary.pixel_checks = Counter(checks.column("pixel_check").to_pylist())

    # Reconciliation: one line per manifest row, by row number only.
    outcomes = session.exec(
        select(Outcome)
        .where(Outcome.job_id == job.id)
        .order_by(col(Outcome.task_id), col(Outcome.source_item))
    ).all()
    reasons: dict[int, set[str]] = defaultdict(set)
    for outcome in outcomes:
        category = reason_category(outcome.reason)
        reasons[outcome.task_id].add(category)
        summary.reasons[f"{outcome.status}: {category}"] += 1
    counts = {
        t.study_uid: StudyCounts(
            t.exported, t.quarantined, t.failed, frozenset(reasons.get(t.id or 0, ()))
        )
        for t in tasks
    }
    matches: dict[int, list[StudyCounts]] = defaultdict(list)
    for match in session.exec(select(RowMatch).where(RowMatch.job_id == job.id)).all():
        studies = matches[match.row]  # a row that matched nothing stays empty
        if match.study_uid is not None:
            studies.append(counts[match.study_uid])
    reports = reconcile(matches)
    write_reconciliation(out / "reconciliation.csv", reports)
    summary.rows = len(reports)
    summary.rows_status.update(r.status for r in reports)

    summary.studies = len(tasks)
    summary.exported = sum(t.exported for t in tasks)
    summary.quarantined = sum(t.quarantined for t in tasks)
    summary.failed = sum(t.failed for t in tasks)
    summary.bytes_out = sum(t.bytes_out for t in tasks)
    summary.pixels_cleaned = sum(t.pixels_cleaned for t in tasks)
    recipe_name = recipe.path
    write_provenance(
        out / "provenance.json",
        {
            "export_id": summary.export_id,
            "tool": {
                "name": "exporter",
                "version": __version__,
                "pydicom": pydicom.__version__,
            },
            "recipe": {
                "name": recipe_name,
                "sha256": recipe.digest,
                "annex_e_edition": EDITION,
                "options": list(options) if options is not None else None,
            },
            "manifest_sha256": job.manifest_digest,
            "catalog_schema_version": SCHEMA_VERSION,
            "counts": {
                "manifest_rows": summary.rows,
                "rows_by_status": dict(sorted(summary.rows_status.items())),
                "studies": summary.studies,
                "instances_exported": summary.exported,
                "instances_quarantined": summary.quarantined,
                "instances_failed": summary.failed,
                "bytes_exported": summary.bytes_out,
                "instances_pixels_cleaned": summary.pixels_cleaned,
                "instances_exported_by_pixel_check": dict(
                    sorted(summary.pixel_checks.items())
                ),
                # "quarantined: may carry burned-in text", ...: categories only.
                "instances_not_exported_by_reason": dict(
                    sorted(summary.reasons.items())
                ),
            },
        },
    )
    write_not_exported(
        ws.job_dir(job.id) / "not-exported.csv",
        (
            (o.source_item, o.status, o.reason, o.quarantine_path or "")
            for o in outcomes
        ),
    )


def _verify(
    wanted: bool,
    engine: Engine,
    out: Path,
    job_dir: Path,
    explained: list[Explained],
    summary: JobSummary,
    progress: Progress,
    workers: int = 1,
) -> None:
    """Check the finished export for every noted value; record it; write the report.

    Kinds the policy keeps on purpose are not looked for; provenance.json says
    which, so ``exporter verify`` does the same. Findings (file, place, kind;
    never a value) go to ``verify.csv`` in the job folder. The report is
    written from the verified records and then verified itself: a second pass
    reads only what changed (provenance.json and report.html).
    """
    retained = retained_kinds(r.keyword for r in explained if r.code == "K")
    record = json.loads((out / "provenance.json").read_text())
    painted = _painted(job_dir)
    if not wanted:
        record["verify"] = {
            "checked": False,
            "warning": "not verified (--no-verify)",
            "retained_by_policy": sorted(retained),
        }
        progress.note("the export was not verified (--no-verify)")
        write_provenance(out / "provenance.json", record)
        write_report(out, explained, painted)
        return
    reader = ocr_reader()
    if reader is None:
        progress.note(
            "verify did not read pixel data: the pixels extra is not installed"
        )
    # The cache holds file names and finding places, never a value.
    cache = job_dir / "verify-cache.json"
    for _ in range(2):
        findings = verify_export(out, engine, retained, reader, cache, workers)
        summary.findings = Counter(f.kind for f in findings)
        verdict = {
            "checked": True,
            "findings": len(findings),
            "by_kind": dict(sorted(summary.findings.items())),
            "retained_by_policy": sorted(retained),
            "pixel_data_read_by_ocr": reader is not None,
        }
        write_rows(
            job_dir / "verify.csv",
            ("file", "place", "kind"),
            ((f.file, f.place, f.kind) for f in findings),
        )
        if record.get("verify") == verdict:
            break
        record["verify"] = verdict
        write_provenance(out / "provenance.json", record)
        write_report(out, explained, painted)


def _painted(job_dir: Path) -> dict[str, list[list[int]]]:
    """Export path of each cleaned image -> the boxes cleaned in it."""
    painted: dict[str, list[list[int]]] = {}
    for part in sorted((job_dir / "parts" / "painted").glob("*.json")):
        painted.update(json.loads(part.read_text()))
    return painted


def _reopen_incomplete(session: Session, job_id: str, job_dir: Path, out: Path) -> int:
    """Set finished studies back to pending when their output is gone.

    A rerun must never report success over an export someone pruned: every
    file a finished study's catalog part lists must still be there, whole.
    """
    reopened = 0
    done = session.exec(select(Task).where(Task.job_id == job_id, Task.state == "done"))
    for task in done.all():
        part = job_dir / "parts" / "instances" / f"{task.ordinal:08d}.parquet"
        intact = part.exists()
        if intact:
            listed = pq.read_table(part, columns=["file_path", "file_size"]).to_pylist()
            intact = all(
                (out / row["file_path"]).is_file()
                and (out / row["file_path"]).stat().st_size == row["file_size"]
                for row in listed
            )
        if not intact:
            task.state = "pending"
            session.add(task)
            reopened += 1
    if reopened:
        job = session.get(Job, job_id)
        if job is not None:
            job.state = "running"
            session.add(job)
        session.commit()
    return reopened


def run_job(request: RunRequest, progress: Progress | None = None) -> JobSummary:
    """Run (or resume) the export described by ``request``.

    Raises
    ------
    ExporterError
        When the job cannot run: bad manifest, recipe or source, unsafe settings.
    """
    progress = progress or Progress()
    out = request.out.expanduser().resolve()
    root = resolve_root(request.workspace)
    check_separation(root, out)
    manifest = read_manifest(request.manifest)
    recipe, options = _recipe(request)
    check_source(request.source, request.network)
    cluster = resolve_cluster(request.cluster)
    check_cluster(cluster)
    ws = open_workspace(root, request.database_url)
    if ws.created:
        progress.note(
            f"created workspace {ws.root} with a new random secret; back it up"
        )
    engine = open_database(ws.database_url, ws.secret)
    source = open_source(request.source, engine, request.network)
    report = source.scan()
    summary = JobSummary(job_id="", out_dir=out, workspace=ws.root)
    summary.source_skipped.update(report.skipped)

    export_id = _export_id(manifest, source, recipe)
    job_id = _job_id(export_id, out)
    summary.job_id = job_id
    summary.export_id = export_id
    with Session(engine) as session:
        job = session.get(Job, job_id)
        if job is None:
            job = Job(
                id=job_id,
                manifest_path=str(request.manifest),
                manifest_digest=manifest.digest,
                source=source.name,
                out_dir=str(out),
                recipe_digest=recipe.digest,
            )
            session.add(job)
            try:
                session.commit()
            except IntegrityError:  # another run of the same job made it first
                session.rollback()
                job = session.get(Job, job_id)
                assert job is not None
        _plan(session, job, manifest, source)
        missing = _reopen_incomplete(session, job_id, ws.job_dir(job_id), out)
        if missing:
            progress.note(
                f"{missing} finished studies lost files in the export; redoing them"
            )
        pending = session.exec(
            select(Task)
            .where(Task.job_id == job_id, Task.state == "pending")
            .order_by(col(Task.ordinal))
        ).all()

        sweep_partial(out)
        job_dir = ws.job_dir(job_id)
        sweep_partial(job_dir)
        # Files a PACS delivered live here only while their study is exported;
        # what an interrupted run left is removed before anything else.
        spool = job_dir / "spool"
        shutil.rmtree(spool, ignore_errors=True)
        ordinals = {t.id or 0: t.ordinal for t in pending}

        def study_task(t: Task) -> StudyTask:
            # Called lazily, as workers ask for work: the next study is fetched
            # while the previous ones are being exported.
            got = source.retrieve(t.study_uid, spool / f"{t.ordinal:08d}")
            return StudyTask(
                task_id=t.id or 0,
                ordinal=t.ordinal,
                study_uid=t.study_uid,
                patient_id=t.patient_id,
                subject_id=t.subject_id,
                items=got.items,
                out_dir=str(out),
                job_dir=str(job_dir),
                secret=ws.secret,
                recipe_text=recipe.text,
                recipe_path=recipe.path,
                options=options,
                clean_pixels="clean_pixel_data" in (request.options or ()),
                missing=got.missing,
            )

        me = runner_id()
        attempted: set[int] = set()  # by this run: a short study waits for the next
        in_flight: set[int] = set()
        renewed = time.monotonic()

        def claimed(tasks: Sequence[Task]) -> Iterator[StudyTask]:
            for t in tasks:
                # Another run of this job may hold the study: skip it then.
                if claim(engine, t.id or 0, me):
                    logger.debug("claimed study %d of job %s", t.ordinal, job_id)
                    attempted.add(t.id or 0)
                    in_flight.add(t.id or 0)
                    yield study_task(t)

        def heartbeat() -> None:
            nonlocal renewed
            if time.monotonic() - renewed >= HEARTBEAT.total_seconds() / 2:
                renew(engine, in_flight, me)
                renewed = time.monotonic()

        progress.start(len(pending))

        def on_result(result: StudyResult) -> None:
            shutil.rmtree(spool / f"{ordinals[result.task_id]:08d}", ignore_errors=True)
            _record(engine, job_id, result)
            in_flight.discard(result.task_id)
            progress.advance(
                result.exported + result.quarantined + result.failed, result.bytes_out
            )

        try:
            with open_pool(request.workers, cluster, request.dashboard) as pool:
                while pending:
                    _execute(claimed(pending), pool, on_result, heartbeat)
                    pending = _waiting_for(session, job_id, attempted, me, progress)
                    ordinals.update({t.id or 0: t.ordinal for t in pending})
        finally:
            release(engine, in_flight, me)
            progress.stop()
        session.expire_all()
        _finalize(session, job, ws, out, recipe, options, summary)
        rows, _ = explain(recipe, frozenset(options) if options is not None else None)
        _verify(
            request.verify,
            engine,
            out,
            ws.job_dir(job_id),
            rows,
            summary,
            progress,
            request.workers,
        )
        # Identifying pictures for reviewers: the workspace, never the export.
        summary.review = write_review(job_dir, out, _painted(job_dir))
        job.state = "finished"
        session.add(job)
        session.commit()
    return summary
