"""A PACS over DICOM networking (DIMSE): C-FIND to resolve, then retrieve.

Rows resolve with C-FIND (Study Root); a study is listed at IMAGE level (the
instances expected) and fetched by ``exporter.sources.dimse_retrieve`` with
C-GET, or C-MOVE to a storage SCP of our own, into the job's spool.

pynetdicom does not set TCP_NODELAY; every association here sets it on its
socket when the connection opens (Nagle's algorithm otherwise holds small
PDUs back, measured at about 100 ms per exchange).
"""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from exporter.cohort import Selection
from exporter.errors import SourceError
from exporter.sources.base import (
    InstanceRef,
    Retrieved,
    ScanReport,
    StudyRef,
    query_key,
    query_value,
    same_key,
    upper_values,
)

logger = logging.getLogger(__name__)

STUDY_ROOT_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
_SPEC = re.compile(
    r"^dicom://(?P<aet>[^@/]{1,16})@(?P<host>[^:/]+):(?P<port>\d{1,5})/?$"
)


@dataclass(frozen=True)
class Peer:
    """Where the PACS listens and who we say we are."""

    called_aet: str
    host: str
    port: int
    calling_aet: str = "EXPORTER"
    timeout: float = 30.0  # seconds, for connecting, each PDU and each DIMSE reply
    move: bool = False  # C-MOVE to our storage SCP instead of C-GET
    store_port: int = 11113  # where our storage SCP listens for C-MOVE
    store_address: str = "0.0.0.0"  # the interface it listens on
    retries: int = 2  # further attempts of a retrieval that failed, with backoff

    @classmethod
    def parse(cls, spec: str, calling_aet: str = "EXPORTER", **settings: Any) -> Peer:
        """``dicom://CALLED_AE@host:port``.

        Raises
        ------
        SourceError
            When ``spec`` has another form.
        """
        match = _SPEC.match(spec)
        if match is None:
            raise SourceError(
                f"source {spec!r} is not dicom://CALLED_AE@host:port "
                "(an AE title is 1-16 characters)"
            )
        return cls(
            match["aet"], match["host"], int(match["port"]), calling_aet, **settings
        )

    @property
    def label(self) -> str:
        """The peer, safe to log (an AE title and an address, no identifier)."""
        return f"{self.called_aet}@{self.host}:{self.port}"


def _nodelay(event: Any) -> None:
    """EVT_CONN_OPEN: send small PDUs at once."""
    sock = getattr(getattr(event.assoc, "dul", None), "socket", None)
    raw = getattr(sock, "socket", None)
    if raw is not None:
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@contextmanager
def associate(
    peer: Peer,
    contexts: list[tuple[str, list[str] | None]],
    roles: tuple[Any, ...] = (),
    handlers: tuple[tuple[Any, Any], ...] = (),
) -> Iterator[Any]:
    """An established association with ``peer``, released on exit.

    ``contexts`` are (abstract syntax, transfer syntaxes or None for the
    default ones); ``roles`` SCP/SCU role selections; ``handlers`` more
    pynetdicom event handlers.

    Raises
    ------
    SourceError
        Naming the peer and what to do: unreachable, or our AE title refused.
    """
    try:
        from pynetdicom import AE, evt
    except ImportError as exc:
        raise SourceError(
            "a dicom:// source needs the pacs extra: pip install 'exporter[pacs]'"
        ) from exc

    ae = AE(ae_title=peer.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = peer.timeout
    ae.connection_timeout = peer.timeout
    for abstract, syntaxes in contexts:
        if syntaxes is None:
            ae.add_requested_context(abstract)
        else:
            ae.add_requested_context(abstract, syntaxes)
    try:
        socket.getaddrinfo(peer.host, peer.port)
    except OSError:
        raise SourceError(
            f"cannot resolve the PACS host of {peer.label}; check the name"
        ) from None
    assoc = ae.associate(
        peer.host,
        peer.port,
        ae_title=peer.called_aet,
        ext_neg=list(roles) or None,
        evt_handlers=[(evt.EVT_CONN_OPEN, _nodelay), *handlers],
    )
    if assoc.is_rejected:
        raise SourceError(
            f"the PACS {peer.label} rejected the association from AE title "
            f"{peer.calling_aet!r}; register {peer.calling_aet!r} (this host, "
            "its port) on the PACS, or pass the AE title it knows with --ae-title"
        )
    if not assoc.is_established:
        raise SourceError(
            f"cannot open an association with {peer.label} (no answer, refused "
            "or aborted); check the host, port and called AE title"
        )
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


@contextmanager
def _finder(peer: Peer) -> Iterator[Callable[[Dataset], list[Dataset]]]:
    """Run C-FIND queries, one after another, on one association."""
    with associate(peer, [(STUDY_ROOT_FIND, None)]) as assoc:
        yield lambda query: _answers(peer, assoc, query)


def _find(peer: Peer, query: Dataset) -> list[Dataset]:
    """The answers to one C-FIND query, on an association of its own."""
    with _finder(peer) as find:
        return find(query)


def _answers(peer: Peer, assoc: Any, query: Dataset) -> list[Dataset]:
    """The identifiers of every pending C-FIND response, Study Root."""
    answers = []
    for status, identifier in assoc.send_c_find(query, STUDY_ROOT_FIND):
        code = getattr(status, "Status", None)
        if code is None and _aborted(assoc):
            # What a PACS does to a calling AE title it does not know.
            raise SourceError(
                f"the PACS {peer.label} aborted a C-FIND from AE title "
                f"{peer.calling_aet!r}; register {peer.calling_aet!r} (this "
                "host, its port) on the PACS, or pass the AE title it knows "
                "with --ae-title"
            )
        if code is None:
            raise SourceError(
                f"the PACS {peer.label} stopped answering a C-FIND within "
                f"{peer.timeout:.0f} s; run again to retry"
            )
        if code in (0xFF00, 0xFF01):
            if identifier is not None:
                answers.append(identifier)
        elif code != 0x0000:
            raise SourceError(
                f"the PACS {peer.label} refused a C-FIND (status 0x{code:04X}); "
                f"is {peer.calling_aet!r} allowed to query it?"
            )
    return answers


def _aborted(assoc: Any, wait: float = 2.0) -> bool:
    """Whether the peer aborted: the flag is set a moment after the reply ends."""
    deadline = time.monotonic() + wait
    while not assoc.is_aborted and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(assoc.is_aborted)


class DimseSource:
    """Studies on a PACS, found with C-FIND (Study Root)."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.name = f"dicom://{peer.called_aet}"

    def find(self, selection: Selection) -> list[StudyRef]:
        """The studies one row selects: its key queried, date and modality checked.

        The date range is sent to the PACS and checked again here (some PACS
        ignore it); the modality is checked here against ModalitiesInStudy,
        or the series when the PACS does not return it. A PACS that does not
        say how many instances a study holds is asked per series and image.
        A key holding a character a PACS may read as a wildcard is sent as a
        wildcard prefix; answers count only when their key equals the row's.
        """
        key, value = query_key(selection)
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = ""
        query.AccessionNumber = ""
        query.PatientID = ""
        setattr(query, key, query_value(value))
        query.StudyDate = _date_range(selection)
        query.ModalitiesInStudy = ""
        query.NumberOfStudyRelatedInstances = ""
        found = []
        for answer in _find(self.peer, query):
            study_uid = str(answer.get("StudyInstanceUID", "") or "")
            if not study_uid or not same_key(answer.get(key), value):
                continue
            modalities = upper_values(answer.get("ModalitiesInStudy"))
            if selection.modality and not modalities:
                with _finder(self.peer) as find:
                    modalities = sorted({s.modality for s in _series(find, study_uid)})
            date = str(answer.get("StudyDate", "") or "") or None
            if not selection.matches_study(date, modalities):
                continue
            count = str(answer.get("NumberOfStudyRelatedInstances", "") or "")
            instances = (
                int(count)
                if count.strip().isdigit()
                else len(self.instances(study_uid))
            )
            found.append(
                StudyRef(study_uid, str(answer.get("PatientID", "") or ""), instances)
            )
        return sorted(set(found), key=lambda ref: ref.study_uid)

    def instances(self, study_uid: str) -> list[InstanceRef]:
        """The study's instances as the PACS lists them, by SOPInstanceUID."""
        return [
            InstanceRef(item=i.sop_uid, sop_uid=i.sop_uid)
            for i in self._listing(study_uid)
        ]

    def retrieve(self, study_uid: str, spool: Path) -> Retrieved:
        """Fetch the study into ``spool``; what did not arrive is listed as missing.

        The instances expected come from an IMAGE-level C-FIND; a PACS that
        cannot be reached, or stops, leaves every instance not received
        missing with the reason (the next run asks again).
        """
        from exporter.sources.dimse_retrieve import fetch
        from exporter.sources.spool import Spool, unlisted

        try:
            listing = self._listing(study_uid)
        except SourceError as exc:
            return unlisted(study_uid, exc)
        expected = {i.sop_uid for i in listing}
        store = Spool(spool)
        classes = [i.sop_class for i in listing if i.sop_class]
        # No class from the PACS for some instance: offer the common ones too.
        if len(classes) < len(listing):
            classes = []
        error = fetch(self.peer, study_uid, classes, expected, store)
        return store.result(expected, error)

    def scan(self, progress: Callable[[int], None] | None = None) -> ScanReport:
        """Nothing to index: the PACS is asked per manifest row."""
        return ScanReport(0, 0, 0, {})

    def skipped(self) -> list[tuple[str, str]]:
        """Nothing is skipped before retrieval; what fails is an outcome."""
        return []

    def _listing(self, study_uid: str) -> list[_Instance]:
        """Every instance of the study: series, SOP instance and class UIDs."""
        found = {}
        with _finder(self.peer) as find:
            for series in _series(find, study_uid):
                query = Dataset()
                query.QueryRetrieveLevel = "IMAGE"
                query.StudyInstanceUID = study_uid
                query.SeriesInstanceUID = series.uid
                query.SOPInstanceUID = ""
                query.SOPClassUID = ""
                for answer in find(query):
                    sop = str(answer.get("SOPInstanceUID", "") or "")
                    if sop:
                        sop_class = str(answer.get("SOPClassUID", "") or "")
                        found[sop] = _Instance(series.uid, sop, sop_class)
        return [found[sop] for sop in sorted(found)]


def _series(find: Callable[[Dataset], list[Dataset]], study_uid: str) -> list[_Series]:
    """A study's series and their modalities (SERIES-level C-FIND)."""
    query = Dataset()
    query.QueryRetrieveLevel = "SERIES"
    query.StudyInstanceUID = study_uid
    query.SeriesInstanceUID = ""
    query.Modality = ""
    return [
        _Series(str(a.SeriesInstanceUID), str(a.get("Modality", "") or "").upper())
        for a in find(query)
        if a.get("SeriesInstanceUID")
    ]


@dataclass(frozen=True)
class _Instance:
    series_uid: str
    sop_uid: str
    sop_class: str  # empty when the PACS does not return it


@dataclass(frozen=True)
class _Series:
    uid: str
    modality: str


def _date_range(selection: Selection) -> str:
    """A DA range matching key (PS3.4 C.2.2.2.5), or empty for any date."""
    if selection.date_from is None and selection.date_to is None:
        return ""
    low = selection.date_from.strftime("%Y%m%d") if selection.date_from else ""
    high = selection.date_to.strftime("%Y%m%d") if selection.date_to else ""
    return f"{low}-{high}"
