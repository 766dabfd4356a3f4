"""Measure how the folder source's header index grows with the size of the tree.

The script generates once, under ``bench-out/`` (git-ignored), a tree of small
DICOM files laid out like a hospital archive (bucket / patient / study / series /
instance), with a few copies and stray non-DICOM files. The tree is nested so
that each size is a sub-folder of the next one: with ``--sizes 25000,50000`` the
25,000 files are ``tree/older/`` and the 50,000 are ``tree/`` (the 25,000 plus
25,000 of its own), so one tree of the largest size serves every size.

For each size, a child process with a new workspace:

1. builds the index (:meth:`FolderSource.scan` on an empty state database);
2. scans again with nothing changed (median of ``--rounds``);
3. touches 1 % of the files (new mtime, same bytes) and scans again, each round
   a different 1 %;
4. times :meth:`FolderSource.find` for a manifest of 100 rows by PatientID, by
   AccessionNumber and by StudyInstanceUID, and :meth:`FolderSource.instances`
   for every study they matched;
5. reports its peak resident memory after the first build, after the re-scans
   and at the end.

Every step is timed in wall and in CPU seconds of the child. To measure another
version of the package, put a copy of it first on ``PYTHONPATH``; the results
file records which ``exporter`` was imported.

The table is printed and every number is written to ``--json``. Nothing printed
names a file, patient or UID. ``benchmarks/README.md`` explains the numbers.

Exit codes: 0 every measurement succeeded; 1 a child failed or a scan did not
count what it should; 2 usage error (including a tree folder generated with
other parameters).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import functools
import io
import json
import os
import platform
import random
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

import exporter

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

_DEFAULT_SIZES = "25000,50000,100000,200000"
_MANIFEST_ROWS = 100
_TOUCH_EVERY = 100  # one file in a hundred is touched per round
_TREE_FORMAT = 1  # bump when the layout or contents change

# Fixed-length stand-ins written into the template and patched per file. Every
# value that replaces one has exactly its length, so no element length, group
# length or offset changes.
_MARK_PATIENT_ID = "ZZZZZZZZ"
_MARK_PATIENT_NAME = "YYYYYY^YYYYYYY"
_MARK_ACCESSION = "XXXXXXXXXX"
_MARK_STUDY_DATE = "19010203"
_MARK_MODALITY = "QQ"
_MARK_STUDY_UID = "2.25.7" + "7" * 18
_MARK_SERIES_UID = "2.25.8" + "8" * 18
_MARK_SOP_UID = "2.25.9" + "9" * 18
_MARKS = {
    "patient_id": (_MARK_PATIENT_ID, 1),
    "patient_name": (_MARK_PATIENT_NAME, 1),
    "accession": (_MARK_ACCESSION, 1),
    "study_date": (_MARK_STUDY_DATE, 1),
    "modality": (_MARK_MODALITY, 1),
    "study_uid": (_MARK_STUDY_UID, 1),
    "series_uid": (_MARK_SERIES_UID, 1),
    "sop_uid": (_MARK_SOP_UID, 2),  # the dataset's and the file meta's
}
_MODALITIES = ("CT", "MR", "PT")


class UsageError(Exception):
    """The benchmark cannot start with these arguments."""


# Generating the tree ---------------------------------------------------------


@dataclass(frozen=True)
class Template:
    """One encoded file and where each patched value sits in its bytes."""

    data: bytes
    offsets: dict[str, tuple[int, ...]]


@dataclass
class Level:
    """The files one size adds to the next smaller one, and their studies."""

    folder: str  # relative to the tree, "" for the outermost
    size: int  # files under ``folder``, inner levels included
    files: int = 0  # files of this level alone
    studies: list[tuple[str, str, str]] = field(default_factory=list)
    # (PatientID, AccessionNumber, StudyInstanceUID) of each study written


def make_template() -> Template:
    """Encode pydicom's CT_small.dcm header with stand-ins and 8x8 pixels."""
    path = get_testdata_file("CT_small.dcm")
    if not isinstance(path, str):
        raise UsageError("pydicom's test file CT_small.dcm is missing; reinstall it")
    ds = pydicom.dcmread(path, stop_before_pixels=True)

    # A real CT header (about 250 elements, many private) with tiny pixel data.
    ds.PatientID = _MARK_PATIENT_ID
    ds.PatientName = _MARK_PATIENT_NAME
    ds.AccessionNumber = _MARK_ACCESSION
    ds.StudyDate = _MARK_STUDY_DATE
    ds.Modality = _MARK_MODALITY
    ds.StudyInstanceUID = _MARK_STUDY_UID
    ds.SeriesInstanceUID = _MARK_SERIES_UID
    ds.SOPInstanceUID = _MARK_SOP_UID
    ds.Rows = ds.Columns = 8
    ds.add_new("PixelData", "OW", bytes(8 * 8 * 2))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = _MARK_SOP_UID
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()

    # Find each stand-in; it must be where pydicom put it and nowhere else.
    offsets: dict[str, tuple[int, ...]] = {}
    for name, (mark, expected) in _MARKS.items():
        found = []
        start = data.find(mark.encode())
        while start != -1:
            found.append(start)
            start = data.find(mark.encode(), start + 1)
        if len(found) != expected:
            raise RuntimeError(f"template: {name} found {len(found)} times")
        offsets[name] = tuple(found)
    return Template(data=data, offsets=offsets)


def _uid(kind: int, seed: int, level: int, number: int) -> str:
    """A synthetic UID of the stand-ins' length (24 characters)."""
    return f"2.25.{kind}{seed % 1000:03d}{level:02d}{number:013d}"


def _files_of_level(
    template: Template, level: int, count: int, seed: int, info: Level
) -> Iterator[tuple[str, bytes]]:
    """Yield (relative path, bytes) of one level's ``count`` files."""
    rng = random.Random(seed * 1000 + level)
    patched = bytearray(template.data)
    written = patient = study = series = sop = 0

    def patch(name: str, value: str) -> None:
        encoded = value.encode()
        for offset in template.offsets[name]:
            patched[offset : offset + len(encoded)] = encoded

    while True:
        patient += 1
        patient_id = f"{level + 1}{patient:07d}"
        bucket = f"{level:02d}{patient % 100:02d}"
        patch("patient_id", patient_id)
        patch("patient_name", f"SYNTH^P{level + 1}{patient:06d}")
        for _study in range(rng.randint(1, 5)):
            study += 1
            accession = f"A{level + 1}{study:08d}"
            date = dt.date(2010, 1, 1) + dt.timedelta(days=rng.randrange(5000))
            study_date = date.strftime("%Y%m%d")
            study_uid = _uid(1, seed, level, study)
            modality = rng.choice(_MODALITIES)
            patch("accession", accession)
            patch("study_date", study_date)
            patch("study_uid", study_uid)
            patch("modality", modality)
            info.studies.append((patient_id, accession, study_uid))
            study_dir = f"{bucket}/{patient_id}/{study_date}_{accession}"
            copied = rng.random() < 0.01  # someone copied the study again
            for number in range(1, rng.randint(2, 5) + 1):
                series += 1
                patch("series_uid", _uid(2, seed, level, series))
                series_dir = f"{study_dir}/S{number:03d}_{modality}"
                for instance in range(1, rng.randint(10, 50) + 1):
                    sop += 1
                    patch("sop_uid", _uid(3, seed, level, sop))
                    paths = [f"{series_dir}/IM{instance:05d}.dcm"]
                    if copied:
                        paths.append(f"copies/{accession}/{number}_{instance}.dcm")
                    for path in paths:
                        yield path, bytes(patched)
                        written += 1
                        if written == count:
                            return
            # A stray file now and then, as exports from viewers leave them.
            if rng.random() < 0.05:
                yield f"{study_dir}/Thumbs.db", rng.randbytes(512)
                written += 1
                if written == count:
                    return


def generate_tree(tree: Path, sizes: Sequence[int], seed: int) -> list[Level]:
    """Write the nested tree: level i holds sizes[i] files, inner levels included."""
    template = make_template()
    levels = [
        Level(folder="/".join(["older"] * (len(sizes) - 1 - i)), size=n)
        for i, n in enumerate(sizes)
    ]
    made: set[str] = set()
    previous = 0
    for number, level in enumerate(levels):
        base = tree / level.folder if level.folder else tree
        for relative, data in _files_of_level(
            template, number, level.size - previous, seed, level
        ):
            path = os.path.join(base, relative)
            folder = os.path.dirname(path)
            if folder not in made:
                os.makedirs(folder, exist_ok=True)
                made.add(folder)
            with open(path, "wb") as file:
                file.write(data)
            level.files += 1
        previous = level.size
    return levels


def prepare_tree(folder: Path, sizes: Sequence[int], seed: int) -> tuple[Path, float]:
    """Reuse the tree in ``folder`` if made with these parameters, else make it.

    Returns the tree folder and the seconds spent generating (0 when reused).

    Raises
    ------
    UsageError
        If ``folder`` holds something else; it is never deleted, since it may
        not be ours.
    """
    tree, description = folder / "tree", folder / "tree.json"
    wanted = {"format": _TREE_FORMAT, "sizes": list(sizes), "seed": seed}
    if description.exists():
        found = json.loads(description.read_text(encoding="utf-8"))
        if {key: found.get(key) for key in wanted} == wanted:
            return tree, 0.0
        raise UsageError(
            f"{description} describes a tree of other sizes or seed; delete "
            f"{folder}, or pass another --tree"
        )
    if tree.exists():
        raise UsageError(
            f"{tree} exists without {description.name} (an interrupted generation?); "
            "delete it, or pass another --tree"
        )

    start = time.perf_counter()
    levels = generate_tree(tree, sizes, seed)
    seconds = time.perf_counter() - start
    description.write_text(
        json.dumps({**wanted, "levels": [asdict(level) for level in levels]}) + "\n",
        encoding="utf-8",
    )
    return tree, seconds


def _levels(folder: Path) -> list[Level]:
    """Read the levels back from the tree's description."""
    found = json.loads((folder / "tree.json").read_text(encoding="utf-8"))
    return [
        Level(
            folder=level["folder"],
            size=level["size"],
            files=level["files"],
            studies=[tuple(study) for study in level["studies"]],
        )
        for level in found["levels"]
    ]


# Measuring one size (in a child process) -------------------------------------


def _maxrss_mb() -> float:
    """This process's peak resident memory so far, in MB (Linux: KiB units)."""
    value = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return value / 1e6 if sys.platform == "darwin" else value * 1024 / 1e6


def _rss_mb() -> float:
    """This process's resident memory now, in MB (Linux only; else 0)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            pages = int(statm.read().split()[1])
    except OSError:
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def _touch(root: Path, offset: int) -> int:
    """Give one file in a hundred a new mtime (bytes unchanged); return how many."""
    touched = seen = 0
    for folder, _dirs, names in os.walk(root):
        for name in sorted(names):
            seen += 1
            if seen % _TOUCH_EVERY != offset:
                continue
            path = os.path.join(folder, name)
            status = os.stat(path)
            later = status.st_mtime_ns + 1_000_000_000
            os.utime(path, ns=(status.st_atime_ns, later))
            touched += 1
    return touched


def _manifest(path: Path, column: str, values: Sequence[str]) -> Path:
    """Write a one-column cohort manifest."""
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow([column])
        writer.writerows([value] for value in values)
    return path


def _timed(function: Any) -> tuple[float, float, Any]:
    """Call ``function``; return (wall seconds, CPU seconds, result)."""
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - start, time.process_time() - cpu, result


def _find_all(source: Any, selections: Sequence[Any]) -> list[Any]:
    """Every study the manifest rows select, as the engine's planning asks."""
    return [ref for selection in selections for ref in source.find(selection)]


def _list_all(source: Any, uids: Sequence[str]) -> int:
    """List the instances of each study, as retrieve() does; return how many."""
    return sum(len(source.instances(uid)) for uid in uids)


def measure_size(tree_folder: Path, size: int, workspace: Path, rounds: int) -> Any:
    """Index the tree of ``size`` files in a new workspace and time each step."""
    from exporter.cohort import read_manifest
    from exporter.sources import FolderSource
    from exporter.state.db import open_database

    levels = _levels(tree_folder)
    inner = [level for level in levels if level.size <= size]
    if not inner or inner[-1].size != size:
        raise UsageError(f"the tree has no level of {size} files")
    root = tree_folder / "tree" / inner[-1].folder
    studies = [study for level in inner for study in level.studies]
    workspace.mkdir(parents=True)
    result: dict[str, Any] = {"files": size, "rss_start_mb": _rss_mb()}

    # First build, on an empty database.
    engine = open_database(f"sqlite:///{workspace / 'state.db'}")
    source = FolderSource(root, engine)
    seconds, cpu, report = _timed(source.scan)
    result.update(
        cold_s=seconds,
        cold_cpu_s=cpu,
        cold_indexed=report.files_indexed,
        skipped=dict(report.skipped),
        peak_rss_cold_mb=_maxrss_mb(),
    )
    problems = []
    if report.files_seen != size or report.files_indexed != size:
        problems.append(f"cold scan saw {report.files_seen} files, read {size}")

    # Nothing changed, then 1 % touched (a different 1 % each round).
    timings: dict[str, list[float]] = {
        key: [] for key in ("noop_s", "noop_cpu_s", "touched_s", "touched_cpu_s")
    }
    for number in range(rounds):
        seconds, cpu, report = _timed(source.scan)
        timings["noop_s"].append(seconds)
        timings["noop_cpu_s"].append(cpu)
        if report.files_indexed != 0:
            problems.append(f"no-op scan read {report.files_indexed} files")
        count = _touch(root, number + 1)
        seconds, cpu, report = _timed(source.scan)
        timings["touched_s"].append(seconds)
        timings["touched_cpu_s"].append(cpu)
        if report.files_indexed != count:
            problems.append(f"scan read {report.files_indexed} of {count} touched")
    result.update(timings, touched_files=count, peak_rss_scans_mb=_maxrss_mb())

    # Manifests of 100 rows; the same rows for every size that holds them.
    rng = random.Random(size)
    picked = rng.sample(studies, min(_MANIFEST_ROWS, len(studies)))
    columns = {
        "PatientID": [study[0] for study in picked],
        "AccessionNumber": [study[1] for study in picked],
        "StudyInstanceUID": [study[2] for study in picked],
    }
    for column, values in columns.items():
        manifest = read_manifest(_manifest(workspace / f"{column}.csv", column, values))
        selection: dict[str, Any] = {"rows": len(values)}
        for key in ("find_s", "find_cpu_s", "instances_s", "instances_cpu_s"):
            selection[key] = []
        for _round in range(rounds):
            seconds, cpu, matched = _timed(
                functools.partial(_find_all, source, manifest.selections)
            )
            selection["find_s"].append(seconds)
            selection["find_cpu_s"].append(cpu)
            uids = sorted({ref.study_uid for ref in matched})
            seconds, cpu, listed = _timed(functools.partial(_list_all, source, uids))
            selection["instances_s"].append(seconds)
            selection["instances_cpu_s"].append(cpu)
        selection.update(studies=len(uids), instances=listed)
        result[column] = selection

    engine.dispose()
    database = workspace / "state.db"
    result.update(
        peak_rss_mb=_maxrss_mb(),
        database_mb=sum(
            p.stat().st_size for p in workspace.iterdir() if p.name.startswith("state")
        )
        / 1e6,
        problems=problems,
    )
    with sqlite3.connect(database) as connection:
        result["page_size"] = connection.execute("PRAGMA page_size").fetchone()[0]
    return result


# The parent: run the sizes, print, save -----------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values)


def format_table(results: Sequence[dict[str, Any]]) -> str:
    """The results as a fixed-width table, one line per size.

    Seconds are wall time (medians of the rounds); the per-file and per-row
    costs are CPU time, which moves less when other processes share the
    machine.
    """
    header = (
        f"{'files':>8} {'build s':>8} {'us/file':>7} {'no-op s':>7} {'us/file':>7} "
        f"{'1% s':>6} {'PID ms':>6} {'ACC ms':>6} {'UID ms':>6} {'inst ms':>7} "
        f"{'RSS MB':>6} {'+MB':>4} {'DB MB':>5}"
    )
    lines = [header, "-" * len(header)]
    for row in results:
        files = row["files"]
        pid, acc, uid = (
            row[key] for key in ("PatientID", "AccessionNumber", "StudyInstanceUID")
        )
        listed = _median(uid["instances_cpu_s"]) / max(uid["studies"], 1)
        lines.append(
            f"{files:>8} {row['cold_s']:>8.1f} "
            f"{row['cold_cpu_s'] / files * 1e6:>7.0f} "
            f"{_median(row['noop_s']):>7.2f} "
            f"{_median(row['noop_cpu_s']) / files * 1e6:>7.1f} "
            f"{_median(row['touched_s']):>6.2f} "
            f"{_median(pid['find_cpu_s']) * 1e3:>6.0f} "
            f"{_median(acc['find_cpu_s']) * 1e3:>6.0f} "
            f"{_median(uid['find_cpu_s']) * 1e3:>6.0f} "
            f"{listed * 1e3:>7.2f} {row['peak_rss_scans_mb']:>6.0f} "
            f"{row['peak_rss_scans_mb'] - row['rss_start_mb']:>4.0f} "
            f"{row['database_mb']:>5.0f}"
        )
    return "\n".join(lines)


def _growth(results: Sequence[dict[str, Any]]) -> str:
    """How each CPU cost per file (or per manifest) changed from the smallest size."""
    if len(results) < 2:
        return ""
    first, last = results[0], results[-1]

    def ratio(key: str, manifest: str | None = None) -> str:
        def cost(row: dict[str, Any]) -> float:
            if manifest is not None:
                return _median(row[manifest][key])
            return _median(_list(row[key])) / row["files"]

        return f"x{cost(last) / cost(first):.2f}"

    return (
        f"from {first['files']} to {last['files']} files "
        f"(x{last['files'] / first['files']:.0f}), CPU per file: build "
        f"{ratio('cold_cpu_s')}, no-op scan {ratio('noop_cpu_s')}, 1% touched "
        f"{ratio('touched_cpu_s')}; CPU per manifest of {_MANIFEST_ROWS} rows: "
        f"PatientID {ratio('find_cpu_s', 'PatientID')}, AccessionNumber "
        f"{ratio('find_cpu_s', 'AccessionNumber')}, StudyInstanceUID "
        f"{ratio('find_cpu_s', 'StudyInstanceUID')}"
    )


def _list(value: Any) -> list[float]:
    return value if isinstance(value, list) else [value]


def _machine() -> dict[str, Any]:
    """The facts about this machine and its software that the numbers depend on."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pydicom": pydicom.__version__,
        "sqlite": sqlite3.sqlite_version,
        "exporter": exporter.__version__,
        "exporter_from": str(Path(exporter.__file__).parent),
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time the folder source's index on a generated tree."
    )
    parser.add_argument(
        "--sizes",
        default=_DEFAULT_SIZES,
        help=f"comma-separated tree sizes, ascending (default {_DEFAULT_SIZES})",
    )
    parser.add_argument(
        "--tree",
        type=Path,
        default=Path("bench-out/index"),
        help="where the tree is generated once and reused",
    )
    parser.add_argument("--seed", type=int, default=0, help="generation seed")
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds of the re-scans and selections"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=Path("bench-out/index-results.json"),
        help="where every number is written",
    )
    parser.add_argument(
        "--only",
        type=int,
        default=None,
        help="measure only this size of the tree (the tree still has every size)",
    )
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workspace", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        args.sizes = [int(value) for value in args.sizes.split(",")]
    except ValueError:
        parser.error(f"--sizes must be integers separated by commas: {args.sizes!r}")
    if args.sizes != sorted(set(args.sizes)) or args.sizes[0] < 1:
        parser.error("--sizes must be positive and ascending, each once")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.only is not None and args.only not in args.sizes:
        parser.error("--only must be one of --sizes")
    return args


def _child(args: argparse.Namespace) -> int:
    """Measure one size and print its results as JSON on stdout."""
    result = measure_size(args.tree, args.child, args.workspace, args.rounds)
    print(json.dumps(result))
    return EXIT_FAILED if result["problems"] else EXIT_OK


def _run(args: argparse.Namespace) -> int:
    """Make or reuse the tree, measure each size in a child, print and save."""
    tree, generated = prepare_tree(args.tree, args.sizes, args.seed)
    levels = _levels(args.tree)
    origin = f"generated in {generated:.0f} s" if generated else "reused"
    print(f"tree: {levels[-1].size} files in {tree} ({origin})")

    results, ok = [], True
    for size in args.sizes if args.only is None else [args.only]:
        load = os.getloadavg()[0]
        workspace = args.tree / f"workspace-{size}"
        shutil.rmtree(workspace, ignore_errors=True)
        command = [
            sys.executable,
            __file__,
            "--tree",
            str(args.tree),
            "--sizes",
            ",".join(map(str, args.sizes)),
            "--seed",
            str(args.seed),
            "--rounds",
            str(args.rounds),
            "--child",
            str(size),
            "--workspace",
            str(workspace),
        ]
        start = time.perf_counter()
        child = subprocess.run(command, capture_output=True, text=True, check=False)
        print(
            f"  {size} files: {time.perf_counter() - start:.0f} s "
            f"(load average {load:.1f} before)",
            flush=True,
        )
        shutil.rmtree(workspace, ignore_errors=True)
        if child.returncode not in (EXIT_OK, EXIT_FAILED) or not child.stdout:
            print(child.stderr[-2000:], file=sys.stderr)
            ok = False
            continue
        result = json.loads(child.stdout.splitlines()[-1])
        result["load_average_before"] = load
        for problem in result["problems"]:
            print(f"  problem: {problem}", file=sys.stderr)
            ok = False
        results.append(result)

    print()
    print(format_table(results))
    growth = _growth(results)
    if growth:
        print(f"\n{growth}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "command": [Path(sys.argv[0]).as_posix(), *sys.argv[1:]],
                "machine": _machine(),
                "tree": {"sizes": args.sizes, "seed": args.seed},
                "rounds": args.rounds,
                "results": results,
            },
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"\nresults: {args.json}")
    return EXIT_OK if ok else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments, run the benchmark, and return the exit code."""
    args = _parse_args(argv)
    try:
        if args.child is not None:
            return _child(args)
        return _run(args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
