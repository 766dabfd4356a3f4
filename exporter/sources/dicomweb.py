"""A DICOMweb server: QIDO-RS to resolve rows and list instances, WADO-RS to fetch.

dicomweb-client does the HTTP. Credentials never come from the command line:
``EXPORTER_DICOMWEB_TOKEN`` (a bearer token), or ``EXPORTER_DICOMWEB_USER`` and
``EXPORTER_DICOMWEB_PASSWORD`` (HTTP basic), or else the user's ``~/.netrc``,
which requests reads by itself. A URL with a user or password in it is refused.

Studies are fetched as stored (``transfer-syntax=*``), streamed one instance
at a time into the spool; the raw elements dicomweb-client parses lazily are
written back unchanged.
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pydicom
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
from exporter.sources.spool import Spool, unlisted

logger = logging.getLogger(__name__)

_STUDY_FIELDS = ("StudyDate", "PatientID", "ModalitiesInStudy")
_AS_STORED = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_PAGE = 1000  # QIDO-RS answers asked for per request in a search by hand


class DicomwebSource:
    """Studies on a DICOMweb server (QIDO-RS, WADO-RS)."""

    def __init__(self, url: str, timeout: float = 30.0, retries: int = 2) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"source {url!r} is not an http(s) DICOMweb URL")
        if parts.username or parts.password:
            raise SourceError(
                "put DICOMweb credentials in EXPORTER_DICOMWEB_USER and "
                "EXPORTER_DICOMWEB_PASSWORD (or a token, or ~/.netrc), not in the URL"
            )
        self.url = url.rstrip("/")
        self.label = f"{parts.hostname}:{parts.port or ''}{parts.path}"
        self.name = f"dicomweb://{parts.hostname}{parts.path}"
        self.timeout = timeout
        self.retries = retries
        self._client: Any = None
        self._session: Any = None

    def find(self, selection: Selection) -> list[StudyRef]:
        """The studies one row selects: its key searched, then checked exactly.

        Servers differ in how they treat ``*``, ``?`` and ``^`` in values
        (some match them as wildcards, some do not decode them): what comes
        back is kept only when the key is equal, and the date and modality
        are checked here too.
        """
        key, value = query_key(selection)
        filters: dict[str, Any] = {}
        if selection.date_from or selection.date_to:
            low = selection.date_from.strftime("%Y%m%d") if selection.date_from else ""
            high = selection.date_to.strftime("%Y%m%d") if selection.date_to else ""
            filters["StudyDate"] = f"{low}-{high}"
        fields = [*_STUDY_FIELDS, "NumberOfStudyRelatedInstances", key]
        sent = query_value(value)
        if sent.endswith("*"):
            answers = self._wildcard_search(key, sent, filters, fields)
        else:
            if sent:
                filters[key] = sent
            with self._calls("search for studies") as client:
                answers = client.search_for_studies(
                    search_filters=filters, fields=fields, get_remaining=True
                )
        found = []
        for answer in answers:
            study = Dataset.from_json(answer)
            if not same_key(study.get(key), value):
                continue
            uid = str(study.get("StudyInstanceUID", "") or "")
            modalities = upper_values(study.get("ModalitiesInStudy"))
            date = str(study.get("StudyDate", "") or "") or None
            if not uid or not selection.matches_study(date, modalities):
                continue
            number = str(study.get("NumberOfStudyRelatedInstances", "") or "")
            count = int(number) if number.isdigit() else len(self.instances(uid))
            found.append(StudyRef(uid, str(study.get("PatientID", "") or ""), count))
        return sorted(set(found), key=lambda ref: ref.study_uid)

    def _wildcard_search(
        self, key: str, pattern: str, filters: dict[str, Any], fields: list[str]
    ) -> list[dict[str, Any]]:
        """QIDO-RS for studies whose ``key`` matches ``pattern`` (``PREFIX*``).

        dicomweb-client percent-encodes the ``*``, and some servers (Orthanc
        1.10) do not decode query values, so a wildcard sent that way matches
        nothing. The prefix is plain (:func:`query_value`), so the query is
        built here with the ``*`` as written; pages of ``_PAGE`` answers.
        """
        query = urlencode({**filters, "includefield": ",".join(fields), "limit": _PAGE})
        answers: list[dict[str, Any]] = []
        with self._calls("search for studies"):  # connected: self._session is set
            while True:
                url = f"{self.url}/studies?{key}={pattern}&{query}"
                response = self._session.get(
                    f"{url}&offset={len(answers)}",
                    headers={"Accept": "application/dicom+json"},
                    timeout=self.timeout,
                )
                response.raise_for_status()
                page = response.json() if response.content else []
                answers += page
                if len(page) < _PAGE:
                    return answers

    def instances(self, study_uid: str) -> list[InstanceRef]:
        """The study's instances, as QIDO-RS lists them, by SOPInstanceUID."""
        return [InstanceRef(item=sop, sop_uid=sop) for sop in self._listing(study_uid)]

    def retrieve(self, study_uid: str, spool: Path) -> Retrieved:
        """Fetch the study into ``spool`` as stored, series by series.

        A series comes in one WADO-RS request (Orthanc answers a request in
        about 50 ms, so a request per instance would cost that per instance),
        read as a stream: one instance in memory at a time. A retry asks for
        each instance still missing on its own. The bytes are written as the
        server sent them (files without a preamble included).
        """
        try:
            listing = self._listing(study_uid)
        except SourceError as exc:
            return unlisted(study_uid, exc)
        store = Spool(spool)
        error = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(2 ** (attempt - 1), 30))
            error = None
            wanted = {s: v for s, v in listing.items() if s not in store.received}
            try:
                if attempt == 0:
                    for series in sorted(set(wanted.values())):
                        path = f"studies/{study_uid}/series/{series}"
                        for data in self._parts(path):
                            store.write(_sop_of(data), data)
                else:
                    for sop, series in wanted.items():
                        path = f"studies/{study_uid}/series/{series}/instances/{sop}"
                        for data in self._parts(path):
                            store.write(sop, data)
            except SourceError as exc:
                error = str(exc)
                logger.warning("retrieval from %s failed: %s", self.label, exc)
            if listing.keys() <= store.received.keys():
                break
        return store.result(listing, error)

    def _listing(self, study_uid: str) -> dict[str, str]:
        """SOP Instance UID -> Series Instance UID of every instance of the study."""
        with self._calls("search for instances") as client:
            answers = client.search_for_instances(
                study_instance_uid=study_uid, get_remaining=True
            )
        found = {}
        for answer in answers:
            ds = Dataset.from_json(answer)
            sop = str(ds.get("SOPInstanceUID", "") or "")
            series = str(ds.get("SeriesInstanceUID", "") or "")
            if sop and series:
                found[sop] = series
        return dict(sorted(found.items()))

    def _parts(self, path: str) -> Iterator[bytes]:
        """The instances of a WADO-RS answer, as stored, one at a time."""
        with self._calls("retrieve instances"):
            response = self._session.get(
                f"{self.url}/{path}",
                headers={"Accept": _AS_STORED},
                timeout=self.timeout,
                stream=True,
            )
            with response:
                response.raise_for_status()
                boundary = _boundary(response.headers.get("Content-Type", ""))
                yield from _stream_parts(response.iter_content(1 << 20), boundary)

    def scan(self, progress: Callable[[int], None] | None = None) -> ScanReport:
        """Nothing to index: the server is asked per manifest row."""
        return ScanReport(0, 0, 0, {})

    def skipped(self) -> list[tuple[str, str]]:
        """Nothing is skipped before retrieval; what fails is an outcome."""
        return []

    @contextmanager
    def _calls(self, what: str) -> Iterator[Any]:
        """The client, with HTTP and connection errors made into SourceError."""
        import requests

        try:
            yield self._connect()
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            hint = {
                401: "; check EXPORTER_DICOMWEB_USER/PASSWORD or the token",
                403: "; the credentials may not read this server",
                404: "; check the DICOMweb root in the URL",
            }.get(code, "")
            raise SourceError(
                f"the DICOMweb server {self.label} answered {code} to a {what}{hint}"
            ) from None
        except requests.RequestException as exc:
            raise SourceError(
                f"cannot reach the DICOMweb server {self.label} to {what} "
                f"({type(exc).__name__}); check the URL, or run again to retry"
            ) from None

    def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            import requests
            from dicomweb_client.api import DICOMwebClient
        except ImportError as exc:
            raise SourceError(
                "a DICOMweb source needs the pacs extra: pip install 'exporter[pacs]'"
            ) from exc
        session = requests.Session()
        token = os.environ.get("EXPORTER_DICOMWEB_TOKEN")
        user = os.environ.get("EXPORTER_DICOMWEB_USER")
        if token:
            session.headers["Authorization"] = f"Bearer {token}"
        elif user:
            session.auth = (user, os.environ.get("EXPORTER_DICOMWEB_PASSWORD", ""))
        # dicomweb-client logs every request URL at INFO; URLs hold UIDs.
        logging.getLogger("dicomweb_client").setLevel(logging.WARNING)
        self._session = session  # also for WADO-RS, read here as raw bytes
        self._client = DICOMwebClient(self.url, session=session, timeout=self.timeout)
        return self._client


def _boundary(content_type: str) -> bytes:
    """The boundary of a multipart/related answer (RFC 2046)."""
    params = dict(
        p.strip().split("=", 1) for p in content_type.split(";")[1:] if "=" in p
    )
    boundary = params.get("boundary", "").strip('"')
    if not content_type.lower().startswith("multipart/") or not boundary:
        raise SourceError("a DICOMweb answer was not multipart/related")
    return boundary.encode()


def _stream_parts(chunks: Iterable[bytes], boundary: bytes) -> Iterator[bytes]:
    """The bodies of a multipart message read in chunks, each as soon as it ends."""
    delimiter = b"\r\n--" + boundary
    buffer = bytearray(b"\r\n")  # the first delimiter has no line break before it
    start = -1  # where the current part's headers begin
    searched = 0
    for chunk in chunks:
        buffer += chunk
        while True:
            found = buffer.find(delimiter, searched)
            if found < 0:
                searched = max(0, len(buffer) - len(delimiter))
                break
            if start >= 0:
                part = bytes(buffer[start:found])
                yield part.partition(b"\r\n\r\n")[2]
            del buffer[: found + len(delimiter)]
            searched = 0
            if buffer[:2] == b"--":
                return  # the close delimiter
            start = 0
    if start >= 0 and not buffer.startswith(b"--"):
        raise SourceError("a DICOMweb answer ended inside an instance")


def _sop_of(data: bytes) -> str:
    """The SOP Instance UID of one received file."""
    ds = pydicom.dcmread(
        io.BytesIO(data),
        stop_before_pixels=True,
        force=True,
        specific_tags=["SOPInstanceUID"],
    )
    return str(ds.get("SOPInstanceUID", "") or "")
