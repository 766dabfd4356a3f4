"""Tests for exporter.policy.apply: the default profile on every element."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pydicom
import pytest
from pydicom.config import IGNORE
from pydicom.data import get_testdata_file
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

from exporter.engine.rawfile import read_source
from exporter.engine.worker import _encode, _stamp
from exporter.errors import ActionError
from exporter.policy.apply import apply_recipe
from exporter.policy.functions import FUNCTIONS, InstanceContext
from exporter.policy.profile import DEFAULT_OPTIONS, build_recipe
from exporter.policy.pseudonyms import Pseudonymizer
from exporter.policy.recipe import CompiledRecipe, compile_recipe
from exporter.synthetic import SyntheticSource, make_source

SECRET = b"apply-test-secret-of-32-bytes..."
RECIPE_PATH = "basic-profile.dicom"
STUDY_UID = "1.2.826.0.1.3680043.8.498.10"
SOP_UID = "1.2.826.0.1.3680043.8.498.11"
REF_UID = "1.2.826.0.1.3680043.8.498.12"
ACME = "ACME PHI 1.0"


@pytest.fixture(scope="module")
def recipe() -> CompiledRecipe:
    """The default profile, compiled once."""
    return compile_recipe(build_recipe(DEFAULT_OPTIONS), RECIPE_PATH)


def _context(pseudonyms: Pseudonymizer, patient: str = "0012345") -> InstanceContext:
    return InstanceContext(
        pseudonyms, pseudonyms.patient(patient), pseudonyms.date_offset_days(patient)
    )


def _shift(value: str, days: int) -> str:
    day = dt.datetime.strptime(value, "%Y%m%d") + dt.timedelta(days=days)
    return day.strftime("%Y%m%d")


def _identifying() -> Dataset:
    """An item with one identifying element per kind of action."""
    item = Dataset()
    item.PatientName = "QUIMBYWELL^ZEBEDIAH^Q"
    item.AccessionNumber = "0012345678"
    item.InstitutionName = "ST OSWALDINE GENERAL HOSPITAL"
    item.PatientAddress = "1200 Cormorant Wharf Rd, Tillingham, VT 05491"
    item.StudyDate = "20190316"
    item.ReferencedSOPClassUID = CTImageStorage
    item.ReferencedSOPInstanceUID = REF_UID
    block = item.private_block(0x0009, ACME, create=True)
    block.add_new(0x01, "LO", "QUIMBYWELL MRN 0012345")
    return item


def _as_read(keyword: str, value: str) -> Dataset:
    """A dataset holding ``value`` unvalidated, as a malformed file would."""
    ds = Dataset()
    tag = tag_for_keyword(keyword)
    ds.add(DataElement(tag, dictionary_VR(tag), value, validation_mode=IGNORE))
    return ds


def _private_tags(ds: Dataset) -> list[str]:
    return [str(elem.tag) for elem in ds.iterall() if elem.tag.group & 1]


# Public sequences outside Table E.1-1: kept, and walked item by item.
_CHAIN = (
    "ReferencedSeriesSequence",
    "ReferencedInstanceSequence",
    "PurposeOfReferenceCodeSequence",
)


class TestEveryElement:
    """Every element is visited, at every depth and in file meta."""

    @pytest.mark.parametrize("depth", [1, 2, 3])
    def test_values_in_nested_sequences_are_cleaned(
        self, recipe: CompiledRecipe, depth: int
    ) -> None:
        """Identifying values at sequence depth 1, 2 and 3 are all cleaned."""
        ds = Dataset()
        parent = ds
        for keyword in _CHAIN[:depth]:
            item = Dataset()
            setattr(parent, keyword, [item])
            parent = item
        for elem in _identifying():
            parent.add(elem)
        pseudonyms = Pseudonymizer(SECRET)
        ctx = _context(pseudonyms)
        apply_recipe(ds, recipe, ctx)

        item = ds
        for keyword in _CHAIN[:depth]:
            item = getattr(item, keyword)[0]
        assert item.PatientName == ctx.patient_pseudonym
        assert item.AccessionNumber in ("", None)
        assert item.InstitutionName == "ANONYMIZED"
        assert "PatientAddress" not in item
        assert item.StudyDate == _shift("20190316", ctx.date_offset_days)
        assert item.ReferencedSOPInstanceUID == pseudonyms.uid(REF_UID)
        assert item.ReferencedSOPClassUID == CTImageStorage
        assert _private_tags(ds) == []

    def test_private_elements_and_sequences_are_removed(
        self, recipe: CompiledRecipe
    ) -> None:
        """Private elements, private sequences and nested ones all go."""
        ds = Dataset()
        ds.PatientSex = "F"
        inner = Dataset()
        inner.private_block(0x0011, "OTHER VENDOR", create=True).add_new(
            0x05, "LO", "0012345"
        )
        inner.StudyDate = "20190316"
        item = Dataset()
        item.private_block(0x0009, ACME, create=True).add_new(0x01, "LO", "QUIMBY")
        item.ReferencedSeriesSequence = [inner]
        block = ds.private_block(0x0009, ACME, create=True)
        block.add_new(0x01, "LO", "QUIMBYWELL MRN 0012345")
        block.add_new(0x02, "SQ", [item])
        public = Dataset()
        public.private_block(0x0019, "SIEMENS CT VA0  COAD", create=True).add_new(
            0x10, "SQ", [_identifying()]
        )
        ds.ReferencedSeriesSequence = [public]
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))

        assert _private_tags(ds) == []
        assert ds.PatientSex == "F"
        assert len(ds.ReferencedSeriesSequence) == 1

    def test_pydicom_nested_private_sequences_are_removed(
        self, recipe: CompiledRecipe
    ) -> None:
        """pydicom's nested_priv_SQ.dcm keeps no private element after the recipe."""
        ds = pydicom.dcmread(get_testdata_file("nested_priv_SQ.dcm"), force=True)
        assert _private_tags(ds)
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
        assert _private_tags(ds) == []
        assert "PixelData" in ds

    def test_file_meta_instance_uid_follows_sop_instance_uid(
        self, recipe: CompiledRecipe
    ) -> None:
        """MediaStorageSOPInstanceUID is remapped to the new SOPInstanceUID."""
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        original = ds.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPInstanceUID == original
        ds.file_meta.SourceApplicationEntityTitle = "OSW_PACS1"
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))

        assert ds.SOPInstanceUID != original
        assert ds.SOPInstanceUID.startswith("2.25.")
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert "SourceApplicationEntityTitle" not in ds.file_meta

    @pytest.mark.parametrize("group", [0x6000, 0x6002])
    def test_overlay_text_and_data_are_removed(
        self, recipe: CompiledRecipe, group: int
    ) -> None:
        """Overlay data, comments, description and label go; the geometry stays."""
        ds = Dataset()
        base = group << 16
        ds.add_new(base | 0x0010, "US", 64)
        ds.add_new(base | 0x0011, "US", 64)
        ds.add_new(base | 0x0022, "LO", "Marker for QUIMBYWELL^ZEBEDIAH")
        ds.add_new(base | 0x1500, "LO", "QUIMBYWELL^ZEBEDIAH")
        ds.add_new(base | 0x3000, "OW", b"\x01\x00" * 256)
        ds.add_new(base | 0x4000, "LT", "Lesion marked by Perpetua Brackenwell")
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
        assert sorted(int(elem.tag) for elem in ds) == [base | 0x0010, base | 0x0011]

    @pytest.mark.parametrize("group", [0x5000, 0x5002])
    def test_curve_groups_are_removed(self, recipe: CompiledRecipe, group: int) -> None:
        """Every element of a curve group goes, data and labels alike."""
        ds = Dataset()
        ds.PatientSex = "M"
        base = group << 16
        ds.add_new(base | 0x0005, "US", 1)
        ds.add_new(base | 0x0022, "LO", "ECG gating trace, QUIMBYWELL^ZEBEDIAH")
        ds.add_new(base | 0x2500, "LO", "MRN 0012345")
        ds.add_new(base | 0x3000, "OW", b"\x00\x0c" * 6)
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
        assert list(ds.keys()) == [pydicom.tag.Tag("PatientSex")]

    @pytest.mark.parametrize("tag", [0x00089999, 0x0010FFF0, 0x7FFF0001])
    def test_unknown_public_elements_are_removed(
        self, recipe: CompiledRecipe, tag: int
    ) -> None:
        """An even-group element no dictionary knows is removed."""
        ds = Dataset()
        ds.PatientSex = "O"
        ds.add(DataElement(tag, "LO", "QUIMBYWELL^ZEBEDIAH"))
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
        assert tag not in ds
        assert ds.PatientSex == "O"


class TestUids:
    """UIDs map consistently across files; well-known UIDs stay."""

    def test_reference_matches_the_referenced_file(
        self, recipe: CompiledRecipe
    ) -> None:
        """A UID referenced in one file maps to the SOPInstanceUID of the other."""
        first = Dataset()
        first.SOPClassUID = CTImageStorage
        first.SOPInstanceUID = SOP_UID
        first.StudyInstanceUID = STUDY_UID
        second = Dataset()
        second.SOPClassUID = SecondaryCaptureImageStorage
        second.SOPInstanceUID = REF_UID
        second.StudyInstanceUID = STUDY_UID
        reference = Dataset()
        reference.ReferencedSOPClassUID = CTImageStorage
        reference.ReferencedSOPInstanceUID = SOP_UID
        second.ReferencedImageSequence = [reference]

        pseudonyms = Pseudonymizer(SECRET)
        apply_recipe(first, recipe, _context(pseudonyms))
        apply_recipe(second, recipe, _context(pseudonyms))

        referenced = second.ReferencedImageSequence[0].ReferencedSOPInstanceUID
        assert referenced == first.SOPInstanceUID
        assert referenced != SOP_UID
        assert second.StudyInstanceUID == first.StudyInstanceUID
        assert second.SOPInstanceUID != first.SOPInstanceUID
        assert pseudonyms.linkage[("uid", SOP_UID)] == first.SOPInstanceUID

    @pytest.mark.parametrize(
        ("keyword", "value"),
        [
            ("SOPClassUID", MRImageStorage),
            ("ReferencedSOPClassUID", SecondaryCaptureImageStorage),
            ("TransferSyntaxUID", ExplicitVRLittleEndian),
        ],
    )
    def test_well_known_uids_are_kept(
        self, recipe: CompiledRecipe, keyword: str, value: str
    ) -> None:
        """SOP Class and Transfer Syntax UIDs name no instance and are kept."""
        ds = Dataset()
        if keyword == "TransferSyntaxUID":
            ds.file_meta = pydicom.dataset.FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = value
            apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
            assert ds.file_meta.TransferSyntaxUID == value
            return
        setattr(ds, keyword, value)
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
        assert ds[keyword].value == value


class TestDates:
    """Dates shift by one offset per patient and fail closed."""

    def _study(self, date: str) -> Dataset:
        ds = Dataset()
        ds.StudyDate = date
        ds.SeriesDate = date
        return ds

    def test_same_patient_keeps_the_interval(self, recipe: CompiledRecipe) -> None:
        """Two studies of one patient keep the days between them."""
        pseudonyms = Pseudonymizer(SECRET)
        first, second = self._study("20190316"), self._study("20200102")
        apply_recipe(first, recipe, _context(pseudonyms, "0012345"))
        apply_recipe(second, recipe, _context(pseudonyms, "0012345"))

        def day(value: str) -> dt.date:
            return dt.datetime.strptime(value, "%Y%m%d").date()

        assert first.StudyDate != "20190316"
        assert (day(second.StudyDate) - day(first.StudyDate)).days == (
            dt.date(2020, 1, 2) - dt.date(2019, 3, 16)
        ).days
        assert first.SeriesDate == first.StudyDate

    def test_other_patient_gets_another_offset(self, recipe: CompiledRecipe) -> None:
        """The same date of two patients lands on two different days."""
        pseudonyms = Pseudonymizer(SECRET)
        first, second = self._study("20190316"), self._study("20190316")
        apply_recipe(first, recipe, _context(pseudonyms, "0012345"))
        apply_recipe(second, recipe, _context(pseudonyms, "0067890"))
        assert first.StudyDate != second.StudyDate

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("20190316143005.123456+0100", "20190306143005.123456+0100"),
            ("20190316143005-0500", "20190306143005.000000-0500"),
            ("201903161430", "20190306143000.000000"),
            ("20190101000000", "20181222000000.000000"),
        ],
    )
    def test_datetime_shifts_with_time_and_utc_offset(
        self, recipe: CompiledRecipe, value: str, expected: str
    ) -> None:
        """A DT moves by whole days; its time of day and UTC offset are kept."""
        ds = Dataset()
        ds.AcquisitionDateTime = value
        ctx = InstanceContext(Pseudonymizer(SECRET), "P1", -10)
        apply_recipe(ds, recipe, ctx)
        assert ds.AcquisitionDateTime == expected

    @pytest.mark.parametrize(
        ("keyword", "value"),
        [
            ("StudyDate", "2019-03-16"),
            ("StudyDate", "20190230"),
            ("StudyDate", "16.03.2019"),
            ("ContentDate", "20190316\\yesterday"),
            ("AcquisitionDateTime", "20191340120000"),
            ("AcquisitionDateTime", "last tuesday"),
        ],
    )
    def test_malformed_dates_are_emptied(
        self, recipe: CompiledRecipe, keyword: str, value: str
    ) -> None:
        """A DA or DT that cannot be shifted is emptied, never kept."""
        ds = _as_read(keyword, value)
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
        assert keyword in ds
        assert ds[keyword].value in (None, "")


class TestAges:
    """PatientAge is kept, except ages over 89 years (HIPAA Safe Harbor)."""

    @pytest.mark.parametrize(
        ("value", "expected"),
        [
            ("093Y", "090Y"),
            ("120Y", "090Y"),
            ("090Y", "090Y"),
            ("089Y", "089Y"),
            ("045Y", "045Y"),
            ("999M", "999M"),
            ("018W", "018W"),
            ("003D", "003D"),
            # AS has three digits: 1100 months cannot be written, so it is
            # unreadable and emptied, which is safer than capping.
            ("1100M", ""),
            ("93Y", ""),
            ("093", ""),
            ("ninety", ""),
        ],
    )
    def test_age_cap(self, recipe: CompiledRecipe, value: str, expected: str) -> None:
        """Ages over 89 become 090Y; others stay; unreadable ones are emptied."""
        ds = _as_read("PatientAge", value)
        apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
        assert ds.PatientAge == expected


class TestFailures:
    """A failing action stops the instance; nothing is swallowed."""

    def test_function_error_names_the_recipe_line(
        self, recipe: CompiledRecipe, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A func that raises becomes an ActionError naming the recipe line."""

        def broken(ctx: InstanceContext, elem: DataElement) -> str:
            raise RuntimeError("dummy generator is broken")

        monkeypatch.setitem(FUNCTIONS, "dummy", broken)
        line = recipe.text.splitlines().index("REPLACE InstitutionName func:dummy") + 1
        ds = Dataset()
        ds.InstitutionName = "ST OSWALDINE GENERAL HOSPITAL"
        match = (
            rf"^{re.escape(RECIPE_PATH)}:{line}: func:dummy failed on "
            r"\(0008,0080\) \(RuntimeError\)$"
        )
        with pytest.raises(ActionError, match=match) as info:
            apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))
        assert "OSWALDINE" not in str(info.value)
        assert isinstance(info.value.__cause__, RuntimeError)

    def test_function_error_in_a_sequence_is_raised(
        self, recipe: CompiledRecipe, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A func that raises inside a nested item is raised too."""

        def broken(ctx: InstanceContext, elem: DataElement) -> str:
            raise ValueError("no pseudonym")

        monkeypatch.setitem(FUNCTIONS, "patient_id", broken)
        item = Dataset()
        item.PatientName = "QUIMBYWELL^ZEBEDIAH^Q"
        ds = Dataset()
        ds.ReferencedSeriesSequence = [item]
        with pytest.raises(
            ActionError, match=r"func:patient_id failed on \(0010,0010\)"
        ):
            apply_recipe(ds, recipe, _context(Pseudonymizer(SECRET)))


def _leaks(data: bytes, phi: set[str]) -> list[str]:
    """The planted strings found in ``data``; all-digit ones only standing alone."""
    text = data.decode("latin-1")
    found = []
    for value in phi:
        if value.isdigit():
            if re.search(rf"(?<!\d){value}(?!\d)", text):
                found.append(value)
        elif value in text:
            found.append(value)
    return found


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    """A synthetic source of readable studies only."""
    return make_source(tmp_path_factory.mktemp("source"), seed=11, with_bad_files=False)


class TestNoLeak:
    """The default profile leaves none of the planted PHI in the encoded files."""

    def test_no_planted_string_survives(
        self, recipe: CompiledRecipe, source: SyntheticSource
    ) -> None:
        """No planted identifying string appears in any de-identified file."""
        pseudonyms = Pseudonymizer(SECRET)
        contexts: dict[str, InstanceContext] = {}
        phi = source.phi_strings()
        exported: dict[str, Dataset] = {}
        leaks = {}
        for study in source.studies:
            for path in study.paths:
                read = read_source(str(path))
                ds = read.dataset
                patient = study.patient.patient_id
                if patient not in contexts:
                    contexts[patient] = _context(pseudonyms, patient)
                apply_recipe(ds, recipe, contexts[patient])
                _stamp(ds, recipe, tuple(sorted(DEFAULT_OPTIONS)))
                data = b"".join(_encode(ds, read))
                found = _leaks(data, phi)
                if found:
                    leaks[Path(path).name] = sorted(found)
                exported[str(ds.SOPInstanceUID)] = pydicom.dcmread(
                    pydicom.filebase.DicomBytesIO(data)
                )
        assert leaks == {}
        first = source.studies[0].paths[0]
        assert len(_leaks(first.read_bytes(), phi)) > 10, "the check finds nothing"
        assert len(exported) == sum(len(s.paths) for s in source.studies)

        # References inside the export point at instances of the export.
        for ds in exported.values():
            for item in ds.get("ReferencedImageSequence", []):
                assert item.ReferencedSOPInstanceUID in exported
