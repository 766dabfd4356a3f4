"""The streaming multipart reader behind WADO-RS: any chunking, truncation caught."""

from __future__ import annotations

import pytest

from exporter.errors import SourceError
from exporter.sources.dicomweb import _boundary, _stream_parts

MESSAGE = (
    b"--BND\r\nContent-Type: application/dicom\r\n\r\nAAAA\r\n"
    b"--BND\r\nContent-Type: application/dicom\r\n\r\nBB\r\nB\r\n--BND--\r\n"
)


@pytest.mark.parametrize("size", range(1, len(MESSAGE) + 1))
def test_parts_whatever_the_chunk_size(size: int) -> None:
    """Every chunking of the answer gives the same two bodies, line breaks kept."""
    chunks = [MESSAGE[i : i + size] for i in range(0, len(MESSAGE), size)]
    assert list(_stream_parts(chunks, b"BND")) == [b"AAAA", b"BB\r\nB"]


def test_an_answer_cut_inside_an_instance_is_an_error() -> None:
    """A connection that drops mid-instance never yields half a file."""
    with pytest.raises(SourceError, match="ended inside an instance"):
        list(_stream_parts([MESSAGE[:40]], b"BND"))


def test_boundary_is_read_from_the_content_type() -> None:
    """Quoted or not; anything but multipart is refused."""
    assert _boundary('multipart/related; type="application/dicom"; boundary="a b"') == (
        b"a b"
    )
    assert _boundary("multipart/related; boundary=xyz") == b"xyz"
    with pytest.raises(SourceError, match="not multipart/related"):
        _boundary("application/json")
