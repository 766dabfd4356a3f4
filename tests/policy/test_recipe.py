"""Tests for exporter.policy.recipe: recipe validation, compilation, matching."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from exporter.errors import RecipeError
from exporter.policy.apply import apply_recipe
from exporter.policy.functions import InstanceContext
from exporter.policy.pseudonyms import Pseudonymizer
from exporter.policy.recipe import compile_recipe, load_recipe

PATH = "custom.dicom"
ACME = "ACME PHI 1.0"


def _recipe(*actions: str) -> str:
    """A recipe whose first action is on line 3."""
    return "\n".join(["FORMAT dicom", "%header", *actions]) + "\n"


def _context() -> InstanceContext:
    pseudonyms = Pseudonymizer(b"recipe-test-secret")
    return InstanceContext(pseudonyms, pseudonyms.patient("0012345"), -30)


# (recipe text, line of the error, what the message says after "line N: ")
INVALID = [
    pytest.param(
        _recipe("REMOV PatientName"),
        3,
        r"unknown action 'REMOV' \(did you mean REMOVE\?\); expected one of ADD,",
        id="unknown-action",
    ),
    pytest.param(
        _recipe("KEEP Modality", "BLNK PatientName"),
        4,
        r"unknown action 'BLNK' \(did you mean BLANK\?\)",
        id="unknown-action-line-4",
    ),
    pytest.param(
        _recipe("REMOVE PatientNme"),
        3,
        r"unknown keyword 'PatientNme' \(did you mean PatientName\?\); use a DICOM "
        r"keyword, a tag like \(0010,0010\), or an expander",
        id="unknown-keyword",
    ),
    pytest.param(
        _recipe("REMOVE"),
        3,
        "REMOVE needs a field",
        id="missing-field",
    ),
    pytest.param(
        _recipe("REPLACE PatientName"),
        3,
        "REPLACE needs a value",
        id="replace-without-value",
    ),
    pytest.param(
        _recipe("ADD PatientIdentityRemoved"),
        3,
        "ADD needs a value",
        id="add-without-value",
    ),
    pytest.param(
        _recipe("BLANK PatientName ANONYMOUS"),
        3,
        "BLANK takes no value; found extra text",
        id="blank-with-value",
    ),
    pytest.param(
        _recipe("KEEP PatientSex F"),
        3,
        "KEEP takes no value; found extra text",
        id="keep-with-value",
    ),
    pytest.param(
        _recipe("REPLACE PatientName var:subject"),
        3,
        r"var: values are not supported \(not reproducible across workers\); "
        r"use one of func:dummy",
        id="var-value",
    ),
    pytest.param(
        _recipe("REPLACE PatientID deid_func:generate_uid"),
        3,
        "deid_func: values are not supported",
        id="deid-func-value",
    ),
    pytest.param(
        _recipe("REPLACE PatientName func:patient_idd"),
        3,
        r"unknown function func:patient_idd \(did you mean func:patient_id\?\); "
        r"known: func:dummy",
        id="unknown-func",
    ),
    pytest.param(
        _recipe("REMOVE PatientName REDACTED"),
        3,
        "REMOVE takes no value or a func: condition",
        id="remove-with-text",
    ),
    pytest.param(
        _recipe("JITTER StudyDate soon"),
        3,
        "JITTER needs a whole number of days or func:",
        id="jitter-not-a-number",
    ),
    pytest.param(
        _recipe("REMOVE matches:Patient"),
        3,
        r"unknown field expander 'matches'; expected all or one of contains, "
        r"startswith, endswith, except, select",
        id="unknown-expander",
    ),
    pytest.param(
        _recipe("REMOVE values:phi_list"),
        3,
        "values: lists are not supported yet; name the fields or use",
        id="values-expander",
    ),
    pytest.param(
        _recipe("REMOVE fields:phi_fields"),
        3,
        "fields: lists are not supported yet",
        id="fields-expander",
    ),
    pytest.param(
        _recipe("REMOVE select:modality:CT"),
        3,
        "select: expects select:VR:XX or select:group:GGGG",
        id="select-unknown",
    ),
    pytest.param(
        _recipe("REMOVE contains:(Patient"),
        3,
        "bad regular expression: ",
        id="bad-regex",
    ),
    pytest.param(
        "FORMAT dicom\n%header\nREMOVE PatientName\n%filter dangerscope\n",
        4,
        r"%filter needs a list name: blacklist, graylist, whitelist",
        id="filter-section",
    ),
    pytest.param(
        "FORMAT dicom\nREMOVE PatientName\n%header\n",
        2,
        "action outside a %header section",
        id="action-before-header",
    ),
    pytest.param(
        "FORMAT xml\n%header\nREMOVE PatientName\n",
        1,
        "expected 'FORMAT dicom'",
        id="bad-format",
    ),
    pytest.param(
        "FORMAT dicom extra\n%header\n",
        1,
        "expected 'FORMAT dicom'",
        id="format-extra-word",
    ),
    pytest.param(
        _recipe("REMOVE ReferencedImageSequence__ReferencedSOPInstanceUID"),
        3,
        r"nested field paths \(A__B\) are not supported; "
        "a field applies at every depth already",
        id="nested-field",
    ),
]


class TestInvalidRecipes:
    """Every malformed line is refused with the file and line in the message."""

    @pytest.mark.parametrize(("text", "line", "message"), INVALID)
    def test_compile_names_file_and_line(
        self, text: str, line: int, message: str
    ) -> None:
        """compile_recipe refuses the line, naming the file and line number."""
        with pytest.raises(RecipeError, match=rf"^{PATH}, line {line}: {message}"):
            compile_recipe(text, PATH)

    @pytest.mark.parametrize(("text", "line", "message"), INVALID)
    def test_load_names_the_file_path(
        self, tmp_path: Path, text: str, line: int, message: str
    ) -> None:
        """load_recipe names the file it read in the same message."""
        path = tmp_path / "study.recipe"
        path.write_text(text, encoding="utf-8")
        where = re.escape(f"{path}, line {line}: ")
        with pytest.raises(RecipeError, match=rf"^{where}{message}") as info:
            load_recipe(path)
        assert info.value.line == line
        assert info.value.path == str(path)

    def test_missing_file_is_refused(self, tmp_path: Path) -> None:
        """A recipe file that cannot be read is refused, naming the path."""
        path = tmp_path / "absent.recipe"
        where = re.escape(str(path))
        with pytest.raises(RecipeError, match=rf"^{where}: cannot read the recipe"):
            load_recipe(path)

    @pytest.mark.parametrize(
        "actions",
        [
            ("remove PatientName",),
            ("remove PatientName", "BLANK PatientID"),
        ],
    )
    def test_lowercase_action_is_refused_at_its_line(
        self, actions: tuple[str, ...]
    ) -> None:
        """deid skips a lower-case action, so it is refused at its own line."""
        with pytest.raises(RecipeError, match=rf"^{PATH}, line 3: .*'remove'"):
            compile_recipe(_recipe(*actions), PATH)

    def test_comments_and_blank_lines_count(self) -> None:
        """Line numbers count comments and blank lines as the editor does."""
        text = "# study recipe\nFORMAT dicom\n\n%header\n# names\n\nREMOV PatientName\n"
        with pytest.raises(RecipeError, match=rf"^{PATH}, line 7: unknown action"):
            compile_recipe(text, PATH)


class TestTagForms:
    """Fields written as keyword, tag or private creator match the same elements."""

    @pytest.mark.parametrize("field", ["PatientName", "(0010,0010)", "00100010"])
    def test_public_tag_forms(self, field: str) -> None:
        """Keyword, (GGGG,EEEE) and GGGGEEEE all name Patient's Name."""
        ds = Dataset()
        ds.PatientName = "QUIMBYWELL^ZEBEDIAH^Q"
        ds.PatientID = "0012345"
        ds.OtherPatientNames = "THISTLEHOLT^ZEBEDIAH"
        apply_recipe(ds, compile_recipe(_recipe(f"REMOVE {field}"), PATH), _context())
        assert "PatientName" not in ds
        assert ds.PatientID == "0012345"
        assert ds.OtherPatientNames == "THISTLEHOLT^ZEBEDIAH"

    def test_private_creator_form(self) -> None:
        """(GGGG,"creator",EE) removes that creator's element, not another's."""
        ds = Dataset()
        acme = ds.private_block(0x0009, ACME, create=True)
        acme.add_new(0x10, "LO", "QUIMBYWELL MRN 0012345")
        acme.add_new(0x11, "LO", "kept: other element of the block")
        other = ds.private_block(0x0009, "OTHER VENDOR", create=True)
        other.add_new(0x10, "LO", "kept: same element, other creator")
        tag = acme.get_tag(0x10)
        recipe = compile_recipe(_recipe(f'REMOVE (0009,"{ACME}",10)'), PATH)
        apply_recipe(ds, recipe, _context())

        assert tag not in ds
        assert acme.get_tag(0x11) in ds
        assert other.get_tag(0x10) in ds
        assert ds[other.get_tag(0x10)].value == "kept: same element, other creator"

    def test_private_creator_form_in_a_sequence(self) -> None:
        """The private creator form also matches inside sequence items."""
        item = Dataset()
        item.private_block(0x0009, ACME, create=True).add_new(0x10, "LO", "0012345")
        ds = Dataset()
        ds.ReferencedSeriesSequence = [item]
        recipe = compile_recipe(_recipe(f'REMOVE (0009,"{ACME}",10)'), PATH)
        apply_recipe(ds, recipe, _context())
        assert 0x00091010 not in ds.ReferencedSeriesSequence[0]

    def test_compiled_lookup_keys(self) -> None:
        """Each tag form compiles to a lookup by tag or by private creator."""
        text = _recipe(
            "BLANK PatientName",
            "BLANK (0010,0020)",
            "BLANK 00100030",
            f'REMOVE (0009,"{ACME}",10)',
            "REMOVE contains:Physician",
        )
        recipe = compile_recipe(text, PATH)
        assert sorted(recipe.by_tag) == [0x00100010, 0x00100020, 0x00100030]
        assert list(recipe.by_private) == [(0x0009, ACME, 0x10)]
        assert [rule.line for _, rule in recipe.dynamic] == [7]


class TestDigest:
    """The digest identifies the recipe text for provenance."""

    def test_digest_is_sha256_of_the_text(self) -> None:
        """compile_recipe's digest is the sha256 of the recipe text."""
        text = _recipe("REMOVE PatientName", "BLANK AccessionNumber")
        recipe = compile_recipe(text, PATH)
        assert recipe.digest == hashlib.sha256(text.encode("utf-8")).hexdigest()
        assert recipe.text == text
        assert recipe.path == PATH

    def test_loaded_digest_is_sha256_of_the_file(self, tmp_path: Path) -> None:
        """load_recipe's digest is the sha256 of the file's bytes."""
        path = tmp_path / "r.dicom"
        path.write_text(_recipe("REMOVE PatientName"), encoding="utf-8")
        recipe = load_recipe(path)
        assert recipe.digest == hashlib.sha256(path.read_bytes()).hexdigest()
        assert recipe.path == str(path)

    def test_any_change_changes_the_digest(self) -> None:
        """A one-character change to the text gives another digest."""
        first = compile_recipe(_recipe("REMOVE PatientName"), PATH)
        second = compile_recipe(_recipe("REMOVE PatientName "), PATH)
        assert first.digest != second.digest
