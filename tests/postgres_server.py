"""A throwaway PostgreSQL 15 for tests: a new cluster in a temporary folder.

``initdb`` makes the cluster (as the ``postgres`` user when we are root, since
PostgreSQL refuses to run as root), and ``postgres`` listens on 127.0.0.1 only,
on a free port, with its Unix socket inside the folder; authentication is
``trust``, for loopback connections only. It is stopped by its pid.

The cluster sorts text by a locale (en_US.UTF-8 where the machine has it), as
most servers do, so that tests notice a query that relies on code point order.

From a shell (CI)::

    url=$(python tests/postgres_server.py start --dir /tmp/exporter-pg)
    python tests/postgres_server.py stop --dir /tmp/exporter-pg
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    import psycopg

BIN = Path(os.environ.get("EXPORTER_TEST_POSTGRES_BIN", "/usr/lib/postgresql/15/bin"))
USER = "postgres"  # the cluster's superuser, and the OS user that runs it as root
LOCALES = ("en_US.UTF-8", "C.UTF-8")
START_TIMEOUT = 60.0


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def available() -> bool:
    """Whether the PostgreSQL server binaries and the psycopg driver are here."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return False
    return (BIN / "initdb").exists() and (BIN / "postgres").exists()


@dataclass
class Postgres:
    """A running throwaway cluster: its folder, port and server URL."""

    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None  # None: started by another process

    @property
    def url(self) -> str:
        """The server's maintenance database, as a SQLAlchemy URL."""
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid, from its pid file; None when it is not running."""
        try:
            return int((self.root / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the server by its pid (fast shutdown) and remove the folder."""
        pid = self.pid or (self.process.pid if self.process else None)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGINT)  # fast shutdown: end sessions, exit
                deadline = time.monotonic() + timeout
                while _running(pid) and time.monotonic() < deadline:
                    time.sleep(0.1)
                if _running(pid):
                    os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=timeout)
        shutil.rmtree(self.root, ignore_errors=True)


def start(root: Path | None = None) -> Postgres:
    """Make a cluster under ``root`` (a new temporary folder by default) and start it.

    The folder's parents must be open to the ``postgres`` user when we are
    root; the default, under the system's temporary folder, is.
    """
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="exporter-pg-"))
    root.mkdir(parents=True, exist_ok=True)
    account = _account()
    if account is not None:
        os.chown(root, account.pw_uid, account.pw_gid)
    data, sockets = root / "data", root / "sockets"
    _as_owner(["mkdir", "-p", str(sockets)], root, account)
    locale = next((name for name in LOCALES if _has_locale(name)), "C")
    _as_owner(
        [
            str(BIN / "initdb"),
            "--pgdata",
            str(data),
            "--username",
            USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            locale,
            "--no-sync",
        ],
        root,
        account,
    )
    # Loopback only, and nothing else may connect at all.
    (data / "pg_hba.conf").write_text(
        "local all all trust\nhost all all 127.0.0.1/32 trust\n"
    )
    port = free_port()
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = '127.0.0.1'\nport = {port}\n"
            f"unix_socket_directories = '{sockets}'\n"
            # A throwaway cluster: durability is not wanted, speed is.
            "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            "max_connections = 300\n"
        )
    with open(root / "postgres.log", "ab") as log:
        process = subprocess.Popen(
            [str(BIN / "postgres"), "-D", str(data)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            start_new_session=True,  # outlives a `start` from the command line
            **_owner_args(account),  # type: ignore[arg-type]
        )
    server = Postgres(root, port, process)
    try:
        _wait_ready(server)
    except Exception:
        server.stop()
        raise
    return server


def create_database(server_url: str) -> str:
    """Create a database with a new name on the server; return its URL."""
    name = f"exporter_test_{uuid.uuid4().hex[:12]}"
    with _admin(server_url) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return make_url(server_url).set(database=name).render_as_string(False)


def drop_database(url: str) -> None:
    """Drop the database of ``url``, ending any session still connected to it."""
    name = make_url(url).database
    with _admin(url) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the server's maintenance database."""
    import psycopg

    libpq = make_url(url).set(drivername="postgresql", database="postgres")
    return psycopg.connect(libpq.render_as_string(False), autocommit=True)


def _account() -> pwd.struct_passwd | None:
    """The OS account to run the server as: ``postgres`` when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        raise RuntimeError(
            "running as root, but there is no 'postgres' user to run PostgreSQL as "
            "(apt-get install postgresql creates it)"
        ) from None


def _owner_args(account: pwd.struct_passwd | None) -> dict[str, object]:
    if account is None:
        return {}
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def _as_owner(command: list[str], cwd: Path, account: pwd.struct_passwd | None) -> None:
    """Run ``command`` as the cluster's owner, failing with its output."""
    done = subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "LC_ALL": "C.UTF-8"},
        **_owner_args(account),  # type: ignore[arg-type]
    )
    if done.returncode != 0:
        raise RuntimeError(f"{Path(command[0]).name} failed:\n{done.stderr[-2000:]}")


def _has_locale(name: str) -> bool:
    done = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    known = {line.lower().replace("-", "") for line in done.stdout.split()}
    return name.lower().replace("-", "") in known


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    # A zombie (our own child, not yet reaped) has ended.
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _wait_ready(server: Postgres) -> None:
    """Connect until the server answers, or fail with the end of its log."""
    import psycopg

    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with _admin(server.url) as admin:
                admin.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            time.sleep(0.2)
    log = (server.root / "postgres.log").read_text(errors="replace")
    raise RuntimeError(
        f"PostgreSQL did not answer within {START_TIMEOUT:.0f} s:\n{log[-2000:]}"
    )


def main(argv: list[str] | None = None) -> int:
    """``start --dir DIR`` prints the server URL; ``stop --dir DIR`` stops it."""
    parser = argparse.ArgumentParser(prog="tests/postgres_server.py")
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, required=True, help="the cluster's folder")
    args = parser.parse_args(argv)
    if args.action == "start":
        server = start(args.dir)
        server.process = None  # it runs on after this process ends
        (args.dir / "url").write_text(server.url + "\n")
        print(server.url)
    else:
        url = (args.dir / "url").read_text().strip()
        Postgres(args.dir, make_url(url).port or 0).stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
