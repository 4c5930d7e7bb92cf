"""The notebooks run end to end (nbclient, kernel "python3") with small settings.

Each notebook has a cell tagged "parameters"; the test inserts a cell right after it that
overrides those settings, then executes every cell in a temporary working directory.
"""
from __future__ import annotations

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "notebooks")


def run_notebook(name: str, overrides: str, cwd, timeout: int = 600):
    """Execute notebooks/<name> with ``overrides`` (Python source) after its parameters cell;
    returns the executed notebook."""
    nb = nbformat.read(os.path.join(NOTEBOOKS, name), as_version=4)
    idx = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(idx + 1, nbformat.v4.new_code_cell(overrides))
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def _text(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            if o.get("output_type") == "stream":
                out.append(o.get("text", ""))
            elif "data" in o and "text/plain" in o["data"]:
                out.append(o["data"]["text/plain"])
    return "\n".join(out)


def test_notebook_01_trajectory_optimization(tmp_path):
    """Task, Adam vs CEM at equal wall time, MuJoCo replay, MPC on a 20% heavier plant, GIF, the
    pushing task planned through contact and replayed in MuJoCo, and MPC pushing a moved box."""
    nb = run_notebook("01_trajectory_optimization.ipynb",
                      "ITERS = 80\nGIF_FPS = 5",
                      tmp_path)
    text = _text(nb)
    assert "success in MuJoCo: True" in text, text
    assert "open loop on the heavier plant: False" in text
    assert "closed loop on the heavier plant: True" in text
    assert "pusher success in MuJoCo: True" in text, text
    assert "pusher open loop, box moved: False" in text, text
    assert "pusher MPC, box moved: True" in text, text
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # cost curves, trajectories, MPC vs open loop, the push's top views
    assert (tmp_path / "hybridwam_out" / "notebook01" / "cartpole_swingup_mpc.gif").is_file()
