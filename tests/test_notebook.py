"""The example notebook runs headless, top to bottom, so it never rots."""

import os
import shutil

import nbformat
from nbclient import NotebookClient
import pytest

# Executes the notebook in a kernel: real training, a SavedModel export.
pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "examples", "distill_in_a_notebook.ipynb")


def test_the_example_notebook_runs(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute(env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": ROOT})
    outputs = [
        output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs
    ]
    assert not [output for output in outputs if output.output_type == "error"]
    text = "".join(output.get("text", "") for output in outputs)
    assert "| test |" in text and "linear_cka" in text
    assert any("image/png" in output.get("data", {}) for output in outputs)
    exported = tmp_path / "saved_models" / "notebook" / "student_saved_model"
    assert (exported / "saved_model.pb").is_file()
    smoke = tmp_path / "saved_models" / "experiments" / "loss_surface-smoke"
    assert (smoke / "loss_plane.png").is_file() and "# Experiment `loss_surface`" in text
    shutil.rmtree(tmp_path / "saved_models")
