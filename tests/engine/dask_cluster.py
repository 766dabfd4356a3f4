"""A throwaway Dask cluster for tests: a scheduler and workers on loopback.

Each is its own process (``dask scheduler``, ``dask worker`` with a nanny that
restarts a worker killed under it), bound to 127.0.0.1 with the dashboards on
free loopback ports, stopped by pid. ``python tests/engine/dask_cluster.py DIR``
starts one for CI and prints its address.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

DASK = shutil.which("dask") or str(Path(sys.executable).with_name("dask"))
LOOPBACK = "127.0.0.1"
START_TIMEOUT = 60.0


@dataclass
class DaskCluster:
    """A running scheduler and its worker processes."""

    scheduler: subprocess.Popen[bytes]
    address: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        """The pids of the worker processes proper (the nannies' children)."""
        import psutil

        return [
            child.pid
            for nanny in self.workers
            for child in psutil.Process(nanny.pid).children(recursive=True)
            if "spawn_main" in " ".join(child.cmdline())
        ]

    def stop(self) -> None:
        """Stop the workers, then the scheduler, and wait for them to end."""
        for proc in [*self.workers, self.scheduler]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=20)


def available() -> bool:
    """Whether dask.distributed is installed (the cluster extra)."""
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def start(root: Path, workers: int = 2) -> DaskCluster:
    """Start a scheduler and ``workers`` single-threaded workers under ``root``."""
    root = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    address_file = root / "scheduler.json"
    address_file.unlink(missing_ok=True)
    log = (root / "scheduler.log").open("ab")
    scheduler = subprocess.Popen(
        [
            DASK,
            "scheduler",
            "--host",
            LOOPBACK,
            "--port",
            "0",
            "--dashboard-address",
            f"{LOOPBACK}:0",
            "--scheduler-file",
            str(address_file),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=root,
    )
    cluster = DaskCluster(scheduler, _address(address_file, scheduler))
    try:
        for number in range(workers):
            log = (root / f"worker-{number}.log").open("ab")
            cluster.workers.append(
                subprocess.Popen(
                    [
                        DASK,
                        "worker",
                        cluster.address,
                        "--nthreads",
                        "1",
                        "--nworkers",
                        "1",
                        "--host",
                        LOOPBACK,
                        "--dashboard-address",
                        f"{LOOPBACK}:0",
                        "--local-directory",
                        str(root / f"worker-{number}"),
                        "--name",
                        f"worker-{number}",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=root,
                )
            )
        _wait_for_workers(cluster.address, workers)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _address(address_file: Path, scheduler: subprocess.Popen[bytes]) -> str:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if scheduler.poll() is not None:
            raise RuntimeError(f"dask scheduler exited with {scheduler.returncode}")
        with contextlib.suppress(OSError, ValueError, KeyError):
            return str(json.loads(address_file.read_text())["address"])
        time.sleep(0.1)
    raise RuntimeError("dask scheduler did not write its address in time")


def _wait_for_workers(address: str, count: int) -> None:
    from distributed import Client

    with Client(address, timeout=START_TIMEOUT, set_as_default=False) as client:
        client.wait_for_workers(count, timeout=START_TIMEOUT)


if __name__ == "__main__":
    started = start(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 2)
    print(started.address, started.scheduler.pid, *[w.pid for w in started.workers])
