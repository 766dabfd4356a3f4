"""Where shards run: in this process, a local process pool, or a Dask cluster.

The job hands shards to a :class:`concurrent.futures.Executor` and waits for
their futures; which executor it gets is decided here, from ``--workers`` and
``--cluster``. Workers only read source files and write export and workspace
files (atomically); the parent alone records results in the state database,
so any executor gives the same export.

A Dask cluster (``dask.distributed``) is the way past one machine: its
scheduler places shards on workers, and a shard whose worker dies is run
again on another one. Every worker must see the source, the export and the
workspace at the same paths (shared storage) and run the same exporter.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from exporter.errors import SettingsError

logger = logging.getLogger(__name__)

# The cluster to use when none is given (``exporter run --cluster`` wins).
ENV_CLUSTER = "EXPORTER_CLUSTER"
# Dask's own listeners and dashboard on loopback unless told otherwise.
DEFAULT_DASHBOARD = "127.0.0.1:0"
_LOCAL = re.compile(r"local:(\d+)")
CONNECT_TIMEOUT = 30.0  # seconds to reach a scheduler


@dataclass(frozen=True)
class Pool:
    """An executor for shards and how many it runs at a time.

    ``executor`` is None when shards run in this process, one after another.
    """

    executor: Executor | None
    slots: int


def resolve_cluster(cluster: str | None) -> str | None:
    """The cluster to use: ``cluster``, else ``$EXPORTER_CLUSTER``, else None."""
    return cluster or os.environ.get(ENV_CLUSTER) or None


def check_cluster(cluster: str | None) -> None:
    """Refuse a ``--cluster`` value that names no cluster we can reach.

    Raises
    ------
    SettingsError
        For anything but ``local:N`` (N >= 1), ``tcp://HOST:PORT`` or
        ``tls://HOST:PORT``.
    """
    if cluster is None:
        return
    local = _LOCAL.fullmatch(cluster)
    if local:
        if int(local.group(1)) < 1:
            raise SettingsError("--cluster local:N needs N >= 1 workers")
        return
    parts = urlsplit(cluster)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None:
        raise SettingsError(
            f"--cluster {cluster!r}: give a Dask scheduler as tcp://HOST:PORT "
            "(or tls://HOST:PORT), or local:N to start N local workers"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@contextmanager
def open_pool(
    workers: int, cluster: str | None = None, dashboard: str = DEFAULT_DASHBOARD
) -> Iterator[Pool]:
    """The executor shards run on, closed (or disconnected) on leaving.

    Parameters
    ----------
    workers
        Local worker processes when there is no ``cluster``; 1 runs shards in
        this process.
    cluster
        As :func:`resolve_cluster` gives it. ``local:N`` starts a Dask
        LocalCluster of N single-threaded worker
        processes on loopback for this job; ``tcp://HOST:PORT`` or
        ``tls://HOST:PORT`` connects to a running Dask scheduler.
    dashboard
        Where a LocalCluster's dashboard listens (``127.0.0.1:0``: loopback,
        any free port).

    Raises
    ------
    SettingsError
        When the cluster value is malformed, the ``cluster`` extra is
        missing, or the scheduler cannot be reached.
    """
    check_cluster(cluster)
    if cluster is None:
        if workers <= 1:
            yield Pool(None, 1)
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield Pool(pool, workers)
        return
    with _dask_client(cluster, dashboard) as client:
        slots = sum(client.nthreads().values()) or 1
        yield Pool(client.get_executor(pure=False), slots)


@contextmanager
def _dask_client(cluster: str, dashboard: str) -> Iterator[Any]:
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise SettingsError(
            "--cluster needs the cluster extra: pip install 'exporter[cluster]'"
        ) from exc
    local = _LOCAL.fullmatch(cluster)
    if local:
        count = int(local.group(1))
        with (
            LocalCluster(
                n_workers=count,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=dashboard,
                silence_logs=logging.WARNING,
            ) as made,
            Client(made) as client,
        ):
            client.wait_for_workers(count)
            yield client
        return
    host = urlsplit(cluster).hostname or ""
    if cluster.startswith("tcp://") and not _loopback(host):
        # The workspace secret and source paths travel with every shard.
        logger.warning(
            "the Dask scheduler is reached over plain tcp://: the workspace "
            "secret and source paths travel unencrypted; use tls:// with a "
            "Dask security configuration on a shared network"
        )
    try:
        client = Client(cluster, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise SettingsError(
            f"cannot reach the Dask scheduler at {cluster} ({type(exc).__name__}); "
            "check that it runs and the address"
        ) from None
    with client:
        if not client.nthreads():
            client.wait_for_workers(1, timeout=60)
        yield client
