"""Tendons that act (MuJoCo's fixed and spatial tendons through sites and pulleys: stiffness with
its deadband, damping, tendon actuators and their actuatorfrcrange) against mj_step and
mj_forward, their gradients against central differences, and what is refused by name."""
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

# an arm on a ball joint with a slide and two coupled fingers: a spatial cable from a world anchor
# through three sites (a pulley halves the last branch), two fixed tendons over the fingers, and
# motor, position and velocity actuators on the tendons beside one on a joint
ARM = """<mujoco><option integrator="{integrator}" timestep="0.004"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <site name="anchor" pos="0.3 0.2 1.3"/>
    <body pos="0 0 1"><joint name="ball" type="ball" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.04" mass="1"/>
      <site name="s1" pos="0.2 0.05 0"/>
      <body pos="0.4 0 0" euler="0 10 0"><joint name="elbow" type="hinge" axis="0 1 0" damping="0.02"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/>
        <site name="s2" pos="0.15 0 0.03"/>
        <body pos="0.3 0 0"><joint name="slide" type="slide" axis="1 0 0" damping="0.5"/>
          <geom type="box" size="0.05 0.03 0.03" mass="0.3"/>
          <site name="tip" pos="0.05 0 -0.02"/>
          <body pos="0.05 0.02 0"><joint name="f1" type="hinge" axis="0 0 1"/>
            <geom type="capsule" fromto="0 0 0 0.1 0 0" size="0.01" mass="0.2"/></body>
          <body pos="0.05 -0.02 0"><joint name="f2" type="hinge" axis="0 0 1"/>
            <geom type="capsule" fromto="0 0 0 0.1 0 0" size="0.01" mass="0.2"/></body>
        </body></body></body>
  </worldbody>
  <tendon>
    <spatial name="cable" stiffness="40" damping="0.8" springlength="0.9 1.0">
      <site site="anchor"/><site site="s1"/><site site="s2"/><pulley divisor="2"/><site site="s2"/><site site="tip"/>
    </spatial>
    <fixed name="couple" stiffness="2" damping="0.01"><joint joint="f1" coef="1"/><joint joint="f2" coef="0.8"/></fixed>
    <fixed name="grip" actuatorfrclimited="true" actuatorfrcrange="-0.4 0.5">
      <joint joint="f1" coef="0.5"/><joint joint="f2" coef="-0.5"/></fixed>
  </tendon>
  <actuator>
    <motor tendon="cable" gear="2" ctrlrange="-5 5" ctrllimited="true"/>
    <position tendon="grip" kp="3"/>
    <velocity tendon="couple" kv="0.02"/>
    <motor joint="elbow"/>
    <motor tendon="grip" gear="1.5"/>
  </actuator></mujoco>"""


def _inputs(mj, B, T, seed, vel=1.0):
    rng = np.random.default_rng(seed)
    qpos = np.tile(mj.qpos0, (B, 1))
    q = rng.normal(size=(B, 4))
    qpos[:, :4] = q / np.linalg.norm(q, axis=1, keepdims=True)
    qpos[:, 4:] += rng.normal(0, 0.3, (B, mj.nq - 4))
    return qpos, rng.normal(0, vel, (B, mj.nv)), rng.normal(0, 1.0, (B, T, mj.nu))


@pytest.mark.parametrize("integrator", ["Euler", "RK4"])
def test_tendon_rollouts_and_forces_match_mujoco(integrator):
    """100-step rollouts against mj_step (float64 to 1e-10; float32 one step to 1e-4) and
    Physics.forward's qfrc_passive and qfrc_actuator against mj_forward's to 1e-12; the tendons
    matter: without their stiffness, damping and actuators MuJoCo's rollout differs by far more."""
    xml = ARM.format(integrator=integrator)
    mj = mujoco.MjModel.from_xml_string(xml)
    qpos, qvel, ctrl = _inputs(mj, 4, 100, seed=0)
    ctrl[0, :, 1] = 3.0  # the grip's two actuators beyond its actuatorfrcrange
    ctrl[0, :, 4] = 2.0
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    slack = mujoco.MjModel.from_xml_string(xml)
    slack.tendon_stiffness[:] = 0
    slack.tendon_damping[:] = 0
    assert rel_err(mj_rollout(slack, qpos, qvel, ctrl * [0, 0, 0, 1, 0])[1], mv) > 1e-1
    out, datas = assert_looped_rollout_matches_mujoco(xml, qpos, qvel, ctrl, 1e-10)
    for b, d in enumerate(datas):
        assert np.abs(d.ten_J).max() > 0.1
        assert rel_err(out.qfrc_passive[b], d.qfrc_passive) <= 1e-12
        assert rel_err(out.qfrc_actuator[b], d.qfrc_actuator) <= 1e-12
        assert rel_err(out.qacc[b], d.qacc) <= 1e-10
    # float32: one step
    m32 = hw.load_model(xml, dtype="float32")
    q1, v1 = hw.Physics(m32, verbose=False).step(*(to_torch(x) for x in (qpos, qvel, ctrl[:, 0])))
    e = rel_err(q1, mq[:, 1]), rel_err(v1, mv[:, 1])
    assert max(e) <= 1e-4, e


def test_an_inert_tendon_before_acting_ones_changes_nothing():
    """A tendon that exerts no force (a path of sites and a pulley) ahead of the acting ones: the
    acting tendons' coefficients and pulley divisors are read at MuJoCo's wrap addresses (read
    where the inert tendon's path had been left out, the fixed tendons' coefficients were the
    inert one's and their actuators pulled on nothing)."""
    xml = ARM.format(integrator="Euler").replace("<tendon>", """<tendon>
    <spatial name="idle"><site site="anchor"/><site site="s1"/><pulley divisor="3"/><site site="s2"/>
      <site site="tip"/></spatial>""")
    mj = mujoco.MjModel.from_xml_string(xml)
    qpos, qvel, ctrl = _inputs(mj, 4, 100, seed=1)
    out, datas = assert_looped_rollout_matches_mujoco(xml, qpos, qvel, ctrl, 1e-10)
    for b, d in enumerate(datas):
        assert rel_err(out.qfrc_actuator[b], d.qfrc_actuator) <= 1e-12
        assert rel_err(out.qfrc_passive[b], d.qfrc_passive) <= 1e-12


def test_tendon_gradients_match_finite_differences():
    """d loss / d (the tendons' stiffness, rest lengths, damping, a fixed tendon's coefficient, a
    pulley's divisor, a site's position, a tendon actuator's gear, its actuatorfrcrange, the
    initial state and a control) through a rollout against central differences (float64)."""
    model = hw.load_model(ARM.format(integrator="Euler"), dtype="float64")
    phys = hw.Physics(model, verbose=False)
    qpos, qvel, ctrl = _inputs(model.mj, 2, 10, seed=1)
    ctrl[0, :, 1] = 3.0  # world 0's grip force clamped (and scaled) by its actuatorfrcrange
    inputs = [to_torch(x, torch.float64).requires_grad_(True) for x in (qpos, qvel, ctrl)]
    loss = final_state_loss(phys, inputs)

    mj = model.mj
    coef = int(mj.tendon_adr[1]) + 1  # couple's f2 coefficient
    pulley = int(mj.tendon_adr[0]) + 3
    assert int(mj.wrap_type[pulley]) == int(mujoco.mjtWrap.mjWRAP_PULLEY)
    checks = [("tendon_stiffness", 0), ("tendon_stiffness", 1), ("tendon_lengthspring", (0, 0)),
              ("tendon_lengthspring", (0, 1)), ("tendon_damping", 0), ("tendon_damping", 1), ("wrap_prm", coef),
              ("wrap_prm", pulley), ("site_pos", (1, 2)), ("site_pos", (3, 0)), ("actuator_gear", 0),
              ("actuator_gear", 4), ("tendon_actfrcrange", (2, 1)), (inputs[0], (1, 5)), (inputs[1], (0, 3)),
              (inputs[2], (1, 4, 0)), (inputs[2], (0, 2, 4))]
    assert_grads_match_central_differences(
        model, ("tendon_stiffness", "tendon_lengthspring", "tendon_damping", "wrap_prm", "site_pos", "actuator_gear",
                "tendon_actfrcrange"), loss, checks)


def test_what_tendons_refuse():
    euler = ARM.format(integrator="Euler")
    for edit, match in [
            (('<fixed name="couple" stiffness="2"', '<fixed name="couple" limited="true" range="-1 1" stiffness="2"'),
             "tendon 'couple' limited"),
            (('<fixed name="couple" stiffness="2"', '<fixed name="couple" frictionloss="0.1" stiffness="2"'),
             "tendon 'couple' frictionloss"),
            (('<fixed name="couple" stiffness="2"', '<fixed name="couple" armature="0.1" stiffness="2"'),
             "tendon 'couple' armature")]:
        xml = euler.replace(*edit)
        with pytest.raises(hw.UnsupportedFeatureError, match=match):
            hw.load_model(xml)
    fast = ARM.format(integrator="implicitfast")
    with pytest.raises(hw.UnsupportedFeatureError, match="damping with the implicitfast") as e:
        hw.load_model(fast)
    assert "velocity-dependent force on a tendon with the implicitfast" in str(e.value)
    model = hw.load_model(euler)
    with pytest.raises(ValueError, match="tendons run"):
        hw.Physics(model, verbose=False, engine="unrolled")
    # tendons that exert no force stay outside the step
    inert = hw.load_model(euler.split("<tendon>")[0] + """<tendon><fixed name="t">
      <joint joint="f1" coef="1"/></fixed></tendon></mujoco>""")
    assert not inert.structure.tendon_wraps
