"""The notebooks in ``notebooks/`` run from top to bottom, on CPU, in a temporary folder.

Each notebook is executed with nbclient in the kernel of the running interpreter (the
``python3`` kernel spec resolves to it), with its working directory, feature cache and W&B
set to temporary places, so nothing is written into the repository. The notebooks are
committed without outputs; these tests are what executes them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
CELL_TIMEOUT_S = 300


def execute(name: str, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> nbformat.NotebookNode:
    """Run ``notebooks/{name}`` in ``workdir``; return the notebook with its outputs."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("MTS_LIGHTNING_CACHE", str(workdir / "feature-cache"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    # A first cell (in this copy only) reports which interpreter and folder the kernel runs in.
    probe = "import os, sys\nprint(sys.prefix)\nprint(os.getcwd())"
    nb.cells.insert(0, nbformat.v4.new_code_cell(probe))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT_S,
        resources={"metadata": {"path": str(workdir)}},
    )
    start = time.perf_counter()
    client.execute()
    print(f"{name}: executed in {time.perf_counter() - start:.1f} s")
    prefix, cwd = nb.cells[0].outputs[0]["text"].splitlines()[:2]
    assert Path(prefix).resolve() == Path(sys.prefix).resolve(), "kernel uses another Python"
    assert Path(cwd).resolve() == workdir.resolve()
    return nb


def outputs(nb: nbformat.NotebookNode) -> tuple[str, int]:
    """All printed text of ``nb`` joined, and the number of PNG figures it shows."""
    text, images = [], 0
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out["output_type"] != "error", out
            if out["output_type"] == "stream" and out["name"] == "stdout":
                text.append(out["text"])
            elif "data" in out:
                images += "image/png" in out["data"]
                text.append(out["data"].get("text/plain", ""))
    return "\n".join(text), images


def stray_outputs() -> set[Path]:
    """What a notebook run in the repository would leave there (logs, caches, figures)."""
    names = ("logs", "lightning_logs", "wandb", "feature-cache", "*.png", "*.csv")
    return {p for folder in (NOTEBOOKS.parent, NOTEBOOKS) for n in names for p in folder.glob(n)}


def test_notebooks_are_committed_without_outputs():
    names = sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["01_mts_layer.ipynb", "02_train_synthetic.ipynb"]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(nb)
        assert nb.metadata["kernelspec"]["name"] == "python3"
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


def test_mts_layer_notebook(tmp_path, monkeypatch):
    before = stray_outputs()
    nb = execute("01_mts_layer.ipynb", tmp_path, monkeypatch)
    text, images = outputs(nb)
    # Kernels drawn, spectrogram, winner map, usage bars, stretched inputs.
    assert images >= 5
    assert "branch kernel sizes (time, freq): ((9, 9), (6, 9), (12, 9))" in text
    for stretch in (0.6, 1.0, 1.6):
        assert f"stretch {stretch}: all [" in text
    assert "outputs unchanged: True" in text
    assert "same state-dict keys and shapes: True" in text
    assert stray_outputs() == before


def test_train_synthetic_notebook(tmp_path, monkeypatch):
    before = stray_outputs()
    nb = execute("02_train_synthetic.ipynb", tmp_path, monkeypatch)
    text, images = outputs(nb)
    # Examples per class, learning curves, stretch usage, confusion matrix.
    assert images >= 4
    log_dir = tmp_path / "logs" / "mts" / "version_0"
    for produced in ("metrics.csv", "stretch_usage.png", "split_speakers.json"):
        assert (log_dir / produced).is_file(), produced
    assert list((log_dir / "confusion_matrix").glob("test_*.png"))
    for metric in ("test/WA", "test/UA", "test/macro_F1"):
        assert metric in text
    for model in ("mts (average)", "conv", "mts (autograd)"):
        assert model in text
    assert "backbone.features.0" in text
    assert any((tmp_path / "feature-cache").rglob("*")), "features not cached under tmp"
    assert stray_outputs() == before
