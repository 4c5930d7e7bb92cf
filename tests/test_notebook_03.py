"""notebooks/03_physics_backend.ipynb runs end to end (nbclient, kernel "python3") with its parameter
cell overridden to small settings: model loading, batched rollouts against MuJoCo, timing against
mujoco.rollout and per-call stepping with a captured graph, gradients against finite differences,
the vector env, and a HybridModel swapped in."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("gymnasium")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_physics_backend.ipynb"

SMALL = """BATCH_SIZES = [16, 128]
TIMING_STEPS = 20
TIMING_REPEAT = 1
CALL_BATCHES = [4]
CALLS = 20
NUM_ENVS = 8
ENV_STEPS = 310
TRAIN_ITERS = 20
TRAIN_BATCH = 256
OUT = "nb03_out"
SEED = 0"""


def _number(pattern: str, text: str) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in the notebook output:\n{text}"
    return float(m.group(1))


def test_notebook_03_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    idx = [i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(idx) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    nb.cells.insert(idx[0] + 1, nbformat.v4.new_code_cell(SMALL))
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert _number(r"max \|hybridwam - MuJoCo\| over \d+ steps of world 0: (\S+)", text) < 1e-3
    assert _number(r"relative difference (\S+)", text) < 1e-2  # adjoint vs finite difference
    assert re.search(r"^\s+128\s+\d", text, re.M), "timing row for 128 worlds"
    assert "equal to physics.step after 50 calls: True" in text  # the captured graph's numbers
    assert re.search(r"^\s+4\s+\d+\s+\d+\s+\d+\s+[\d.]+x$", text, re.M), "per-call timing row for 4 worlds"
    assert "episodes finished" in text  # the vector env ran past the horizon and autoreset
    assert "gym.make_vec with torch_output: Tensor" in text
    assert _number(r"zero residual == physics in the env: max \|obs diff\| = (\S+)", text) == 0.0
    assert _number(r"zero residual vs the \w+ engine's physics: max \|obs diff\| = (\S+)", text) < 1e-5
    assert "reloaded HybridModel" in text
    ckpt = tmp_path / "nb03_out" / "hybrid_cartpole"
    assert (ckpt / "config.json").is_file() and (ckpt / "weights.safetensors").is_file()
    assert (tmp_path / "nb03_out" / "hybrid_vs_physics.png").is_file()
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 4  # rollouts, timing, env rewards, hybrid vs physics
