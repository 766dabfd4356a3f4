"""report.html: the audit page of every export, built from its verified records."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

from exporter.engine.job import RunRequest, run_job
from exporter.synthetic import make_source, write_manifest


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.headings: list[str] = []
        self.text: list[str] = []
        self._in_heading = False

    def handle_starttag(self, tag: str, attrs: object) -> None:
        self._in_heading = tag in ("h1", "h2", "h3")

    def handle_endtag(self, tag: str) -> None:
        self._in_heading = False

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._in_heading:
            self.headings.append(data.strip())


def test_report_says_what_happened_and_nothing_identifying(tmp_path: Path) -> None:
    """Sections, counts and verdict from provenance; planted values absent."""
    source = make_source(tmp_path / "src", seed=8, patients=2, with_bad_files=False)
    patients = sorted({s.patient.patient_id for s in source.studies})
    rows = [{"PatientID": p} for p in patients] + [{"PatientID": "NOBODY"}]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "out"
    summary = run_job(RunRequest(manifest, str(source.root), out, tmp_path / "ws"))

    page = (out / "report.html").read_text()
    parser = _Text()
    parser.feed(page)
    text = " ".join(parser.text)
    assert parser.headings[:1] == [f"Export {summary.export_id}: audit report"]
    for heading in (
        "Summary",
        "Verification",
        "Manifest reconciliation",
        "Instances not exported, by reason",
        "Pixel data",
        "Policy",
    ):
        assert heading in parser.headings
    assert "Verified: no identifying value seen in the export." in text
    assert "matched nothing" in text  # the NOBODY row, by number only
    assert "NOBODY" not in page
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["recipe"]["sha256"] in page
    for value in source.phi_strings():
        if len(value) >= 5:
            assert value.lower() not in page.lower(), "planted value in the report"
    assert summary.findings == {}  # the report itself was verified
