"""The workspace: the project's secret, state database, parts and quarantine.

It holds the honest broker's side of a project and must never be inside an
export (nor an export inside it).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from exporter.errors import SettingsError

logger = logging.getLogger(__name__)

ENV_WORKSPACE = "EXPORTER_WORKSPACE"
ENV_DATABASE = "EXPORTER_DATABASE_URL"
DEFAULT_NAME = "exporter-workspace"
_SECRET_FILE = "secret.key"
_MIN_SECRET_BYTES = 32


@dataclass(frozen=True)
class Workspace:
    """An opened workspace folder."""

    root: Path
    secret: bytes
    database_url: str
    created: bool

    def job_dir(self, job_id: str) -> Path:
        """Private per-job folder: catalog parts, quarantine."""
        return self.root / "jobs" / job_id


def resolve_root(path: str | os.PathLike[str] | None) -> Path:
    """The workspace folder: the argument, $EXPORTER_WORKSPACE, or the default."""
    chosen = path or os.environ.get(ENV_WORKSPACE) or DEFAULT_NAME
    return Path(chosen).expanduser().resolve()


def default_database_url(root: Path) -> str:
    """The state database without --database-url or $EXPORTER_DATABASE_URL."""
    return f"sqlite:///{root / 'state.db'}"


def open_workspace(
    path: str | os.PathLike[str] | None,
    database_url: str | None = None,
    *,
    create: bool = True,
) -> Workspace:
    """Open the workspace, creating it with a new random secret on first use.

    Parameters
    ----------
    path
        The folder; ``None`` for $EXPORTER_WORKSPACE or the default.
    database_url
        The state database; ``None`` for $EXPORTER_DATABASE_URL or SQLite in
        the folder.
    create
        Whether a missing workspace is created; ``False`` for commands that
        read an existing one (verify, linkage).

    Raises
    ------
    SettingsError
        When the folder or its secret cannot be used, or there is no workspace
        and ``create`` is false.
    """
    root = resolve_root(path)
    key_file = root / _SECRET_FILE
    created = False
    if not key_file.exists() and not create:
        raise SettingsError(
            f"no workspace at {str(root)!r}: give the workspace the export was made "
            "with (--workspace or EXPORTER_WORKSPACE)"
        )
    if not key_file.exists():
        if root.exists() and not root.is_dir():
            raise SettingsError(f"workspace {root} exists and is not a folder")
        try:
            root.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:
            raise SettingsError(
                f"cannot create workspace {root}: {exc.strerror}"
            ) from exc
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(_MIN_SECRET_BYTES) + "\n")
        created = True
    try:
        secret = bytes.fromhex(key_file.read_text().strip())
    except (OSError, ValueError) as exc:
        raise SettingsError(
            f"{key_file}: unreadable secret; restore it from backup (pseudonyms "
            "depend on it) or start a new workspace"
        ) from exc
    if len(secret) < _MIN_SECRET_BYTES:
        raise SettingsError(
            f"{key_file}: the secret is shorter than {_MIN_SECRET_BYTES} bytes; "
            "refusing weak pseudonyms"
        )
    url = database_url or os.environ.get(ENV_DATABASE) or default_database_url(root)
    return Workspace(root=root, secret=secret, database_url=url, created=created)


def check_separation(workspace: Path, export: Path) -> None:
    """Refuse an export inside the workspace, or a workspace inside the export."""
    workspace, export = workspace.resolve(), export.resolve()
    if export == workspace or export.is_relative_to(workspace):
        raise SettingsError(
            f"export folder {export} is inside the workspace {workspace}; "
            "choose an export folder outside it (the workspace holds the linkage)"
        )
    if workspace.is_relative_to(export):
        raise SettingsError(
            f"workspace {workspace} is inside the export folder {export}; "
            "the secret and linkage would be shipped with the export"
        )
