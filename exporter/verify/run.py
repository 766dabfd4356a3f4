"""Verify an export folder against a workspace, from the command line or a job."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy.engine import Engine

from exporter.errors import SettingsError
from exporter.state import open_database
from exporter.verify.check import ocr_reader, verify_export
from exporter.verify.scan import Finding
from exporter.workspace import open_workspace


def verify_folder(
    export: Path,
    workspace: Path | None,
    database_url: str | None = None,
    workers: int = 1,
) -> tuple[list[Finding], int, bool]:
    """Findings in ``export``, how many files were checked, and whether OCR ran.

    Raises
    ------
    SettingsError
        When the export folder or the workspace does not exist.
    """
    export = export.expanduser().resolve()
    if not export.is_dir():
        raise SettingsError(f"export folder {str(export)!r} does not exist")
    engine = workspace_database(workspace, database_url)
    # What the policy kept on purpose, as the export's provenance records it.
    retained: list[str] = []
    provenance = export / "provenance.json"
    if provenance.is_file():
        record = json.loads(provenance.read_text())
        retained = list(record.get("verify", {}).get("retained_by_policy", []))
    reader = ocr_reader()
    findings = verify_export(export, engine, retained, reader, workers=workers)
    checked = sum(1 for p in export.rglob("*") if p.is_file())
    return findings, checked, reader is not None


def workspace_database(workspace: Path | None, database_url: str | None) -> Engine:
    """The state database of an existing workspace (never creates one).

    Raises
    ------
    SettingsError
        When there is no workspace there, its database holds no state, or the
        database belongs to another workspace.
    """
    ws = open_workspace(workspace, database_url, create=False)
    return open_database(ws.database_url, ws.secret, create=False)
