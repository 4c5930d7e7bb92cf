"""notebooks/02_calibrate_from_logs.ipynb runs end to end (nbclient, kernel "python3") on the real
double pendulum logs, with its parameter cell overridden to small settings."""
from pathlib import Path

import pytest

from hybridwam.logs import data_path

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_calibrate_from_logs.ipynb"
DP_DIR = data_path("double_pendulum", must_exist=False)

SMALL = """IDENTIFY_EPOCHS = 3
RESIDUAL_EPOCHS = 1
NEURAL_EPOCHS = 1
MAX_TRAIN_SEGMENTS = 256
OUT = "calibration_out"
SEED = 0
MPC_STEPS = 3"""


@pytest.mark.skipif(not DP_DIR.is_dir(), reason=f"real double pendulum logs not found at {DP_DIR} (set "
                    "HYBRIDWAM_DATA to the folder holding double_pendulum/)")
def test_notebook_02_runs(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(params) == 1, "the notebook needs exactly one cell tagged 'parameters'"
    params[0].source = SMALL
    client = nbclient.NotebookClient(nb, kernel_name="python3", timeout=600,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    out = tmp_path / "calibration_out"
    for f in ("config.json", "weights.safetensors", "metrics.json", "predictions.png", "train_state.safetensors"):
        assert (out / f).is_file(), f
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "held-out run" in text and "reloaded checkpoint" in text
    assert "MPC through the calibrated hybrid (fused residual: True)" in text and "ms per control step" in text
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
