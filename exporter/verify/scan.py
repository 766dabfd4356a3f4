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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from exporter.engine.files import safe_component
from exporter.engine.rawfile import read_source
from exporter.verify.needles import Scoped

# Finds the kinds of noted values in a text.
Look = Callable[[str], Iterable[str]]

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


def scan_export(root: Path, needles: Scoped) -> list[Finding]:
    """Every finding in the export folder ``root``, in path order.

    A patient's own needles (dates) are looked for in the files under
    ``dicom/<patient>/`` and in the catalog rows of that patient.
    """
    folders = {safe_component(p): p for p in needles.by_patient}
    findings: list[Finding] = []
    for number, path in enumerate(sorted(p for p in root.rglob("*") if p.is_file())):
        name = path.relative_to(root).as_posix()
        parts = name.split("/")
        patient = (
            folders.get(parts[1]) if parts[0] == "dicom" and len(parts) > 2 else None
        )
        look = partial(needles.find, patient=patient)
        in_path = _unique(look(name))
        if in_path:
            # The path itself would show the value: name the file by number.
            name = f"[file {number + 1}, path withheld]"
            findings += (Finding(name, "path", kind) for kind in in_path)
        try:
            findings += _scan_file(path, name, look, needles)
        except Exception as exc:  # an unreadable file is itself a finding
            logger.debug("cannot scan %s", name, exc_info=True)
            findings.append(Finding(name, "file", f"unreadable ({type(exc).__name__})"))
    return findings


def _scan_file(path: Path, name: str, look: Look, needles: Scoped) -> list[Finding]:
    with open(path, "rb") as handle:
        head = handle.read(132)
    if path.suffix == ".dcm" or head[128:132] == b"DICM":
        return list(_scan_dicom(path, name, look))
    data = path.read_bytes()
    if path.suffix == ".parquet":
        return list(_scan_parquet(data, name, needles))
    return [Finding(name, "text", k) for k in _in_bytes(data, look)]


def _scan_dicom(path: Path, name: str, look: Look) -> Iterator[Finding]:
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


def _scan_dataset(ds: Dataset, name: str, prefix: str, look: Look) -> Iterator[Finding]:
    for elem in ds:
        yield from _scan_element(elem, name, prefix, look)


def _scan_element(
    elem: DataElement, name: str, prefix: str, look: Look
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
