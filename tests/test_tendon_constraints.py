"""Tendon range limits and tendon dry friction as MuJoCo's soft constraints (``limit_law="mujoco"``;
kernels/limits.py's tendon_rows, the constraint solve's dense rows beside the equalities'):
100-step rollouts against mj_step from states where the limits are violated and the friction
rows sit in both their zones (Euler, implicitfast, RK4), the constraint force against
mj_forward, MuJoCo Warp's tendon limit model, gradients against central differences, and the
refusal under the compliant law."""
from __future__ import annotations

import os

import mujoco
import numpy as np
import pytest
import torch
from conftest import assert_grads_match_central_differences, exact_solver, final_state_loss, mj_rollout, rel_err
from test_equality import INTEGRATORS, assert_forward_matches_mj_forward, near_qpos0, rollouts_against_mj_step

import hybridwam as hw

# a planar arm with a wrist and a slide: a spatial cable from a world site over both links
# (limited, with a margin and its own solref / solimp, near its upper end at qpos0), a fixed
# tendon over elbow, wrist and slide that is limited, has dry friction and an actuator, and a
# fixed tendon with dry friction only; a joint limit and a dof's dry friction in the same solve
MODEL = """<mujoco><option timestep="{timestep}" integrator="{integrator}"/>
  <default><geom contype="0" conaffinity="0"/><joint damping="0.02"/></default>
  <worldbody>
    <site name="anchor" pos="0 0.05 1.1"/>
    <body name="upper" pos="0 0 1">
      <joint name="shoulder" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="1.0"/>
      <site name="s_upper" pos="0.15 0.04 0.03"/>
      <body name="fore" pos="0.3 0 0">
        <joint name="elbow" type="hinge" axis="0 1 0" range="-1.2 1.2"/>
        <geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.025" mass="0.6"/>
        <site name="s_fore" pos="0.2 0.0 0.03"/>
        <body name="hand" pos="0.25 0 0">
          <joint name="wrist" type="hinge" axis="0 0 1" frictionloss="0.01"/>
          <joint name="reach" type="slide" axis="1 0 0"/>
          <geom type="box" size="0.04 0.03 0.02" mass="0.2"/>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon>
    <spatial name="cable" limited="true" range="0.2 0.52" margin="0.01" solreflimit="0.01 0.8"
             solimplimit="0.85 0.97 0.02 0.4 2">
      <site site="anchor"/><site site="s_upper"/><site site="s_fore"/>
    </spatial>
    <fixed name="couple" limited="true" range="-0.1 0.25" frictionloss="0.05" solreffriction="0.03 1.2">
      <joint joint="elbow" coef="0.5"/><joint joint="wrist" coef="-0.8"/><joint joint="reach" coef="2"/>
    </fixed>
    <fixed name="drag" frictionloss="0.08" solimpfriction="0.8 0.9 0.01 0.5 2">
      <joint joint="shoulder" coef="1"/><joint joint="reach" coef="-1.5"/>
    </fixed>
  </tendon>
  <actuator><motor joint="shoulder"/><motor joint="wrist" gear="0.3"/><motor tendon="couple" gear="0.5"/></actuator>
</mujoco>"""
LIMIT, FRICTION = int(mujoco.mjtConstraint.mjCNSTR_LIMIT_TENDON), int(mujoco.mjtConstraint.mjCNSTR_FRICTION_TENDON)


def model(integrator="Euler"):
    return MODEL.format(integrator=integrator, timestep=0.001 if integrator == "RK4" else 0.002)


def row_census(xml, rng, B=8, scale=0.3, T=100):
    """Over mj_step rollouts from the states rollouts_against_mj_step starts from (the same rng
    draws): the tendon limit rows that were violated (efc_pos < 0), and the tendon friction rows
    in their quadratic zone and at their bound."""
    mj = exact_solver(mujoco.MjModel.from_xml_string(xml))
    qpos, qvel = near_qpos0(mj, B, rng, scale=scale)
    ctrl = rng.normal(0, 0.5, (B, T, mj.nu))
    d = mujoco.MjData(mj)
    violated = quadratic = bound = 0
    for b in range(B):
        d.qpos[:], d.qvel[:] = qpos[b], qvel[b]
        for t in range(T):
            d.ctrl[:] = ctrl[b, t]
            mujoco.mj_forward(mj, d)
            lim = d.efc_type == LIMIT
            violated += int((d.efc_pos[lim] < 0).sum())
            fr = d.efc_type == FRICTION
            at = np.isclose(np.abs(d.efc_force[fr]), d.efc_frictionloss[fr], rtol=1e-9)
            bound += int(at.sum())
            quadratic += int((~at).sum())
            mujoco.mj_step(mj, d)
    return violated, quadratic, bound


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_tendon_limits_and_friction_step_like_mj_step(integrator):
    """Measured: one step below 2e-13, 100 steps 1.8e-12 (Euler, implicitfast), 3e-14 (RK4), with
    tendon limits violated on a few hundred of the 800 world-steps and the friction rows in both
    zones."""
    xml = model(integrator)
    (types, _), one, err = rollouts_against_mj_step(xml, np.random.default_rng(3), scale=0.3)
    assert (types == LIMIT).any() and (types == FRICTION).sum() == 2
    violated, quadratic, bound = row_census(xml, np.random.default_rng(3))
    assert violated >= 50 and quadratic >= 50 and bound >= 50, (violated, quadratic, bound)
    assert max(one) <= 1e-10 and max(err) <= 1e-8, (one, err)


def float32_step_errors(xml, rng, B=32, scale=0.1):
    """Per world the float32 one-step qvel error against mj_step (rel_err's measure), and the
    number of violated limit rows (joint and tendon) MuJoCo instantiates at those states."""
    mj = exact_solver(mujoco.MjModel.from_xml_string(xml))
    phys = hw.Physics(hw.load_model(xml, device="cpu", limit_law="mujoco"), verbose=False)
    qpos, qvel = near_qpos0(mj, B, rng, scale=scale)
    ctrl = rng.normal(0, 0.5, (B, 1, mj.nu))
    f32 = (torch.tensor(x, dtype=torch.float32) for x in (qpos, qvel, ctrl))
    tr = phys.rollout(*f32)
    _, mv = mj_rollout(mj, qpos, qvel, ctrl)
    err = np.abs(tr.qvel[:, 1].double().numpy() - mv[:, 1]) / np.maximum(1.0, np.abs(mv[:, 1]))
    d = mujoco.MjData(mj)
    violated = 0
    for b in range(B):
        d.qpos[:], d.qvel[:] = qpos[b], qvel[b]
        mujoco.mj_forward(mj, d)
        lim = (d.efc_type == LIMIT) | (d.efc_type == int(mujoco.mjtConstraint.mjCNSTR_LIMIT_JOINT))
        violated += int((d.efc_pos[lim] < 0).sum())
    return err.max(1), violated


def test_tendon_limits_and_friction_one_step_in_float32(rng):
    """One float32 step from states with violated tendon limits against mj_step (float64):
    measured max 1.4e-4, median 1.4e-5 (32 worlds; 1.8e-3 max before the constraint solve
    refined its Newton points in float32, kernels/solve.py's refine_dense)."""
    err, violated = float32_step_errors(model(), rng)
    assert violated >= 20, violated
    assert err.max() <= 3e-4 and np.median(err) <= 5e-5, (err.max(), np.median(err))


def test_tendon_constraint_forces_match_mj_forward(rng):
    assert_forward_matches_mj_forward(model(), rng, scale=0.3, speed=2.0, tol=1e-9)


def test_mujoco_warps_tendon_limit_model_steps_like_mj_step(rng):
    """MuJoCo Warp's tendon/tendon_limit.xml (a fixed tendon over three hinges, limited), from
    its keyframe and random states, 100 steps."""
    mjw = pytest.importorskip("mujoco_warp")
    path = os.path.join(os.path.dirname(mjw.__file__), "test_data", "tendon", "tendon_limit.xml")
    mj = exact_solver(mujoco.MjModel.from_xml_path(path))
    phys = hw.Physics(hw.load_model(mj, device="cpu", dtype="float64", limit_law="mujoco"), verbose=False)
    qpos, qvel = near_qpos0(mj, 8, rng, scale=0.5)
    qpos[0] = mj.key_qpos[0]
    ctrl = np.zeros((8, 100, 0))
    tr = phys.rollout(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrl))
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    assert max(rel_err(tr.qpos, mq), rel_err(tr.qvel, mv)) <= 1e-8


def tendon_gradient_check(integrator, scale, speed, ctrl, names, checks):
    phys = hw.Physics(hw.load_model(model(integrator), device="cpu", dtype="float64", limit_law="mujoco"),
                      verbose=False)
    m = phys.model
    qpos, qvel = near_qpos0(m.mj, 3, np.random.default_rng(11), scale=scale)
    q0 = torch.tensor(qpos, requires_grad=True)
    v0 = torch.tensor(qvel * speed, requires_grad=True)
    u = torch.tensor(np.random.default_rng(12).normal(0, ctrl, (3, 20, m.nu)), requires_grad=True)
    loss = final_state_loss(phys, (q0, v0, u))
    state = [(q0, (0, 1)), (q0, (2, 3)), (v0, (1, 2)), (u, (0, 4, 2))]
    assert_grads_match_central_differences(m, names, loss, state + checks, eps=1e-6, tol=1e-5)


@pytest.mark.parametrize("integrator", ["Euler", "RK4"])
def test_gradients_through_tendon_limits_match_central_differences(integrator):
    """Sliding: the limits violated, the friction rows at their bounds (their solref / solimp
    then act on nothing: zero gradients, checked by the sticking case below)."""
    names = ["tendon_range", "tendon_margin", "tendon_solref_lim", "tendon_solimp_lim", "tendon_frictionloss",
             "tendon_invweight0", "site_pos", "wrap_prm"]
    checks = [("tendon_range", (0, 1)), ("tendon_range", (1, 0)), ("tendon_margin", (0,)),
              ("tendon_solref_lim", (0, 0)), ("tendon_solref_lim", (1, 1)), ("tendon_solimp_lim", (0, 1)),
              ("tendon_solimp_lim", (0, 2)), ("tendon_frictionloss", (1,)), ("tendon_frictionloss", (2,)),
              ("tendon_invweight0", (0,)), ("site_pos", (2, 2)), ("wrap_prm", (3,))]
    tendon_gradient_check(integrator, 0.3, 1.0, 0.5, names, checks)


def test_gradients_through_sticking_tendon_friction_match_central_differences():
    """Slow and lightly driven: the coupling tendon's friction row in its quadratic zone (it
    holds the tendon), the other at its bound."""
    names = ["tendon_frictionloss", "tendon_solref_fri", "tendon_solimp_fri", "tendon_invweight0"]
    checks = [("tendon_frictionloss", (1,)), ("tendon_frictionloss", (2,)), ("tendon_solref_fri", (1, 0)),
              ("tendon_solimp_fri", (1, 0)), ("tendon_solimp_fri", (1, 1)), ("tendon_invweight0", (1,))]
    tendon_gradient_check("Euler", 0.05, 0.02, 0.025, names, checks)


def test_tendon_limits_and_friction_need_mujocos_law():
    with pytest.raises(hw.UnsupportedFeatureError) as e:
        hw.load_model(model(), device="cpu")
    msg = str(e.value)
    for name in ("cable", "couple", "drag"):
        assert f"tendon '{name}'" in msg
    assert "limit_law='mujoco'" in msg and "frictionloss" in msg and "limited" in msg


def test_describe_lists_tendons_and_equalities():
    text = hw.load_model(model(), device="cpu", limit_law="mujoco").describe()
    assert "limit law 'mujoco'" in text
    assert "cable                spatial 3 path element(s) range=[0.2, 0.52] margin=0.01" in text
    assert "drag                 fixed   2 path element(s) frictionloss=0.08" in text
    from test_equality import model as equality_model

    text = hw.load_model(equality_model(), device="cpu", limit_law="mujoco").describe()
    assert "equality constraints  4 active" in text and "#1 joint: joint 'f2' - 'f1'" in text
    assert "#3 connect: body 'bob' - 'coupler'" in text
