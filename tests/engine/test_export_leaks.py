"""A whole export, every byte of it, holds none of the planted identifiers."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from exporter.engine.job import RunRequest, run_job
from exporter.synthetic import make_source, write_manifest


def _pattern(value: str) -> re.Pattern[bytes]:
    # Digits only where they stand alone: a 7-digit MRN can occur by chance
    # inside the 39-digit tail of a 2.25 UID.
    body = re.escape(value.encode())
    if value.isdigit():
        return re.compile(rb"(?<![0-9])" + body + rb"(?![0-9])")
    return re.compile(body, re.IGNORECASE)


# Each policy the export must hold up under: the default, the bare Basic
# Profile, and the options that keep more (cleaned text, safe private data).
POLICIES = {
    "default": None,
    "basic": frozenset(),
    "clean-descriptors+safe-private": frozenset(
        {"clean_descriptors", "retain_safe_private", "retain_long_modified_dates"}
    ),
}


@pytest.fixture(scope="module", params=sorted(POLICIES))
def export(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    state_backend: str,
) -> tuple[Path, set[str]]:
    root = tmp_path_factory.mktemp("leaks")
    source = make_source(root / "source", seed=99, patients=3, studies_per_patient=2)
    rows = [{"PatientID": s.patient.patient_id} for s in source.studies]
    manifest = write_manifest(root / "cohort.csv", rows)
    out = root / "export"
    summary = run_job(
        RunRequest(
            manifest,
            str(root / "source"),
            out,
            workspace=root / "ws",
            workers=2,
            options=POLICIES[request.param],
        )
    )
    assert summary.exported > 0
    return out, source.phi_strings()


def test_no_planted_value_in_any_file(export: tuple[Path, set[str]]) -> None:
    """No planted value appears in the bytes of any exported file."""
    out, phi = export
    patterns = [(value, _pattern(value)) for value in phi]
    found = {}
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            hits = [value for value, pattern in patterns if pattern.search(data)]
            if hits:
                found[str(path.relative_to(out))] = hits
    assert found == {}


def test_no_planted_value_in_any_path(export: tuple[Path, set[str]]) -> None:
    """No planted value appears in the name of any exported file or folder."""
    out, phi = export
    names = "\n".join(str(p.relative_to(out)) for p in out.rglob("*")).encode()
    assert [v for v in phi if _pattern(v).search(names)] == []


def test_no_planted_value_in_the_catalog_values(export: tuple[Path, set[str]]) -> None:
    """The decoded catalog values (not only their compressed bytes) are clean."""
    out, phi = export
    text = "\n".join(
        str(pq.read_table(p).to_pylist()) for p in (out / "catalog").glob("*.parquet")
    ).encode()
    assert [v for v in phi if _pattern(v).search(text)] == []


def test_the_planted_values_are_in_the_source(tmp_path: Path) -> None:
    """The check can fail: the same scan finds planted values in the source."""
    source = make_source(
        tmp_path / "source", seed=99, patients=1, studies_per_patient=1
    )
    data = b"".join(p.read_bytes() for s in source.studies for p in s.paths)
    assert any(_pattern(v).search(data) for v in source.phi_strings())
