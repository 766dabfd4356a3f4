"""Tests for exporter.cli: exit codes and messages as a user sees them."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
from sqlalchemy.engine import make_url
from typer.testing import CliRunner, Result

from exporter import __version__
from exporter.cli import app
from exporter.state.db import shown_url
from exporter.synthetic import (
    PlantedStudy,
    SyntheticSource,
    make_source,
    write_manifest,
)
from exporter.workspace import DEFAULT_NAME, ENV_DATABASE, ENV_WORKSPACE

NOTE = "created workspace {} with a new random secret; back it up"
NO_PATIENT = "0000000"
RECONCILIATION_COLUMNS = [
    "row",
    "status",
    "studies",
    "instances_exported",
    "instances_quarantined",
    "instances_failed",
    "reasons",
]
DEMO_SEED = 2026


# Fixtures ----------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No workspace from the caller's environment; cwd and width are the test's."""
    monkeypatch.delenv(ENV_WORKSPACE, raising=False)
    monkeypatch.delenv(ENV_DATABASE, raising=False)
    # 80 columns is what rich assumes when stderr is a file or a CI log.
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="session")
def clean_source(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    """CT, MR and PT studies only: nothing to quarantine, no bad files."""
    root = tmp_path_factory.mktemp("clean-source")
    return make_source(root, seed=7, with_bad_files=False, with_burned_in=False)


@pytest.fixture(scope="session")
def burned_source(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    """The first patient also has an ultrasound and a secondary capture study."""
    root = tmp_path_factory.mktemp("burned-source")
    return make_source(root, seed=5, with_bad_files=False, with_burned_in=True)


@pytest.fixture(scope="session")
def full_source(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSource:
    """Burned-in studies and the files a reader must reject."""
    root = tmp_path_factory.mktemp("full-source")
    return make_source(root, seed=5, with_bad_files=True, with_burned_in=True)


# Helpers -----------------------------------------------------------------------


def invoke(*args: object) -> Result:
    """Run the command line in-process with ``args``."""
    return CliRunner().invoke(app, [str(arg) for arg in args])


def run_args(
    manifest: Path, source: Path, out: Path, workspace: Path | None, *extra: object
) -> list[object]:
    """Arguments of ``exporter run`` on one worker (fast and in-process)."""
    args: list[object] = ["run", manifest, "--source", source, "--out", out]
    if workspace is not None:
        args += ["--workspace", workspace]
    return [*args, "--workers", "1", *extra]


def report_line(out: Path) -> str:
    """Where the details point to the export's audit report."""
    return f"  report: {out / 'report.html'}"


def review_line(ws: Path) -> str:
    """Where the details point to the workspace's review page."""
    review = ws / "jobs" / job_id(ws) / "review.html"
    return f"  review (identifying pictures, workspace only): {review}"


def squeezed(text: str) -> str:
    """The text without whitespace: what was said, however the terminal wrapped it."""
    return re.sub(r"\s", "", text)


def clean_studies(source: SyntheticSource) -> list[PlantedStudy]:
    """The studies of ``source`` the release gate lets through."""
    return [s for s in source.studies if s.modality in ("CT", "MR") and not s.burned_in]


def instances(studies: Iterable[PlantedStudy]) -> int:
    """The number of instances in ``studies``."""
    return sum(len(study.paths) for study in studies)


def exported_files(out: Path) -> list[Path]:
    """The DICOM files in an export."""
    return sorted((out / "dicom").rglob("*.dcm")) if out.exists() else []


def reconciliation(out: Path) -> list[dict[str, str]]:
    """The rows of the export's reconciliation.csv, checking its header."""
    with (out / "reconciliation.csv").open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == RECONCILIATION_COLUMNS
        return list(reader)


def recon_row(
    row: int, status: str, studies: int, counts: tuple[int, int, int], reasons: str = ""
) -> dict[str, str]:
    """One expected reconciliation row; ``counts`` is exported, held, failed."""
    exported, held, failed = counts
    values = [row, status, studies, exported, held, failed, reasons]
    return dict(zip(RECONCILIATION_COLUMNS, map(str, values), strict=True))


def expected_summary(out: Path) -> str:
    """The summary line ``exporter run`` prints, from the export's provenance."""
    provenance = json.loads((out / "provenance.json").read_text(encoding="utf-8"))
    counts = provenance["counts"]
    rows = ", ".join(f"{n} {status}" for status, n in counts["rows_by_status"].items())
    return (
        f"export {provenance['export_id']}: {counts['instances_exported']} instances "
        f"exported ({counts['bytes_exported'] / 1e6:.1f} MB) from {counts['studies']} "
        f"studies; {counts['instances_quarantined']} quarantined, "
        f"{counts['instances_failed']} failed; manifest rows: {rows}"
    )


def job_id(ws: Path) -> str:
    """The id of the one job in a workspace (its private folder's name)."""
    (folder,) = (ws / "jobs").iterdir()
    return folder.name


def leaked(phi: Iterable[str], *texts: str) -> list[str]:
    """The planted strings that occur, on token boundaries, in any of ``texts``."""
    # Token boundaries: a numeric MRN may occur by chance inside a longer number.
    joined = "\n".join(texts)
    return sorted(
        value
        for value in phi
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(value)}(?![A-Za-z0-9])", joined)
    )


def stray_patient(source: SyntheticSource) -> str:
    """The PatientID of the instance whose pixel data is cut short."""
    header = pydicom.dcmread(
        source.bad_files["truncated-pixels"], stop_before_pixels=True
    )
    return str(header.PatientID)


# Exit 0 ------------------------------------------------------------------------


class TestExported:
    def test_clean_studies_exit_0(self, tmp_path: Path, clean_source: SyntheticSource):
        """Rows selecting clean CT and MR studies: all exported, summary on stdout."""
        studies = clean_studies(clean_source)
        rows = [{"AccessionNumber": s.accession} for s in studies[:-1]]
        rows.append({"StudyInstanceUID": studies[-1].study_uid})
        manifest = write_manifest(tmp_path / "cohort.csv", rows)
        out, ws = tmp_path / "export", tmp_path / "ws"

        result = invoke(*run_args(manifest, clean_source.root, out, ws))

        assert result.exit_code == 0, result.output
        assert result.stdout == expected_summary(out) + "\n"
        assert f"{instances(studies)} instances exported" in result.stdout
        assert f"manifest rows: {len(rows)} exported" in result.stdout
        assert squeezed(result.stderr) == squeezed(NOTE.format(ws))
        assert len(exported_files(out)) == instances(studies)
        assert [r["status"] for r in reconciliation(out)] == ["exported"] * len(rows)

    def test_quiet_prints_only_the_summary(
        self, tmp_path: Path, clean_source: SyntheticSource
    ):
        """--quiet: the summary line on stdout and nothing at all on stderr."""
        study = clean_studies(clean_source)[0]
        manifest = write_manifest(
            tmp_path / "c.csv", [{"AccessionNumber": study.accession}]
        )
        out = tmp_path / "export"

        result = invoke(
            *run_args(manifest, clean_source.root, out, tmp_path / "ws", "-q")
        )

        assert result.exit_code == 0, result.output
        assert result.stdout == expected_summary(out) + "\n"
        assert result.stderr == ""

    def test_default_workers(self, tmp_path: Path, clean_source: SyntheticSource):
        """Without --workers the run uses one worker per core and succeeds."""
        study = clean_studies(clean_source)[0]
        manifest = write_manifest(
            tmp_path / "c.csv", [{"AccessionNumber": study.accession}]
        )
        out = tmp_path / "export"
        args = ["run", manifest, "--source", clean_source.root, "--out", out]

        result = invoke(*args, "--workspace", tmp_path / "ws", "--quiet")

        assert result.exit_code == 0, result.output
        assert result.stdout == expected_summary(out) + "\n"


# Exit 3 ------------------------------------------------------------------------


class TestIncomplete:
    def test_burned_in_studies_are_held(
        self, tmp_path: Path, burned_source: SyntheticSource
    ):
        """Burned-in studies are quarantined: exit 3, reasons and reconciliation."""
        first = burned_source.studies[0].patient
        own = [s for s in burned_source.studies if s.patient == first]
        held = [s for s in own if s.burned_in]
        other = [s for s in clean_studies(burned_source) if s.patient != first][-1]
        rows = [
            {"PatientID": first.patient_id},
            {"AccessionNumber": held[0].accession},
            {"AccessionNumber": other.accession},
            {"PatientID": NO_PATIENT},
        ]
        manifest = write_manifest(tmp_path / "cohort.csv", rows)
        out, ws = tmp_path / "export", tmp_path / "ws"

        result = invoke(*run_args(manifest, burned_source.root, out, ws))

        assert result.exit_code == 3, result.output
        assert result.stdout == expected_summary(out) + "\n"
        assert (
            "2 quarantined, 0 failed; manifest rows: 1 exported, 1 failed, "
            "1 matched nothing, 1 partly exported\n"
        ) in result.stdout
        burned = "may carry burned-in text"
        details = [
            NOTE.format(ws),
            f"  {len(held)} x quarantined: {burned}",
            f"  per row: {out / 'reconciliation.csv'}; per file (workspace only): "
            f"{ws / 'jobs' / job_id(ws) / 'not-exported.csv'}",
            report_line(out),
            review_line(ws),
        ]
        assert squeezed(result.stderr) == squeezed("".join(details))
        assert reconciliation(out) == [
            recon_row(
                2, "partly exported", len(own), (instances(own) - 2, 2, 0), burned
            ),
            recon_row(3, "failed", 1, (0, 1, 0), burned),
            recon_row(4, "exported", 1, (len(other.paths), 0, 0)),
            recon_row(5, "matched nothing", 0, (0, 0, 0)),
        ]
        assert len(exported_files(out)) == instances(own) - 2 + len(other.paths)

    def test_row_matching_nothing(self, tmp_path: Path, clean_source: SyntheticSource):
        """A row that selects no study makes the run incomplete: exit 3."""
        study = clean_studies(clean_source)[0]
        rows = [{"AccessionNumber": study.accession}, {"PatientID": NO_PATIENT}]
        manifest = write_manifest(tmp_path / "cohort.csv", rows)
        out, ws = tmp_path / "export", tmp_path / "ws"

        result = invoke(*run_args(manifest, clean_source.root, out, ws))

        assert result.exit_code == 3, result.output
        assert result.stdout == expected_summary(out) + "\n"
        assert "manifest rows: 1 exported, 1 matched nothing\n" in result.stdout
        per_row = (
            f"  per row: {out / 'reconciliation.csv'}; per file (workspace only): "
            f"{ws / 'jobs' / job_id(ws) / 'not-exported.csv'}"
        )
        assert squeezed(result.stderr) == squeezed(
            NOTE.format(ws) + per_row + report_line(out)
        )
        assert reconciliation(out) == [
            recon_row(2, "exported", 1, (len(study.paths), 0, 0)),
            recon_row(3, "matched nothing", 0, (0, 0, 0)),
        ]

    def test_truncated_pixel_data_is_not_exported(
        self, tmp_path: Path, full_source: SyntheticSource
    ):
        """An instance whose pixel data is cut short never reaches the export."""
        rows = [{"PatientID": stray_patient(full_source)}]
        manifest = write_manifest(tmp_path / "cohort.csv", rows)
        out = tmp_path / "export"

        result = invoke(*run_args(manifest, full_source.root, out, tmp_path / "ws"))

        assert exported_files(out) == []
        assert result.exit_code == 3, result.output
        [row] = reconciliation(out)
        assert row["status"] in ("failed", "matched nothing")
        assert row["instances_exported"] == "0"


# Exit 1 ------------------------------------------------------------------------


@dataclass(frozen=True)
class JobError:
    """A command that cannot run, and the error it must print."""

    args: list[object]
    message: str
    workspace: Path
    out: Path
    creates_workspace: bool = False


def _cohort(tmp: Path, source: SyntheticSource) -> Path:
    """A valid manifest selecting one clean study."""
    study = clean_studies(source)[0]
    return write_manifest(tmp / "cohort.csv", [{"AccessionNumber": study.accession}])


def _unknown_column(tmp: Path, source: SyntheticSource) -> JobError:
    """A header cell that is no column, with a close match to suggest."""
    manifest = tmp / "cohort.csv"
    manifest.write_text("PatientID,Modalty\n0000001,CT\n", encoding="utf-8")
    message = (
        f"{manifest}, row 1, column Modalty: unknown column (did you mean "
        "'Modality'?); the accepted columns are PatientID, AccessionNumber, "
        "StudyInstanceUID, StudyDateFrom, StudyDateTo, Modality, SubjectID"
    )
    ws, out = tmp / "ws", tmp / "export"
    return JobError(run_args(manifest, source.root, out, ws), message, ws, out)


def _bad_date(tmp: Path, source: SyntheticSource) -> JobError:
    """An impossible StudyDateFrom on the second data row (file row 3)."""
    manifest = tmp / "cohort.csv"
    text = "PatientID,StudyDateFrom\n0000001,2020-01-31\n0000002,2020-02-30\n"
    manifest.write_text(text, encoding="utf-8")
    message = (
        f"{manifest}, row 3, column StudyDateFrom: the value is not a valid date; "
        "write it as YYYY-MM-DD or YYYYMMDD, for example 2024-03-31 or 20240331"
    )
    ws, out = tmp / "ws", tmp / "export"
    return JobError(run_args(manifest, source.root, out, ws), message, ws, out)


def _missing_manifest(tmp: Path, source: SyntheticSource) -> JobError:
    """A manifest path that names no file."""
    manifest = tmp / "cohrot.csv"
    message = f"{manifest}: no such file; check the path and the current folder"
    ws, out = tmp / "ws", tmp / "export"
    return JobError(run_args(manifest, source.root, out, ws), message, ws, out)


def _unknown_action(tmp: Path, source: SyntheticSource) -> JobError:
    """A recipe whose line 6 has a misspelt action."""
    recipe = tmp / "site.dicom"
    text = "FORMAT dicom\n\n%header\n\nREMOVE PatientName\nBLANKK PatientID\n"
    recipe.write_text(text, encoding="utf-8")
    message = (
        f"{recipe}, line 6: unknown action 'BLANKK' (did you mean BLANK?); "
        "expected one of ADD, BLANK, JITTER, KEEP, REPLACE, REMOVE"
    )
    ws, out = tmp / "ws", tmp / "export"
    args = run_args(_cohort(tmp, source), source.root, out, ws, "--recipe", recipe)
    return JobError(args, message, ws, out)


def _missing_source(tmp: Path, source: SyntheticSource) -> JobError:
    """A source folder that does not exist; refused before the workspace exists."""
    folder = tmp / "no-such-source"
    message = (
        f"source folder '{folder}' does not exist; a source is a folder, "
        "dicom://CALLED_AE@host:port, or an http(s) DICOMweb URL"
    )
    ws, out = tmp / "ws", tmp / "export"
    args = run_args(_cohort(tmp, source), folder, out, ws)
    return JobError(args, message, ws, out)


def _export_in_workspace(tmp: Path, source: SyntheticSource) -> JobError:
    """--out inside --workspace: the export would carry the linkage."""
    ws = tmp.resolve() / "ws"
    out = ws / "export"
    message = (
        f"export folder {out} is inside the workspace {ws}; choose an export "
        "folder outside it (the workspace holds the linkage)"
    )
    return JobError(
        run_args(_cohort(tmp, source), source.root, out, ws), message, ws, out
    )


def _workspace_in_export(tmp: Path, source: SyntheticSource) -> JobError:
    """--workspace inside --out: the secret would be shipped."""
    out = tmp.resolve() / "export"
    ws = out / "ws"
    message = (
        f"workspace {ws} is inside the export folder {out}; the secret and linkage "
        "would be shipped with the export"
    )
    return JobError(
        run_args(_cohort(tmp, source), source.root, out, ws), message, ws, out
    )


JOB_ERRORS: dict[str, Callable[[Path, SyntheticSource], JobError]] = {
    "unknown column": _unknown_column,
    "bad date on row 3": _bad_date,
    "missing manifest": _missing_manifest,
    "unknown recipe action": _unknown_action,
    "missing source folder": _missing_source,
    "export inside workspace": _export_in_workspace,
    "workspace inside export": _workspace_in_export,
}


class TestJobErrors:
    @pytest.mark.parametrize("case", list(JOB_ERRORS))
    def test_one_line_error_exit_1(
        self, case: str, tmp_path: Path, clean_source: SyntheticSource
    ):
        """A job that cannot run: exit 1 and one line naming the file and place."""
        error = JOB_ERRORS[case](tmp_path, clean_source)

        result = invoke(*error.args)

        assert result.exit_code == 1, result.output
        assert result.stdout == ""
        lines = [f"error: {error.message}"]
        if error.creates_workspace:
            lines.insert(0, NOTE.format(error.workspace))
        assert squeezed(result.stderr) == squeezed("".join(lines))
        assert error.workspace.exists() == error.creates_workspace
        assert not error.out.exists()
        # Last, as a log file or grep sees it: each message on one line.
        assert result.stderr == "".join(f"{line}\n" for line in lines)

    def test_one_line_error_in_a_real_process(
        self, tmp_path: Path, clean_source: SyntheticSource
    ):
        """``python -m exporter`` with stderr to a pipe: the error stays one line."""
        error = _bad_date(tmp_path, clean_source)

        done = run_module(error.args, tmp_path)

        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        assert done.stderr == f"error: {error.message}\n"


def run_module(args: Sequence[object], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m exporter`` with ``args`` in a child process."""
    env = {
        k: v for k, v in os.environ.items() if k not in (ENV_WORKSPACE, ENV_DATABASE)
    }
    env["COLUMNS"] = "80"
    return subprocess.run(
        [sys.executable, "-m", "exporter", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# Exit 2 ------------------------------------------------------------------------


class TestUsageErrors:
    @pytest.mark.parametrize(
        ("drop", "extra", "message"),
        [
            ("--out", [], "Missing option '--out'."),
            (None, ["--quiet", "--verbose"], "choose --quiet or --verbose, not both"),
            (None, ["--colour"], "No such option: --colour"),
        ],
        ids=["missing --out", "quiet with verbose", "unknown option"],
    )
    def test_usage_error_exit_2(
        self,
        drop: str | None,
        extra: list[str],
        message: str,
        tmp_path: Path,
        clean_source: SyntheticSource,
    ):
        """Bad arguments: exit 2, usage and the reason on stderr, nothing written."""
        manifest = _cohort(tmp_path, clean_source)
        ws, out = tmp_path / "ws", tmp_path / "export"
        args = run_args(manifest, clean_source.root, out, ws, *extra)
        if drop is not None:
            at = args.index(drop)
            del args[at : at + 2]

        result = invoke(*args)

        assert result.exit_code == 2, result.output
        assert result.stdout == ""
        assert result.stderr.startswith("Usage: ")
        assert message in result.stderr
        assert not ws.exists()
        assert not out.exists()


# Workspace ---------------------------------------------------------------------


class TestWorkspace:
    def test_created_once_with_a_note(
        self, tmp_path: Path, clean_source: SyntheticSource
    ):
        """The first run says it made a workspace and a secret; the second does not."""
        manifest = _cohort(tmp_path, clean_source)
        ws = tmp_path / "ws"

        first = invoke(*run_args(manifest, clean_source.root, tmp_path / "e1", ws))
        second = invoke(*run_args(manifest, clean_source.root, tmp_path / "e2", ws))

        assert (first.exit_code, second.exit_code) == (0, 0), first.output
        assert squeezed(first.stderr) == squeezed(NOTE.format(ws))
        assert second.stderr == ""
        secret = ws / "secret.key"
        assert re.fullmatch(r"[0-9a-f]{64}\n", secret.read_text(encoding="ascii"))
        assert secret.stat().st_mode & 0o777 == 0o600
        assert first.stderr == NOTE.format(ws) + "\n"

    def test_each_workspace_has_its_own_secret(
        self, tmp_path: Path, clean_source: SyntheticSource
    ):
        """Two new workspaces get two different random secrets."""
        manifest = _cohort(tmp_path, clean_source)
        for name in ("a", "b"):
            ws, out = tmp_path / f"ws-{name}", tmp_path / f"export-{name}"
            result = invoke(*run_args(manifest, clean_source.root, out, ws, "-q"))
            assert result.exit_code == 0, result.output

        secrets = {(tmp_path / f"ws-{n}" / "secret.key").read_text() for n in "ab"}
        assert len(secrets) == 2

    @pytest.mark.parametrize(
        ("option", "env", "expected"),
        [
            ("from-option", "from-env", "from-option"),
            (None, "from-env", "from-env"),
            (None, None, DEFAULT_NAME),
        ],
        ids=["option wins", "environment", "default in cwd"],
    )
    def test_where_the_workspace_is(
        self,
        option: str | None,
        env: str | None,
        expected: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        clean_source: SyntheticSource,
    ):
        """--workspace, else $EXPORTER_WORKSPACE, else ./exporter-workspace."""
        manifest = _cohort(tmp_path, clean_source)
        cwd = tmp_path / "cwd"
        cwd.mkdir()
        monkeypatch.chdir(cwd)
        if env is not None:
            monkeypatch.setenv(ENV_WORKSPACE, str(tmp_path / env))
        ws = None if option is None else tmp_path / option
        where = (cwd if expected == DEFAULT_NAME else tmp_path) / expected

        result = invoke(*run_args(manifest, clean_source.root, tmp_path / "export", ws))

        assert result.exit_code == 0, result.output
        assert squeezed(result.stderr) == squeezed(NOTE.format(where))
        assert (where / "secret.key").is_file()
        made = {p.name for p in [*tmp_path.iterdir(), *cwd.iterdir()] if p.is_dir()}
        assert made == {"cwd", "export", expected}


# A PostgreSQL state database ------------------------------------------------------

# Accepted and ignored by the test server's trust authentication.
DB_PASSWORD = "db-pw-never-shown"


def with_password(url: str) -> str:
    """``url`` with a password in it, as a user might give it."""
    return make_url(url).set(password=DB_PASSWORD).render_as_string(False)


class TestPostgresDatabase:
    def test_run_verify_and_linkage_on_postgresql(
        self,
        tmp_path: Path,
        clean_source: SyntheticSource,
        postgres_database: str,
        monkeypatch: pytest.MonkeyPatch,
    ):
        """--database-url (or the environment) serves run, verify and linkage."""
        url = with_password(postgres_database)
        manifest = _cohort(tmp_path, clean_source)
        out, ws = tmp_path / "export", tmp_path / "ws"

        database = ["--database-url", url]
        ran = invoke(*run_args(manifest, clean_source.root, out, ws, *database))
        verified = invoke("verify", out, "--workspace", ws, *database)
        monkeypatch.setenv(ENV_DATABASE, url)
        linkage = ["linkage", "export", "--out", tmp_path / "linkage.csv"]
        acknowledged = "--i-understand-this-identifies-patients"
        linked = invoke(*linkage, "--workspace", ws, acknowledged)

        assert ran.exit_code == 0, ran.output
        assert ran.stdout == expected_summary(out) + "\n"
        assert not (ws / "state.db").exists()
        assert verified.exit_code == 0, verified.output
        assert "nothing identifying found" in verified.stdout
        assert linked.exit_code == 0, linked.output
        rows = list(csv.DictReader((tmp_path / "linkage.csv").open()))
        assert {row["kind"] for row in rows} == {"patient", "uid", "date_offset"}
        for result in (ran, verified, linked):
            assert DB_PASSWORD not in result.output

    def test_another_workspace_is_refused(
        self, tmp_path: Path, clean_source: SyntheticSource, postgres_database: str
    ):
        """A database one workspace used is refused to another: one line, exit 1."""
        url = with_password(postgres_database)
        manifest = _cohort(tmp_path, clean_source)
        database = ["-q", "--database-url", url]
        first_ws, other = tmp_path / "ws1", tmp_path / "ws2"
        root = clean_source.root
        first = invoke(*run_args(manifest, root, tmp_path / "e1", first_ws, *database))

        ran = invoke(*run_args(manifest, root, tmp_path / "e2", other, *database))
        verified = invoke(
            "verify", tmp_path / "e1", "--workspace", other, *database[1:]
        )

        assert first.exit_code == 0, first.output
        expected = (
            f"error: state database {shown_url(url)} belongs to another workspace "
            "(made with another secret): pseudonyms would mix. Give this workspace "
            "its own database (--database-url or EXPORTER_DATABASE_URL), or use the "
            "workspace that database belongs to"
        )
        for result in (ran, verified):
            assert result.exit_code == 1
            # After the note that the new workspace was created, for run.
            assert squeezed(result.stderr).endswith(squeezed(expected))
            assert result.stderr.count("error:") == 1
            assert DB_PASSWORD not in result.output
        assert not (tmp_path / "e2").exists()

    def test_an_unreachable_database_is_one_line(
        self, tmp_path: Path, clean_source: SyntheticSource
    ):
        """No server at the URL: exit 1, one line naming it without the password."""
        pytest.importorskip("psycopg")
        url = f"postgresql+psycopg://u:{DB_PASSWORD}@127.0.0.1:9/state"
        manifest = _cohort(tmp_path, clean_source)

        database = ["-q", "--database-url", url]
        ws = tmp_path / "ws"
        result = invoke(
            *run_args(manifest, clean_source.root, tmp_path / "e", ws, *database)
        )

        assert result.exit_code == 1
        assert squeezed(result.stderr).startswith(
            squeezed(
                "error: cannot open the state database "
                "postgresql+psycopg://u@127.0.0.1:9/state: connection failed"
            )
        )
        assert DB_PASSWORD not in result.output


# Nothing identifying on the terminal --------------------------------------------


def _phi_cases(tmp: Path, source: SyntheticSource) -> dict[str, list[object]]:
    """Runs over ``source`` whose output must not name a patient."""
    first = source.studies[0]
    mrn = first.patient.patient_id
    everything = [{"AccessionNumber": s.accession} for s in source.studies]
    everything += [{"PatientID": stray_patient(source)}, {"PatientID": NO_PATIENT}]
    manifests = {
        "all": write_manifest(tmp / "all.csv", everything),
        "date": write_manifest(
            tmp / "date.csv",
            [{"PatientID": mrn, "StudyDateFrom": first.study_date[:4] + "-13-01"}],
        ),
        "wildcard": write_manifest(
            tmp / "wildcard.csv",
            [{"PatientID": first.patient.name.split("^")[0] + "*"}],
        ),
        "label": write_manifest(
            tmp / "label.csv",
            [
                {"PatientID": mrn, "SubjectID": source.studies[-1].patient.patient_id},
                {"PatientID": source.studies[-1].patient.patient_id},
            ],
        ),
    }
    out, ws = tmp / "export", tmp / "ws"
    return {
        "export with holds": run_args(manifests["all"], source.root, out, ws),
        "quiet export": run_args(manifests["all"], source.root, out, ws, "-q"),
        "bad date beside an MRN": run_args(manifests["date"], source.root, out, ws),
        "wildcard in a name": run_args(manifests["wildcard"], source.root, out, ws),
        "SubjectID is an MRN": run_args(manifests["label"], source.root, out, ws),
    }


class TestNothingIdentifying:
    @pytest.mark.parametrize(
        ("case", "code"),
        [
            ("export with holds", 3),
            ("quiet export", 3),
            ("bad date beside an MRN", 1),
            ("wildcard in a name", 1),
            ("SubjectID is an MRN", 1),
        ],
    )
    def test_no_phi_in_output(
        self,
        case: str,
        code: int,
        tmp_path: Path,
        full_source: SyntheticSource,
        caplog: pytest.LogCaptureFixture,
    ):
        """No planted identifier on stdout, stderr or in warnings, even on errors."""
        args = _phi_cases(tmp_path, full_source)[case]

        result = invoke(*args)

        assert result.exit_code == code, result.output
        phi = full_source.phi_strings()
        assert leaked(phi, result.stdout, result.stderr, caplog.text) == []

    def test_no_phi_in_a_real_process(
        self, tmp_path: Path, full_source: SyntheticSource
    ):
        """``python -m exporter`` at the default level prints nothing identifying."""
        args = _phi_cases(tmp_path, full_source)["export with holds"]

        done = run_module(args, tmp_path)

        assert done.returncode == 3, done.stderr
        assert leaked(full_source.phi_strings(), done.stdout, done.stderr) == []
        out = tmp_path / "export"
        recon = (out / "reconciliation.csv").read_text(encoding="utf-8")
        assert leaked(full_source.phi_strings(), recon) == []
        assert done.stdout.startswith(expected_summary(out))
        assert done.stdout.count("\n") == 1


# demo and --version ----------------------------------------------------------------


class TestDemo:
    @pytest.mark.parametrize("extra", [[], ["--workers", "1"]], ids=["default", "one"])
    def test_demo_prints_the_export(self, extra: list[str], tmp_path: Path):
        """``exporter demo DIR`` exits 0 and says where the export is."""
        folder = tmp_path / "demo"

        result = invoke("demo", folder, *extra)

        assert result.exit_code == 0, result.output
        assert (
            f"export (share this):      {folder / 'export'}"
            in result.stdout.splitlines()
        )
        assert (folder / "export" / "provenance.json").is_file()
        phi = make_source(tmp_path / "again", seed=DEMO_SEED).phi_strings()
        assert leaked(phi, result.stdout, result.stderr) == []


class TestVersion:
    def test_version(self):
        """--version prints the package version and exits 0."""
        result = invoke("--version")

        assert result.exit_code == 0
        assert result.stdout == f"exporter {__version__}\n"

    def test_version_in_a_real_process(self, tmp_path: Path):
        """``python -m exporter --version`` behaves the same."""
        done = run_module(["--version"], tmp_path)

        assert done.returncode == 0, done.stderr
        assert done.stdout == f"exporter {__version__}\n"
