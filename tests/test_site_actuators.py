"""Actuators with site transmissions (MuJoCo's mjTRN_SITE: a wrench at a site, with a reference
site a length and velocity in its frame) against mj_step and mj_forward, and their gradients
against central differences."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from conftest import (
    assert_grads_match_central_differences,
    assert_looped_rollout_matches_mujoco,
    final_state_loss,
    mj_rollout,
    rel_err,
    to_torch,
)

import hybridwam as hw

# an arm on a ball joint with an elbow and a slide; an end-effector site driven by a motor (a
# wrench in its own frame), a position servo on its x position in a world reference frame, a
# velocity servo on its yaw rate there, a velocity servo and an affine actuator relative to a
# site on the moving upper arm
ARM = """<mujoco><option integrator="{integrator}" timestep="0.004"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <site name="ref" pos="0.2 0.1 0.9" euler="10 20 30"/>
    <body pos="0 0 1"><joint name="ball" type="ball" damping="0.2"/>
      <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.04" mass="1"/>
      <site name="mid" pos="0.2 0.03 0" euler="0 30 0"/>
      <body pos="0.4 0 0" euler="0 10 0"><joint name="elbow" type="hinge" axis="0 1 0" damping="0.1"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/>
        <body pos="0.3 0 0"><joint name="slide" type="slide" axis="1 0 0" damping="1"/>
          <geom type="box" size="0.05 0.03 0.03" mass="0.3"/>
          <site name="ee" pos="0.05 0.01 -0.02" euler="20 -10 40"/>
        </body></body></body>
  </worldbody>
  <actuator>
    <motor site="ee" gear="1 0.5 -0.3 0.1 0.2 0.1"/>
    <position site="ee" refsite="ref" kp="5" gear="1 0 0 0 0 0"/>
    <velocity site="ee" refsite="ref" kv="0.05" gear="0 0 0 0 0 1"/>
    <velocity site="ee" refsite="mid" kv="0.5" gear="0 1 0 0 0 0"/>
    <general site="ee" refsite="mid" gainprm="1" biastype="affine" biasprm="0.1 -2 -0.3" gear="0 0.2 1 0 0 0"
      ctrllimited="true" ctrlrange="-1 1" forcelimited="true" forcerange="-0.8 0.8"/>
    <motor joint="elbow"/>
  </actuator></mujoco>"""


def _inputs(mj, B, T, seed):
    rng = np.random.default_rng(seed)
    qpos = np.tile(mj.qpos0, (B, 1))
    q = rng.normal(size=(B, 4))
    qpos[:, :4] = q / np.linalg.norm(q, axis=1, keepdims=True)
    qpos[:, 4:] += rng.normal(0, 0.3, (B, mj.nq - 4))
    return qpos, rng.normal(0, 1.0, (B, mj.nv)), rng.normal(0, 1.0, (B, T, mj.nu))


@pytest.mark.parametrize("integrator", ["Euler", "RK4"])
def test_site_actuators_match_mujoco(integrator):
    """100-step rollouts against mj_step (float64 to 1e-10) and Physics.forward's qfrc_actuator
    against mj_forward's (1e-12); without the site actuators MuJoCo's rollout differs by far more."""
    xml = ARM.format(integrator=integrator)
    mj = mujoco.MjModel.from_xml_string(xml)
    qpos, qvel, ctrl = _inputs(mj, 4, 100, seed=0)
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    off = ctrl.copy()
    off[:, :, :5] = 0
    assert rel_err(mj_rollout(mj, qpos, qvel, off)[1], mv) > 1e-1
    out, datas = assert_looped_rollout_matches_mujoco(xml, qpos, qvel, ctrl, 1e-10)
    for b, d in enumerate(datas):
        assert np.abs(d.actuator_length[[1, 2, 4]]).min() > 1e-3  # the reference-site lengths act
        assert rel_err(out.qfrc_actuator[b], d.qfrc_actuator) <= 1e-12


def test_site_actuator_gradients_match_finite_differences():
    """d loss / d (the site gears' force and torque parts, a site's position and orientation, the
    initial state, a control) through a rollout against central differences (float64)."""
    model = hw.load_model(ARM.format(integrator="Euler"), dtype="float64")
    phys = hw.Physics(model, verbose=False)
    qpos, qvel, ctrl = _inputs(model.mj, 2, 10, seed=1)
    inputs = [to_torch(x, torch.float64).requires_grad_(True) for x in (qpos, qvel, ctrl)]
    loss = final_state_loss(phys, inputs)

    ee, ref = (mujoco.mj_name2id(model.mj, mujoco.mjtObj.mjOBJ_SITE, n) for n in ("ee", "ref"))
    checks = [("actuator_gear_force", (0, 1)), ("actuator_gear_force", (1, 0)), ("actuator_gear_force", (3, 1)),
              ("actuator_gear_torque", (0, 2)), ("actuator_gear_torque", (2, 2)), ("actuator_gear_force", (4, 1)),
              ("site_pos", (ee, 0)), ("site_pos", (ref, 1)), ("site_quat", (ee, 1)), ("site_quat", (ref, 3)),
              (inputs[0], (1, 5)), (inputs[1], (0, 2)), (inputs[2], (1, 3, 2)), (inputs[2], (0, 1, 4))]
    assert_grads_match_central_differences(
        model, ("actuator_gear_force", "actuator_gear_torque", "site_pos", "site_quat"), loss, checks)


def test_what_site_actuators_refuse():
    wrapped = ARM.format(integrator="Euler").replace('<velocity site="ee" refsite="ref" kv="0.05" gear="0 0 0 0 0 1"/>',
                                                     '<position site="ee" refsite="ref" kp="0.5" gear="0 0 0 0 0 1"/>')
    with pytest.raises(hw.UnsupportedFeatureError, match="length-dependent force of a rotation in a reference site"):
        hw.load_model(wrapped)
    with pytest.raises(hw.UnsupportedFeatureError, match="velocity-dependent force on a site with the implicitfast"):
        hw.load_model(ARM.format(integrator="implicitfast"))
    with pytest.raises(ValueError, match="site transmissions run"):
        hw.Physics(hw.load_model(ARM.format(integrator="Euler")), verbose=False, engine="unrolled")
