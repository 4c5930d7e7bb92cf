"""Spatial tendons wrapping around sphere and cylinder geoms (MuJoCo's mju_wrap: tangents and an
arc in the plane of the sites and the sphere's centre, a helix on a cylinder, side sites outside
and inside the geom, pulleys) against mj_step and mj_forward, and their gradients against
central differences."""
from __future__ import annotations

import os

import mujoco
import numpy as np
import pytest
import torch
from conftest import (
    assert_grads_match_central_differences,
    assert_looped_rollout_matches_mujoco,
    final_state_loss,
    mj_rollout,
    random_unit_quat,
    rel_err,
    to_torch,
)

import hybridwam as hw

# an arm (hinge shoulder and elbow, ball wrist): a flexor from a world anchor over a world sphere,
# then around a cylinder on the elbow on a side site's side; an extensor over the wrist's sphere
# with its side site inside the sphere (MuJoCo's inside wrap); a cable through a pulley whose
# branches wrap the sphere and the cylinder (no side site); motors on two tendons and a joint
ARM = """<mujoco><option integrator="{integrator}" timestep="0.004"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <site name="base" pos="-0.25 0.02 1.15"/>
    <geom name="pulleyball" type="sphere" size="0.06" pos="0 0 1.08"/>
    <body pos="0 0 1"><joint name="shoulder" type="hinge" axis="0 1 0" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.03" mass="1"/>
      <geom name="elbowcyl" type="cylinder" size="0.05 0.03" pos="0.4 0 0" zaxis="0 1 0"/>
      <site name="s1" pos="0.2 0.01 0.06"/>
      <site name="side1" pos="0.4 0 0.12"/>
      <body pos="0.4 0 0"><joint name="elbow" type="hinge" axis="0 1 0" damping="0.02"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.025" mass="0.5"/>
        <geom name="wristball" type="sphere" size="0.04" pos="0.3 0 0"/>
        <site name="s2" pos="0.15 -0.01 0.05"/>
        <site name="inner" pos="0.3 0.01 -0.015"/>
        <body pos="0.3 0 0"><joint name="wrist" type="ball" damping="0.01"/>
          <geom type="capsule" fromto="0 0 0 0.15 0 0" size="0.02" mass="0.2"/>
          <site name="tip" pos="0.15 0.02 0.03"/>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon>
    <spatial name="flexor" stiffness="30" damping="0.5" springlength="0.6">
      <site site="base"/><geom geom="pulleyball"/><site site="s1"/><geom geom="elbowcyl" sidesite="side1"/>
      <site site="s2"/>
    </spatial>
    <spatial name="extensor" stiffness="20" springlength="0.25">
      <site site="s2"/><geom geom="wristball" sidesite="inner"/><site site="tip"/>
    </spatial>
    <spatial name="split" damping="0.2">
      <site site="base"/><geom geom="pulleyball"/><site site="s1"/><pulley divisor="2"/><site site="s1"/>
      <geom geom="elbowcyl"/><site site="s2"/>
    </spatial>
  </tendon>
  <actuator>
    <motor tendon="flexor" gear="2"/>
    <motor tendon="split" ctrlrange="-3 3" ctrllimited="true"/>
    <motor joint="elbow"/>
  </actuator></mujoco>"""

# the tendons' wrap points per tendon (MuJoCo's ten_wrapnum) when every geom wraps
ALL_WRAPPED = (7, 4, 9)


def _inputs(mj, B, T, seed):
    rng = np.random.default_rng(seed)
    qpos = np.tile(mj.qpos0, (B, 1))
    qpos[:, :2] += rng.normal(0, 0.8, (B, 2))
    q = random_unit_quat(rng, B)
    q[:, 0] += 2.0
    qpos[:, 2:] = q / np.linalg.norm(q, axis=1, keepdims=True)
    return qpos, rng.normal(0, 1.0, (B, mj.nv)), rng.normal(0, 1.0, (B, T, mj.nu))


def _wrapnum(mj, qpos):
    d = mujoco.MjData(mj)
    d.qpos[:] = qpos
    mujoco.mj_kinematics(mj, d)
    mujoco.mj_tendon(mj, d)
    return tuple(int(n) for n in d.ten_wrapnum)


@pytest.mark.parametrize("integrator", ["Euler", "RK4"])
def test_wrapped_tendon_rollouts_and_forces_match_mujoco(integrator):
    """100-step rollouts against mj_step (float64 to 1e-10; float32 one step to 1e-4) from states
    where the flexor wraps both geoms, one of them or neither (the inside wrap always), and
    Physics.forward's qfrc_passive and qfrc_actuator against mj_forward's to 1e-12; the wrapping
    matters: with the geoms shrunk to points MuJoCo's rollout differs by far more."""
    xml = ARM.format(integrator=integrator)
    mj = mujoco.MjModel.from_xml_string(xml)
    qpos, qvel, ctrl = _inputs(mj, 6, 100, seed=0)
    assert len({_wrapnum(mj, q) for q in qpos}) >= 3 and ALL_WRAPPED in {_wrapnum(mj, q) for q in qpos}
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    straight = mujoco.MjModel.from_xml_string(xml)
    straight.geom_size[:, 0] = np.where(straight.geom_type == mujoco.mjtGeom.mjGEOM_SPHERE, 1e-9,
                                        straight.geom_size[:, 0])
    straight.geom_size[mujoco.mj_name2id(straight, mujoco.mjtObj.mjOBJ_GEOM, "elbowcyl"), 0] = 1e-9
    assert rel_err(mj_rollout(straight, qpos, qvel, ctrl)[1], mv) > 1e-2
    out, datas = assert_looped_rollout_matches_mujoco(xml, qpos, qvel, ctrl, 1e-10)
    for b, d in enumerate(datas):
        assert rel_err(out.qfrc_passive[b], d.qfrc_passive) <= 1e-12
        assert rel_err(out.qfrc_actuator[b], d.qfrc_actuator) <= 1e-12
    if integrator == "Euler":
        m32 = hw.load_model(xml, dtype="float32")
        q1, v1 = hw.Physics(m32, verbose=False).step(*(to_torch(x) for x in (qpos, qvel, ctrl[:, 0])))
        e = rel_err(q1, mq[:, 1]), rel_err(v1, mv[:, 1])
        assert max(e) <= 1e-4, e


def test_wrapped_tendon_gradients_match_finite_differences():
    """d loss / d (the geoms' radii, the world sphere's position, a site's position, the tendons'
    stiffness, the initial state, a control) through 10 steps in which every geom wraps (the
    inside wrap's point by the implicit function theorem) against central differences."""
    model = hw.load_model(ARM.format(integrator="Euler"), dtype="float64")
    mj = model.mj
    qpos, qvel, ctrl = _inputs(mj, 12, 10, seed=0)
    keep = [b for b in range(len(qpos)) if _wrapnum(mj, qpos[b]) == ALL_WRAPPED][:2]
    assert len(keep) == 2
    inputs = [to_torch(x[keep], torch.float64).requires_grad_(True) for x in (qpos, qvel * 0.3, ctrl)]
    phys = hw.Physics(model, verbose=False)
    loss = final_state_loss(phys, inputs)
    g = {n: mujoco.mj_name2id(mj, mujoco.mjtObj.mjOBJ_GEOM, n) for n in ("pulleyball", "elbowcyl", "wristball")}
    s1 = mujoco.mj_name2id(mj, mujoco.mjtObj.mjOBJ_SITE, "s1")
    checks = [("geom_size", (g["pulleyball"], 0)), ("geom_size", (g["elbowcyl"], 0)),
              ("geom_size", (g["wristball"], 0)), ("geom_pos", (g["pulleyball"], 2)), ("site_pos", (s1, 0)),
              ("tendon_stiffness", 1), (inputs[0], (0, 1)), (inputs[0], (1, 3)), (inputs[1], (0, 0)),
              (inputs[2], (1, 2, 0))]
    assert_grads_match_central_differences(model, ("geom_size", "geom_pos", "site_pos", "tendon_stiffness"), loss,
                                           checks)


def test_mujoco_warp_wrap_model_with_stiff_tendons_matches_mujoco():
    """MuJoCo Warp's tendon/wrap.xml (world spheres and cylinders, tendons that exert no force as
    shipped) with stiffness on its tendons: 100 contact-free steps against mj_step."""
    mjw = pytest.importorskip("mujoco_warp")
    path = os.path.join(os.path.dirname(mjw.__file__), "test_data", "tendon", "wrap.xml")
    xml = open(path).read().replace("<spatial", '<spatial stiffness="20" springlength="0.5"').replace(
        "<mujoco>", '<mujoco><option><flag contact="disable"/></option>')
    mj = mujoco.MjModel.from_xml_string(xml)
    rng = np.random.default_rng(3)
    qpos = mj.key_qpos[0] + rng.normal(0, 0.3, (4, mj.nq))
    qvel = rng.normal(0, 0.5, (4, mj.nv))
    assert any(n > 2 for q in qpos for n in _wrapnum(mj, q))
    assert_looped_rollout_matches_mujoco(xml, qpos, qvel, np.zeros((4, 100, 0)), 1e-10)
