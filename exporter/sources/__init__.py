"""Where studies come from: one module per source kind behind one interface.

:func:`open_source` turns the ``--source`` text of the command line into a
:class:`~exporter.sources.base.Source`.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from exporter.errors import SourceError
from exporter.sources.base import (
    NOT_RETRIEVED,
    InstanceRef,
    Retrieved,
    ScanReport,
    Source,
    StudyRef,
)
from exporter.sources.folder import FolderSource

__all__ = [
    "NOT_RETRIEVED",
    "FolderSource",
    "InstanceRef",
    "Retrieved",
    "ScanReport",
    "Source",
    "StudyRef",
    "check_source",
    "open_source",
]

_ACCEPTED = "a source is a folder for now; dicom:// and DICOMweb URLs come later"


def check_source(spec: str) -> Path:
    """Check that ``spec`` names a usable source before anything is created.

    Raises
    ------
    SourceError
        If ``spec`` is a URL, a file, or a missing folder.
    """
    if "://" in spec:
        raise SourceError(f"source {spec!r} is a URL, not supported yet; {_ACCEPTED}")
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"source folder {spec!r} does not exist; {_ACCEPTED}")
    if not path.is_dir():
        raise SourceError(f"source {spec!r} is not a folder; {_ACCEPTED}")
    return path


def open_source(spec: str, engine: Engine) -> Source:
    """Open the source that ``spec`` names.

    Parameters
    ----------
    spec
        A path to a folder of DICOM files.
    engine
        The state database; a folder source keeps its index there.

    Returns
    -------
    Source
        A :class:`~exporter.sources.folder.FolderSource` for a folder.

    Raises
    ------
    SourceError
        If ``spec`` is a URL, a file, a missing folder or a folder that
        cannot be read. The message names ``spec`` and what is accepted.
    """
    return FolderSource(check_source(spec), engine)
