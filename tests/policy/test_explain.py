"""``exporter recipe explain`` and ``lint``: what a reviewer reads."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from typer.testing import CliRunner

from exporter.cli import app
from exporter.policy.explain import explain, to_csv
from exporter.policy.profile import DEFAULT_OPTIONS, build_recipe
from exporter.policy.recipe import compile_recipe

DOC = Path(__file__).resolve().parents[2] / "docs" / "explain-default.md"
runner = CliRunner()


def _recipe(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "custom.dicom"
    path.write_text("FORMAT dicom\n%header\n" + "\n".join(lines) + "\n")
    return path


def test_committed_explain_of_the_default_profile_is_current() -> None:
    """docs/explain-default.md is what the code says about the default profile."""
    result = runner.invoke(app, ["recipe", "explain"])
    assert result.exit_code == 0, result.output
    assert DOC.read_text() == result.stdout, (
        "run: exporter recipe explain > docs/explain-default.md"
    )


def test_every_table_row_of_the_default_profile_is_explained() -> None:
    """Each concrete Table E.1-1 row has a line naming its Annex E code and option."""
    compiled = compile_recipe(build_recipe(), "recipes/basic-profile.dicom")
    rows, findings = explain(compiled, DEFAULT_OPTIONS)
    decided = [r for r in rows if r.decided_by.startswith("E.1-1 ")]
    assert len(decided) >= 600
    assert findings == []
    assert [r.tag for r in rows] == sorted(
        [r.tag for r in rows if r.tag.startswith("(")]
    ) + [r.tag for r in rows if not r.tag.startswith("(")]


@pytest.mark.parametrize(
    ("tag", "action", "code", "decided"),
    [
        ("(0010,0010)", "REPLACE func:patient_id", "D", "E.1-1 Z (basic)"),
        ("(0008,0020)", "JITTER func:date_shift", "C", "retain_long_modified_dates"),
        ("(0008,0030)", "KEEP (times of day; dates are shifted)", "C", "modified"),
        ("(0010,0040)", "KEEP", "K", "retain_patient_characteristics"),
        ("(0020,000D)", "REPLACE func:uid", "U", "E.1-1 U (basic)"),
        ("(0008,1030)", "REMOVE", "X", "E.1-1 X (basic)"),
    ],
)
def test_rows_say_what_decided(tag: str, action: str, code: str, decided: str) -> None:
    """A row gives the action, its Annex E code, and the rule that decided it."""
    compiled = compile_recipe(build_recipe(), "recipes/basic-profile.dicom")
    rows, _ = explain(compiled, DEFAULT_OPTIONS)
    (row,) = [r for r in rows if r.tag == tag]
    assert (row.action, row.code) == (action, code)
    assert decided in row.decided_by
    assert "recipes/basic-profile.dicom:" in row.decided_by


def test_a_weak_custom_recipe_is_flagged(tmp_path: Path) -> None:
    """A recipe layered on the profile that keeps names is flagged, exit 3."""
    path = _recipe(tmp_path, "KEEP PatientName", "REMOVE ALL func:is_private")

    result = runner.invoke(app, ["recipe", "explain", str(path)])

    assert result.exit_code == 3
    assert (
        "| (0010,0010) | Patient's Name | Z | K | weaker than the table asks "
        "(Z, basic): K |" in result.stdout
    )
    assert f"{path}:3" in result.stdout
    findings = result.stdout.split("## Coverage")[1]
    assert findings.count("| weaker than the table asks") == 1


def test_csv_has_one_row_per_attribute_and_the_findings(tmp_path: Path) -> None:
    """The CSV form carries the same rows, with findings in their own column."""
    path = _recipe(tmp_path, "REMOVE PatientName", "KEEP PatientID")
    compiled = compile_recipe(path.read_text(), str(path))
    rows, findings = explain(compiled, None)
    table = list(csv.DictReader(io.StringIO(to_csv(rows, findings))))
    by_tag = {r["tag"]: r for r in table}
    assert list(table[0]) == [
        "tag",
        "keyword",
        "name",
        "action",
        "code",
        "decided_by",
        "finding",
    ]
    assert by_tag["(0010,0010)"]["action"] == "REMOVE"
    assert by_tag["(0010,0010)"]["finding"] == ""
    assert "weaker than the table asks" in by_tag["(0010,0020)"]["finding"]
    assert len(table) == len(rows) + len(
        {f.tag for f in findings} - {r.tag for r in rows}
    )


def test_options_change_the_policy() -> None:
    """--option none: the bare Basic Profile empties the study date, not shift it."""
    result = runner.invoke(app, ["recipe", "explain", "--option", "none"])
    assert result.exit_code == 0, result.output
    study_date = [line for line in result.stdout.splitlines() if "(0008,0020)" in line]
    assert study_date and "| BLANK | Z |" in study_date[0]


def test_unknown_option_is_a_usage_error() -> None:
    """An option name that is not a Table E.1-1 column is refused with the list."""
    result = runner.invoke(app, ["recipe", "explain", "--option", "retain_names"])
    assert result.exit_code == 2
    assert "unknown Annex E option(s) retain_names" in result.output


def test_lint_names_file_and_line(tmp_path: Path) -> None:
    """lint: exit 1 and the first problem with its file and line."""
    path = _recipe(tmp_path, "KEEP Modality", "REMOVE PatientNme")

    result = runner.invoke(app, ["recipe", "lint", str(path)])

    assert result.exit_code == 1
    assert f"{path}, line 4: unknown keyword 'PatientNme'" in result.stderr
    assert "did you mean PatientName?" in result.stderr


def test_lint_passes_a_good_recipe(tmp_path: Path) -> None:
    """lint: exit 0 and the number of rules."""
    path = _recipe(tmp_path, "REMOVE PatientName", "REPLACE PatientID func:patient_id")
    result = runner.invoke(app, ["recipe", "lint", str(path)])
    assert result.exit_code == 0
    assert result.stdout == f"{path}: 2 rules, no problem found\n"


def test_diff_shows_what_changes_between_two_recipes(tmp_path: Path) -> None:
    """diff: one row per attribute treated differently, both sides named."""
    a = _recipe(tmp_path, "REMOVE PatientName", "BLANK StudyDate")
    b = tmp_path / "b.dicom"
    b.write_text("FORMAT dicom\n%header\nREMOVE PatientName\nKEEP StudyDate\n")

    result = runner.invoke(app, ["recipe", "diff", str(a), str(b)])

    assert result.exit_code == 0, result.output
    assert "| (0008,0020) | Study Date | BLANK (Z) | KEEP (K) |" in result.stdout
    assert "(0010,0010)" not in result.stdout
    assert "1 attribute differs." in result.stdout


def test_diff_of_the_shipped_profiles_shows_the_options() -> None:
    """public-release -> basic-profile: dates shifted, characteristics kept."""
    root = DOC.parent.parent / "recipes"
    result = runner.invoke(
        app,
        [
            "recipe",
            "diff",
            str(root / "public-release.dicom"),
            str(root / "basic-profile.dicom"),
        ],
    )
    assert result.exit_code == 0
    assert "| (0008,0020) | Study Date | BLANK (Z) | JITTER func:date_shift (C) |" in (
        result.stdout
    )
    assert "| (0010,0040) | Patient's Sex | BLANK (Z) | KEEP (K) |" in result.stdout


def test_explain_says_which_option_won() -> None:
    """Device Identity (K) and Modified Dates (C) disagree: the explanation says so."""
    result = runner.invoke(
        app,
        [
            "recipe",
            "explain",
            "--option",
            "retain_device_identity",
            "--option",
            "retain_long_modified_dates",
        ],
    )
    assert result.exit_code == 0, result.output
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("| (0018,1200)")]
    assert "E.1-1 C (retain_long_modified_dates, over retain_device_identity K)" in line


def test_html_marks_the_weak_rows(tmp_path: Path) -> None:
    """--format html: one page, escaped, with the weak rows marked."""
    path = _recipe(tmp_path, "KEEP PatientName")
    result = runner.invoke(app, ["recipe", "explain", str(path), "--format", "html"])
    assert result.exit_code == 3
    assert result.stdout.startswith("<!doctype html>")
    assert '<tr class="weak"><td>(0010,0010)</td>' in result.stdout
    assert "Patient&#x27;s Name" in result.stdout
