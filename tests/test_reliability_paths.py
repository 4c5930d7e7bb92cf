"""Reliability and security of the user's doors (issue 17): names that become file names stay
inside the output folder, long GIFs are capped, bad numbers and unsupported scenes give one clear
error, the GPU script uses private scratch folders, and ``import hybridwam`` registers the
Gymnasium ids without importing the env module.

Only the pendulum and cartpole scenes are stepped (their kernels are shared with other tests); the
attacks stop before anything compiles.
"""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import yaml

import hybridwam as hw
from hybridwam import demo
from hybridwam.cli import main
from hybridwam.tasks import MAX_STEM, Task, env_id, output_path, safe_stem

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PENDULUM_TASK = {"scene": "pendulum", "horizon": 5, "dt": 0.01, "goal": {"qpos": [3.14159], "qvel": [0.0]},
                 "cost": {"state": {"qpos": [1.0]}}, "success": {"qpos_tol": [0.1]}, "planner": {"restarts": 1}}


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.strip()]


def _files(root) -> set[str]:
    return {str(p) for p in root.rglob("*")}


# ---- 1. names that become paths ------------------------------------------------------------------
BAD_NAMES = ["../../escape", "/tmp/abs_escape", "a/b", "a\\b", ".", "..", ".hidden", "-rf", "", "a\0b", "x" * 101,
             "na me", "emoji_\u00e9"]


@pytest.mark.parametrize("name", BAD_NAMES)
def test_task_name_must_be_a_plain_file_name(name):
    with pytest.raises(ValueError, match=r"^my_task\.yaml: name: task name .* is not a plain file name"):
        Task.from_dict({**PENDULUM_TASK, "name": name}, source="my_task.yaml")


def test_good_task_names_and_file_stems():
    for name in ("pendulum_swingup", "Arm-2.v3", "_x", "a" * MAX_STEM):
        assert Task.from_dict({**PENDULUM_TASK, "name": name}, source="t.yaml").name == name
    # without a name key the file's stem names the task, made a plain file name
    assert Task.from_dict(dict(PENDULUM_TASK), source="/some/dir/my task (copy).yaml").name == "my_task__copy"
    assert Task.from_dict(dict(PENDULUM_TASK), source="<dict>").name == "dict"
    with pytest.raises(ValueError, match="name: task name"):
        Task.from_dict({**PENDULUM_TASK, "name": 7}, source="t.yaml")


@pytest.mark.parametrize("kind", ["relative", "absolute"])
def test_optimize_cli_refuses_a_name_that_escapes_out(kind, tmp_path, monkeypatch, capsys):
    """The attack: a task file whose name climbs out of (or ignores) --out. Nothing may be written
    outside --out, the command exits 2 with one line naming the file and the key."""
    monkeypatch.setenv("MUJOCO_GL", "disable")
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    name = "../../escape" if kind == "relative" else str(tmp_path / "abs_escape")
    cfg = work / "attack.yaml"
    cfg.write_text(yaml.safe_dump({**PENDULUM_TASK, "name": name}))
    out = work / "out"
    monkeypatch.chdir(work)
    before = _files(tmp_path)
    code = main(["optimize", str(cfg), "--out", str(out), "--iters", "1"])
    cap = capsys.readouterr()
    assert code == 2, cap.out + cap.err
    lines = _error_lines(cap.err)
    assert len(lines) == 1 and "Traceback" not in cap.err, cap.err
    assert lines[0].startswith(f"hybridwam: error: {cfg}: name: ") and "not a plain file name" in lines[0]
    written = _files(tmp_path) - before
    assert all(p == str(out) or p.startswith(str(out) + os.sep) for p in written), written
    assert not list(tmp_path.glob("escape*")) and not list(tmp_path.glob("abs_escape*"))


def test_output_path_stays_inside_the_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert output_path(str(out), "run_1", ".png") == str(out / "run_1.png")
    for bad in ("../x", "/etc/passwd", "..", "a/b"):
        with pytest.raises(ValueError, match="not a plain file name"):
            output_path(str(out), bad, ".png")
    # a symbolic link planted in the folder does not lead a write outside it
    (out / "plot.png").symlink_to(tmp_path / "elsewhere.png")
    with pytest.raises(ValueError, match="outside the output folder"):
        output_path(str(out), "plot", ".png")
    with pytest.raises(ValueError, match="benchmark name"):
        safe_stem("../step", "benchmark name")


def test_bench_report_names_stay_inside_out(tmp_path):
    from hybridwam.bench import write_report

    out = tmp_path / "a" / "out"
    info = {"date": "today", "cpu": "a CPU", "cores": 2, "usable_cores": 2, "device": "cpu", "python": "3",
            "torch": "2", "warp": "1", "mujoco": "3"}
    before = _files(tmp_path)
    with pytest.raises(ValueError, match="benchmark name"):
        write_report("../../evil", [{"x": 1}], info, str(out), table=lambda rows: "| x |")
    assert _files(tmp_path) == before  # not even the folder
    md, csv, _ = write_report("step", [{"x": 1}], info, str(out), table=lambda rows: "| x |")
    assert md == str(out / "step.md") and os.path.isfile(csv)


def test_bench_refuses_an_unusable_out_before_benchmarking(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    t0 = time.perf_counter()
    code = main(["bench", "calls", "--scene", "pendulum", "--batch", "1", "--calls", "1", "--repeat", "1",
                 "--device", "cpu", "--out", str(blocker / "reports")])
    cap = capsys.readouterr()
    assert code == 2 and "Traceback" not in cap.err
    lines = _error_lines(cap.err)
    assert len(lines) == 1 and lines[0].startswith("hybridwam: error: --out ") and "report folder" in lines[0]
    assert "machine:" not in cap.out and time.perf_counter() - t0 < 5  # it stopped before benchmarking


def test_env_ids_need_plain_task_names():
    assert env_id("cartpole_swingup") == "hybridwam/CartpoleSwingup-v0"
    for bad in ("../x", "a/b", ""):
        with pytest.raises(ValueError, match="not a plain file name"):
            env_id(bad)


# ---- 13. long trajectories make capped GIFs ----------------------------------------------------------------
def test_gif_frames_of_a_long_trajectory_are_capped_and_real_time():
    n, ts = 100_001, 0.01  # 1000 s at 100 Hz: 25 000 frames at 25 fps before the cap
    idx, dur = demo.gif_frames(n, ts, fps=25)
    assert len(idx) == len(dur) <= demo.MAX_GIF_FRAMES
    assert idx[0] == 0 and idx[-1] == n - 1 and np.all(np.diff(idx) > 0)
    gaps = np.diff(idx)
    assert gaps.max() - gaps.min() <= 1  # evenly spaced
    assert sum(dur[:-1]) == pytest.approx((n - 1) * ts * 1000, abs=10) and dur[-1] == 1000 * demo.GIF_HOLD_S
    assert all(d % 10 == 0 and d >= 20 for d in dur)  # whole centiseconds, none too fast to show
    # a short one keeps its frame rate: a state every 4 steps (25 fps), the final state last
    idx, dur = demo.gif_frames(301, ts, fps=25)
    assert list(idx[:3]) == [0, 4, 8] and idx[-1] == 300 and set(dur[:-1]) == {40}
    for bad in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="fps"):
            demo.gif_frames(301, ts, fps=bad)


def test_long_trajectory_gif_has_at_most_the_cap_frames(tmp_path, monkeypatch):
    """The matplotlib writer (no OpenGL) on a 200 s trajectory: the cap holds by default (here made
    small to keep the test short), the GIF still lasts the trajectory's duration, and it is quick."""
    from PIL import Image

    monkeypatch.setenv("MUJOCO_GL", "disable")
    monkeypatch.setattr(demo, "MAX_GIF_FRAMES", 40)
    task = Task.from_yaml("pendulum_swingup")
    q = np.linspace(0.0, 60.0, 20_001)[:, None]  # 20 000 steps of 0.01 s
    t0 = time.perf_counter()
    path, backend = demo.write_animation(task.mj, task.scene_path, q, str(tmp_path / "long.gif"), fps=25)
    assert time.perf_counter() - t0 < 60
    assert backend.startswith("matplotlib")
    with Image.open(path) as im:
        n = im.n_frames
        total = 0
        for k in range(n):
            im.seek(k)
            total += im.info["duration"]
    assert 20 <= n <= 40
    assert total == pytest.approx(200_000 + 1000 * demo.GIF_HOLD_S, abs=20)


# ---- 14. bad numbers and unsupported scenes ---------------------------------------------------------------
@pytest.mark.parametrize("argv, option", [
    (["simulate", "pendulum", "--batch", "0"], "--batch"),
    (["simulate", "pendulum", "--steps", "-3"], "--steps"),
    (["bench", "step", "--batch", "0"], "--batch"),
    (["optimize", "pendulum_swingup", "--iters", "0"], "--iters"),
    (["bench", "plan", "--task", "pendulum_swingup", "--methods", "cem", "--seconds", "0"], "--seconds"),
    (["bench", "plan", "--task", "pendulum_swingup", "--methods", "cem", "--seconds", "-1"], "--seconds"),
])
def test_bad_numbers_exit_2_with_one_line(argv, option, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    assert code == 2 and "Traceback" not in cap.out + cap.err
    lines = _error_lines(cap.err)
    assert len(lines) == 1, cap.err
    assert "error: argument " + option in lines[0] and "expected a positive" in lines[0] and "--help" in lines[0]
    assert not cap.out.strip()  # nothing ran


def test_bench_plan_refuses_a_non_positive_budget():
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="seconds must be a positive number"):
            hw.bench_plan("pendulum_swingup", seconds=bad, methods="cem")


TENDON_SCENE = """
<mujoco model="arm_with_tendon">
  <worldbody>
    <body name="link">
      <joint name="shoulder" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.02" mass="1"/>
    </body>
  </worldbody>
  <tendon>
    <fixed name="my_tendon" damping="1" frictionloss="0.5"><joint joint="shoulder" coef="1"/></fixed>
  </tendon>
</mujoco>
"""


def _tendon_task(tmp_path):
    (tmp_path / "arm.xml").write_text(TENDON_SCENE)
    cfg = tmp_path / "arm_task.yaml"  # written for an arm with two joints: wrong lengths too
    cfg.write_text(yaml.safe_dump({"scene": "arm.xml", "horizon": 5, "goal": {"qpos": [1.0, 0.5]},
                                   "success": {"qpos_tol": [0.1, 0.1]}}))
    return cfg


def test_task_on_an_unsupported_scene_names_the_elements_first(tmp_path):
    cfg = _tendon_task(tmp_path)
    with pytest.raises(hw.UnsupportedFeatureError) as info:
        Task.from_yaml(str(cfg))
    assert any("my_tendon" in f for f in info.value.features)
    assert str(cfg) in info.value.source and "arm.xml" in info.value.source
    assert "expected 1 values" not in str(info.value)


def test_optimize_cli_on_an_unsupported_scene_lists_the_elements(tmp_path, capsys):
    cfg = _tendon_task(tmp_path)
    code = main(["optimize", str(cfg), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = _error_lines(err)
    assert lines[0].startswith(f"hybridwam: error: {cfg}: scene ") and "not supported by hybridwam" in lines[0]
    assert any("my_tendon" in ln for ln in lines[1:]) and "expected 1 values" not in err
    assert not (tmp_path / "out").exists()


# ---- 15. the GPU script's scratch folders ---------------------------------------------------------------
GPU = os.path.join(REPO, ".ci", "gpu")

FAKE_PYTHON3 = """#!/usr/bin/env bash
# stands in for python3 on the device machine: logs each call (and the wheels pip would install)
echo "python3 $* | PYTHONPATH=${PYTHONPATH:-}" >> "$FAKE_LOG"
if [[ "$1 $2" == "-m pip" ]]; then
  for a in "$@"; do [[ "$a" == *.whl ]] && echo "wheel $(basename "$a"): $(cat "$a")" >> "$FAKE_LOG"; done
fi
if [[ "$1 $2" == "-m pytest" ]]; then exit "${FAKE_PYTEST_RC:-0}"; fi
exit 0
"""


def test_gpu_script_parses_and_has_no_fixed_tmp_paths():
    subprocess.run(["bash", "-n", GPU], check=True)
    code = [ln for ln in open(GPU).read().splitlines() if not ln.lstrip().startswith("#")]
    fixed = [ln for ln in code if re.search(r"/tmp/", ln)]
    assert not fixed, fixed


def test_gpu_script_stages_and_runs_in_private_folders(tmp_path):
    """``stage`` then ``run`` (python3 and nvidia-smi faked): pieces are staged in a 0700 folder of
    our own, wheels reassembled and installed in another that is gone afterwards, the staged pieces
    kept after a failure (``clean`` removes them) and removed after a success; a recorded staging
    folder that is not private is never used."""
    repo, home, tmp, fake = tmp_path / "repo", tmp_path / "home", tmp_path / "tmp", tmp_path / "bin"
    for d in (repo / ".ci", repo / "tests", repo / ".gpu" / "part1", repo / ".gpu" / "part2", home, tmp, fake):
        d.mkdir(parents=True)
    shutil.copy(GPU, repo / ".ci" / "gpu")
    (repo / "tests" / "test_cuda.py").write_text("")
    (repo / "README.md").write_text("# readme\n")
    (repo / ".gpu" / "part1" / "warp.whl.piece00").write_text("AAA")
    (repo / ".gpu" / "part2" / "warp.whl.piece01").write_text("BBB")
    (repo / ".gpu" / "part2" / "glfw.whl.piece00").write_text("GGG")
    for name, body in (("python3", FAKE_PYTHON3), ("nvidia-smi", "#!/usr/bin/env bash\necho 'name\nFake GPU'\n")):
        (fake / name).write_text(body)
        (fake / name).chmod(0o755)
    log = tmp_path / "log"
    env = {"PATH": f"{fake}:{os.environ['PATH']}", "HOME": str(home), "TMPDIR": str(tmp), "FAKE_LOG": str(log)}
    state = home / ".cache" / "hybridwam-gpu-stage"

    def gpu(*args, **extra):
        return subprocess.run(["bash", ".ci/gpu", *args], cwd=repo, env={**env, **extra}, capture_output=True,
                              text=True, timeout=60)

    # a planted, world-writable "staging folder" in the record is not used
    evil = tmp / "planted"
    evil.mkdir()
    evil.chmod(0o777)
    state.parent.mkdir(parents=True)
    state.write_text(str(evil))
    p = gpu("stage", "1")
    assert p.returncode == 0, p.stderr
    stage = state.read_text().strip()
    assert stage != str(evil) and os.listdir(evil) == []
    assert stage.startswith(str(tmp) + os.sep) and stat.S_IMODE(os.stat(stage).st_mode) == 0o700
    assert os.listdir(stage) == ["warp.whl.piece00"]

    # a failing run: its work folder is gone, the staged pieces stay for a rerun
    p = gpu("run", OUT=str(tmp_path / "out1"), FAKE_PYTEST_RC="1")
    assert p.returncode == 1, p.stdout + p.stderr
    text = log.read_text()
    assert "wheel warp.whl: AAABBB" in text and "wheel glfw.whl: GGG" in text
    site = re.search(r"--target (\S+/site) ", text).group(1)
    assert site.startswith(str(tmp) + os.sep + "hybridwam-gpu.") and not os.path.exists(os.path.dirname(site))
    assert f"PYTHONPATH={site}" in text
    assert os.path.isdir(stage) and "stay in" in p.stdout
    assert (tmp_path / "out1" / "gpu.txt").is_file() and (tmp_path / "out1" / "README.md").is_file()
    assert gpu("clean").returncode == 0 and not os.path.exists(stage) and not state.exists()

    # a successful run removes the staged pieces too; nothing is left in TMPDIR
    assert gpu("stage", "1").returncode == 0
    p = gpu("run", OUT=str(tmp_path / "out2"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert not state.exists() and os.listdir(tmp) == ["planted"]


# ---- 16. Gymnasium ids on `import hybridwam` ------------------------------------------------------------
def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_gym_make_works_after_import_hybridwam():
    pytest.importorskip("gymnasium")
    p = _python("""
        import sys
        import gymnasium as gym
        import hybridwam
        assert "hybridwam.envs" not in sys.modules, "import hybridwam imported the env module"
        gym.register_envs(hybridwam)  # the Gymnasium 1.x plugin idiom (a no-op that uses the import)
        env = gym.make("hybridwam/CartpoleSwingup-v0", device="cpu")
        assert "hybridwam.envs" in sys.modules
        obs, _ = env.reset(seed=0)
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert obs.shape == (4,) and isinstance(reward, float), (obs, reward)
        print("ok", type(env.unwrapped).__name__)
    """)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok HybridWamEnv" in p.stdout


def test_import_hybridwam_registers_ids_lazily_and_needs_no_gymnasium():
    pytest.importorskip("gymnasium")
    p = _python("""
        import sys
        import hybridwam
        import gymnasium as gym
        ids = sorted(k for k in gym.registry if k.startswith("hybridwam/"))
        assert ids == sorted(hybridwam._register_gymnasium_envs().values()) and len(ids) == len(hybridwam.list_tasks())
        assert gym.spec("hybridwam/CartpoleSwingup-v0").entry_point == "hybridwam.envs:HybridWamEnv"
        assert "hybridwam.envs" not in sys.modules
        print("ok", len(ids))
    """)
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"ok [1-9]", p.stdout)
    p = _python("""
        import sys
        sys.modules["gymnasium"] = None  # as if not installed: `import gymnasium` raises ImportError
        import hybridwam
        assert hybridwam._register_gymnasium_envs() == {}
        print("ok without gymnasium")
    """)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "ok without gymnasium" in p.stdout
