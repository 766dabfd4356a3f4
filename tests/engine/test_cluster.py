"""Running on a Dask cluster: the same export as the local pool, and no loss
when a worker or the coordinating run is killed part way."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

pytest.importorskip("distributed", reason="the cluster extra is not installed")

import dask_cluster
from runs import (
    Corpus,
    assert_complete,
    finish,
    has_dicom,
    kill_when,
    start,
)

from exporter.cli import app
from exporter.engine.executors import ENV_CLUSTER, check_cluster, open_pool
from exporter.engine.job import RunRequest, run_job
from exporter.errors import SettingsError
from exporter.synthetic import make_source, write_manifest

# Kill points are drawn from this seed: random, and the same on every run.
CHAOS_SEED = 20261204
RUN_TIMEOUT = 180.0


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dask_cluster.DaskCluster]:
    """A scheduler and two single-threaded workers on loopback."""
    running = dask_cluster.start(tmp_path_factory.mktemp("dask"), workers=2)
    try:
        yield running
    finally:
        running.stop()


def _files(out: Path) -> dict[str, bytes]:
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }


def test_a_local_cluster_gives_the_local_pools_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--cluster local:2 and --workers 2: byte-identical exports, quarantine too."""
    monkeypatch.delenv(ENV_CLUSTER, raising=False)
    source = make_source(tmp_path / "src", seed=3, patients=3, with_bad_files=True)
    rows = [
        {"PatientID": p} for p in sorted({s.patient.patient_id for s in source.studies})
    ]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    ws = tmp_path / "ws"

    pooled = run_job(
        RunRequest(manifest, str(source.root), tmp_path / "a", ws, workers=2)
    )
    dask = run_job(
        RunRequest(manifest, str(source.root), tmp_path / "b", ws, cluster="local:2")
    )

    assert (dask.exported, dask.quarantined, dask.failed) == (
        pooled.exported,
        pooled.quarantined,
        pooled.failed,
    )
    assert pooled.exported and pooled.quarantined
    assert _files(tmp_path / "b") == _files(tmp_path / "a")


def _on(cluster: dask_cluster.DaskCluster, command: list[str]) -> list[str]:
    return [*command, "--cluster", cluster.address]


def test_a_running_cluster_gives_the_reference_export(
    cluster: dask_cluster.DaskCluster, fresh: Corpus
) -> None:
    """tcp://SCHEDULER: the export an uninterrupted local run made, byte for byte."""
    ws = fresh.workspace("on-cluster")
    finish(_on(cluster, fresh.command(ws)))
    assert_complete(fresh, ws)


def test_a_killed_worker_loses_nothing(
    cluster: dask_cluster.DaskCluster, fresh: Corpus
) -> None:
    """SIGKILL a worker mid-run: its shard runs again elsewhere; run exits 0."""
    import psutil

    ws = fresh.workspace("worker-killed")
    proc = start(_on(cluster, fresh.command(ws)))
    deadline = time.monotonic() + RUN_TIMEOUT
    while not has_dicom(fresh.out):
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline
        time.sleep(0.01)
    victims = cluster.worker_pids()
    assert victims, "no worker process to kill"
    psutil.Process(random.Random(CHAOS_SEED).choice(victims)).send_signal(
        signal.SIGKILL
    )
    assert proc.wait(timeout=RUN_TIMEOUT) == 0, (
        proc.stderr.read() if proc.stderr else ""
    )
    assert_complete(fresh, ws)


@pytest.mark.parametrize("round_", range(2))
def test_killed_worker_and_client_then_resumed(
    cluster: dask_cluster.DaskCluster, fresh: Corpus, round_: int
) -> None:
    """A worker, then the run itself, killed at random points; the rerun completes
    the export byte for byte."""
    import psutil

    chance = random.Random(CHAOS_SEED + round_)
    ws = fresh.workspace(f"chaos-{round_}")
    exported = chance.randint(1, max(1, fresh.instances // 2))

    def ready() -> bool:
        done = len(list(fresh.out.rglob("*.dcm"))) if fresh.out.exists() else 0
        if done >= exported // 2 and not ready.worker_killed:  # type: ignore[attr-defined]
            victims = cluster.worker_pids()
            if victims:
                psutil.Process(chance.choice(victims)).send_signal(signal.SIGKILL)
                ready.worker_killed = True  # type: ignore[attr-defined]
        return done >= exported

    ready.worker_killed = False  # type: ignore[attr-defined]
    kill_when(_on(cluster, fresh.command(ws)), fresh.out, ready)
    finish(_on(cluster, fresh.command(ws)))
    assert_complete(fresh, ws)


@pytest.mark.parametrize(
    "value",
    ["local:0", "local:", "tcp://", "tcp://host", "http://host:8786", "scheduler"],
)
def test_malformed_cluster_values_are_refused(value: str) -> None:
    """Neither local:N nor tcp://HOST:PORT: a SettingsError naming the value."""
    with pytest.raises(SettingsError, match="--cluster"):
        check_cluster(value)


def test_an_unreachable_scheduler_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing listens at the address: exit 1, one line naming the scheduler."""
    from typer.testing import CliRunner

    from exporter.engine import executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT", 2.0)
    source = make_source(tmp_path / "src", seed=1, patients=1, with_bad_files=False)
    manifest = write_manifest(
        tmp_path / "m.csv", [{"PatientID": source.studies[0].patient.patient_id}]
    )
    address = f"tcp://127.0.0.1:{_closed_port()}"
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(manifest),
            "--source",
            str(source.root),
            "--out",
            str(tmp_path / "out"),
            "--workspace",
            str(tmp_path / "ws"),
            "--cluster",
            address,
        ],
    )
    assert result.exit_code == 1, result.output
    assert f"cannot reach the Dask scheduler at {address}" in result.stderr


def _closed_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_pool_reports_its_slots(monkeypatch: pytest.MonkeyPatch) -> None:
    """A local pool runs --workers shards at a time; one worker runs inline."""
    monkeypatch.delenv(ENV_CLUSTER, raising=False)
    with open_pool(1) as inline:
        assert inline.executor is None and inline.slots == 1
    with open_pool(2) as pool:
        assert pool.executor is not None and pool.slots == 2


def test_workers_never_log_source_values(tmp_path: Path) -> None:
    """pydicom's warnings quote values (an invalid UID here); on Dask workers,
    which the CLI's logging setup does not reach, they stay silent too."""
    (tmp_path / "src").mkdir()
    shutil.copy(get_testdata_file("rtdose.dcm"), tmp_path / "src" / "dose.dcm")
    bad_uid = "1.2.123.456.78.9.0123.4567.89012345678901"
    assert bad_uid.encode() in (tmp_path / "src" / "dose.dcm").read_bytes()
    patient = str(pydicom.dcmread(tmp_path / "src" / "dose.dcm").PatientID)
    manifest = write_manifest(tmp_path / "m.csv", [{"PatientID": patient}])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "exporter",
            "run",
            str(manifest),
            "--source",
            str(tmp_path / "src"),
            "--out",
            str(tmp_path / "out"),
            "--workspace",
            str(tmp_path / "ws"),
            "--cluster",
            "local:1",
        ],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert done.returncode in (0, 3), done.stderr
    assert list((tmp_path / "out").rglob("*.dcm")), done.stderr
    assert bad_uid not in done.stderr + done.stdout
