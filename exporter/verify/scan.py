"""Look for noted identifying values everywhere in an export.

Every path; every DICOM element at any depth (file meta, private elements,
sequences, SR trees), element by element so a finding names its place, and
then the raw bytes of the file outside the pixel data (preamble, anything the
parser skipped) in the text encodings DICOM uses; every Parquet column, value
by value; every other file as text. Findings name the file, the place and
the kind of value, never the value.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from exporter.engine.files import safe_component
from exporter.engine.rawfile import raw_identity, read_source
from exporter.policy.gate import burned_in_risk
from exporter.verify.needles import Scoped

# Finds the kinds of noted values in a text.
Look = Callable[[str], Iterable[str]]
# Reads the lines of text in an 8-bit RGB image (OCR).
ReadText = Callable[[Any], list[str]]

logger = logging.getLogger(__name__)

# Pixel data is read by OCR, not as text: its bytes are noise to a word match.
_PIXELS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_ENCODINGS = ("utf-8", "latin-1", "utf-16-le")


@dataclass(frozen=True)
class Finding:
    """An identifying value found: where, and what kind (never the value)."""

    file: str  # relative to the export folder
    place: str  # element path, column and row, "path", "bytes", or "text"
    kind: str

    def __str__(self) -> str:
        return f"{self.file}: {self.place}: {self.kind}"


class _Memo:
    """The kinds found in short texts, remembered: a series repeats its header.

    Element values recur from file to file (the same patient, study, series,
    equipment), so each distinct (patient, value) is looked up once. Long
    texts (a whole header read as bytes) are unique and not remembered.
    """

    LONGEST = 256  # characters of a text worth remembering
    LIMIT = 200_000  # entries before the memo starts again

    def __init__(self, needles: Scoped) -> None:
        self.needles = needles
        self.seen: dict[tuple[str | None, str], tuple[str, ...]] = {}
        # By patient: (place prefix, tag, VR, encoding, character sets, raw
        # bytes) of an element -> the (place, kind) it was found to hold.
        self.elements: dict[str | None, dict[tuple[object, ...], _Places]] = {}

    def look(self, patient: str | None) -> _Look:
        """The lookup for the files of ``patient`` (None: no patient folder)."""
        elements = self.elements.setdefault(patient, {})
        if len(elements) >= self.LIMIT:
            elements.clear()
        return _Look(partial(self.find, patient), elements)

    def find(self, patient: str | None, text: str) -> tuple[str, ...]:
        if len(text) > self.LONGEST:
            return tuple(self.needles.find(text, patient=patient))
        key = (patient, text)
        kinds = self.seen.get(key)
        if kinds is None:
            if len(self.seen) >= self.LIMIT:
                self.seen.clear()
            kinds = self.seen[key] = tuple(self.needles.find(text, patient=patient))
        return kinds


_Places = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class _Look:
    """Finds the kinds in a text; remembers what raw elements held."""

    find: Callable[[str], Iterable[str]]
    elements: dict[tuple[object, ...], _Places]

    def __call__(self, text: str) -> Iterable[str]:
        return self.find(text)


@dataclass
class _Scan:
    """What every file's scan needs: set once per process."""

    folders: dict[str, str]
    cleaned: set[str]
    memo: _Memo
    read_pixels: ReadText | None


_SCAN: _Scan | None = None  # a pool process's copy, set by its initializer
# Files a pool process scans per request; fewer files are scanned here.
_CHUNK = 32


def _start_scanning(scan: _Scan) -> None:
    global _SCAN
    _SCAN = scan


def _scan_chunk(chunk: list[tuple[Path, str, int]]) -> list[list[Finding]]:
    assert _SCAN is not None
    return [
        _scan_path(path, relative, number, _SCAN) for path, relative, number in chunk
    ]


def scan_export(
    root: Path,
    needles: Scoped,
    read_pixels: ReadText | None = None,
    cache: dict[str, Any] | None = None,
    workers: int = 1,
) -> list[Finding]:
    """Every finding in the export folder ``root``, in path order.

    A patient's own needles (dates) are looked for in the files under
    ``dicom/<patient>/`` and in the catalog rows of that patient. With
    ``read_pixels`` (an OCR reader), the pixel data of the images that may
    carry burned-in text, or whose text the export cleaned, is read too.

    ``cache`` (updated in place) remembers each file's findings under its
    size, modification time and inode: a file unchanged since, checked with
    the same needles, is not read again. The caller keys the cache by
    :meth:`Scoped.digest` and the reader.

    ``workers`` processes share the files when there are more than a few
    chunks of them; the findings are the same, in the same order.
    """
    scan = _Scan(
        folders={safe_component(p): p for p in needles.by_patient},
        cleaned=_cleaned_images(root),
        memo=_Memo(needles),
        read_pixels=read_pixels,
    )
    known = cache if cache is not None else {}
    seen: dict[str, Any] = {}
    todo: list[tuple[Path, str, int]] = []
    for number, path in enumerate(sorted(p for p in root.rglob("*") if p.is_file())):
        relative = path.relative_to(root).as_posix()
        info = path.stat()
        key = [info.st_size, info.st_mtime_ns, info.st_ino]
        entry = known.get(relative)
        if entry is None or entry["key"] != key:
            todo.append((path, relative, number))
            entry = {"key": key, "findings": None}
        seen[relative] = entry
    for (_, relative, _), found in zip(
        todo, _scan_all(todo, scan, workers), strict=True
    ):
        seen[relative]["findings"] = [[f.file, f.place, f.kind] for f in found]
    if cache is not None:
        cache.clear()
        cache.update(seen)
    return [Finding(*row) for entry in seen.values() for row in entry["findings"]]


def _scan_all(
    todo: list[tuple[Path, str, int]], scan: _Scan, workers: int
) -> Iterator[list[Finding]]:
    """The findings of each file of ``todo``, in order, on ``workers`` processes."""
    chunks = [todo[i : i + _CHUNK] for i in range(0, len(todo), _CHUNK)]
    if workers <= 1 or len(chunks) < 2 * workers:
        for path, relative, number in todo:
            yield _scan_path(path, relative, number, scan)
        return
    with ProcessPoolExecutor(
        max_workers=workers, initializer=_start_scanning, initargs=(scan,)
    ) as pool:
        for found in pool.map(_scan_chunk, chunks):
            yield from found


def _scan_path(path: Path, relative: str, number: int, scan: _Scan) -> list[Finding]:
    """The findings of one file of the export."""
    parts = relative.split("/")
    folders, needles, read_pixels = scan.folders, scan.memo.needles, scan.read_pixels
    patient = folders.get(parts[1]) if parts[0] == "dicom" and len(parts) > 2 else None
    look = scan.memo.look(patient)
    findings: list[Finding] = []
    name = relative
    in_path = _unique(look(relative))
    if in_path:
        # The path itself would show the value: name the file by number.
        name = f"[file {number + 1}, path withheld]"
        findings += (Finding(name, "path", kind) for kind in in_path)
    # OCR for the images the export cleaned, and those that may carry text.
    ocr = _Ocr(read_pixels, relative in scan.cleaned) if read_pixels else None
    try:
        findings += _scan_file(path, name, look, needles, ocr)
    except Exception as exc:  # an unreadable file is itself a finding
        logger.debug("cannot scan %s", name, exc_info=True)
        findings.append(Finding(name, "file", f"unreadable ({type(exc).__name__})"))
    return findings


@dataclass(frozen=True)
class _Ocr:
    read: ReadText
    always: bool  # the export cleaned this image's pixels: read them whatever


def _scan_file(
    path: Path, name: str, look: _Look, needles: Scoped, ocr: _Ocr | None
) -> list[Finding]:
    with open(path, "rb") as handle:
        head = handle.read(132)
    if path.suffix == ".dcm" or head[128:132] == b"DICM":
        return list(_scan_dicom(path, name, look, ocr))
    data = path.read_bytes()
    if path.suffix == ".parquet":
        return list(_scan_parquet(data, name, needles))
    return [Finding(name, "text", k) for k in _in_bytes(data, look)]


def _scan_dicom(
    path: Path, name: str, look: _Look, ocr: _Ocr | None
) -> Iterator[Finding]:
    source = read_source(str(path))  # the pixel data kept apart when it is last
    ds = source.dataset
    # The raw bytes before the pixel data: preamble, and anything not parsed.
    end = len(source.data)
    if source.pixel_element is not None:
        end -= len(source.pixel_element)
    elif "PixelData" in ds:
        end = source.data.rfind(b"\xe0\x7f\x10\x00")  # big endian: whole header
    in_bytes = _in_bytes(source.data[: max(end, 0)], look)
    # Every element is read even when the raw bytes showed nothing: a value's
    # last letter can run into the next element's tag bytes ("Smith" + b"T\x00"
    # of (0054,xxxx) reads as "smitht"), which hides it from the byte scan.
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from _scan_dataset(meta, name, "", look)
    yield from _scan_dataset(ds, name, "", look)
    for kind in in_bytes:
        yield Finding(name, "bytes", kind)
    has_pixels = source.pixel_element is not None or "PixelData" in ds
    if ocr is not None and has_pixels and (ocr.always or burned_in_risk(ds)):
        yield from _read_pixels(source.data, name, look, ocr.read)


def _read_pixels(
    data: bytes, name: str, look: Look, ocr: ReadText
) -> Iterator[Finding]:
    """OCR every frame; what it reads is looked through like any text."""
    import pydicom

    from exporter.pixels.clean import Undecodable, decode

    try:
        frames, _, view = decode(pydicom.dcmread(io.BytesIO(data), force=True))
    except Undecodable as exc:
        yield Finding(name, "pixel data", f"not read ({exc})")
        return
    for index, frame in enumerate(frames):
        text = "\n".join(ocr(view(frame)))
        for kind in _unique(look(text)):
            yield Finding(name, f"pixel data, frame {index + 1}", kind)


def _cleaned_images(root: Path) -> set[str]:
    """Export-relative paths of the images whose pixels the export cleaned."""
    import pyarrow.parquet as pq

    catalog = root / "catalog" / "instances.parquet"
    if not catalog.is_file():
        return set()
    table = pq.read_table(catalog, columns=["file_path", "pixel_check"]).to_pylist()
    return {
        r["file_path"] for r in table if r["pixel_check"] not in ("copied", "sampled")
    }


def _scan_dataset(
    ds: Dataset, name: str, prefix: str, look: _Look
) -> Iterator[Finding]:
    remembered = look.elements
    for raw in ds.elements():
        identity = raw_identity(ds, raw)
        if identity is None:
            yield from _scan_element(ds[raw.tag], name, prefix, look)
            continue
        # A series repeats its header: an element seen with the same bytes
        # (and encoding, at the same place) is not decoded and read again.
        key = (prefix, *identity)
        places = remembered.get(key)
        if places is None:
            found = _scan_element(ds[raw.tag], name, prefix, look)
            places = remembered[key] = tuple((f.place, f.kind) for f in found)
        yield from (Finding(name, place, kind) for place, kind in places)


def _scan_element(
    elem: DataElement, name: str, prefix: str, look: _Look
) -> Iterator[Finding]:
    tag = int(elem.tag)
    place = f"{prefix}({tag >> 16:04X},{tag & 0xFFFF:04X})"
    if tag in _PIXELS:
        return
    value = elem.value
    if isinstance(value, Sequence):
        for index, item in enumerate(value):
            yield from _scan_dataset(item, name, f"{place}[{index}].", look)
        return
    if isinstance(value, bytes | bytearray | memoryview):
        kinds = _in_bytes(bytes(value), look)
    else:
        kinds = _unique(look(str(value)))
    for kind in kinds:
        yield Finding(name, place, kind)


def _scan_parquet(data: bytes, name: str, needles: Scoped) -> Iterator[Finding]:
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(data))
    metadata = table.schema.metadata or {}
    for key, value in metadata.items():
        for kind in _in_bytes(key + b" " + value, needles.find):
            yield Finding(name, "metadata", kind)
    patients = (
        table.column("patient_pseudonym").to_pylist()
        if "patient_pseudonym" in table.column_names
        else [None] * table.num_rows
    )
    for column in table.column_names:
        for row, value in enumerate(table.column(column).to_pylist()):
            if value is None:
                continue
            for kind in _unique(needles.find(str(value), patient=patients[row])):
                yield Finding(name, f"column {column}, row {row}", kind)


def _in_bytes(data: bytes, look: Look) -> list[str]:
    """Kinds found in raw bytes read in each text encoding DICOM files carry."""
    kinds: list[str] = []
    for encoding in _ENCODINGS:
        kinds += look(data.decode(encoding, errors="replace"))
    return _unique(kinds)


def _unique(kinds: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(kinds))
