"""Tests for exporter.policy.pseudonyms: keyed UIDs, patient ids, date offsets."""

from __future__ import annotations

import re

import pytest
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
)

from exporter.policy.pseudonyms import MAX_DATE_SHIFT_DAYS, Pseudonymizer

SECRET = b"project-a-secret-of-32-bytes...."
OTHER_SECRET = b"project-b-secret-of-32-bytes...."
ORIGINALS = [
    "1.2.826.0.1.3680043.8.498.1",
    "1.2.840.113619.2.55.3.604688119.971.1369834281.10",
    "2.25.329800735698586629295641978511506172918",
    "1.3.12.2.1107.5.1.4.65361.30000013051607364637500000011",
]
PATIENTS = ["0012345", "0067890", "OSW-77", "study:1.2.3", "", "ÄÖ-ünïcode"]
# PS3.5 9.1: digits and dots, no leading zero in a component, at most 64 chars.
_UID = re.compile(r"^2\.25\.(0|[1-9][0-9]*)$")


class TestUids:
    """UIDs are keyed, valid and recorded in the linkage."""

    @pytest.mark.parametrize("original", ORIGINALS)
    def test_same_secret_same_uid(self, original: str) -> None:
        """Two pseudonymizers with one secret derive the same UID."""
        assert Pseudonymizer(SECRET).uid(original) == Pseudonymizer(SECRET).uid(
            original
        )

    @pytest.mark.parametrize("original", ORIGINALS)
    def test_other_secret_other_uid(self, original: str) -> None:
        """Another project's secret gives an unrelated UID."""
        assert Pseudonymizer(SECRET).uid(original) != Pseudonymizer(OTHER_SECRET).uid(
            original
        )

    @pytest.mark.parametrize("original", ORIGINALS)
    def test_uid_is_valid(self, original: str) -> None:
        """A new UID is 2.25. then a decimal number, 64 characters at most."""
        new = Pseudonymizer(SECRET).uid(original)
        assert _UID.match(new), new
        assert len(new) <= 64
        assert new != original

    def test_distinct_originals_get_distinct_uids(self) -> None:
        """Different originals never share a pseudonym."""
        pseudonyms = Pseudonymizer(SECRET)
        assert len({pseudonyms.uid(uid) for uid in ORIGINALS}) == len(ORIGINALS)

    def test_padding_is_ignored(self) -> None:
        """A UID padded with NUL or space maps like the bare UID."""
        pseudonyms = Pseudonymizer(SECRET)
        assert pseudonyms.uid(ORIGINALS[0] + "\x00") == pseudonyms.uid(ORIGINALS[0])

    @pytest.mark.parametrize(
        "registered",
        [CTImageStorage, SecondaryCaptureImageStorage, ExplicitVRLittleEndian],
    )
    def test_registry_uids_are_unchanged(self, registered: str) -> None:
        """UIDs of the DICOM registry (PS3.6 Annex A) are returned as they are."""
        pseudonyms = Pseudonymizer(SECRET)
        assert pseudonyms.uid(registered) == registered
        assert ("uid", registered) not in pseudonyms.linkage

    def test_empty_uid_stays_empty(self) -> None:
        """An empty UID has nothing to map."""
        assert Pseudonymizer(SECRET).uid("") == ""

    def test_linkage_records_each_uid(self) -> None:
        """The linkage maps each original UID to its pseudonym."""
        pseudonyms = Pseudonymizer(SECRET)
        new = {uid: pseudonyms.uid(uid) for uid in ORIGINALS}
        assert {k: v for k, v in pseudonyms.linkage.items() if k[0] == "uid"} == {
            ("uid", uid): pseudonym for uid, pseudonym in new.items()
        }


class TestPatients:
    """Patient pseudonyms: the SubjectID, else a keyed code."""

    def test_subject_id_is_used_when_given(self) -> None:
        """The manifest's SubjectID becomes the pseudonym and is linked."""
        pseudonyms = Pseudonymizer(SECRET)
        assert pseudonyms.patient("0012345", "SUBJ-001") == "SUBJ-001"
        assert pseudonyms.linkage[("patient", "0012345")] == "SUBJ-001"

    @pytest.mark.parametrize("original", PATIENTS)
    def test_keyed_pseudonym_without_subject_id(self, original: str) -> None:
        """Without SubjectID: P and 12 base32 characters, stable per secret."""
        first = Pseudonymizer(SECRET).patient(original)
        assert re.fullmatch(r"P[A-Z2-7]{12}", first), first
        assert Pseudonymizer(SECRET).patient(original, None) == first
        assert Pseudonymizer(SECRET).patient(original, "") == first
        assert Pseudonymizer(OTHER_SECRET).patient(original) != first

    def test_patients_get_distinct_pseudonyms(self) -> None:
        """Different patients never share a pseudonym."""
        pseudonyms = Pseudonymizer(SECRET)
        assert len({pseudonyms.patient(p) for p in PATIENTS}) == len(PATIENTS)

    def test_pseudonym_does_not_contain_the_original(self) -> None:
        """The keyed pseudonym does not quote the patient id."""
        assert "12345" not in Pseudonymizer(SECRET).patient("0012345")


class TestDateOffsets:
    """One offset per patient: negative, non-zero, bounded, stable."""

    @pytest.mark.parametrize("patient", PATIENTS)
    def test_offset_range(self, patient: str) -> None:
        """The offset lies in [-MAX_DATE_SHIFT_DAYS, -1]."""
        days = Pseudonymizer(SECRET).date_offset_days(patient)
        assert -MAX_DATE_SHIFT_DAYS <= days <= -1

    def test_many_offsets_stay_in_range(self) -> None:
        """Across many patients no offset is zero, positive or too large."""
        pseudonyms = Pseudonymizer(SECRET)
        offsets = [pseudonyms.date_offset_days(f"{n:07d}") for n in range(2000)]
        assert min(offsets) >= -MAX_DATE_SHIFT_DAYS
        assert max(offsets) <= -1
        assert len(set(offsets)) > 1000

    @pytest.mark.parametrize("patient", PATIENTS)
    def test_offset_is_stable_per_patient(self, patient: str) -> None:
        """The same patient gets the same offset, in any pseudonymizer."""
        first = Pseudonymizer(SECRET)
        days = first.date_offset_days(patient)
        assert first.date_offset_days(patient) == days
        assert Pseudonymizer(SECRET).date_offset_days(patient) == days
        assert first.linkage[("date_offset", patient)] == str(days)

    def test_offset_depends_on_the_secret(self) -> None:
        """Another project shifts the same patient by another offset."""
        ours = [Pseudonymizer(SECRET).date_offset_days(p) for p in PATIENTS]
        theirs = [Pseudonymizer(OTHER_SECRET).date_offset_days(p) for p in PATIENTS]
        assert ours != theirs
