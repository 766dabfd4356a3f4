"""C-FIND against a real Orthanc: the same rows resolve as in the folder source."""

from __future__ import annotations

import datetime
from pathlib import Path

import orthanc_server as orthanc
import pytest
from conftest import TRICKY_IDS

pytest.importorskip("pynetdicom", reason="the pacs extra is not installed")

from exporter.cohort import Selection
from exporter.errors import SourceError
from exporter.sources.dicomweb import DicomwebSource
from exporter.sources.dimse import DimseSource, Peer
from exporter.sources.folder import FolderSource
from exporter.state.db import open_database
from exporter.synthetic import SyntheticSource


def _row(**fields: object) -> Selection:
    values: dict[str, object] = dict.fromkeys(
        (
            "patient_id",
            "accession_number",
            "study_instance_uid",
            "date_from",
            "date_to",
            "modality",
            "subject_id",
        )
    )
    values.update(fields, row=2)
    return Selection(**values)  # type: ignore[arg-type]


def _peer(pacs: orthanc.Orthanc, calling: str = orthanc.OUR_AET) -> Peer:
    return Peer.parse(
        f"dicom://{orthanc.PACS_AET}@127.0.0.1:{pacs.dicom_port}", calling
    )


@pytest.fixture(scope="module")
def folder(
    corpus: SyntheticSource, tmp_path_factory: pytest.TempPathFactory
) -> FolderSource:
    engine = open_database(f"sqlite:///{tmp_path_factory.mktemp('idx') / 'state.db'}")
    source = FolderSource(Path(corpus.root), engine)
    source.scan()
    return source


def test_rows_resolve_as_in_the_folder(
    pacs: orthanc.Orthanc, corpus: SyntheticSource, folder: FolderSource
) -> None:
    """By study UID, accession, patient, date range and modality: equal StudyRefs."""
    source = DimseSource(_peer(pacs))
    study = corpus.studies[0]
    day = datetime.date.fromisoformat(
        f"{study.study_date[:4]}-{study.study_date[4:6]}-{study.study_date[6:]}"
    )
    rows = [
        _row(study_instance_uid=study.study_uid),
        _row(accession_number=study.accession),
        _row(patient_id=study.patient.patient_id),
        _row(patient_id=study.patient.patient_id, date_from=day, date_to=day),
        _row(patient_id=study.patient.patient_id, modality="US"),
        _row(patient_id="NO-SUCH-PATIENT"),
    ]
    for row in rows:
        assert source.find(row) == folder.find(row), row
    assert source.find(rows[0])[0].instances == len(study.sop_uids)


def test_instances_are_listed_by_sop_uid(
    pacs: orthanc.Orthanc, corpus: SyntheticSource
) -> None:
    """IMAGE-level C-FIND lists every instance of the study."""
    study = corpus.studies[0]
    refs = DimseSource(_peer(pacs)).instances(study.study_uid)
    assert [r.sop_uid for r in refs] == sorted(set(study.sop_uids))


def test_an_unknown_calling_ae_title_is_named(pacs: orthanc.Orthanc) -> None:
    """Orthanc aborts an AE title it does not know: the error names it."""
    source = DimseSource(_peer(pacs, calling="STRANGER"))
    with pytest.raises(SourceError, match="'STRANGER'"):
        source.find(_row(patient_id="X"))


def test_unreachable_and_malformed_peers() -> None:
    """A closed port, an unknown host, a malformed spec: clear errors."""
    closed = Peer("ORTHANC", "127.0.0.1", orthanc.free_port(), timeout=5)
    with pytest.raises(SourceError, match="cannot open an association"):
        DimseSource(closed).find(_row(patient_id="X"))
    unknown = Peer("ORTHANC", "no-such-host.invalid", 104, timeout=5)
    with pytest.raises(SourceError, match="cannot resolve the PACS host"):
        DimseSource(unknown).find(_row(patient_id="X"))
    with pytest.raises(SourceError, match="dicom://CALLED_AE@host:port"):
        Peer.parse("dicom://host:104")


def test_a_pacs_that_omits_counts_and_classes(
    pacs: orthanc.Orthanc,
    corpus: SyntheticSource,
    folder: FolderSource,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No NumberOfStudyRelatedInstances, no SOPClassUID: counted and fetched anyway."""
    from exporter.sources import dimse

    answers = dimse._answers

    def terse(peer: Peer, assoc: object, query: object) -> list[object]:
        found = answers(peer, assoc, query)  # type: ignore[arg-type]
        for answer in found:
            for keyword in ("NumberOfStudyRelatedInstances", "SOPClassUID"):
                if keyword in answer:
                    delattr(answer, keyword)
        return found  # type: ignore[return-value]

    monkeypatch.setattr(dimse, "_answers", terse)
    source = DimseSource(_peer(pacs))
    study = corpus.studies[0]
    row = _row(study_instance_uid=study.study_uid)
    assert source.find(row) == folder.find(row)
    got = source.retrieve(study.study_uid, tmp_path / "spool")
    assert got.missing == () and len(got.items) == len(study.sop_uids)


@pytest.mark.parametrize("patient_id", TRICKY_IDS)
def test_ids_with_wildcard_and_url_characters_match_exactly(
    pacs: orthanc.Orthanc,
    folder: FolderSource,
    patient_id: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``*``, ``?``, ``^``, ``%`` and spaces: one study each, over every source."""
    monkeypatch.setenv("EXPORTER_DICOMWEB_USER", orthanc.USER)
    monkeypatch.setenv("EXPORTER_DICOMWEB_PASSWORD", orthanc.PASSWORD)
    row = _row(patient_id=patient_id)
    expected = folder.find(row)
    assert [ref.patient_id for ref in expected] == [patient_id]
    assert DimseSource(_peer(pacs)).find(row) == expected
    assert DicomwebSource(pacs.dicomweb).find(row) == expected


def test_a_wildcard_search_reads_every_page(
    pacs: orthanc.Orthanc, folder: FolderSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers asked for a page at a time: none lost between pages."""
    from exporter.sources import dicomweb

    monkeypatch.setattr(dicomweb, "_PAGE", 1)
    monkeypatch.setenv("EXPORTER_DICOMWEB_USER", orthanc.USER)
    monkeypatch.setenv("EXPORTER_DICOMWEB_PASSWORD", orthanc.PASSWORD)
    row = _row(patient_id="mrn^77*1")  # MRN* matches three patients here
    assert DicomwebSource(pacs.dicomweb).find(row) == folder.find(row)
