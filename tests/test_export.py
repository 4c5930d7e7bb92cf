"""Identified physics exported as MJCF (calibrate(export=...), calibration/export.py): MuJoCo runs
the exported file as hybridwam runs the identified model, and what MuJoCo cannot express is refused
by name."""
from __future__ import annotations

import os

import mujoco
import numpy as np
import pytest
import torch
from conftest import mj_rollout, rel_err, to_torch

import hybridwam as hw
from hybridwam.calibration import calibrate
from hybridwam.calibration.export import export_mjcf
from hybridwam.logs import load_logs

# a two-link arm with dry friction and damping in both hinges, motors, wide limits; unnamed bodies
ARM = """<mujoco><option timestep="0.005"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody><body pos="0 0 0.5">
    <joint name="shoulder" type="hinge" axis="0 1 0" damping="0.05" frictionloss="0.05" range="-170 170"/>
    <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="1"/>
    <body pos="0.3 0 0">
      <joint name="elbow" type="hinge" axis="0 1 0" damping="0.03" frictionloss="0.03" range="-170 170"/>
      <geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.025" mass="0.6"/>
    </body>
  </body></worldbody>
  <actuator><motor joint="shoulder" ctrlrange="-3 3"/><motor joint="elbow" ctrlrange="-3 3"/></actuator>
</mujoco>"""
GROUPS = ("mass", "armature", "damping", "frictionloss", "motor_offset")


def _logs(folder, scene):
    """CSV logs simulated by MuJoCo from the arm with other masses, damping, dry friction and a
    motor offset than the file says (so that identification moves every group)."""
    m = mujoco.MjModel.from_xml_path(scene)
    m.body_mass[1:] *= (1.2, 0.85)
    m.dof_damping[:] = (0.08, 0.02)
    m.dof_frictionloss[:] = (0.1, 0.04)
    m.actuator_biastype[:] = int(mujoco.mjtBias.mjBIAS_AFFINE)
    m.actuator_biasprm[:, 0] = (0.05, -0.03)
    d = mujoco.MjData(m)
    rng = np.random.default_rng(0)
    n = 400
    t = np.arange(n) * m.opt.timestep
    for i in range(4):
        mujoco.mj_resetData(m, d)
        d.qpos[:] = rng.uniform(-1, 1, 2)
        u = 0.6 * np.sin(2 * np.pi * rng.uniform(0.5, 2, 2) * t[:, None] + rng.uniform(0, 6, 2))
        rows = np.zeros((n, 7))
        for k in range(n):
            d.ctrl[:] = u[k]
            rows[k] = [t[k], *d.qpos, *d.qvel, *u[k]]
            mujoco.mj_step(m, d)
        np.savetxt(os.path.join(folder, f"run{i}.csv"), rows, delimiter=",", header="t,q1,q2,dq1,dq2,u1,u2",
                   comments="", fmt="%.17g")
    return load_logs(folder, qpos=["q1", "q2"], qvel=["dq1", "dq2"], ctrl=["u1", "u2"], time="t")


def test_exported_mjcf_runs_the_identified_physics_in_mujoco(tmp_path):
    scene = tmp_path / "arm.xml"
    scene.write_text(ARM)
    (tmp_path / "logs").mkdir()
    logs = _logs(str(tmp_path / "logs"), str(scene))
    model = hw.load_model(str(scene), device="cpu", dtype="float64", limit_law="mujoco")
    world = hw.HybridModel(hw.Physics(model, verbose=False), hw.Residual(model, hidden=(8,)))
    out = str(tmp_path / "arm_identified.xml")
    report = calibrate(world, logs, stages=("identify",), params=GROUPS, identify_epochs=8, identify_lr=0.05,
                       batch_size=32, progress=False, export=out, split={"val": 1, "test": 0})
    assert report.export == out and os.path.isfile(out)
    got = report.identified_params
    assert abs(got["frictionloss[shoulder]"] - 0.05) > 1e-3 and abs(got["mass[body1]"] - 1.0) > 1e-3, got
    exported = mujoco.MjModel.from_xml_path(out)
    original = mujoco.MjModel.from_xml_path(str(scene))
    # hybridwam's identified physics (float64) against MuJoCo running the exported file, 0.5 s from
    # the logs' states under their controls; the file as written does not reproduce it
    B, T = 4, 100
    rows = [np.flatnonzero(logs.traj == i)[50:50 + T] for i in range(B)]
    qpos = np.stack([logs.qpos[r[0]] for r in rows])
    qvel = np.stack([logs.qvel[r[0]] for r in rows])
    ctrl = np.stack([logs.ctrl[r] for r in rows])
    tr = world.physics.rollout(to_torch(qpos, torch.float64), to_torch(qvel, torch.float64),
                               to_torch(ctrl, torch.float64))
    mq, mv = mj_rollout(exported, qpos, qvel, ctrl)
    err = rel_err(tr.qpos, mq), rel_err(tr.qvel, mv)
    print(f"\nexported MJCF in MuJoCo vs hybridwam's identified physics, 0.5 s: qpos {err[0]:.1e}, qvel {err[1]:.1e}")
    assert max(err) <= 1e-4, err
    oq, _ = mj_rollout(original, qpos, qvel, ctrl)
    assert rel_err(tr.qpos, oq) > 1e-3
    # hybridwam loads the exported file with the identified parameters
    back = hw.load_model(out, device="cpu", dtype="float64", limit_law="mujoco")
    for k in ("body_mass", "dof_damping", "dof_armature", "dof_frictionloss", "actuator_bias"):
        assert torch.allclose(back.params[k], model.params[k], rtol=1e-12, atol=0), k


def test_what_mujoco_cannot_express_is_refused_by_name(tmp_path):
    scene = tmp_path / "arm.xml"
    scene.write_text(ARM)
    model = hw.load_model(str(scene), device="cpu", dtype="float64")
    model.params["dof_coulomb"][0] = 0.2
    with pytest.raises(ValueError, match="dof_coulomb"):
        export_mjcf(model, str(tmp_path / "x.xml"))
    assert not os.path.exists(tmp_path / "x.xml")
    world = hw.HybridModel(hw.Physics(hw.load_model(str(scene), device="cpu"), verbose=False),
                           hw.Residual(hw.load_model(str(scene), device="cpu"), hidden=(8,)))
    with pytest.raises(ValueError, match="coulomb"):
        calibrate(world, None, export=str(tmp_path / "y.xml"), progress=False)
    model = hw.load_model(str(scene), device="cpu", dtype="float64")
    model.params["body_mass"][2] = 0.75
    export_mjcf(model, str(tmp_path / "z.xml"))
    assert mujoco.MjModel.from_xml_path(str(tmp_path / "z.xml")).body_mass[2] == 0.75
