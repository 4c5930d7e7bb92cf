"""Reliability and security of the core (issue 17): the kernel cache, parameter validation at
launch, empty models, static scenery bodies, compile progress and leftovers of killed runs.

The cache attacks run in subprocesses with their own HYBRIDWAM_CACHE, so that importing a
generated module there never touches this session's modules.
"""
from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
import time

import mujoco
import numpy as np
import pytest
import torch
from conftest import mj_rollout, rel_err

import hybridwam as hw
from hybridwam import codegen
from hybridwam.fsutil import clean_stale_temp

PENDULUM = "pendulum"


def _run(code: str, cache: str, **env) -> subprocess.CompletedProcess:
    e = {**os.environ, "HYBRIDWAM_CACHE": cache, **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=e, capture_output=True, text=True,
                          timeout=300)


# ---- 2. code from the kernel cache ------------------------------------------------------------------
def test_planted_cache_module_is_never_executed(tmp_path):
    """A file planted at the predictable path of a model's generated module is not imported: it is
    replaced by the generated source, with a warning, and the physics still steps correctly."""
    cache, marker = tmp_path / "cache", tmp_path / "pwned"
    code = f"""
        import os, warnings
        import hybridwam as hw
        from hybridwam import codegen
        m = hw.load_model({PENDULUM!r}, device="cpu")
        name, path, src = codegen.module_path(m.structure)
        os.makedirs(os.path.dirname(path), mode=0o700)
        os.chmod(os.path.dirname(os.path.dirname(path)), 0o700)
        with open(path, "w") as f:
            f.write("open({str(marker)!r}, 'w').write('ran')\\n")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            mod = codegen.get_module(m.structure)
        assert any("not imported" in str(x.message) for x in w), [str(x.message) for x in w]
        assert open(path).read() == src
        assert hasattr(mod, "rollout_kernel")
        print("ok")
    """
    r = _run(code, str(cache))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ok" in r.stdout
    assert not marker.exists(), "the planted module was executed"


def test_cache_folders_are_private_under_umask_000(tmp_path):
    cache = tmp_path / "cache"
    code = f"""
        import os
        os.umask(0)
        import hybridwam as hw
        from hybridwam import codegen
        codegen.get_module(hw.load_model({PENDULUM!r}, device="cpu").structure)
    """
    r = _run(code, str(cache))
    assert r.returncode == 0, r.stderr[-3000:]
    for d in (cache, cache / "kernels"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700, (d, oct(os.stat(d).st_mode))
    files = list((cache / "kernels").glob("*.py"))
    assert files and all(stat.S_IMODE(f.stat().st_mode) & 0o022 == 0 for f in files)


def test_cache_folder_writable_by_others_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "kernels").mkdir(parents=True)
    os.chmod(cache, 0o700)
    os.chmod(cache / "kernels", 0o777)
    monkeypatch.setenv("HYBRIDWAM_CACHE", str(cache))
    monkeypatch.setattr(codegen, "_MODULES", {})
    model = hw.load_model(PENDULUM, device="cpu")
    with pytest.raises(codegen.KernelCacheError, match="writable by group or others"):
        codegen.get_module(model.structure)
    assert not list((cache / "kernels").iterdir()), "nothing may be written into a refused folder"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_cache_folder_of_another_user_is_refused(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    (cache / "kernels").mkdir(parents=True)
    os.chmod(cache, 0o700)
    os.chmod(cache / "kernels", 0o700)
    os.chown(cache / "kernels", 54321, 54321)
    monkeypatch.setenv("HYBRIDWAM_CACHE", str(cache))
    monkeypatch.setattr(codegen, "_MODULES", {})
    with pytest.raises(codegen.KernelCacheError, match="belongs to user id 54321"):
        codegen.get_module(hw.load_model(PENDULUM, device="cpu").structure)


# ---- 3. parameters replaced by tensors the kernel cannot read ---------------------------------------
def test_replaced_parameters_are_checked_by_name():
    model = hw.load_model(PENDULUM, device="cpu")  # its own params; the compiled module is shared
    phys = hw.Physics(model)
    q, v = model.default_state(2)
    u = torch.zeros(2, model.nu)
    good = model.params["body_mass"]
    ref = phys.step(q, v, u)
    plant = phys.capture(2)
    cases = [(torch.ones(1), ValueError, rf"model.params\[.body_mass.\]: expected shape \[{model.nbody}\]"),
             (good.double(), TypeError, r"body_mass.*dtype torch.float32"),
             (torch.ones(model.nbody, 2)[:, 0], ValueError, "body_mass.*contiguous"),
             ([1.0] * model.nbody, TypeError, "body_mass.*torch tensor")]
    for bad, err, msg in cases:
        model.params["body_mass"] = bad
        with pytest.raises(err, match=msg):
            phys.step(q, v, u)
        with pytest.raises(err, match=msg):
            plant.step(q, v, u)
    model.params["body_mass"] = good.clone()  # a valid replacement works, and gives the same step
    for a, b in zip(phys.step(q, v, u), ref, strict=True):
        assert torch.equal(a, b)
    assert torch.equal(plant.step(q, v, u)[0], ref[0])


# ---- 11. a model with nothing to simulate -----------------------------------------------------------
def test_empty_model_is_refused_clearly(tmp_path):
    with pytest.raises(hw.UnsupportedFeatureError, match="without degrees of freedom"):
        hw.load_model("<mujoco><worldbody><geom type='plane' size='1 1 1'/></worldbody></mujoco>")
    f = tmp_path / "empty.xml"
    f.write_text("<mujoco/>")
    for args in (["info", str(f)], ["simulate", str(f), "--steps", "2", "--batch", "1"]):
        cli = "import sys; from hybridwam.cli import main; sys.exit(main())"
        r = subprocess.run([sys.executable, "-c", cli, *args], capture_output=True, text=True, timeout=300)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        out = r.stdout + r.stderr
        assert "without degrees of freedom" in out and "Traceback" not in out, out


# ---- 12. static bodies stay out of the kernel; long compiles announce themselves ---------------------
def _scenery_model(n_scenery: int) -> str:
    """A hinge pendulum swinging above a box held by a chain of three nested static bodies, plus
    ``n_scenery`` static bodies whose geoms never collide."""
    scenery = "".join(f'<body pos="{0.05 * i} 2 0"><geom type="sphere" size="0.01" contype="0" conaffinity="0"/>'
                      f'<body pos="0 0 0.1"><geom type="sphere" size="0.01" contype="0" conaffinity="0"/></body></body>'
                      for i in range(n_scenery))
    return f"""<mujoco><option timestep="0.002"/><worldbody>{scenery}
      <body pos="0.2 0 0.1" euler="0 0 30"><body pos="0 0.1 -0.2"><body pos="-0.1 -0.05 0" euler="0 0 -30">
        <geom type="box" size="0.3 0.3 0.05" pos="0 0 -0.15"/></body></body></body>
      <body pos="0 0 0"><joint type="hinge" axis="0 1 0" damping="0.05"/>
        <geom type="sphere" size="0.05" pos="0 0 -0.3" mass="1"/></body>
    </worldbody></mujoco>"""


def test_static_scenery_gets_no_kernel_code_and_steps_like_mujoco():
    small = hw.load_model(_scenery_model(0), device="cpu", dtype="float64")
    big = hw.load_model(_scenery_model(100), device="cpu", dtype="float64")
    assert big.nbody == small.nbody + 200
    n_small, n_big = (len(codegen.generate_source(m.structure)) for m in (small, big))
    assert n_big < 1.05 * n_small, (n_small, n_big)  # was ~2 lines of code per static body
    phys = hw.Physics(big)
    # free swing (no contact): the step is MuJoCo's
    q0 = np.array([[1.3], [-1.4]])
    v0 = np.zeros((2, 1))
    ctrls = np.zeros((2, 20, 0))
    Q, _ = mj_rollout(big.mj, q0, v0, ctrls)
    tr = phys.rollout(torch.as_tensor(q0), torch.as_tensor(v0), torch.as_tensor(ctrls))
    assert rel_err(tr.qpos, Q) < 1e-9
    # the box under the nested static bodies stops a pendulum released to fall on it, where MuJoCo
    # stops it: the box's pose went through all three static frames
    d = mujoco.MjData(big.mj)
    d.qpos[0] = 1.2
    for _ in range(600):
        mujoco.mj_step(big.mj, d)
    tr = phys.rollout(torch.tensor([[1.2]], dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64),
                      torch.zeros(1, 600, 0, dtype=torch.float64))
    assert d.ncon > 0 and 0.9 < d.qpos[0] < 1.2, (d.ncon, d.qpos[0])
    assert abs(float(tr.qpos[0, -1, 0]) - d.qpos[0]) < 0.02, (float(tr.qpos[0, -1, 0]), d.qpos[0])
    free = hw.load_model(_scenery_model(0).replace('<geom type="box"', '<geom type="box" contype="0" conaffinity="0"'),
                         device="cpu", dtype="float64")
    assert not free.structure.pairs and big.structure.pairs  # the box really is what holds it


def test_long_compile_is_announced(sim, monkeypatch, capsys):
    model, phys = sim(PENDULUM)
    assert codegen.is_compiled(phys._mod, "cpu")  # loaded, so Warp's cache holds it
    estimate = codegen.estimate_compile_seconds
    monkeypatch.setattr(codegen, "is_compiled", lambda mod, device, entries=None: False)
    monkeypatch.setattr(codegen, "estimate_compile_seconds", lambda n: 123.0)
    codegen.compile_module(phys._mod, "cpu", label="my robot (nv=1)")
    err = capsys.readouterr().err
    assert "compiling physics kernels for my robot (nv=1)" in err and "roughly 123 s" in err, err
    # the estimate grows with the generated code, and is what the line quotes
    assert estimate(60_000) > 4 * estimate(12_000)


# ---- 15. leftovers of killed runs -------------------------------------------------------------------
def test_leftovers_of_killed_runs_are_removed(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        stem = "wp_hybridwam_gen_0123456789abcdef_0123456789abcdef_abcdef0"
        dirs = {k: tmp_path / f"{stem}_p{pid}_t1" for k, pid in
                (("dead", dead.pid), ("alive", alive.pid), ("self", os.getpid()))}
        other = tmp_path / f"wp_someone_else_abcdef0_p{dead.pid}_t1"
        for d in [*dirs.values(), other]:
            d.mkdir()
            (d / "partial.o").write_bytes(b"")
        codegen._clean_stale_builds(codegen._cache_entries(str(tmp_path)))
        assert not dirs["dead"].exists()
        assert dirs["alive"].exists() and dirs["self"].exists() and other.exists()
    finally:
        alive.kill()
        alive.wait()
    # half-written module files of a killed process: removed once old, kept while they may be written
    old, new = tmp_path / ".tmp-abc.py", tmp_path / ".tmp-def.py"
    old.write_text("")
    new.write_text("")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    clean_stale_temp(str(tmp_path))
    assert not old.exists() and new.exists()
