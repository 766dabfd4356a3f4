"""Fetch a study from a PACS into the spool: C-GET, or C-MOVE to our own SCP.

Each storage SOP class is offered once per transfer syntax, one syntax per
presentation context: a PACS then sends each instance in the syntax it holds
it in, instead of transcoding it to whichever syntax one mixed context lists
first. An association holds at most 128 contexts, so a study with many SOP
classes is fetched over several associations, each for a group of classes
(the PACS reports the instances of the other classes as failed sub-operations
there, which is expected). Files are written as the PACS sent them, without
decoding, each atomically (``exporter.sources.spool``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from exporter.errors import SourceError
from exporter.sources.dimse import Peer, _nodelay, associate
from exporter.sources.spool import Spool

logger = logging.getLogger(__name__)

STUDY_ROOT_GET = "1.2.840.10008.5.1.4.1.2.2.3"
STUDY_ROOT_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"

SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    JPEG2000Lossless,
    JPEG2000,
    HTJ2KLossless,
    HTJ2K,
    RLELossless,
)
# One context for the retrieve service itself; the rest for storage.
_PER_ASSOCIATION = (128 - 1) // len(SYNTAXES)

# Offered when the PACS does not say which SOP classes a study holds.
COMMON_CLASSES = (
    "1.2.840.10008.5.1.4.1.1.2",  # CT
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT
    "1.2.840.10008.5.1.4.1.1.4",  # MR
    "1.2.840.10008.5.1.4.1.1.4.1",  # Enhanced MR
    "1.2.840.10008.5.1.4.1.1.6.1",  # US
    "1.2.840.10008.5.1.4.1.1.3.1",  # US multi-frame
    "1.2.840.10008.5.1.4.1.1.7",  # Secondary capture
    "1.2.840.10008.5.1.4.1.1.7.4",  # Multi-frame true colour SC
    "1.2.840.10008.5.1.4.1.1.1",  # CR
    "1.2.840.10008.5.1.4.1.1.1.1",  # DX for presentation
    "1.2.840.10008.5.1.4.1.1.1.2",  # MG for presentation
    "1.2.840.10008.5.1.4.1.1.128",  # PET
    "1.2.840.10008.5.1.4.1.1.20",  # NM
    "1.2.840.10008.5.1.4.1.1.12.1",  # XA
    "1.2.840.10008.5.1.4.1.1.12.2",  # RF
    "1.2.840.10008.5.1.4.1.1.88.11",  # Basic text SR
    "1.2.840.10008.5.1.4.1.1.88.22",  # Enhanced SR
    "1.2.840.10008.5.1.4.1.1.88.33",  # Comprehensive SR
    "1.2.840.10008.5.1.4.1.1.104.1",  # Encapsulated PDF
    "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale softcopy presentation state
    "1.2.840.10008.5.1.4.1.1.481.2",  # RT dose
    "1.2.840.10008.5.1.4.1.1.481.3",  # RT structure set
    "1.2.840.10008.5.1.4.1.1.88.59",  # Key object selection
)


def fetch(
    peer: Peer, study_uid: str, classes: Iterable[str], expected: set[str], spool: Spool
) -> str | None:
    """Retrieve a study into ``spool``, with retries; the last error, if any.

    A retrieval that fails, or leaves expected instances out, is tried again
    ``peer.retries`` times, waiting 1, 2, 4... seconds between attempts.
    """
    error = None
    for attempt in range(peer.retries + 1):
        if attempt:
            time.sleep(min(2 ** (attempt - 1), 30))
        try:
            if peer.move:
                _move(peer, study_uid, spool)
            else:
                _get(peer, study_uid, sorted(set(classes)) or COMMON_CLASSES, spool)
            error = None
        except SourceError as exc:
            error = str(exc)
            logger.warning("retrieval from %s failed: %s", peer.label, exc)
        if error is None and expected <= spool.received.keys():
            return None
    return error


def _groups(classes: Iterable[str]) -> Iterator[list[str]]:
    ordered = list(classes)
    for start in range(0, len(ordered), _PER_ASSOCIATION):
        yield ordered[start : start + _PER_ASSOCIATION]


def _study_query(study_uid: str) -> Dataset:
    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID = study_uid
    return query


def _get(peer: Peer, study_uid: str, classes: Iterable[str], spool: Spool) -> None:
    """C-GET the study: the PACS sends it back over our own association."""
    from pynetdicom import build_role, evt

    groups = list(_groups(classes))
    for group in groups:
        contexts: list[tuple[str, list[str] | None]] = [(STUDY_ROOT_GET, None)]
        contexts += [
            (sop_class, [syntax]) for sop_class in group for syntax in SYNTAXES
        ]
        roles = tuple(build_role(sop_class, scp_role=True) for sop_class in group)
        handlers = ((evt.EVT_C_STORE, spool.store),)
        with associate(peer, contexts, roles, handlers) as assoc:
            responses = assoc.send_c_get(_study_query(study_uid), STUDY_ROOT_GET)
            # With several groups, each association fails the other groups'
            # instances on purpose: only a single group's warning is a failure.
            _check(peer, assoc, responses, "C-GET", warnings_fail=len(groups) == 1)


def _move(peer: Peer, study_uid: str, spool: Spool) -> None:
    """C-MOVE the study to our own storage SCP, started for the transfer."""
    from pynetdicom import (
        AE,
        ALL_TRANSFER_SYNTAXES,
        AllStoragePresentationContexts,
        evt,
    )

    scp = AE(ae_title=peer.calling_aet)
    scp.network_timeout = scp.acse_timeout = scp.dimse_timeout = peer.timeout
    for context in AllStoragePresentationContexts:
        if context.abstract_syntax is not None:
            scp.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    try:
        server = scp.start_server(
            (peer.store_address, peer.store_port),
            block=False,
            evt_handlers=[
                (evt.EVT_C_STORE, spool.store),
                (evt.EVT_CONN_OPEN, _nodelay),
            ],
        )
    except OSError as exc:
        raise SourceError(
            f"cannot listen on {peer.store_address}:{peer.store_port} for C-MOVE "
            f"({exc.strerror or type(exc).__name__}); choose another --store-port"
        ) from None
    try:
        with associate(peer, [(STUDY_ROOT_MOVE, None)]) as assoc:
            responses = assoc.send_c_move(
                _study_query(study_uid), peer.calling_aet, STUDY_ROOT_MOVE
            )
            _check(peer, assoc, responses, "C-MOVE", warnings_fail=True)
    finally:
        if server is not None:
            server.shutdown()


def _check(
    peer: Peer,
    assoc: Any,
    responses: Iterable[tuple[Any, Any]],
    service: str,
    warnings_fail: bool,
) -> None:
    """Read every response of a C-GET or C-MOVE; raise on a failure status."""
    for status, _ in responses:
        code = getattr(status, "Status", None)
        if code is None:
            raise SourceError(
                f"the PACS {peer.label} stopped answering a {service} (timeout or "
                f"abort); is {peer.calling_aet!r} allowed to retrieve from it?"
            )
        if code in (0xFF00, 0xFF01, 0x0000):
            continue
        if code == 0xB000 and not warnings_fail:
            continue
        failed = int(getattr(status, "NumberOfFailedSuboperations", 0) or 0)
        hint = (
            f"; is {peer.calling_aet!r} known to the PACS as a move destination?"
            if code == 0xA801
            else ""
        )
        raise SourceError(
            f"the PACS {peer.label} ended a {service} with status 0x{code:04X} "
            f"({failed} instances failed){hint}"
        )
