"""Tests for exporter.synthetic: deterministic studies with planted PHI."""

from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    MediaStorageDirectoryStorage,
)

from exporter.synthetic import (
    SyntheticSource,
    make_ct_series,
    make_source,
    write_manifest,
)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    """The default synthetic source, written once for the module."""
    return make_source(tmp_path_factory.mktemp("source"))


def _digests(root: Path) -> dict[str, str]:
    """Return the sha256 of every file under `root`, by relative path."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _has_file_meta(path: Path) -> bool:
    """Return True if `path` has the preamble and ``DICM`` prefix."""
    with path.open("rb") as handle:
        return handle.read(132)[128:] == b"DICM"


def _read(path: Path) -> Dataset:
    """Read a generated file, forcing the one written without File Meta."""
    return pydicom.dcmread(path, force=not _has_file_meta(path))


def _study_files(source: SyntheticSource) -> list[Path]:
    """Return every readable file of `source`."""
    return [path for study in source.studies for path in study.paths]


class TestMakeSource:
    """make_source writes readable, deterministic studies full of PHI."""

    def test_same_seed_gives_identical_files(self, tmp_path: Path) -> None:
        """Two sources from the same seed are byte-identical, file by file."""
        first = make_source(tmp_path / "a", seed=7)
        second = make_source(tmp_path / "b", seed=7)
        assert _digests(first.root) == _digests(second.root)
        assert len(_digests(first.root)) > 20

    def test_other_seed_gives_other_patients(self, tmp_path: Path) -> None:
        """A different seed plants different identifiers."""
        first = make_source(tmp_path / "a", seed=1, with_bad_files=False)
        second = make_source(tmp_path / "b", seed=2, with_bad_files=False)
        first_ids = {s.patient.patient_id for s in first.studies}
        second_ids = {s.patient.patient_id for s in second.studies}
        assert first_ids != second_ids

    def test_every_study_file_reads_back(self, source: SyntheticSource) -> None:
        """Every study file decodes to the asked size (captures: at least 256)."""
        captures = {p for s in source.studies if s.burned_in for p in s.paths}
        for path in _study_files(source):
            ds = _read(path)
            if not _has_file_meta(path):
                ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
            size = (256, 256) if path in captures else (64, 64)
            assert ds.pixel_array.shape == size

    def test_encodings_readers_must_accept(self, source: SyntheticSource) -> None:
        """The source holds explicit, implicit and bare (no File Meta) files."""
        syntaxes = set()
        bare = 0
        for path in _study_files(source):
            if _has_file_meta(path):
                syntaxes.add(pydicom.dcmread(path).file_meta.TransferSyntaxUID)
            else:
                bare += 1
        assert syntaxes == {ExplicitVRLittleEndian, ImplicitVRLittleEndian}
        assert bare == 1

    def test_files_are_pydicom_encoding(self, source: SyntheticSource) -> None:
        """Re-encoding each parsed file with pydicom gives the same bytes."""
        for path in _study_files(source):
            if not _has_file_meta(path):
                continue
            ds = pydicom.dcmread(path)
            for _ in ds.iterall():  # parse every element, so all are re-encoded
                pass
            buffer = io.BytesIO()
            ds.save_as(buffer, enforce_file_format=True)
            assert buffer.getvalue() == path.read_bytes(), path.name

    def test_phi_strings_hold_the_planted_identifiers(
        self, source: SyntheticSource
    ) -> None:
        """phi_strings has the name, its parts, MRN, accession and study UID."""
        phi = source.phi_strings()
        study = source.studies[0]
        family, given, _ = study.patient.name.split("^")
        assert study.patient.patient_id.startswith("0")
        assert {study.patient.name, family, given} <= phi
        assert {study.patient.patient_id, study.accession, study.study_uid} <= phi

    def test_phi_strings_cover_names_uids_and_dates(
        self, source: SyntheticSource
    ) -> None:
        """Every person name, 2.25 UID and date in any header is in phi_strings."""
        phi = source.phi_strings()
        for path in _study_files(source):
            for elem in _read(path).iterall():
                value = str(elem.value)
                planted = elem.VR in ("PN", "DA") or value.startswith("2.25.")
                if planted and value:
                    assert value in phi, f"{path.name}: {elem.keyword or elem.tag}"

    @pytest.mark.parametrize(
        ("where", "expected"),
        [
            ("PatientName", "name"),
            ("PatientID", "mrn"),
            ("AccessionNumber", "accession"),
            ("ImageComments", "mrn"),
            ("OtherPatientIDsSequence.0.PatientID", "phi"),
            ("RequestAttributesSequence.0.AccessionNumber", "accession"),
            (
                "RequestAttributesSequence.0.ScheduledProtocolCodeSequence.0."
                "ProtocolContextSequence.0.PersonName",
                "phi",
            ),
            ("ContributingEquipmentSequence.0.OperatorsName", "phi"),
            ("ContributingEquipmentSequence.0.InstitutionName", "phi"),
            ("0x00091001", "mrn"),
            ("0x00091002.0.0x00091001", "accession"),
            ("0x60001500", "name"),
            ("0x50000022", "name"),
        ],
    )
    def test_phi_is_planted_where_dicom_hides_it(
        self, source: SyntheticSource, where: str, expected: str
    ) -> None:
        """The first file carries PHI at each nested, private and overlay place."""
        study = source.studies[0]
        value: Any = pydicom.dcmread(study.paths[0])
        for step in where.split("."):
            if step.isdigit():
                value = value[int(step)]
            elif step.startswith("0x"):
                value = value[int(step, 16)].value
            else:
                value = getattr(value, step)
        text = str(value)
        wanted = {
            "name": study.patient.name,
            "mrn": study.patient.patient_id,
            "accession": study.accession,
        }.get(expected)
        if wanted is None:
            assert text in source.phi_strings()
        else:
            assert wanted in text

    def test_file_meta_and_paths_carry_phi(self, source: SyntheticSource) -> None:
        """Folders name the patient and MRN, files the accession, meta an AE."""
        phi = source.phi_strings()
        study = source.studies[0]
        path = study.paths[0]
        relative = path.relative_to(source.root).as_posix()
        assert study.patient.name.split("^")[0] in relative
        assert study.patient.patient_id in relative
        assert study.accession in path.name
        meta = pydicom.dcmread(path).file_meta
        assert meta.MediaStorageSOPInstanceUID == study.sop_uids[0]
        assert meta.SourceApplicationEntityTitle in phi

    def test_uids_are_unique_and_valid(self, source: SyntheticSource) -> None:
        """Each SOP, series and study UID is valid and used by one object only."""
        sops = [uid for study in source.studies for uid in study.sop_uids]
        series = [uid for study in source.studies for uid in study.series_uids]
        studies = [study.study_uid for study in source.studies]
        every = sops + series + studies
        assert len(set(every)) == len(every)
        assert all(UID(uid).is_valid for uid in every)

    def test_references_stay_inside_the_study(self, source: SyntheticSource) -> None:
        """Referenced and source images are other instances of the same study."""
        for study in source.studies:
            for path in study.paths:
                ds = _read(path)
                for keyword in ("ReferencedImageSequence", "SourceImageSequence"):
                    for item in ds.get(keyword, []):
                        assert item.ReferencedSOPInstanceUID in study.sop_uids
                        assert item.ReferencedSOPInstanceUID != ds.SOPInstanceUID

    def test_studies_of_a_patient_have_distinct_dates(
        self, source: SyntheticSource
    ) -> None:
        """Each patient's studies fall on different days."""
        by_patient: dict[str, list[str]] = {}
        for study in source.studies:
            by_patient.setdefault(study.patient.patient_id, []).append(study.study_date)
        for dates in by_patient.values():
            assert len(set(dates)) == len(dates) >= 2

    def test_one_patient_is_older_than_89(self, source: SyntheticSource) -> None:
        """The demo set has a patient aged 093Y."""
        assert "093Y" in {study.patient.age for study in source.studies}

    @pytest.mark.parametrize(("modality", "annotation"), [("US", None), ("OT", "YES")])
    def test_burned_in_studies(
        self, source: SyntheticSource, modality: str, annotation: str | None
    ) -> None:
        """The US study lacks BurnedInAnnotation; the capture says YES."""
        (study,) = [s for s in source.studies if s.modality == modality]
        assert study.burned_in
        assert study.patient == source.studies[0].patient
        ds = pydicom.dcmread(study.paths[0])
        assert ds.get("BurnedInAnnotation") == annotation

    def test_without_extras(self, tmp_path: Path) -> None:
        """Bad files and burned-in studies can be left out."""
        source = make_source(
            tmp_path, patients=1, with_bad_files=False, with_burned_in=False
        )
        assert source.bad_files == {}
        assert not any(study.burned_in for study in source.studies)

    @pytest.mark.parametrize(
        ("arguments", "message"),
        [
            ({"patients": 0}, "patients must be at least 1, got 0"),
            ({"instances_per_series": 0}, "instances_per_series must be at least 1"),
            ({"rows": 4}, "rows must be at least 8, got 4"),
            ({"patients": 500}, r"patients must be at most \d+, got 500"),
        ],
    )
    def test_rejects_bad_sizes(
        self, tmp_path: Path, arguments: dict[str, Any], message: str
    ) -> None:
        """Out-of-range sizes raise ValueError naming the argument."""
        with pytest.raises(ValueError, match=message):
            make_source(tmp_path, **arguments)


class TestBadFiles:
    """make_source also writes files a reader must reject or skip."""

    def test_bad_files_exist(self, source: SyntheticSource) -> None:
        """Every labelled bad file exists directly under the root."""
        assert set(source.bad_files) == {
            "not-dicom",
            "truncated-pixels",
            "truncated-header",
            "dicomdir",
            "empty",
        }
        for path in source.bad_files.values():
            assert path.is_file()
            assert path.parent == source.root
        assert source.bad_files["empty"].stat().st_size == 0

    @pytest.mark.parametrize("label", ["not-dicom", "empty"])
    def test_not_dicom_is_rejected(self, source: SyntheticSource, label: str) -> None:
        """Text and empty files are not DICOM files."""
        with pytest.raises(InvalidDicomError, match="DICM"):
            pydicom.dcmread(source.bad_files[label])

    @pytest.mark.parametrize(
        ("label", "error", "message"),
        [
            ("truncated-pixels", ValueError, "less than expected"),
            ("truncated-header", AttributeError, "no 'Pixel Data'"),
        ],
    )
    def test_truncated_files_fail_a_full_read(
        self,
        source: SyntheticSource,
        label: str,
        error: type[Exception],
        message: str,
    ) -> None:
        """A truncated file cannot be read through to its pixels."""
        ds = pydicom.dcmread(source.bad_files[label])
        with pytest.raises(error, match=message):
            _ = ds.pixel_array

    def test_dicomdir_indexes_a_stray_patient(self, source: SyntheticSource) -> None:
        """The DICOMDIR is a media directory whose records hold planted PHI."""
        ds = pydicom.dcmread(source.bad_files["dicomdir"])
        assert ds.file_meta.MediaStorageSOPClassUID == MediaStorageDirectoryStorage
        (patient,) = [
            r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "PATIENT"
        ]
        assert str(patient.PatientName) in source.other_phi
        assert patient.PatientID in source.phi_strings()

    def test_bad_files_phi_is_listed(self, source: SyntheticSource) -> None:
        """The truncated files' readable header values are in phi_strings."""
        ds = pydicom.dcmread(source.bad_files["truncated-pixels"])
        phi = source.phi_strings()
        assert {str(ds.PatientName), ds.PatientID, ds.AccessionNumber} <= phi


class TestMakeCtSeries:
    """make_ct_series writes a benchmark series quickly."""

    def test_writes_readable_instances(self, tmp_path: Path) -> None:
        """Five 512x512 instances of one series, each with its own SOP UID."""
        paths = make_ct_series(tmp_path, 5, seed=3)
        datasets = [pydicom.dcmread(path) for path in paths]
        assert len(paths) == 5
        assert {ds.pixel_array.shape for ds in datasets} == {(512, 512)}
        assert len({ds.SOPInstanceUID for ds in datasets}) == 5
        assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
        assert [int(ds.InstanceNumber) for ds in datasets] == [1, 2, 3, 4, 5]

    def test_header_is_rich(self, tmp_path: Path) -> None:
        """The instances carry the same planted header as make_source."""
        ds = pydicom.dcmread(make_ct_series(tmp_path, 1, rows=16, columns=16)[0])
        assert ds.PatientID.startswith("0")
        assert "MRN" in ds[0x00091001].value
        assert ds.RequestAttributesSequence[0].AccessionNumber == ds.AccessionNumber

    def test_is_deterministic(self, tmp_path: Path) -> None:
        """The same seed gives the same bytes."""
        make_ct_series(tmp_path / "a", 2, rows=16, columns=16)
        make_ct_series(tmp_path / "b", 2, rows=16, columns=16)
        assert _digests(tmp_path / "a") == _digests(tmp_path / "b")

    def test_rejects_no_instances(self, tmp_path: Path) -> None:
        """A count below one is refused."""
        with pytest.raises(ValueError, match="count must be at least 1, got 0"):
            make_ct_series(tmp_path, 0)


class TestWriteManifest:
    """write_manifest writes a UTF-8 CSV that csv.DictReader reads back."""

    def test_round_trip_keeps_leading_zeros(self, tmp_path: Path) -> None:
        """Identifiers keep their leading zeros and missing cells are empty."""
        rows = [
            {"PatientID": "0012345", "AccessionNumber": "0099"},
            {"PatientID": "0000001", "SubjectID": "SUBJ-ÉTÉ"},
        ]
        path = write_manifest(tmp_path / "in" / "cohort.csv", rows)
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            assert reader.fieldnames == ["PatientID", "AccessionNumber", "SubjectID"]
            read = list(reader)
        assert read[0] == {
            "PatientID": "0012345",
            "AccessionNumber": "0099",
            "SubjectID": "",
        }
        assert read[1]["PatientID"] == "0000001"
        assert read[1]["SubjectID"] == "SUBJ-ÉTÉ"
