"""``hybridwam demo`` / ``hybridwam optimize``: optimise, replay in MuJoCo, write plot / GIF / arrays."""
from __future__ import annotations

import numpy as np
import pytest

from hybridwam.demo import _hull, run_demo, run_optimize, write_animation
from hybridwam.tasks import Task


def test_demo_quick_solves_cartpole_in_mujoco(tmp_path, capsys):
    out = tmp_path / "demo"
    r = run_demo(out_dir=str(out), quick=True, progress=False)
    text = capsys.readouterr().out
    assert r["success"] and r["model_success"], text
    assert "MuJoCo replay" in text and "SUCCESS" in text and "final error" in text
    assert f"output folder: {out}" in text
    assert r["deviation"] < 1e-3  # the replay follows the plan
    for key in ("plot", "animation", "arrays"):
        assert r[key] and (out / r[key].split("/")[-1]).is_file(), key
    data = np.load(r["arrays"])
    assert data["mujoco_qpos"].shape == (301, 2) and data["actions"].shape == (300, 1)
    from PIL import Image

    with Image.open(r["animation"]) as im:
        assert im.n_frames > 10


def test_optimize_any_task_without_animation(tmp_path, capsys):
    r = run_optimize("pendulum_swingup", out_dir=str(tmp_path), iters=3, animate=False, progress=False)
    assert r["task"] == "pendulum_swingup" and r["iters"] == 3 and r["animation"] is None
    assert (tmp_path / "pendulum_swingup.png").is_file() and (tmp_path / "pendulum_swingup.npz").is_file()
    assert set(r["errors"]) == {"qpos", "qvel"}
    assert "output folder" in capsys.readouterr().out


def test_matplotlib_animation_fallback(tmp_path, monkeypatch):
    """Without a usable OpenGL backend the GIF is drawn with matplotlib (here forced)."""
    monkeypatch.setenv("MUJOCO_GL", "disable")
    task = Task.from_yaml("reacher_target")
    q = np.linspace(0, 1, 31)[:, None] * np.array([1.0, -0.5, 0.8])
    path, backend = write_animation(task.mj, task.scene_path, q, str(tmp_path / "a.gif"), fps=10)
    assert backend.startswith("matplotlib")
    from PIL import Image

    with Image.open(path) as im:
        assert im.n_frames >= 4


def test_hull():
    pts = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0.5, 0.5], [0, 0]], dtype=float)
    h = _hull(pts)
    assert len(h) == 4 and {tuple(p) for p in h} == {(0, 0), (1, 0), (1, 1), (0, 1)}


@pytest.mark.parametrize("bad", ["no_such_task"])
def test_optimize_unknown_task(bad, tmp_path):
    with pytest.raises(FileNotFoundError, match="shipped"):
        run_optimize(bad, out_dir=str(tmp_path))
