"""notebooks/explore_catalog.ipynb runs cleanly against a demo export."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from exporter.demo import run_demo

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_catalog.ipynb"


def _outputs_text(cell: nbformat.NotebookNode) -> str:
    """The text a code cell printed or returned."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def _tagged(nb: nbformat.NotebookNode, tag: str) -> nbformat.NotebookNode:
    """The one code cell carrying ``tag``."""
    cells = [c for c in nb.cells if tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"expected one cell tagged {tag!r}, found {len(cells)}"
    return cells[0]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> nbformat.NotebookNode:
    """The notebook, executed against a freshly built demo export."""
    demo = tmp_path_factory.mktemp("notebook") / "demo"
    assert run_demo(demo, workers=1, echo=lambda s: None) == 0

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # "python3" resolves without a registered kernelspec: jupyter_client falls
    # back to ipykernel's own spec and starts it with this interpreter.
    client = NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    with pytest.MonkeyPatch.context() as mp:
        # The kernel inherits this process's environment.
        mp.setenv("EXPORT_DIR", str(demo / "export"))
        client.execute()
    return nb


class TestStoredNotebook:
    def test_is_clean(self) -> None:
        """The committed notebook is nbformat 4 and stores no outputs."""
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nbformat.validate(nb)
        assert nb.nbformat == 4
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert code
        assert all(not c.outputs and c.execution_count is None for c in code)

    def test_each_code_cell_follows_markdown(self) -> None:
        """Every code cell is introduced by a markdown cell."""
        nb = nbformat.read(NOTEBOOK, as_version=4)
        for before, cell in zip(nb.cells, nb.cells[1:], strict=False):
            if cell.cell_type == "code":
                assert before.cell_type == "markdown", cell.source[:60]


class TestExecutedNotebook:
    def test_no_cell_raised(self, executed: nbformat.NotebookNode) -> None:
        """Every code cell ran and none produced an error output."""
        for cell in executed.cells:
            if cell.cell_type != "code":
                continue
            assert cell.execution_count is not None, cell.source[:60]
            errors = [o for o in cell.outputs if o.output_type == "error"]
            assert not errors, f"{errors[0].ename}: {errors[0].evalue}"

    def test_duckdb_cell_counts_ct(self, executed: nbformat.NotebookNode) -> None:
        """The DuckDB queries list the demo's CT instances."""
        text = _outputs_text(_tagged(executed, "duckdb"))
        assert "Instances per modality" in text
        assert "CT" in text

    def test_consistency_checks_pass(self, executed: nbformat.NotebookNode) -> None:
        """The assertion cell reports the catalogs consistent."""
        text = _outputs_text(_tagged(executed, "checks"))
        assert text.startswith("consistent: "), text
