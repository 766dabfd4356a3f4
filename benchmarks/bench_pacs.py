"""Benchmark of exports from a PACS: folder, C-GET, C-MOVE and WADO-RS.

Starts a throwaway Orthanc (Debian's package, the same helper the tests use)
on loopback ports, stores a generated CT study in it, and times
``run_job`` (one worker) from each source on the same manifest, next to the
folder source on the same files. Also times C-GET with TCP_NODELAY off, to
show what pynetdicom's default costs. Run from the repository root:
``python benchmarks/bench_pacs.py [--count N] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "pacs"))

import orthanc_server as orthanc  # noqa: E402

from exporter.engine.job import RunRequest, run_job  # noqa: E402
from exporter.sources import NetworkSettings, dimse  # noqa: E402
from exporter.synthetic import make_ct_series, write_manifest  # noqa: E402


def main() -> None:
    """Generate, store, export from each source; print one line per source."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--count", type=int, default=200, help="CT instances")
    parser.add_argument("--repeat", type=int, default=3, help="rounds (median)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns")
    args = parser.parse_args()
    if not orthanc.available():
        sys.exit("Orthanc is not installed: apt-get install orthanc orthanc-dicomweb")

    with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
        root = Path(tmp)
        files = make_ct_series(
            root / "src", args.count, seed=3, rows=args.size, columns=args.size
        )
        import pydicom

        study = pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID
        manifest = write_manifest(root / "m.csv", [{"StudyInstanceUID": study}])
        size = sum(f.stat().st_size for f in files) / 1e6
        server = orthanc.start(root / "orthanc")
        try:
            started = time.perf_counter()
            server.upload(files)
            print(
                f"{args.count} CT instances, {size:.0f} MB; stored in Orthanc in "
                f"{time.perf_counter() - started:.1f} s (REST)"
            )
            network = NetworkSettings(
                store_address="127.0.0.1", store_port=server.store_port, retries=0
            )
            spec = f"dicom://{orthanc.PACS_AET}@127.0.0.1:{server.dicom_port}"
            import os

            os.environ["EXPORTER_DICOMWEB_USER"] = orthanc.USER
            os.environ["EXPORTER_DICOMWEB_PASSWORD"] = orthanc.PASSWORD
            scenarios = {
                "folder": (str(root / "src"), network),
                "C-GET": (spec, network),
                "C-MOVE": (spec, NetworkSettings(**{**network.__dict__, "move": True})),
                "WADO-RS": (server.dicomweb, network),
            }
            times: dict[str, list[float]] = {name: [] for name in scenarios}
            times["C-GET, no TCP_NODELAY"] = []
            for round_ in range(args.repeat):
                for name, (source, settings) in scenarios.items():
                    times[name].append(
                        _timed(root, f"{name}-{round_}", manifest, source, settings)
                    )
                nodelay = dimse._nodelay
                dimse._nodelay = lambda event: None  # type: ignore[assignment]
                try:
                    times["C-GET, no TCP_NODELAY"].append(
                        _timed(root, f"nagle-{round_}", manifest, spec, network)
                    )
                finally:
                    dimse._nodelay = nodelay  # type: ignore[assignment]
        finally:
            server.stop()

    print(f"{'source':24} {'seconds':>8} {'inst/s':>8} {'MB/s':>7}")
    for name, samples in times.items():
        seconds = statistics.median(samples)
        rate = args.count / seconds
        print(f"{name:24} {seconds:8.2f} {rate:8.1f} {size / seconds:7.1f}")


def _timed(
    root: Path, label: str, manifest: Path, source: str, network: NetworkSettings
) -> float:
    """One export into a new folder and workspace; its wall time."""
    started = time.perf_counter()
    summary = run_job(
        RunRequest(
            manifest,
            source,
            root / "out" / label,
            root / "ws" / label,
            workers=1,
            network=network,
        )
    )
    elapsed = time.perf_counter() - started
    if summary.exported == 0 or summary.failed:
        sys.exit(f"{label}: exported {summary.exported}, failed {summary.failed}")
    return elapsed


if __name__ == "__main__":
    main()
