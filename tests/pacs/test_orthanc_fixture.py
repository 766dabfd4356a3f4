"""The Orthanc the PACS tests run against: up, authenticated, holding the corpus."""

from __future__ import annotations

import orthanc_server as orthanc
import pytest
import requests

from exporter.synthetic import SyntheticSource


def test_orthanc_holds_the_corpus(
    pacs: orthanc.Orthanc, corpus: SyntheticSource
) -> None:
    """Every study of the corpus is in Orthanc, and DICOMweb answers."""
    studies = pacs.rest("GET", "/studies?expand").json()
    uids = {s["MainDicomTags"]["StudyInstanceUID"] for s in studies}
    assert {s.study_uid for s in corpus.studies} <= uids
    qido = pacs.rest(
        "GET", "/dicom-web/studies", headers={"Accept": "application/dicom+json"}
    )
    assert len(qido.json()) == len(uids)


def test_orthanc_refuses_a_wrong_password(pacs: orthanc.Orthanc) -> None:
    """HTTP authentication is on."""
    response = requests.get(
        f"{pacs.url}/system", auth=("exporter", "wrong"), timeout=10
    )
    assert response.status_code == 401


def test_orthanc_answers_echo_only_on_loopback(pacs: orthanc.Orthanc) -> None:
    """C-ECHO from our AE title over 127.0.0.1 succeeds."""
    pynetdicom = pytest.importorskip("pynetdicom")
    ae = pynetdicom.AE(ae_title=orthanc.OUR_AET)
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", pacs.dicom_port, ae_title=orthanc.PACS_AET)
    assert assoc.is_established
    status = assoc.send_c_echo()
    assoc.release()
    assert status.Status == 0
