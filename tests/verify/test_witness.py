"""The identifying values noted from a source instance (exporter.verify.witness)."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from exporter.verify import witness as witness_module
from exporter.verify.witness import witness


def _encoded(name: bytes, charset: str) -> Dataset:
    """A file read back, its PatientName left raw: the bytes ``name``, the
    character set ``charset`` declared."""
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientID = "ID-0042"
    ds.add_new(0x00100010, "PN", name.decode(_codec(charset)))
    ds.OtherPatientIDsSequence = [Dataset()]
    ds.OtherPatientIDsSequence[0].PatientID = "OTHER-77"
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def _codec(charset: str) -> str:
    return {"ISO_IR 100": "latin-1", "ISO_IR 192": "utf-8"}[charset]


def test_the_same_bytes_in_another_character_set_are_decoded_again() -> None:
    """The memo of earlier instances never answers for another character set."""
    witness_module._SEEN.clear()
    # "Ã\x9c" in UTF-8 is the two bytes of "Ü" in UTF-8 read as Latin-1.
    as_latin = witness(_encoded("MÃ\x9cLLER".encode("latin-1"), "ISO_IR 100"))
    as_utf8 = witness(_encoded("MÃ\x9cLLER".encode("latin-1"), "ISO_IR 192"))
    assert ("name", "MÃ\x9cLLER") in as_latin
    assert ("name", "MÜLLER") in as_utf8


def test_remembered_and_fresh_walks_note_the_same() -> None:
    """A warm memo gives what a cold one gives, sequences included."""
    witness_module._SEEN.clear()
    cold = witness(_encoded(b"SMITH^JOHN", "ISO_IR 100"))
    warm = witness(_encoded(b"SMITH^JOHN", "ISO_IR 100"))
    assert cold == warm
    assert {("name", "SMITH^JOHN"), ("patient id", "ID-0042")} <= cold
    assert ("patient id", "OTHER-77") in cold
    assert witness_module._SEEN  # the second walk was answered from it
