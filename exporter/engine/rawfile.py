"""Read a DICOM file as a parsed header plus its pixel data as raw bytes.

The header is parsed once (elements stay unparsed until a rule needs them);
the Pixel Data element is located and later copied to the output byte for
byte, never decoded. Files where that is not safe (big endian, elements after
the pixel data, float pixel data) are read in full instead.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import pydicom
from pydicom.charset import default_encoding
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import (
    correct_ambiguous_vr_element,
    write_data_element,
    write_dataset,
)

from exporter.policy.apply import LONG_VRS

_PIXEL_TAG_LE = b"\xe0\x7f\x10\x00"
_ITEM = 0xE000FFFE  # (FFFE,E000) read as little-endian uint32 of group, element
_SEQ_END = 0xE0DDFFFE
_LONG_VRS = {vr.encode() for vr in LONG_VRS}


class DamagedFile(ValueError):
    """The file ends before its pixel data does."""


@dataclass
class SourceFile:
    """A parsed header and, when split off, the raw pixel data element."""

    dataset: Dataset
    data: bytes  # the whole file, which raw elements of ``dataset`` point into
    pixel_element: memoryview | None  # tag, header and value, as in the source
    pixel_value_length: int  # bytes of the value (fragments included)
    encapsulated: bool


def _read_dataset(fp: io.BytesIO, **kwargs: object) -> Dataset:
    try:
        return pydicom.dcmread(fp, **kwargs)  # type: ignore[arg-type]
    except InvalidDicomError:
        # No preamble or file meta: accepted when the dataset itself reads.
        fp.seek(0)
        return pydicom.dcmread(fp, force=True, **kwargs)  # type: ignore[arg-type]


def _element_end(data: bytes, start: int, implicit: bool) -> tuple[int, int, bool]:
    """End offset, value length and encapsulation of the element at ``start``."""
    if implicit:
        (length,) = struct.unpack_from("<I", data, start + 4)
        offset = start + 8
    elif data[start + 4 : start + 6] in _LONG_VRS:
        (length,) = struct.unpack_from("<I", data, start + 8)
        offset = start + 12
    else:
        (length,) = struct.unpack_from("<H", data, start + 6)
        offset = start + 8
    if length != 0xFFFFFFFF:
        end = offset + length
        if end > len(data):
            raise DamagedFile(
                f"pixel data truncated ({len(data) - offset} of {length} bytes)"
            )
        return end, length, False
    # Encapsulated: items until the sequence delimiter (PS3.5 A.4).
    cursor = offset
    while True:
        if cursor + 8 > len(data):
            raise DamagedFile("encapsulated pixel data ends without its delimiter")
        tag, item_length = struct.unpack_from("<II", data, cursor)
        cursor += 8
        if tag == _SEQ_END:
            return cursor, cursor - offset, True
        if tag != _ITEM or item_length == 0xFFFFFFFF:
            raise DamagedFile("encapsulated pixel data is malformed")
        cursor += item_length


def raw_identity(ds: Dataset, raw: object) -> tuple[object, ...] | None:
    """What decides the value of the raw element ``raw`` of ``ds``, or None.

    Tag, VR, encoding, the dataset's character sets and the value bytes: two
    elements with the same identity decode to the same value, so what was
    read from one can stand for the other. None for an element already
    decoded (there are no bytes to compare).
    """
    if not isinstance(raw, RawDataElement) or not isinstance(raw.value, bytes):
        return None
    return (
        int(raw.tag),
        raw.VR,
        raw.is_implicit_VR,
        raw.is_little_endian,
        tuple(ds.original_character_set or ()),
        raw.value,
    )


def read_source(path: str) -> SourceFile:
    """Read ``path``; split off the pixel data when it can be copied as bytes.

    Raises
    ------
    DamagedFile
        When the file ends inside its pixel data.
    """
    with open(path, "rb") as handle:
        data = handle.read()
    fp = io.BytesIO(data)
    ds = _read_dataset(fp, stop_before_pixels=True)
    start = fp.tell()
    implicit, little = ds.original_encoding
    if start >= len(data):
        return SourceFile(ds, data, None, 0, False)
    if (
        little is True
        and data[start : start + 4] == _PIXEL_TAG_LE
        and start + 12 <= len(data)
    ):
        end, length, encapsulated = _element_end(data, start, bool(implicit))
        if end == len(data):
            return SourceFile(
                ds, data, memoryview(data)[start:end], length, encapsulated
            )
    # Anything else (big endian, trailing elements, other pixel data types):
    # read it all and let the recipe see every element.
    fp.seek(0)
    return SourceFile(_read_dataset(fp), data, None, 0, False)


def encode_body(ds: Dataset, source: bytes | None) -> bytes:
    """Encode the dataset (no file meta) in its original transfer syntax.

    Elements no rule touched are still the raw bytes read from ``source``:
    they are copied as they were, which gives the bytes pydicom would write
    (a test holds the two equal) at a fraction of the cost. Parsed elements
    are written by pydicom.
    """
    implicit, little = ds.original_encoding
    if (
        source is None
        or little is not True
        or implicit is None
        or ds.original_character_set != ds._character_set
    ):
        return _pydicom_body(ds)
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, True
    encodings = ds.get("SpecificCharacterSet", default_encoding)
    view = memoryview(source)
    for tag in sorted(ds.keys()):
        if tag.element == 0 and tag.group > 6:
            continue  # retired group lengths are not written (PS3.5 7.2)
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement) and elem.value_tell == -1:
            # Cleaned once for the series and kept as bytes (policy.apply).
            fp.write(_element_header(elem, bool(implicit)) + elem.value)
            continue
        if isinstance(elem, RawDataElement) and elem.length != 0xFFFFFFFF:
            header = 8 if implicit or elem.VR.encode() not in _LONG_VRS else 12
            start = elem.value_tell - header
            tag_bytes = struct.pack("<HH", tag.group, tag.element)
            if start >= 0 and view[start : start + 4] == tag_bytes:
                fp.write(view[start : elem.value_tell + elem.length])
                continue
        element = ds[tag]
        if not implicit and element.VR and " or " in element.VR:
            correct_ambiguous_vr_element(element, ds, True)
        write_data_element(fp, element, encodings)
    return fp.getvalue()


def _element_header(elem: RawDataElement, implicit: bool) -> bytes:
    """Tag, VR and length of an element, little endian (PS3.5 7.1)."""
    tag = struct.pack("<HH", elem.tag.group, elem.tag.element)
    if implicit:
        return tag + struct.pack("<I", elem.length)
    vr = (elem.VR or "UN").encode()
    if vr in _LONG_VRS:
        return tag + vr + b"\x00\x00" + struct.pack("<I", elem.length)
    return tag + vr + struct.pack("<H", elem.length)


def _explicit_le(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    """One explicit VR little endian element (PS3.5 7.1.2)."""
    tag = struct.pack("<HH", group, element)
    if vr in _LONG_VRS:
        return tag + vr + b"\x00\x00" + struct.pack("<I", len(value)) + value
    return tag + vr + struct.pack("<H", len(value)) + value


def _padded(text: str, pad: bytes) -> bytes:
    data = text.encode("ascii")
    return data + pad if len(data) % 2 else data


def encode_file_meta(
    sop_class: str, sop_instance: str, syntax: str, implementation: tuple[str, str]
) -> bytes:
    """Preamble, prefix and File Meta Information (PS3.10 7.1), always the same
    bytes for the same values: those pydicom's ``write_file_meta_info`` writes."""
    uid = b"\x00"
    body = b"".join(
        [
            _explicit_le(0x0002, 0x0001, b"OB", b"\x00\x01"),
            _explicit_le(0x0002, 0x0002, b"UI", _padded(sop_class, uid)),
            _explicit_le(0x0002, 0x0003, b"UI", _padded(sop_instance, uid)),
            _explicit_le(0x0002, 0x0010, b"UI", _padded(syntax, uid)),
            _explicit_le(0x0002, 0x0012, b"UI", _padded(implementation[0], uid)),
            _explicit_le(0x0002, 0x0013, b"SH", _padded(implementation[1], b" ")),
        ]
    )
    length = _explicit_le(0x0002, 0x0000, b"UL", struct.pack("<I", len(body)))
    return b"\x00" * 128 + b"DICM" + length + body


def _pydicom_body(ds: Dataset) -> bytes:
    fp = DicomBytesIO()
    implicit, little = ds.original_encoding
    fp.is_implicit_VR = bool(implicit)
    fp.is_little_endian = little is not False
    write_dataset(fp, ds)
    return fp.getvalue()
