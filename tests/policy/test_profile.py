"""Tests for exporter.policy.profile and annex_e: Table E.1-1 compiled to a recipe."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.uid import CTImageStorage

from exporter.policy.annex_e import (
    COMPOUND_RESOLUTION,
    OPTIONS,
    AnnexERow,
    decide,
    table_e1_1,
    validate_options,
)
from exporter.policy.apply import apply_recipe
from exporter.policy.functions import InstanceContext
from exporter.policy.profile import DEFAULT_OPTIONS, NAMED_PROFILES, build_recipe
from exporter.policy.pseudonyms import Pseudonymizer
from exporter.policy.recipe import CompiledRecipe, compile_recipe

COMMITTED = Path(__file__).resolve().parents[2] / "recipes" / "basic-profile.dicom"
OFFSET = -417
# The recipe actions each simple code may compile to (C depends on the VR);
# the patient's name and id, Z or D, become the pseudonym instead.
_ACTIONS = {
    "X": ("REMOVE",),
    "Z": ("BLANK",),
    "D": ("REPLACE", "BLANK"),
    "U": ("REPLACE",),
    "K": ("KEEP", "REPLACE"),
}
PATTERN_FUNCS = {
    "50xx,xxxx": "is_curve",
    "60xx,3000": "is_overlay_data",
    "60xx,4000": "is_overlay_comments",
    "gggg,eeee": "is_private",
}


@pytest.fixture(scope="module")
def recipe() -> CompiledRecipe:
    """The default profile, compiled once."""
    return compile_recipe(build_recipe(DEFAULT_OPTIONS), "basic-profile.dicom")


@pytest.fixture(scope="module")
def lines() -> list[str]:
    """The default profile's text, line by line."""
    return build_recipe(DEFAULT_OPTIONS).splitlines()


def _row(keyword: str) -> AnnexERow:
    return next(row for row in table_e1_1() if row.keyword == keyword)


def _context() -> InstanceContext:
    pseudonyms = Pseudonymizer(b"profile-test-secret")
    return InstanceContext(pseudonyms, pseudonyms.patient("0012345"), OFFSET)


def _field(row: AnnexERow) -> str:
    return row.keyword or f"({row.tag})"


def _shifted(value: str, days: int) -> str:
    day = dt.datetime.strptime(value, "%Y%m%d") + dt.timedelta(days=days)
    return day.strftime("%Y%m%d")


class TestCommittedRecipe:
    """The generated file and the table it comes from."""

    def test_committed_recipe_is_generated(self) -> None:
        """recipes/basic-profile.dicom is exactly what build_recipe writes."""
        committed = COMMITTED.read_text(encoding="utf-8")
        assert committed == build_recipe(DEFAULT_OPTIONS), (
            "recipes/basic-profile.dicom is out of date; "
            "run `python tools/build_recipes.py` and commit the result"
        )

    @pytest.mark.parametrize("name", sorted(NAMED_PROFILES))
    def test_every_named_profile_is_generated(self, name: str) -> None:
        """Each profile in recipes/ is generated, and says who it is for."""
        options, audience = NAMED_PROFILES[name]
        committed = (COMMITTED.parent / name).read_text(encoding="utf-8")
        assert committed == build_recipe(options), (
            f"recipes/{name} is out of date; run `python tools/build_recipes.py`"
        )
        assert "# For " + audience.split()[0] in committed

    def test_table_has_657_rows_and_4_patterns(self) -> None:
        """Table E.1-1 ships complete: 657 rows, 4 of them tag patterns."""
        rows = table_e1_1()
        assert len(rows) == 657
        assert sorted(row.tag for row in rows if row.is_pattern) == sorted(
            PATTERN_FUNCS
        )

    @pytest.mark.parametrize(
        "row", [r for r in table_e1_1() if not r.is_pattern], ids=lambda r: r.tag
    )
    def test_every_concrete_row_is_accounted_for(
        self, lines: list[str], row: AnnexERow
    ) -> None:
        """Each concrete row has its comment, then a rule for it or a 'kept' note."""
        header = f"# ({row.tag}) {row.name}: "
        found = [i for i, line in enumerate(lines) if line.startswith(header)]
        assert len(found) == 1, f"{header!r} appears {len(found)} times"
        comment, following = lines[found[0]], lines[found[0] + 1]
        code, decided_by = decide(row, DEFAULT_OPTIONS)
        assert comment.startswith(f"{header}{code} ({decided_by})")
        if following.startswith("#") or not following:
            assert "kept" in comment
        else:
            action, field = following.split()[:2]
            assert field == _field(row), following
            if not following.endswith("func:patient_id"):
                assert action in _ACTIONS.get(code, (action,)), following

    @pytest.mark.parametrize("tag", sorted(PATTERN_FUNCS))
    def test_every_pattern_row_removes_all(self, lines: list[str], tag: str) -> None:
        """The curve, overlay and private rows become a REMOVE ALL func: rule."""
        found = [i for i, line in enumerate(lines) if line.startswith(f"# ({tag}) ")]
        assert len(found) == 1
        assert lines[found[0] + 1] == f"REMOVE ALL func:{PATTERN_FUNCS[tag]}"

    def test_the_recipe_compiles(self, recipe: CompiledRecipe) -> None:
        """The generated recipe passes exporter's and deid's parsers."""
        assert len(recipe.rules) > 600


# One concrete row per Basic Profile code, with a value valid for its VR.
# K and C appear in no Basic Profile cell; the default options supply them.
ACTION_CASES = [
    ("D", "ClinicalTrialSponsorName", "ACME PHARMACEUTICALS"),
    ("Z", "AccessionNumber", "0012345678"),
    ("X", "AdmissionID", "ADM-55102"),
    ("K", "PatientSex", "F"),
    ("C", "StudyDate", "20190316"),
    ("U", "StudyInstanceUID", "1.2.826.0.1.3680043.8.498.1001"),
    ("Z/D", "ContentCreatorName", "BRACKENWELL^PERPETUA"),
    ("X/Z", "ReviewerName", "FENMOREHOLT^OSBERT"),
    ("X/D", "DetectorID", "DET-4471"),
    ("X/Z/D", "StationName", "OSWCT07"),
]


class TestActionCodes:
    """Each action code, run through the compiled default recipe."""

    def test_cases_cover_every_basic_code(self) -> None:
        """The cases below name every code of Table E.1-1a and a K and a C."""
        basic = {row.basic for row in table_e1_1()}
        covered = {code for code, _, _ in ACTION_CASES} | {"X/Z/U*"}
        assert basic <= covered
        assert covered - basic == {"K", "C"}

    @pytest.mark.parametrize(("code", "keyword", "value"), ACTION_CASES)
    def test_case_row_has_the_code(self, code: str, keyword: str, value: str) -> None:
        """Each case's attribute has its code under the default options."""
        row = _row(keyword)
        decided = decide(row, DEFAULT_OPTIONS)[0]
        if code in ("K", "C"):
            assert decided == code
        else:
            assert row.basic == code
            assert decided == COMPOUND_RESOLUTION.get(code, code)

    @pytest.mark.parametrize(("code", "keyword", "value"), ACTION_CASES)
    def test_documented_outcome(
        self, recipe: CompiledRecipe, code: str, keyword: str, value: str
    ) -> None:
        """X removes, Z empties, D dummies, U remaps, K keeps, C shifts the date."""
        ds = Dataset()
        setattr(ds, keyword, value)
        ctx = _context()
        apply_recipe(ds, recipe, ctx)

        outcome = COMPOUND_RESOLUTION.get(code, code)
        if outcome == "X":
            assert keyword not in ds
            return
        after = ds[keyword].value
        if outcome == "Z":
            assert after in ("", None)
        elif outcome == "D":
            assert after
            assert str(after) != value
        elif outcome == "U":
            assert after == ctx.pseudonyms.uid(value)
            assert after.startswith("2.25.")
            assert after != value
        elif outcome == "K":
            assert after == value
        elif outcome == "C":
            assert after == _shifted(value, OFFSET)

    def test_reference_sequence_keeps_items_with_new_uids(
        self, recipe: CompiledRecipe
    ) -> None:
        """X/Z/U*: the reference sequence stays; its instance UIDs are replaced."""
        original = ["1.2.826.0.1.3680043.8.498.2001", "1.2.826.0.1.3680043.8.498.2002"]
        ds = Dataset()
        ds.ReferencedImageSequence = []
        for uid in original:
            item = Dataset()
            item.ReferencedSOPClassUID = CTImageStorage
            item.ReferencedSOPInstanceUID = uid
            ds.ReferencedImageSequence.append(item)
        assert _row("ReferencedImageSequence").basic == "X/Z/U*"
        ctx = _context()
        apply_recipe(ds, recipe, ctx)

        items = ds.ReferencedImageSequence
        assert len(items) == 2
        for item, uid in zip(items, original, strict=True):
            assert item.ReferencedSOPInstanceUID == ctx.pseudonyms.uid(uid)
            assert item.ReferencedSOPInstanceUID.startswith("2.25.")
            assert item.ReferencedSOPClassUID == CTImageStorage

    def test_patient_identity_becomes_the_pseudonym(
        self, recipe: CompiledRecipe
    ) -> None:
        """PatientName and PatientID (Z/D) both carry the patient's pseudonym."""
        ds = Dataset()
        ds.PatientName = "QUIMBYWELL^ZEBEDIAH^Q"
        ds.PatientID = "0012345"
        ctx = _context()
        apply_recipe(ds, recipe, ctx)
        assert ds.PatientName == ctx.patient_pseudonym
        assert ds.PatientID == ctx.patient_pseudonym


# A value valid for each VR that a D row of the default profile can have.
_D_VALUES: dict[str, object] = {
    "AE": "OSW_PACS1",
    "CS": "COERCE",
    "LO": "ST OSWALDINE GENERAL",
    "LT": "Reviewed by Dr Perpetua Brackenwell",
    "OB": b"\x01\x02\x03\x04",
    "PN": "BRACKENWELL^PERPETUA",
    "SH": "OSWCT07",
    "ST": "Called back Zebediah Quimbywell",
    "UC": "QUIMBYWELL ZEBEDIAH",
    "UI": "1.2.826.0.1.3680043.8.498.3001",
    "UN": b"\x01\x02\x03\x04",
    "UR": "https://pacs.oswaldine.example/patients/0012345",
    "UT": "Demographics corrected by Osbert Fenmoreholt",
}
_D_ROWS = [
    row
    for row in table_e1_1()
    if not row.is_pattern
    and decide(row, DEFAULT_OPTIONS)[0] == "D"
    and row.keyword not in ("PatientID", "PatientName")
    and row.keyword
]


@pytest.mark.parametrize("row", _D_ROWS, ids=lambda r: r.keyword)
def test_every_d_row_gets_a_nonempty_dummy(
    recipe: CompiledRecipe, row: AnnexERow
) -> None:
    """Every D row: a non-empty value valid for the VR, unlike the original."""
    ds = Dataset()
    vr = dictionary_VR(row.tag_int)
    if vr == "SQ":
        item = Dataset()
        item.CodeMeaning = "ST OSWALDINE GENERAL"
        ds.add_new(row.tag_int, vr, [item])
        apply_recipe(ds, recipe, _context())
        # The dummy of a sequence is an empty sequence: it carries nothing.
        assert len(ds[row.tag_int].value) == 0
        return
    value = _D_VALUES[vr]
    ds.add_new(row.tag_int, vr, value)
    apply_recipe(ds, recipe, _context())
    after = ds[row.tag_int].value
    assert after not in (None, "", b""), f"{row.keyword} ({vr}) was emptied"
    assert after != value


class TestOptions:
    """Option validation and the precedence between options."""

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            (
                frozenset({"retain_everything"}),
                r"unknown Annex E option\(s\) retain_everything; choose from "
                r"retain_safe_private",
            ),
            (
                frozenset({"retain_uids", "keep_names", "clean_all"}),
                r"unknown Annex E option\(s\) clean_all, keep_names;",
            ),
            (
                frozenset({"retain_long_full_dates", "retain_long_modified_dates"}),
                "choose Full Dates or Modified Dates, not both",
            ),
        ],
    )
    def test_validate_options_refuses(
        self, options: frozenset[str], match: str
    ) -> None:
        """Unknown options and Full plus Modified Dates are refused."""
        with pytest.raises(ValueError, match=match):
            validate_options(options)

    def test_build_recipe_refuses_both_date_options(self) -> None:
        """build_recipe validates its options before writing anything."""
        both = frozenset({"retain_long_full_dates", "retain_long_modified_dates"})
        with pytest.raises(ValueError, match="not both"):
            build_recipe(both)

    @pytest.mark.parametrize("option", sorted(OPTIONS))
    def test_every_single_option_builds(self, option: str) -> None:
        """Each option alone gives a recipe that compiles."""
        text = build_recipe(frozenset({option}))
        assert compile_recipe(text, f"{option}.dicom").rules

    @pytest.mark.parametrize(
        ("keyword", "options", "expected"),
        [
            ("AccessionNumber", frozenset(), ("Z", "basic")),
            ("PatientID", frozenset(), ("D", "basic")),
            ("ReferencedImageSequence", frozenset(), ("U*", "basic")),
            ("PatientSex", DEFAULT_OPTIONS, ("K", "retain_patient_characteristics")),
            ("StudyDate", DEFAULT_OPTIONS, ("C", "retain_long_modified_dates")),
            (
                "StudyDate",
                frozenset({"retain_long_full_dates"}),
                ("K", "retain_long_full_dates"),
            ),
            ("StudyInstanceUID", frozenset({"retain_uids"}), ("K", "retain_uids")),
        ],
    )
    def test_decide_names_what_decided(
        self, keyword: str, options: frozenset[str], expected: tuple[str, str]
    ) -> None:
        """decide() returns the code and the option (or basic) that gave it."""
        assert decide(_row(keyword), options) == expected

    @pytest.mark.parametrize(
        "row",
        [
            r
            for r in table_e1_1()
            if {"retain_device_identity", "retain_long_modified_dates"}
            <= r.options.keys()
        ],
        ids=lambda r: r.keyword or r.tag,
    )
    def test_modified_dates_win_over_device_identity(self, row: AnnexERow) -> None:
        """Calibration dates: Modified Dates (C) wins over Device Identity (K)."""
        assert row.options["retain_device_identity"] == "K"
        both = frozenset({"retain_device_identity", "retain_long_modified_dates"})
        assert decide(row, both) == ("C", "retain_long_modified_dates")
        device = frozenset({"retain_device_identity"})
        assert decide(row, device) == ("K", "retain_device_identity")

    def test_only_the_documented_pairs_disagree(self) -> None:
        """No row has two options that give different codes, but the known two."""
        disagreeing = set()
        for row in table_e1_1():
            codes = sorted(row.options.items())
            for i, (a, code_a) in enumerate(codes):
                for b, code_b in codes[i + 1 :]:
                    if code_a != code_b:
                        disagreeing.add((a, b))
        assert disagreeing == {
            ("retain_device_identity", "retain_long_modified_dates"),
            ("retain_long_full_dates", "retain_long_modified_dates"),
        }
