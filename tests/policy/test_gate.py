"""Tests for exporter.policy.gate: burned-in text risk and release checks."""

from __future__ import annotations

import pytest
from pydicom.config import IGNORE
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    EncapsulatedPDFStorage,
    MRImageStorage,
    SecondaryCaptureImageStorage,
    UltrasoundImageStorage,
)

from exporter.policy.gate import burned_in_risk, release_problems


def _dataset(**elements: object) -> Dataset:
    """A dataset holding ``elements`` unvalidated, as a file may hold them."""
    ds = Dataset()
    for keyword, value in elements.items():
        tag = tag_for_keyword(keyword)
        ds.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=IGNORE))
    return ds


@pytest.mark.parametrize(
    ("elements", "risk"),
    [
        pytest.param(
            {
                "SOPClassUID": CTImageStorage,
                "Modality": "CT",
                "BurnedInAnnotation": "YES",
            },
            "BurnedInAnnotation is YES",
            id="flag-yes",
        ),
        pytest.param(
            {
                "SOPClassUID": CTImageStorage,
                "Modality": "CT",
                "BurnedInAnnotation": "yes",
            },
            "BurnedInAnnotation is YES",
            id="flag-yes-lowercase",
        ),
        pytest.param(
            {
                "SOPClassUID": UltrasoundImageStorage,
                "Modality": "US",
                "BurnedInAnnotation": "NO",
            },
            "ultrasound: BurnedInAnnotation NO is not trusted",
            id="ultrasound-flag-no",
        ),
        pytest.param(
            {"SOPClassUID": UltrasoundImageStorage, "Modality": "US"},
            "ultrasound without BurnedInAnnotation NO",
            id="ultrasound-no-flag",
        ),
        pytest.param(
            {"SOPClassUID": CTImageStorage, "Modality": "US"},
            "ultrasound without BurnedInAnnotation NO",
            id="ultrasound-modality-only",
        ),
        pytest.param(
            {"SOPClassUID": SecondaryCaptureImageStorage, "Modality": "CT"},
            "secondary capture without BurnedInAnnotation NO",
            id="secondary-capture-no-flag",
        ),
        pytest.param(
            {
                "SOPClassUID": EncapsulatedPDFStorage,
                "Modality": "DOC",
                "EncapsulatedDocument": b"%PDF-1.4\n",
            },
            "encapsulated document",
            id="encapsulated-pdf",
        ),
        pytest.param(
            {
                "SOPClassUID": EncapsulatedPDFStorage,
                "Modality": "DOC",
                "BurnedInAnnotation": "NO",
                "EncapsulatedDocument": b"%PDF-1.4\n",
            },
            "encapsulated document",
            id="encapsulated-pdf-flag-no",
        ),
        pytest.param(
            {"SOPClassUID": EncapsulatedPDFStorage},
            "encapsulated PDF without BurnedInAnnotation NO",
            id="pdf-class-without-document",
        ),
        pytest.param(
            {
                "SOPClassUID": CTImageStorage,
                "Modality": "CT",
                "ImageType": ["DERIVED", "PRIMARY", "AXIAL"],
            },
            "derived or secondary image without BurnedInAnnotation NO",
            id="derived",
        ),
        pytest.param(
            {
                "SOPClassUID": MRImageStorage,
                "Modality": "MR",
                "ImageType": ["ORIGINAL", "SECONDARY"],
            },
            "derived or secondary image without BurnedInAnnotation NO",
            id="secondary",
        ),
        pytest.param(
            {"SOPClassUID": CTImageStorage, "Modality": "CT", "ImageType": "DERIVED"},
            "derived or secondary image without BurnedInAnnotation NO",
            id="derived-single-value",
        ),
        pytest.param(
            {
                "SOPClassUID": CTImageStorage,
                "Modality": "CT",
                "ImageType": ["ORIGINAL", "PRIMARY", "SCREEN SAVE"],
            },
            "screen capture",
            id="screen-save",
        ),
        pytest.param(
            {
                "SOPClassUID": CTImageStorage,
                "Modality": "CT",
                "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
            },
            None,
            id="original-primary-ct",
        ),
        pytest.param(
            {
                "SOPClassUID": CTImageStorage,
                "Modality": "CT",
                "ImageType": ["DERIVED", "SECONDARY"],
                "BurnedInAnnotation": "NO",
            },
            None,
            id="derived-flag-no",
        ),
    ],
)
def test_burned_in_risk(elements: dict[str, object], risk: str | None) -> None:
    """Instances that may carry burned-in text are named with the reason."""
    assert burned_in_risk(_dataset(**elements)) == risk


def _released(**elements: object) -> Dataset:
    """A cleaned image as the recipe and the stamp leave it."""
    ds = _dataset(
        SOPClassUID=CTImageStorage,
        PatientIdentityRemoved="YES",
        Rows=2,
        Columns=2,
        **elements,
    )
    ds.PixelData = b"\x00" * 8
    return ds


class TestReleaseProblems:
    """The last check before release."""

    def test_clean_image_has_no_problem(self) -> None:
        """A stamped image with only public elements may leave."""
        assert release_problems(_released()) == []

    def test_surviving_private_element_is_reported(self) -> None:
        """A private element left by the recipe blocks release."""
        ds = _released()
        ds.private_block(0x0009, "ACME PHI 1.0", create=True).add_new(
            0x01, "LO", "QUIMBYWELL"
        )
        assert release_problems(ds) == [
            "private element (0009,0010) survived the recipe"
        ]

    def test_private_element_in_a_sequence_is_reported(self) -> None:
        """A private element deep in a sequence blocks release too."""
        item = Dataset()
        item.private_block(0x0019, "SIEMENS CT VA0  COAD", create=True).add_new(
            0x10, "IS", "1040"
        )
        outer = Dataset()
        outer.ReferencedInstanceSequence = [item]
        ds = _released(ReferencedSeriesSequence=[outer])
        problems = release_problems(ds)
        assert problems == ["private element (0019,0010) survived the recipe"]

    def test_missing_patient_identity_removed_is_reported(self) -> None:
        """An image without PatientIdentityRemoved YES is held back."""
        ds = _released()
        del ds.PatientIdentityRemoved
        assert release_problems(ds) == ["PatientIdentityRemoved is not YES"]

    def test_patient_identity_removed_no_is_reported(self) -> None:
        """PatientIdentityRemoved NO is held back like a missing one."""
        ds = _released()
        ds.PatientIdentityRemoved = "NO"
        assert release_problems(ds) == ["PatientIdentityRemoved is not YES"]

    def test_both_problems_are_reported(self) -> None:
        """Every finding is listed, not only the first."""
        ds = _released()
        del ds.PatientIdentityRemoved
        ds.add_new(0x00291010, "OB", b"\x01\x02")
        assert len(release_problems(ds)) == 2
