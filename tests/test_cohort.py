"""Tests for exporter.cohort: reading and validating the cohort manifest."""

from __future__ import annotations

import codecs
import dataclasses
import datetime
import hashlib
import re
from pathlib import Path

import pytest

from exporter.cohort import Manifest, Selection, read_manifest
from exporter.errors import ManifestError


def write_csv(tmp_path: Path, text: str, *, bom: bool = False) -> Path:
    """Write ``text`` as UTF-8 bytes, line endings untouched, and return the path."""
    path = tmp_path / "cohort.csv"
    path.write_bytes((codecs.BOM_UTF8 if bom else b"") + text.encode("utf-8"))
    return path


def at(row: int, column: str | None = None) -> str:
    """Return a regex for the 'row N, column C: ' part of an error message."""
    where = f"row {row}" if column is None else f"row {row}, column {column}"
    return re.escape(f"{where}: ")


def assert_not_quoted(error: ManifestError, path: Path, *values: str) -> None:
    """Fail if the message, after the file name, quotes any of ``values``."""
    message = str(error).removeprefix(str(path))
    for value in values:
        assert value not in message


def selection(**fields: object) -> Selection:
    """Build a Selection with every field None except those given."""
    defaults: dict[str, object] = {
        name: None for name in (f.name for f in dataclasses.fields(Selection))
    }
    defaults["row"] = 2
    defaults.update(fields)
    return Selection(**defaults)  # type: ignore[arg-type]


class TestReadManifest:
    def test_each_key_column_selects(self, tmp_path: Path) -> None:
        """A row may select by PatientID, AccessionNumber or StudyInstanceUID."""
        path = write_csv(
            tmp_path,
            "PatientID,AccessionNumber,StudyInstanceUID\n"
            "PX-1,,\n"
            ",ACC-1,\n"
            ",,1.2.840.10008.99.1\n",
        )
        manifest = read_manifest(path)
        assert [s.row for s in manifest.selections] == [2, 3, 4]
        assert manifest.selections[0].patient_id == "PX-1"
        assert manifest.selections[1].accession_number == "ACC-1"
        assert manifest.selections[2].study_instance_uid == "1.2.840.10008.99.1"
        assert manifest.selections[0].accession_number is None

    def test_byte_order_mark_is_ignored(self, tmp_path: Path) -> None:
        """A UTF-8 BOM before the header does not become part of the first column."""
        path = write_csv(tmp_path, "PatientID,Modality\nPX-1,CT\n", bom=True)
        assert read_manifest(path).selections[0].patient_id == "PX-1"

    def test_headers_ignore_case_and_whitespace(self, tmp_path: Path) -> None:
        """Column headers match their keyword whatever the case and padding."""
        path = write_csv(
            tmp_path, " patientid ,MODALITY,\tStudyDATEfrom \nPX-1,CT,2020-01-01\n"
        )
        [row] = read_manifest(path).selections
        assert (row.patient_id, row.modality) == ("PX-1", "CT")
        assert row.date_from == datetime.date(2020, 1, 1)

    def test_leading_zeros_survive(self, tmp_path: Path) -> None:
        """Identifiers stay strings: '00123' is not turned into 123."""
        path = write_csv(
            tmp_path, "PatientID,AccessionNumber,SubjectID\n00123,000456,007\n"
        )
        [row] = read_manifest(path).selections
        assert (row.patient_id, row.accession_number, row.subject_id) == (
            "00123",
            "000456",
            "007",
        )

    def test_whitespace_around_cells_is_stripped(self, tmp_path: Path) -> None:
        """Spaces and tabs around every cell, quoted or not, are removed."""
        path = write_csv(
            tmp_path, 'PatientID,Modality,SubjectID\n  PX-1\t, " mr ",  S 1  \n'
        )
        [row] = read_manifest(path).selections
        assert (row.patient_id, row.modality, row.subject_id) == ("PX-1", "MR", "S 1")

    def test_blank_lines_are_skipped_and_rows_keep_their_line(
        self, tmp_path: Path
    ) -> None:
        """Blank lines, including lines of empty cells, are skipped, not renumbered."""
        path = write_csv(tmp_path, "\nPatientID,Modality\n\nPX-1,\n , \n\nPX-2,CT\n\n")
        manifest = read_manifest(path)
        assert [(s.row, s.patient_id) for s in manifest.selections] == [
            (4, "PX-1"),
            (7, "PX-2"),
        ]

    def test_windows_line_endings(self, tmp_path: Path) -> None:
        """CRLF line endings read the same as LF."""
        path = write_csv(tmp_path, "PatientID,Modality\r\nPX-1,CT\r\nPX-2,MR\r\n")
        manifest = read_manifest(path)
        assert [(s.row, s.modality) for s in manifest.selections] == [
            (2, "CT"),
            (3, "MR"),
        ]

    def test_short_row_leaves_missing_cells_empty(self, tmp_path: Path) -> None:
        """A row with fewer cells than headers has its trailing columns empty."""
        path = write_csv(tmp_path, "PatientID,Modality,StudyDateFrom\nPX-1\n")
        [row] = read_manifest(path).selections
        assert (row.modality, row.date_from) == (None, None)

    def test_multiline_quoted_cell_keeps_row_numbers(self, tmp_path: Path) -> None:
        """A quoted cell spanning lines does not shift later row numbers."""
        path = write_csv(tmp_path, 'PatientID,Modality\n"PX-1\n\n",CT\nPX-2,MR\n')
        manifest = read_manifest(path)
        assert [(s.row, s.patient_id) for s in manifest.selections] == [
            (2, "PX-1"),
            (5, "PX-2"),
        ]

    def test_unnamed_empty_column_is_accepted(self, tmp_path: Path) -> None:
        """A trailing column with no header and no values is harmless."""
        path = write_csv(tmp_path, "PatientID,Modality,\nPX-1,CT,\n")
        assert read_manifest(path).selections[0].modality == "CT"

    def test_manifest_records_path_and_digest(self, tmp_path: Path) -> None:
        """The manifest keeps the path as given and the SHA-256 of the file bytes."""
        path = write_csv(tmp_path, "PatientID\nPX-1\n", bom=True)
        manifest = read_manifest(str(path))
        assert isinstance(manifest, Manifest)
        assert manifest.path == str(path)
        assert manifest.digest == hashlib.sha256(path.read_bytes()).hexdigest()

    def test_subject_ids_map_patients_to_labels(self, tmp_path: Path) -> None:
        """subject_ids maps each PatientID to the SubjectID any of its rows gave."""
        path = write_csv(
            tmp_path,
            "PatientID,SubjectID,Modality\nPX-1,SUBJ-1,CT\nPX-1,,MR\n"
            "PX-1,SUBJ-1,US\nPX-2,,\n",
        )
        manifest = read_manifest(path)
        assert dict(manifest.subject_ids) == {"PX-1": "SUBJ-1"}
        assert [s.subject_id for s in manifest.selections] == [
            "SUBJ-1",
            None,
            "SUBJ-1",
            None,
        ]

    def test_results_are_immutable(self, tmp_path: Path) -> None:
        """Selections are frozen and the subject map cannot be changed."""
        manifest = read_manifest(write_csv(tmp_path, "PatientID,SubjectID\nP,S\n"))
        with pytest.raises(dataclasses.FrozenInstanceError, match="patient_id"):
            manifest.selections[0].patient_id = "other"  # type: ignore[misc]
        with pytest.raises(TypeError, match="does not support item assignment"):
            manifest.subject_ids["Q"] = "T"  # type: ignore[index]

    def test_modality_is_upper_cased(self, tmp_path: Path) -> None:
        """A modality written in lower case is stored in upper case."""
        path = write_csv(tmp_path, "PatientID,Modality\nPX-1, ct \n")
        assert read_manifest(path).selections[0].modality == "CT"


class TestDates:
    @pytest.mark.parametrize("text", ["2023-02-28", "20230228"])
    def test_both_date_formats(self, tmp_path: Path, text: str) -> None:
        """Dates may be written YYYY-MM-DD or YYYYMMDD."""
        path = write_csv(
            tmp_path, f"PatientID,StudyDateFrom,StudyDateTo\nPX-1,{text},{text}\n"
        )
        [row] = read_manifest(path).selections
        assert row.date_from == row.date_to == datetime.date(2023, 2, 28)

    @pytest.mark.parametrize(
        ("cells", "expected"),
        [
            ("2020-01-01,", (datetime.date(2020, 1, 1), None)),
            (",2020-12-31", (None, datetime.date(2020, 12, 31))),
            (",", (None, None)),
        ],
    )
    def test_open_ranges(
        self,
        tmp_path: Path,
        cells: str,
        expected: tuple[datetime.date | None, datetime.date | None],
    ) -> None:
        """Either bound of the date range may be left open."""
        path = write_csv(
            tmp_path, f"PatientID,StudyDateFrom,StudyDateTo\nPX-1,{cells}\n"
        )
        [row] = read_manifest(path).selections
        assert (row.date_from, row.date_to) == expected

    @pytest.mark.parametrize(
        "text",
        [
            "2023-02-30",
            "20231301",
            "2023/01/31",
            "31.01.2023",
            "2023-1-31",
            "23-01-31",
            "2023-01-31T00:00",
            "０２０２３０１３１",
            "00000101",
        ],
    )
    @pytest.mark.parametrize("column", ["StudyDateFrom", "StudyDateTo"])
    def test_bad_date(self, tmp_path: Path, text: str, column: str) -> None:
        """A malformed or impossible date names row and column, not the date."""
        path = write_csv(tmp_path, f"PatientID,{column}\nPX-1,{text}\n")
        with pytest.raises(
            ManifestError,
            match=at(2, column)
            + "the value is not a valid date; write it as YYYY-MM-DD or YYYYMMDD",
        ) as info:
            read_manifest(path)
        assert (info.value.row, info.value.column) == (2, column)
        assert_not_quoted(info.value, path, text, "PX-1")

    def test_from_after_to(self, tmp_path: Path) -> None:
        """A range whose start is after its end is refused."""
        path = write_csv(
            tmp_path,
            "PatientID,StudyDateFrom,StudyDateTo\nPX-1,2020-01-01,2020-01-01\n"
            "PX-1,2021-06-02,20210601\n",
        )
        with pytest.raises(
            ManifestError,
            match=at(3, "StudyDateFrom") + "StudyDateFrom is later than StudyDateTo",
        ) as info:
            read_manifest(path)
        assert_not_quoted(info.value, path, "2021", "PX-1")


class TestFileErrors:
    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is named and reported without a row."""
        path = tmp_path / "nope.csv"
        with pytest.raises(
            ManifestError, match=re.escape(f"{path}: no such file")
        ) as info:
            read_manifest(path)
        assert (info.value.row, info.value.column) == (None, None)

    def test_folder_instead_of_file(self, tmp_path: Path) -> None:
        """A folder given as the manifest is refused with a clear reason."""
        with pytest.raises(
            ManifestError, match=re.escape(f"{tmp_path}: this is a folder")
        ):
            read_manifest(tmp_path)

    @pytest.mark.parametrize(
        ("data", "line"),
        [
            ("PatientID\nMüller-7\n".encode("latin-1"), 2),
            ("PatientID\nMüller-7\n".encode("utf-16"), 1),
            (b"PatientID\nPX-1\nPX-2\n\xff\n", 4),
        ],
    )
    def test_not_utf8(self, tmp_path: Path, data: bytes, line: int) -> None:
        """A file in another encoding is refused, saying to save it as UTF-8."""
        path = tmp_path / "cohort.csv"
        path.write_bytes(data)
        with pytest.raises(
            ManifestError,
            match=re.escape(f"{path}: the file is not UTF-8 (first bad byte on line")
            + f" {line}.*save it as UTF-8",
        ) as info:
            read_manifest(path)
        assert info.value.row is None
        assert_not_quoted(info.value, path, "Müller", "M\ufffdller")

    @pytest.mark.parametrize(
        "data", [b"", b"\n\n", b"\r\n", codecs.BOM_UTF8, b" , \n  \n"]
    )
    def test_empty_file(self, tmp_path: Path, data: bytes) -> None:
        """A file with no header row is refused."""
        path = tmp_path / "cohort.csv"
        path.write_bytes(data)
        with pytest.raises(
            ManifestError, match=re.escape(f"{path}: the file is empty")
        ) as info:
            read_manifest(path)
        assert info.value.row is None

    def test_header_without_rows(self, tmp_path: Path) -> None:
        """A header with no data rows selects nothing and is refused."""
        path = write_csv(tmp_path, "PatientID,Modality\n\n , \n")
        with pytest.raises(
            ManifestError, match=re.escape(f"{path}: the file has a header but no")
        ):
            read_manifest(path)

    @pytest.mark.parametrize(
        ("text", "row"),
        [
            ('PatientID,Modality\nPX-1,CT\n"PX-2,MR\nPX-3,US\n', 3),
            ('PatientID,Modality\n"PX-1"x,CT\n', 2),
        ],
    )
    def test_malformed_csv(self, tmp_path: Path, text: str, row: int) -> None:
        """A stray quote fails on its row instead of swallowing later rows."""
        path = write_csv(tmp_path, text)
        with pytest.raises(ManifestError, match=at(row) + "not valid CSV") as info:
            read_manifest(path)
        assert info.value.column is None
        assert_not_quoted(info.value, path, "PX-")


class TestHeaderErrors:
    @pytest.mark.parametrize(
        ("header", "suggestion"),
        [
            ("Patient_ID", "'PatientID'"),
            ("Accession", "'AccessionNumber'"),
            ("Study Instance UID", "'StudyInstanceUID'"),
            ("StudyDate", "'StudyDateTo' or 'StudyDateFrom'"),
            ("StudyDateFrm", "'StudyDateFrom'"),
            ("Modalities", "'Modality'"),
        ],
    )
    def test_unknown_column_suggests_a_name(
        self, tmp_path: Path, header: str, suggestion: str
    ) -> None:
        """A misspelt column is named, with the closest keyword(s) suggested."""
        path = write_csv(tmp_path, f"PatientID, {header} \nPX-1,x\n")
        with pytest.raises(
            ManifestError,
            match=at(1, header)
            + re.escape(f"unknown column (did you mean {suggestion}?)")
            + ".*accepted columns are PatientID, AccessionNumber",
        ) as info:
            read_manifest(path)
        assert (info.value.row, info.value.column) == (1, header)

    def test_unknown_column_without_suggestion(self, tmp_path: Path) -> None:
        """A column nothing like a keyword lists the accepted columns only."""
        path = write_csv(tmp_path, "PatientID,Notes\nPX-1,x\n")
        with pytest.raises(
            ManifestError,
            match=at(1, "Notes")
            + re.escape("unknown column; the accepted columns are PatientID, ")
            + ".*SubjectID$",
        ):
            read_manifest(path)

    def test_duplicate_column(self, tmp_path: Path) -> None:
        """The same column twice, in any case, is refused."""
        path = write_csv(tmp_path, "PatientID,Modality,patientID\nPX-1,CT,PX-2\n")
        with pytest.raises(
            ManifestError,
            match=at(1, "PatientID")
            + re.escape("the column appears twice (cells 1 and 3)"),
        ):
            read_manifest(path)

    def test_no_key_column(self, tmp_path: Path) -> None:
        """A header without any key column cannot select studies."""
        path = write_csv(tmp_path, "Modality,StudyDateFrom\nCT,2020-01-01\n")
        with pytest.raises(
            ManifestError,
            match=at(1)
            + "no key column; add at least one of StudyInstanceUID, AccessionNumber",
        ):
            read_manifest(path)

    def test_data_in_header_row_is_not_quoted(self, tmp_path: Path) -> None:
        """A missing header is reported without quoting the data row it found."""
        path = write_csv(tmp_path, "00123,ACC-77,CT\n00124,ACC-78,MR\n")
        with pytest.raises(
            ManifestError, match=at(1) + "the first row is not a header"
        ) as info:
            read_manifest(path)
        assert info.value.column is None
        assert_not_quoted(info.value, path, "00123", "ACC-77")


# (csv text, row, column, message regex, identifying values that must not appear)
ROW_ERRORS = [
    pytest.param(
        "PatientID,Modality,StudyDateFrom\nPX-1,CT,\n,MR,2020-01-01\n",
        3,
        None,
        "selects nothing: give StudyInstanceUID, AccessionNumber or PatientID",
        ["2020"],
        id="no-key",
    ),
    pytest.param(
        "PatientID,Modality\nPX-1,CT,SECRET-9\n",
        2,
        None,
        "has 3 cells but the header names 2",
        ["PX-1", "SECRET-9"],
        id="too-many-cells",
    ),
    pytest.param(
        "PatientID,,Modality\nPX-1,SECRET-9,CT\n",
        2,
        None,
        "cell 2 has a value but its column has no header",
        ["PX-1", "SECRET-9"],
        id="value-under-unnamed-column",
    ),
    pytest.param(
        "AccessionNumber,SubjectID\nACC-1,SUBJ-1\n",
        2,
        "SubjectID",
        "needs a PatientID on the same row",
        ["ACC-1", "SUBJ-1"],
        id="subject-without-patient",
    ),
    *(
        pytest.param(
            f'StudyInstanceUID\n"{uid}"\n',
            2,
            "StudyInstanceUID",
            "not a DICOM UID: expected groups of digits separated by single dots",
            [uid],
            id=f"uid-{uid}",
        )
        for uid in ["1.2.", ".1.2", "1..2", "1.2.a3", "1.2 3", "1,2", "1.2.٣"]
    ),
    pytest.param(
        "StudyInstanceUID\n1." + "2" * 63 + "\n",
        2,
        "StudyInstanceUID",
        "65 characters long; a DICOM UID has at most 64",
        ["1." + "2" * 63],
        id="uid-too-long",
    ),
    *(
        pytest.param(
            f'PatientID,Modality\nPX-1,"{modality}"\n',
            2,
            "Modality",
            "not a modality code: use 1 to 16 letters or digits",
            ["PX-1"],
            id=f"modality-{modality}",
        )
        for modality in ["C T", "CT!", "X" * 17, "ＣＴ", "CT\\MR"]
    ),
    *(
        pytest.param(
            f'{column}\n"{value}"\n',
            2,
            column,
            "wildcard or a list",
            [value],
            id=f"{column}-{value}",
        )
        for column, value in [
            ("PatientID", "PX*"),
            ("PatientID", "PX-?1"),
            ("AccessionNumber", "ACC\\ACC2"),
        ]
    ),
    pytest.param(
        'PatientID\n"PX-1\nPX-2"\n',
        2,
        "PatientID",
        "line break or another control character",
        ["PX-1", "PX-2"],
        id="line-break-in-id",
    ),
    pytest.param(
        "PatientID\nPX-1\x00\n",
        2,
        "PatientID",
        "line break or another control character",
        ["PX-1"],
        id="nul-in-id",
    ),
    *(
        pytest.param(
            f"PatientID,AccessionNumber\n{cells}\n",
            2,
            column,
            "scientific notation; format the column as Text",
            [value],
            id=f"scientific-{value}",
        )
        for column, value, cells in [
            ("PatientID", "1.23457E+11", "1.23457E+11,"),
            ("AccessionNumber", "4E+15", "PX-1,4E+15"),
        ]
    ),
    pytest.param(
        "PatientID,SubjectID\nPX-1," + "S" * 65 + "\n",
        2,
        "SubjectID",
        "65 characters long; at most 64",
        ["PX-1", "S" * 65],
        id="subject-too-long",
    ),
    *(
        pytest.param(
            f'PatientID,SubjectID\nPX-1,"{subject}"\n',
            2,
            "SubjectID",
            "only printable ASCII characters and no backslash",
            ["PX-1", subject],
            id=f"subject-{subject!r}",
        )
        for subject in ["SUBJ\\1", "Sübj-1", "SUBJ\t1", "SUBJ\n1"]
    ),
    pytest.param(
        "PatientID,SubjectID\nPX-1,SUBJ-1\nPX-2,SUBJ-2\nPX-1,SUBJ-9\n",
        4,
        "SubjectID",
        "rows 2 and 4 give the same PatientID different SubjectIDs",
        ["PX-1", "SUBJ-1", "SUBJ-9"],
        id="one-patient-two-subjects",
    ),
    pytest.param(
        "PatientID,SubjectID\nPX-1,SUBJ-1\n\nPX-2,SUBJ-1\n",
        4,
        "SubjectID",
        "rows 2 and 4 give the same SubjectID to different PatientIDs",
        ["PX-1", "PX-2", "SUBJ-1"],
        id="one-subject-two-patients",
    ),
    pytest.param(
        "PatientID,SubjectID\nPX-1,PX-1\n",
        2,
        "SubjectID",
        "equals the PatientID on row 2; a research label must not be a patient",
        ["PX-1"],
        id="subject-is-own-patient-id",
    ),
    pytest.param(
        "PatientID,SubjectID\nPX-1,SUBJ-1\nPX-2,PX-1\n",
        3,
        "SubjectID",
        "equals the PatientID on row 2",
        ["PX-1", "PX-2", "SUBJ-1"],
        id="subject-is-other-patient-id",
    ),
    pytest.param(
        'PatientID,Modality\n"PX-1\n",CT\n"PX-2\n\n",MR\n,US\n',
        7,
        None,
        "selects nothing",
        ["PX-1", "PX-2"],
        id="row-after-multiline-cells",
    ),
]


class TestRowErrors:
    @pytest.mark.parametrize(
        ("text", "row", "column", "message", "secrets"), ROW_ERRORS
    )
    def test_row_error(
        self,
        tmp_path: Path,
        text: str,
        row: int,
        column: str | None,
        message: str,
        secrets: list[str],
    ) -> None:
        """Each broken rule names its row and column and quotes no value."""
        path = write_csv(tmp_path, text)
        with pytest.raises(
            ManifestError, match=at(row, column) + ".*" + message
        ) as info:
            read_manifest(path)
        assert (info.value.path, info.value.row, info.value.column) == (
            str(path),
            row,
            column,
        )
        assert_not_quoted(info.value, path, *secrets)

    def test_first_bad_row_is_reported(self, tmp_path: Path) -> None:
        """Rows are checked in file order and the first failure is raised."""
        path = write_csv(tmp_path, "PatientID,Modality\nPX-1,CT\nPX-2,C!\n,MR\n")
        with pytest.raises(ManifestError, match=at(3, "Modality")):
            read_manifest(path)


class TestMatchesStudy:
    @pytest.mark.parametrize(
        ("fields", "study_date", "modalities", "expected"),
        [
            ({}, None, [], True),
            ({}, "garbage", ["CT"], True),
            ({"date_from": datetime.date(2020, 1, 1)}, "20200101", [], True),
            ({"date_from": datetime.date(2020, 1, 1)}, "20191231", [], False),
            ({"date_to": datetime.date(2020, 1, 31)}, "20200131", [], True),
            ({"date_to": datetime.date(2020, 1, 31)}, "20200201", [], False),
            ({"date_to": datetime.date(2020, 1, 31)}, " 20200115 ", [], True),
            (
                {
                    "date_from": datetime.date(2020, 1, 1),
                    "date_to": datetime.date(2020, 12, 31),
                },
                "20200615",
                [],
                True,
            ),
            ({"date_from": datetime.date(2020, 1, 1)}, None, [], False),
            ({"date_from": datetime.date(2020, 1, 1)}, "", [], False),
            ({"date_to": datetime.date(2020, 1, 1)}, "2019-06-01", [], False),
            ({"date_to": datetime.date(2020, 1, 1)}, "20190230", [], False),
            ({"date_to": datetime.date(2020, 1, 1)}, "2019.06.01", [], False),
            ({"modality": "CT"}, None, ["SR", "CT"], True),
            ({"modality": "CT"}, None, ["SR", "ct "], True),
            ({"modality": "CT"}, None, ["MR", "PR"], False),
            ({"modality": "CT"}, None, [], False),
            ({"modality": "CT"}, None, "CT", True),
            ({"modality": "CT"}, None, "MR\\CT", True),
            ({"modality": "MR"}, None, "CT", False),
            (
                {"modality": "MR", "date_from": datetime.date(2020, 1, 1)},
                "20210101",
                ("CT",),
                False,
            ),
            (
                {"modality": "MR", "date_from": datetime.date(2020, 1, 1)},
                "20190101",
                ("MR",),
                False,
            ),
            (
                {"modality": "MR", "date_from": datetime.date(2020, 1, 1)},
                "20210101",
                iter(["MR"]),
                True,
            ),
        ],
    )
    def test_narrowing(
        self,
        fields: dict[str, object],
        study_date: str | None,
        modalities: list[str],
        expected: bool,
    ) -> None:
        """Bounds are inclusive, an undated study fails a bound, any series counts."""
        assert selection(**fields).matches_study(study_date, modalities) is expected

    def test_selection_from_file_narrows(self, tmp_path: Path) -> None:
        """A selection read from a manifest narrows by its parsed date and modality."""
        path = write_csv(
            tmp_path,
            "PatientID,StudyDateFrom,StudyDateTo,Modality\nPX-1,2020-01-01,20200131,mr\n",
        )
        [row] = read_manifest(path).selections
        assert row.matches_study("20200110", ["SR", "MR"])
        assert not row.matches_study("20200201", ["MR"])
        assert not row.matches_study("20200110", ["CT"])
