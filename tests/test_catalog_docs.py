"""docs/catalog.md documents exactly the schemas of exporter.catalog."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pytest

from exporter.catalog import SCHEMA_VERSION, TABLES

DOC = Path(__file__).resolve().parents[1] / "docs" / "catalog.md"

# A column row of a table section: | `name` | `arrow type` | meaning |
_COLUMN_ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*`([^`]+)`\s*\|")


def documented_columns(text: str) -> dict[str, list[tuple[str, str]]]:
    """The (column, Arrow type) rows under each heading named after a table."""
    tables: dict[str, list[tuple[str, str]]] = {}
    current: str | None = None
    for line in text.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip()
            current = title if title in TABLES else None
            if current is not None:
                tables.setdefault(current, [])
            continue
        match = _COLUMN_ROW.match(line)
        if current is not None and match:
            tables[current].append((match[1], match[2]))
    return tables


def schema_columns(schema: pa.Schema) -> list[tuple[str, str]]:
    """The (column, Arrow type) pairs of a schema, in file order."""
    return [(field.name, str(field.type)) for field in schema]


@pytest.fixture(scope="module")
def doc_text() -> str:
    """The text of docs/catalog.md."""
    return DOC.read_text(encoding="utf-8")


class TestDocumentedColumns:
    @pytest.mark.parametrize("table", sorted(TABLES))
    def test_columns_and_types_match_schema(self, doc_text: str, table: str) -> None:
        """Each table section lists every column, in order, with its Arrow type."""
        documented = documented_columns(doc_text)
        assert table in documented, f"docs/catalog.md has no '### {table}' section"
        assert documented[table] == schema_columns(TABLES[table])

    def test_no_section_for_an_unknown_table(self, doc_text: str) -> None:
        """The doc documents the catalog tables and no others."""
        assert set(documented_columns(doc_text)) == set(TABLES)

    def test_parser_stops_at_the_next_heading(self) -> None:
        """Rows after a table's section, such as metadata keys, are not columns."""
        text = (
            "### studies\n| `series` | `int32` | Series |\n"
            "## Schema metadata\n| `exporter.version` | `0.1.0` |\n"
        )
        assert documented_columns(text) == {"studies": [("series", "int32")]}


class TestDocumentedVersion:
    def test_schema_version_matches_code(self, doc_text: str) -> None:
        """The versioning section names the current SCHEMA_VERSION."""
        assert f"describes version `{SCHEMA_VERSION}`" in doc_text

    def test_metadata_keys_are_documented(self, doc_text: str) -> None:
        """Each schema metadata key written with the catalogs has a row in the doc."""
        for key in (
            "exporter.export_id",
            "exporter.recipe_sha256",
            "exporter.version",
            "exporter.schema_version",
        ):
            assert f"| `{key}` |" in doc_text, key
