"""Where studies come from: one module per source kind behind one interface.

:func:`open_source` turns the ``--source`` text of the command line into a
:class:`~exporter.sources.base.Source`.
"""

from __future__ import annotations

from dataclasses import dataclass
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
from exporter.sources.dicomweb import DicomwebSource
from exporter.sources.dimse import DimseSource, Peer
from exporter.sources.folder import FolderSource

__all__ = [
    "NOT_RETRIEVED",
    "FolderSource",
    "InstanceRef",
    "NetworkSettings",
    "Retrieved",
    "ScanReport",
    "Source",
    "StudyRef",
    "check_source",
    "open_source",
]

_ACCEPTED = (
    "a source is a folder, dicom://CALLED_AE@host:port, or an http(s) DICOMweb URL"
)


@dataclass(frozen=True)
class NetworkSettings:
    """How to talk to a PACS: our AE title, C-GET or C-MOVE, limits."""

    ae_title: str = "EXPORTER"
    move: bool = False
    store_port: int = 11113
    store_address: str = "0.0.0.0"
    timeout: float = 30.0
    retries: int = 2


def check_source(spec: str, network: NetworkSettings | None = None) -> None:
    """Check that ``spec`` names a usable source before anything is created.

    Raises
    ------
    SourceError
        If ``spec`` is an unsupported URL, a file, or a missing folder.
    """
    if spec.startswith("dicom://"):
        _peer(spec, network or NetworkSettings())
        return
    if spec.startswith(("http://", "https://")):
        DicomwebSource(spec)
        return
    if "://" in spec:
        raise SourceError(
            f"source {spec!r} is a URL of a kind not supported; {_ACCEPTED}"
        )
    path = Path(spec).expanduser()
    if not path.exists():
        raise SourceError(f"source folder {spec!r} does not exist; {_ACCEPTED}")
    if not path.is_dir():
        raise SourceError(f"source {spec!r} is not a folder; {_ACCEPTED}")


def _peer(spec: str, network: NetworkSettings) -> Peer:
    if not 1 <= len(network.ae_title) <= 16:
        raise SourceError("--ae-title must be 1 to 16 characters")
    return Peer.parse(
        spec,
        network.ae_title,
        move=network.move,
        store_port=network.store_port,
        store_address=network.store_address,
        timeout=network.timeout,
        retries=network.retries,
    )


def open_source(
    spec: str, engine: Engine, network: NetworkSettings | None = None
) -> Source:
    """Open the source that ``spec`` names.

    Parameters
    ----------
    spec
        A path to a folder of DICOM files, ``dicom://CALLED_AE@host:port``,
        or the root URL of a DICOMweb service.
    engine
        The state database; a folder source keeps its index there.
    network
        For a PACS: our AE title, C-GET or C-MOVE, timeouts.

    Raises
    ------
    SourceError
        If ``spec`` is not a usable source; the message names it and what is
        accepted.
    """
    check_source(spec, network)
    settings = network or NetworkSettings()
    if spec.startswith("dicom://"):
        return DimseSource(_peer(spec, settings))
    if spec.startswith(("http://", "https://")):
        return DicomwebSource(spec, settings.timeout, settings.retries)
    return FolderSource(Path(spec).expanduser(), engine)
