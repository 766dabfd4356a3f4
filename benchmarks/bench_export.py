"""Measure exporter throughput against a plain pydicom read-and-write floor.

Each round measures, on the same synthetic CT corpus (one study, 512x512 16-bit):

1. the floor: ``pydicom.dcmread`` then ``save_as`` for every file, unchanged, in
   this process;
2. ``python -m exporter run`` in a subprocess, for each worker count: a cold run
   (a new workspace, so it includes indexing the source folder) and a second run
   into a new export folder with the same workspace (the index is reused);
3. the start-up of the CLI alone (``python -m exporter --version``).

``--repeat`` rounds run interleaved and the table shows the median of each
scenario. With ``--profile``, the per-study worker then runs in this process under
cProfile.

Everything is written under ``bench-out/`` (git-ignored). Run it from the
repository root; ``benchmarks/README.md`` explains the numbers.

Exit codes: 0 every run succeeded; 1 a run failed; 2 usage error (including a
corpus folder that holds a different number of files than ``--count``).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import dataclasses
import datetime as dt
import hashlib
import io
import json
import os
import platform
import pstats
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom

import exporter
from exporter.engine.worker import StudyTask, export_study
from exporter.policy.profile import DEFAULT_OPTIONS, build_recipe
from exporter.synthetic import make_ct_series, write_manifest

try:  # Optional: only for the sampled RSS sum over the whole process tree.
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None

EXIT_OK, EXIT_RUN_FAILED, EXIT_USAGE = 0, 1, 2

# Deterministic, so repeated profiles derive the same pseudonyms and paths.
_PROFILE_SECRET = hashlib.sha256(b"exporter benchmark secret").digest()
_RSS_SAMPLE_SECONDS = 0.05
_PROFILE_TOP = 25
_FLOOR = "pydicom floor"
_STARTUP = "CLI start-up"

_Function = tuple[str, int, str]  # a pstats key: file, line, function name
_Timing = tuple[int, int, float, float]  # primitive calls, calls, own, cumulative


class UsageError(Exception):
    """The benchmark cannot start with these arguments."""


@dataclass(frozen=True)
class Corpus:
    """The benchmark input: one synthetic CT study."""

    folder: Path
    paths: tuple[Path, ...]
    input_bytes: int
    study_uid: str
    patient_id: str
    generated_seconds: float | None  # None when an existing corpus was reused


@dataclass(frozen=True)
class Sample:
    """One timed run of one scenario."""

    seconds: float
    cpu_seconds: float  # user + system, of the whole process tree
    problems: tuple[str, ...] = ()
    peak_rss_mb: float | None = None  # largest single process of the tree
    tree_rss_mb: float | None = None  # sampled sum over the tree (psutil only)


@dataclass
class Measurement:
    """One row of the results table: the repeats of one scenario, summarized."""

    scenario: str
    workers: int
    instances: int
    input_bytes: int
    samples: list[float]  # wall seconds of each repeat
    cpu_samples: list[float]  # CPU seconds (user + system) of each repeat
    ok: bool = True
    derived: bool = False  # computed from another row, not timed
    peak_rss_mb: float | None = None
    tree_rss_mb: float | None = None
    note: str = ""

    @property
    def seconds(self) -> float:
        """Median wall time over the repeats."""
        return statistics.median(self.samples)

    @property
    def cpu_seconds(self) -> float:
        """Median CPU time over the repeats; less disturbed by other processes."""
        return statistics.median(self.cpu_samples)

    @property
    def instances_per_s(self) -> float:
        """Instances (or files) per second, from the median time."""
        return self.instances / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_s(self) -> float:
        """Input megabytes (1e6 bytes) per second, from the median time."""
        return self.input_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _ChildRun:
    """What one subprocess did: exit code, wall time, memory."""

    returncode: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    tree_rss_mb: float | None


def _worker_counts(text: str) -> list[int]:
    """Parse ``--workers-list``: comma-separated positive integers."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers such as '1,2', got {text!r}"
        )
    return counts


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse and check the command line."""
    parser = argparse.ArgumentParser(
        description="Benchmark exporter against the pydicom read/write floor.",
    )
    parser.add_argument(
        "--corpus",
        type=Path,
        default=Path("bench-out/corpus"),
        help="folder of the cached synthetic corpus (default: %(default)s)",
    )
    parser.add_argument(
        "--count",
        type=int,
        default=600,
        help="instances in the corpus, at least 1 (default: %(default)s)",
    )
    parser.add_argument(
        "--workers-list",
        type=_worker_counts,
        default=[1, 2],
        metavar="N[,N...]",
        help="worker counts to run the exporter with (default: 1,2)",
    )
    parser.add_argument(
        "--dask-workers",
        type=int,
        default=0,
        metavar="N",
        help="also run on a Dask cluster of N single-threaded workers on loopback, "
        "started once for the benchmark (0: skip; default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="rounds of every scenario; the table shows medians (default: %(default)s)",
    )
    parser.add_argument(
        "--scratch",
        type=Path,
        default=Path("bench-out"),
        help="folder for outputs, workspaces and logs (default: %(default)s)",
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("bench-out/results.json"),
        help="where to write the results as JSON (default: %(default)s)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also profile the per-study worker in this process with cProfile",
    )
    parser.add_argument(
        "--profile-files",
        type=int,
        default=100,
        help="files the profile exports (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.count < 1:
        parser.error(f"--count must be at least 1, got {args.count}")
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    if args.profile_files < 1:
        parser.error(f"--profile-files must be at least 1, got {args.profile_files}")
    return args


def _files(folder: Path) -> list[Path]:
    """Every regular file under ``folder``, in path order."""
    if not folder.exists():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _fresh(folder: Path) -> Path:
    """Delete ``folder`` if it exists and create it empty."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def prepare_corpus(folder: Path, count: int) -> Corpus:
    """Reuse the corpus in ``folder`` if it has ``count`` files, else generate it.

    Raises
    ------
    UsageError
        If ``folder`` already holds a different number of files; it is never
        deleted, since it may not be ours.
    """
    paths = _files(folder)
    generated: float | None = None
    if not paths:
        start = time.perf_counter()
        paths = sorted(make_ct_series(folder, count, seed=0))
        generated = time.perf_counter() - start
    elif len(paths) != count:
        raise UsageError(
            f"corpus folder {folder} holds {len(paths)} files, not --count {count}; "
            "delete it, or pass another --corpus or a matching --count"
        )

    # Read every file once so that all scenarios start with a warm page cache.
    input_bytes = sum(len(p.read_bytes()) for p in paths)
    first = pydicom.dcmread(paths[0], stop_before_pixels=True)
    return Corpus(
        folder=folder,
        paths=tuple(paths),
        input_bytes=input_bytes,
        study_uid=str(first.StudyInstanceUID),
        patient_id=str(first.get("PatientID", "")),
        generated_seconds=generated,
    )


def floor_once(corpus: Corpus, out_dir: Path) -> Sample:
    """Read and rewrite every file unchanged with pydicom, in this process."""
    _fresh(out_dir)
    start, cpu_start = time.perf_counter(), time.process_time()
    for number, path in enumerate(corpus.paths):
        ds = pydicom.dcmread(path)
        ds.save_as(out_dir / f"{number:06d}.dcm")
    seconds = time.perf_counter() - start
    cpu_seconds = time.process_time() - cpu_start
    shutil.rmtree(out_dir)
    return Sample(seconds=seconds, cpu_seconds=cpu_seconds)


def _scaled_floor(floor: Measurement, workers: int) -> Measurement:
    """The floor times ``workers``: an upper bound for that many processes."""
    return dataclasses.replace(
        floor,
        scenario=f"{_FLOOR} x{workers}",
        workers=workers,
        samples=[seconds / workers for seconds in floor.samples],
        cpu_samples=list(floor.cpu_samples),
        derived=True,
        note="derived upper bound, not timed",
    )


def _maxrss_mb(value: int) -> float:
    """Convert ``ru_maxrss`` to megabytes: bytes on macOS, KiB elsewhere."""
    return value / 1e6 if sys.platform == "darwin" else value * 1024 / 1e6


class _TreeSampler:
    """Samples the summed RSS of a process and its descendants (needs psutil)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.peak_bytes = 0

    def __enter__(self) -> _TreeSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        """Poll until stopped or the root process has gone."""
        try:
            root = psutil.Process(self._pid)
        except psutil.Error:
            return
        while not self._stop.is_set():
            try:
                processes = [root, *root.children(recursive=True)]
            except psutil.Error:
                return
            total = 0
            for process in processes:
                try:
                    total += process.memory_info().rss
                except psutil.Error:
                    continue  # ended between listing and reading
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(_RSS_SAMPLE_SECONDS)


def _run_child(command: list[str], log_stem: Path) -> _ChildRun:
    """Run ``command``, logging its output, and measure time and peak memory.

    ``os.wait4`` returns the resource usage of that child alone, including the
    worker processes it waited for, so each run gets its own peak RSS; the
    cumulative ``RUSAGE_CHILDREN`` high-water mark could not go down between
    runs. Linux reports the largest single process of the tree, not their sum.
    """
    with (
        log_stem.with_suffix(".stdout").open("wb") as stdout,
        log_stem.with_suffix(".stderr").open("wb") as stderr,
    ):
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        if psutil is None:
            _, status, usage = os.wait4(process.pid, 0)
            tree_bytes = None
        else:
            with _TreeSampler(process.pid) as sampler:
                _, status, usage = os.wait4(process.pid, 0)
            tree_bytes = sampler.peak_bytes
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    return _ChildRun(
        returncode=process.returncode,
        seconds=seconds,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=_maxrss_mb(usage.ru_maxrss),
        tree_rss_mb=tree_bytes / 1e6 if tree_bytes else None,
    )


def startup_once(log_stem: Path) -> Sample:
    """Time ``python -m exporter --version``: interpreter start and imports."""
    run = _run_child([sys.executable, "-m", "exporter", "--version"], log_stem)
    problems = (f"exit code {run.returncode}",) if run.returncode else ()
    return Sample(
        seconds=run.seconds,
        cpu_seconds=run.cpu_seconds,
        problems=problems,
        peak_rss_mb=run.peak_rss_mb,
    )


def _tail(path: Path, lines: int = 5) -> str:
    """The last lines of a log file, indented, for an error report."""
    text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    return "\n".join(f"    {line}" for line in text[-lines:])


def exporter_once(
    corpus: Corpus,
    manifest: Path,
    workers: int,
    out: Path,
    workspace: Path,
    cluster: str | None = None,
) -> Sample:
    """Run the exporter CLI into the new folder ``out``, check it, then delete it.

    A failed run keeps its export folder; its log is in ``out``'s parent folder.
    """
    if out.exists():
        raise FileExistsError(f"export folder {out} exists; each run needs a new one")
    command = [
        sys.executable, "-m", "exporter", "run", str(manifest),
        "--source", str(corpus.folder), "--out", str(out),
        "--workspace", str(workspace), "--workers", str(workers), "--quiet",
    ]  # fmt: skip
    if cluster is not None:
        command += ["--cluster", cluster]
    log_stem = out.parent / f"{out.name}-log"
    run = _run_child(command, log_stem)
    exported = len(list(out.rglob("*.dcm"))) if out.exists() else 0

    # A run counts only if the CLI says so and every instance is in the export.
    problems = []
    if run.returncode != 0:
        problems.append(f"exit code {run.returncode}")
    if exported != len(corpus.paths):
        problems.append(f"{exported} .dcm files exported, expected {len(corpus.paths)}")
    if problems:
        log = log_stem.with_suffix(".stderr")
        print(
            f"FAILED {out.name} (workers {workers}): {'; '.join(problems)}; "
            f"stderr in {log}:\n{_tail(log)}",
            file=sys.stderr,
        )
    else:
        shutil.rmtree(out)  # keeps disk use and write-back flat across runs
    return Sample(
        seconds=run.seconds,
        cpu_seconds=run.cpu_seconds,
        problems=tuple(problems),
        peak_rss_mb=run.peak_rss_mb,
        tree_rss_mb=run.tree_rss_mb,
    )


def exporter_pair(
    corpus: Corpus,
    manifest: Path,
    workers: int,
    folder: Path,
    cluster: str | None = None,
) -> tuple[Sample, Sample]:
    """A cold run (new workspace), then a run that reuses the workspace's index."""
    _fresh(folder)
    workspace = folder / "workspace"
    cold = exporter_once(
        corpus, manifest, workers, folder / "out-cold", workspace, cluster
    )
    indexed = exporter_once(
        corpus, manifest, workers, folder / "out-indexed", workspace, cluster
    )
    return cold, indexed


def _summarize(
    scenario: str, workers: int, samples: Sequence[Sample], corpus: Corpus
) -> Measurement:
    """One table row from the repeats of one scenario."""
    problems = list(dict.fromkeys(p for sample in samples for p in sample.problems))
    peaks = [s.peak_rss_mb for s in samples if s.peak_rss_mb is not None]
    trees = [s.tree_rss_mb for s in samples if s.tree_rss_mb is not None]
    return Measurement(
        scenario=scenario,
        workers=workers,
        instances=len(corpus.paths),
        input_bytes=corpus.input_bytes,
        samples=[sample.seconds for sample in samples],
        cpu_samples=[sample.cpu_seconds for sample in samples],
        ok=not problems,
        peak_rss_mb=max(peaks, default=None),
        tree_rss_mb=max(trees, default=None),
        note="; ".join(problems),
    )


def measure(
    corpus: Corpus, manifest: Path, args: argparse.Namespace
) -> tuple[list[Measurement], Measurement]:
    """Run every round; return the table rows and the start-up measurement."""
    scratch: Path = args.scratch
    with _dask_cluster(scratch / "dask", args.dask_workers) as cluster:
        return _rounds(corpus, manifest, args, cluster)


@contextlib.contextmanager
def _dask_cluster(folder: Path, workers: int) -> Iterator[Any]:
    """The tests' throwaway Dask cluster on loopback, or None for 0 workers."""
    if workers < 1:
        yield None
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
    import dask_cluster

    cluster = dask_cluster.start(_fresh(folder), workers)
    try:
        yield cluster
        print(f"dask workers' peak RSS over every round: {_peaks(cluster)}")
    finally:
        cluster.stop()


def _peaks(cluster: Any) -> str:
    """Each Dask worker's peak resident memory (Linux VmHWM), in MB."""
    peaks = []
    for pid in cluster.worker_pids():
        status = Path(f"/proc/{pid}/status")
        for line in status.read_text().splitlines() if status.exists() else ():
            if line.startswith("VmHWM:"):
                peaks.append(f"{int(line.split()[1]) * 1024 / 1e6:.0f} MB")
    return ", ".join(peaks) or "not readable"


def _rounds(
    corpus: Corpus, manifest: Path, args: argparse.Namespace, cluster: Any
) -> tuple[list[Measurement], Measurement]:
    scratch: Path = args.scratch
    logs = _fresh(scratch / "logs")
    runs = _fresh(scratch / "runs")
    samples: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for number in range(1, args.repeat + 1):
        floor = floor_once(corpus, scratch / "floor-out")
        startup = startup_once(logs / f"startup-{number}")
        samples[_FLOOR, 1].append(floor)
        samples[_STARTUP, 1].append(startup)
        line = f"round {number}/{args.repeat} (load {os.getloadavg()[0]:.1f}): "
        line += f"floor {floor.seconds:.2f} s, start-up {startup.seconds:.2f} s"
        for workers in args.workers_list:
            folder = runs / f"round-{number}-workers-{workers}"
            cold, indexed = exporter_pair(corpus, manifest, workers, folder)
            samples["exporter cold", workers].append(cold)
            samples["exporter indexed", workers].append(indexed)
            line += (
                f"; workers {workers}: {cold.seconds:.2f} s, {indexed.seconds:.2f} s"
            )
        if cluster is not None:
            folder = runs / f"round-{number}-dask"
            cold, indexed = exporter_pair(corpus, manifest, 1, folder, cluster.address)
            samples["dask cold", args.dask_workers].append(cold)
            samples["dask indexed", args.dask_workers].append(indexed)
            line += f"; dask: {cold.seconds:.2f} s, {indexed.seconds:.2f} s"
        print(line, flush=True)

    rows = {key: _summarize(*key, runs, corpus) for key, runs in samples.items()}
    startup_row = rows.pop((_STARTUP, 1))
    floor_row = rows.pop((_FLOOR, 1))
    scaled = [_scaled_floor(floor_row, n) for n in args.workers_list if n > 1]
    return [floor_row, *scaled, *rows.values()], startup_row


def _in_study_loop(function: _Function) -> bool:
    """Say whether a pstats function key is the worker's study or instance loop."""
    path, _, name = function
    worker = path.endswith(os.path.join("engine", "worker.py"))
    return worker and name in ("export_study", "_one")


def _export_steps(stats: pstats.Stats) -> list[tuple[str, int, float]]:
    """Cumulative time of each call made directly by the worker's study loop.

    Returns (function, calls, seconds) for the callees of ``export_study`` and
    ``_one`` in ``exporter/engine/worker.py``, largest first.
    """
    table: dict[_Function, tuple[int, int, float, float, dict[_Function, _Timing]]]
    table = stats.stats  # type: ignore[attr-defined]  # not in typeshed
    steps: dict[str, tuple[int, float]] = {}
    for (path, _, name), (*_, callers) in table.items():
        for caller, timing in callers.items():
            if not _in_study_loop(caller) or name == "_one":
                continue  # _one is a step container: its callees are listed instead
            if path == "~":  # a builtin, named like "<built-in method posix.stat>"
                label = name.strip("<>").replace("built-in method ", "")
            else:
                label = f"{Path(path).stem}.{name}"
            calls, seconds = steps.get(label, (0, 0.0))
            steps[label] = (calls + timing[1], seconds + timing[3])
    ranked = sorted(steps.items(), key=lambda item: item[1][1], reverse=True)
    return [(label, calls, seconds) for label, (calls, seconds) in ranked]


def _study_task(corpus: Corpus, items: Sequence[Path], folder: Path) -> StudyTask:
    """A worker task for ``items`` as the job planner would build it."""
    _fresh(folder)
    return StudyTask(
        task_id=1,
        ordinal=1,
        study_uid=corpus.study_uid,
        patient_id=corpus.patient_id,
        subject_id=None,
        items=tuple(str(p) for p in items),
        out_dir=str(folder / "out"),
        job_dir=str(folder / "job"),
        secret=_PROFILE_SECRET,
        recipe_text=build_recipe(),
        recipe_path="bench",
        options=tuple(sorted(DEFAULT_OPTIONS)),
    )


def _timed_export(task: StudyTask) -> float:
    """Wall time of ``export_study(task)``; raises if an instance did not export.

    The task's folder is deleted after a successful run, kept after a failure.
    """
    start = time.perf_counter()
    result = export_study(task)
    seconds = time.perf_counter() - start
    if result.exported != len(task.items):
        raise RuntimeError(
            f"export_study exported {result.exported} of {len(task.items)} files "
            f"({result.quarantined} quarantined, {result.failed} failed)"
        )
    shutil.rmtree(Path(task.out_dir).parent)
    return seconds


def _print_steps(
    steps: Sequence[tuple[str, int, float]], total: float, files: int
) -> None:
    """Print the worker's steps that take at least 0.1 % of ``total``."""
    print(f"\nSteps of export_study ({files} files, under cProfile):")
    print(f"{'step':<34} {'calls':>6} {'seconds':>8} {'ms/file':>8} {'share':>6}")
    shown = [step for step in steps if step[2] >= 0.001 * total]
    rest = total - sum(step[2] for step in shown)
    for label, calls, seconds in [*shown, ("(everything else)", 0, rest)]:
        print(
            f"{label[:34]:<34} {calls or '':>6} {seconds:>8.3f} "
            f"{1000 * seconds / files:>8.2f} {seconds / total:>6.1%}"
        )


def profile_worker(corpus: Corpus, files: int, scratch: Path) -> dict[str, Any]:
    """Time, then profile, ``export_study`` in this process on the first files.

    A one-file warm-up first pays the one-off costs of a fresh worker (lazy
    imports, compiling the recipe), so the timed and profiled runs show the
    cost per file; the warm-up time is reported on its own.
    """
    folder = scratch / "profile"
    items = corpus.paths[:files]
    count = len(items)

    # Warm-up, then the same files without and with the profiler.
    warmup = _timed_export(_study_task(corpus, corpus.paths[-1:], folder / "warmup"))
    plain = _timed_export(_study_task(corpus, items, folder / "plain"))
    task = _study_task(corpus, items, folder / "profiled")
    profiler = cProfile.Profile()
    profiled = profiler.runcall(_timed_export, task)
    stats_file = folder / "export_study.prof"
    profiler.dump_stats(stats_file)

    # Report: the top entries, then the worker's own steps.
    print(
        f"\nIn-process export_study: first call (1 file, one-off imports and recipe "
        f"compile) {warmup:.2f} s; {count} files {plain:.2f} s = "
        f"{1000 * plain / count:.1f} ms/file without profiler, {profiled:.2f} s "
        f"with; profile in {stats_file}\n"
    )
    buffer = io.StringIO()
    stats = pstats.Stats(profiler, stream=buffer)
    stats.sort_stats(pstats.SortKey.CUMULATIVE).print_stats(_PROFILE_TOP)
    print(buffer.getvalue().strip())
    steps = _export_steps(stats)
    _print_steps(steps, profiled, count)
    return {
        "files": count,
        "warmup_seconds": warmup,
        "seconds": plain,
        "seconds_under_profiler": profiled,
        "stats_file": str(stats_file),
        "steps": [
            {"step": label, "calls": calls, "seconds": seconds}
            for label, calls, seconds in steps
        ],
    }


def format_table(rows: Sequence[Measurement], floor: Measurement) -> str:
    """The results as a fixed-width text table, one line per scenario."""
    header = (
        f"{'scenario':<20} {'workers':>7} {'seconds':>7} {'range':>11} "
        f"{'inst/s':>7} {'MB/s':>6} {'x floor':>7} {'CPU s':>6} "
        f"{'peak RSS MB':>11} {'tree RSS MB':>11}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        spread = f"{min(row.samples):.2f}-{max(row.samples):.2f}"
        ratio = row.instances_per_s / floor.instances_per_s
        peak = f"{row.peak_rss_mb:.0f}" if row.peak_rss_mb is not None else "-"
        tree = f"{row.tree_rss_mb:.0f}" if row.tree_rss_mb is not None else "-"
        status = "" if row.ok else "  FAILED"
        lines.append(
            f"{row.scenario:<20} {row.workers:>7} {row.seconds:>7.2f} {spread:>11} "
            f"{row.instances_per_s:>7.1f} {row.mb_per_s:>6.1f} {ratio:>7.2f} "
            f"{row.cpu_seconds:>6.2f} {peak:>11} {tree:>11}{status}"
        )
    return "\n".join(lines)


def format_scaling(rows: Sequence[Measurement]) -> str:
    """Each indexed run's speed-up over one local worker, and per worker."""
    base = next(
        (r for r in rows if r.scenario == "exporter indexed" and r.workers == 1), None
    )
    if base is None:
        return ""
    lines = ["\nscaling of indexed runs (inst/s over 1 local worker):"]
    for row in rows:
        if row.scenario.endswith("indexed") and row is not base:
            ratio = row.instances_per_s / base.instances_per_s
            lines.append(
                f"  {row.scenario:<18} {row.workers} workers: {ratio:.2f}x "
                f"({ratio / row.workers:.2f} per worker)"
            )
    return "\n".join(lines)


def _machine() -> dict[str, Any]:
    """The facts about this machine and its software that the numbers depend on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pydicom": pydicom.__version__,
        "exporter": exporter.__version__,
        "psutil": psutil.__version__ if psutil is not None else None,
    }


def _row_json(row: Measurement, floor: Measurement) -> dict[str, Any]:
    """One table row, with its derived rates, for the results file."""
    return {
        **dataclasses.asdict(row),
        "seconds": row.seconds,
        "cpu_seconds": row.cpu_seconds,
        "instances_per_s": row.instances_per_s,
        "mb_per_s": row.mb_per_s,
        "ratio_to_floor": row.instances_per_s / floor.instances_per_s,
        "cpu_ratio_to_floor": floor.cpu_seconds / row.cpu_seconds,
    }


def _run(args: argparse.Namespace) -> int:
    """Run every scenario, print and save the results; return the exit code."""
    args.scratch.mkdir(parents=True, exist_ok=True)

    # Corpus and manifest.
    corpus = prepare_corpus(args.corpus, args.count)
    origin = (
        f"generated in {corpus.generated_seconds:.1f} s"
        if corpus.generated_seconds is not None
        else "reused"
    )
    print(
        f"corpus: {len(corpus.paths)} files, {corpus.input_bytes / 1e6:.1f} MB "
        f"in {corpus.folder} ({origin})"
    )
    manifest = write_manifest(
        args.scratch / "manifest.csv", [{"StudyInstanceUID": corpus.study_uid}]
    )

    # Timed rounds, then the profile, which must not disturb them.
    load_start = os.getloadavg()
    if load_start[0] >= 0.5:
        print(
            f"note: load average {load_start[0]:.1f} before the first round; other "
            "processes compete for the CPU, so wall times will be noisy (CPU times "
            "less so)"
        )
    rows, startup = measure(corpus, manifest, args)
    load_end = os.getloadavg()
    floor = rows[0]
    print()
    print(format_table(rows, floor))
    print(
        f"\n{_STARTUP} (python -m exporter --version), median of {args.repeat}: "
        f"{startup.seconds:.2f} s; every exporter row includes it"
    )
    print(format_scaling(rows))
    profile = None
    if args.profile:
        profile = profile_worker(corpus, args.profile_files, args.scratch)

    # Results file.
    results = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
        "machine": _machine(),
        "corpus": {
            "folder": str(corpus.folder),
            "files": len(corpus.paths),
            "input_bytes": corpus.input_bytes,
            "generated_seconds": corpus.generated_seconds,
        },
        "repeat": args.repeat,
        "load_average_start": load_start,
        "load_average_end": load_end,
        "startup": {
            "samples": startup.samples,
            "seconds": startup.seconds,
            "cpu_seconds": startup.cpu_seconds,
            "peak_rss_mb": startup.peak_rss_mb,
        },
        "results": [_row_json(row, floor) for row in rows],
        "profile": profile,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.json}")
    return EXIT_OK if startup.ok and all(row.ok for row in rows) else EXIT_RUN_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark, and return the exit code."""
    args = _parse_args(argv)
    try:
        return _run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
