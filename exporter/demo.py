"""``exporter demo``: a synthetic source with planted PHI, a manifest, an export."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from exporter.engine.job import RunRequest, run_job
from exporter.policy.profile import DEFAULT_OPTIONS
from exporter.synthetic import make_source, write_manifest


def run_demo(directory: Path, workers: int, echo: Callable[[str], None] = print) -> int:
    """Build the demo under ``directory`` and export it; returns an exit code.

    The demo source holds studies that may carry burned-in text (ultrasound,
    secondary capture): they are quarantined on purpose, to show the gate. The
    demo succeeds (0) when everything else was exported.
    """
    directory = directory.expanduser().resolve()
    source_dir = directory / "source"
    # Deterministic: running the demo again rewrites the same bytes.
    source = make_source(source_dir, seed=2026)
    studies = list(source.studies)
    first, second = studies[0].patient, studies[-1].patient
    rows = [
        {"PatientID": first.patient_id, "SubjectID": "SUBJ-001"},
        {"AccessionNumber": studies[2].accession},
        {"StudyInstanceUID": studies[3].study_uid},
        {
            "PatientID": second.patient_id,
            "StudyDateFrom": "1990-01-01",
            "Modality": "CT",
        },
        {"PatientID": "0000000"},
    ]
    manifest = write_manifest(directory / "cohort.csv", rows)
    # With the pixels extra, burned-in text is scrubbed and the captures are
    # released; without it they are quarantined, as the gate requires.
    scrub = importlib.util.find_spec("rapidocr") is not None
    options = DEFAULT_OPTIONS | {"clean_pixel_data"} if scrub else None
    summary = run_job(
        RunRequest(
            manifest=manifest,
            source=str(source_dir),
            out=directory / "export",
            workspace=directory / "workspace",
            workers=workers,
            options=options,
        )
    )
    captures = sum(len(s.paths) for s in studies if s.burned_in)
    expected_held = 0 if scrub else captures
    echo(f"source (synthetic PHI):   {source_dir}")
    echo(f"cohort manifest:          {manifest}")
    echo(f"export (share this):      {summary.out_dir}")
    echo(f"  anonymized DICOM:       {summary.out_dir / 'dicom'}")
    echo(f"  Parquet catalogs:       {summary.out_dir / 'catalog'}")
    echo(f"  per-row reconciliation: {summary.out_dir / 'reconciliation.csv'}")
    echo(f"  provenance:             {summary.out_dir / 'provenance.json'}")
    echo(f"  audit report:           {summary.out_dir / 'report.html'}")
    echo(f"workspace (keep private): {summary.workspace}")
    if summary.review is not None:
        echo(f"  review (before/after):  {summary.review}")
    echo(
        f"{summary.exported} instances exported from {summary.studies} studies "
        f"({summary.pixels_cleaned} with burned-in text scrubbed); "
        f"{summary.quarantined} quarantined (expected {expected_held}); "
        f"{summary.failed} failed; "
        f"{summary.rows_status['matched nothing']} manifest row matched nothing "
        "(on purpose)"
    )
    ok = summary.failed == 0 and summary.quarantined == expected_held
    ok = ok and (not scrub or summary.pixels_cleaned == captures)
    return 0 if ok else 3
