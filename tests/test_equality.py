"""Equality constraints (MuJoCo's connect, weld, joint and tendon, as soft constraints with their solref /
solimp; ``limit_law="mujoco"``, kernels/limits.py): steps and 100-step rollouts against mj_step
from violated states (Euler with implicit damping, implicitfast, RK4), with limits and dry
friction in the same solve, MuJoCo's own connect test models, gradients against central
differences, and what is refused."""
from __future__ import annotations

import os

import mujoco
import numpy as np
import pytest
import torch
from conftest import (
    assert_grads_match_central_differences,
    exact_solver,
    final_state_loss,
    mj_rollout,
    rel_err,
    to_torch,
)

import hybridwam as hw

# a planar four-bar (a chain of three hinges whose tip a connect holds to a world point), a
# parallel gripper's fingers coupled by a joint equality with a quadratic term (one finger limited,
# with dry friction), a slide held at its reference by a one-joint equality, and a ball-jointed
# pendulum whose tip a connect ties to the four-bar's coupler (a connect between two moving bodies)
MODEL = """<mujoco><option timestep="{timestep}" integrator="{integrator}"/>
  <default><geom contype="0" conaffinity="0"/><joint damping="{damping}"/></default>
  <worldbody>
    <body name="crank" pos="0 0 1">
      <joint name="j1" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02" mass="0.5"/>
      <body name="coupler" pos="0.2 0 0">
        <joint name="j2" type="hinge" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 0.1 0 0.4" size="0.02" mass="0.7"/>
        <body name="rocker" pos="0.1 0 0.4">
          <joint name="j3" type="hinge" axis="0 1 0"/>
          <geom type="capsule" fromto="0 0 0 0.3 0 -0.4" size="0.02" mass="0.6"/>
        </body>
      </body>
    </body>
    <body name="palm" pos="1 0 1">
      <joint name="slide" type="slide" axis="1 0 0"/>
      <geom type="box" size="0.05 0.05 0.02" mass="0.4"/>
      <body name="f1" pos="0.03 0 0"><joint name="f1" type="hinge" axis="0 1 0" range="-0.4 0.6" frictionloss="0.02"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.1" size="0.01" mass="0.05"/></body>
      <body name="f2" pos="-0.03 0 0"><joint name="f2" type="hinge" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.1" size="0.01" mass="0.05"/></body>
    </body>
    <body name="bob" pos="0.3 0.2 1.2">
      <joint name="ball" type="ball"/>
      <geom type="capsule" fromto="0 0 0 0 -0.2 0" size="0.02" mass="0.3"/>
    </body>
  </worldbody>
  <equality>
    <connect body1="rocker" body2="world" anchor="0.3 0 -0.4" solref="0.02 1"/>
    <joint joint1="f2" joint2="f1" polycoef="0 -1 0.5 0 0" solimp="0.9 0.95 0.01 0.5 2"/>
    <joint joint1="slide" polycoef="0 0 0 0 0" solref="0.05 0.7"/>
    <connect body1="bob" body2="coupler" anchor="0 -0.2 0"/>
  </equality>
  <actuator><motor joint="j1"/><motor joint="f1" gear="0.2"/><motor joint="slide"/></actuator>
</mujoco>"""
INTEGRATORS = ("Euler", "implicitfast", "RK4")



def model(integrator="Euler", damping=0.05):
    """The model; RK4 at a fifth of the step (at 5 ms MuJoCo's RK4 diverges on it within 30 ms,
    as hybridwam's does: the stiff constraint rows are explicit in its stages)."""
    return MODEL.format(integrator=integrator, damping=damping, timestep=0.001 if integrator == "RK4" else 0.005)


def near_qpos0(mj, B, rng, scale=0.05):
    """States around qpos0 (where the constraints hold): every equality violated a little."""
    qpos = np.tile(mj.qpos0, (B, 1)) + rng.normal(0, scale, (B, mj.nq))
    for j in range(mj.njnt):
        if mj.jnt_type[j] in (mujoco.mjtJoint.mjJNT_BALL, mujoco.mjtJoint.mjJNT_FREE):
            a = mj.jnt_qposadr[j] + (3 if mj.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE else 0)
            qpos[:, a:a + 4] /= np.linalg.norm(qpos[:, a:a + 4], axis=1, keepdims=True)
    return qpos, rng.normal(0, 0.5, (B, mj.nv))


def rollouts_against_mj_step(xml, rng, B=8, scale=0.1, T=100):
    """hybridwam's and mj_step's T-step rollouts (float64, MuJoCo's solver run to its optimum)
    from the same states around qpos0: (the efc rows MuJoCo instantiates at the first world's
    state as (types, positions), one-step errors (qpos, qvel), T-step errors)."""
    mj = exact_solver(mujoco.MjModel.from_xml_string(xml))
    phys = hw.Physics(hw.load_model(xml, device="cpu", dtype="float64", limit_law="mujoco"), verbose=False)
    assert phys.engine == "looped"
    qpos, qvel = near_qpos0(mj, B, rng, scale=scale)
    ctrl = rng.normal(0, 0.5, (B, T, mj.nu))
    d = mujoco.MjData(mj)
    d.qpos[:], d.qvel[:] = qpos[0], qvel[0]
    mujoco.mj_forward(mj, d)
    tr = phys.rollout(to_torch(qpos, torch.float64), to_torch(qvel, torch.float64), to_torch(ctrl, torch.float64))
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    one = rel_err(tr.qpos[:, 1], mq[:, 1]), rel_err(tr.qvel[:, 1], mv[:, 1])
    return (d.efc_type.copy(), d.efc_pos.copy()), one, (rel_err(tr.qpos, mq), rel_err(tr.qvel, mv))


EQUALITY = int(mujoco.mjtConstraint.mjCNSTR_EQUALITY)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_equality_constraints_step_like_mj_step(rng, integrator):
    (types, _), one, err = rollouts_against_mj_step(model(integrator), rng, B=16, scale=0.05)
    assert (types == EQUALITY).sum() == 8
    assert max(one) <= 1e-10 and max(err) <= 1e-8, (one, err)


def test_equality_constraints_one_step_in_float32(rng):
    """float32 (the default dtype) one step from violated states against mj_step: measured max
    7.7e-5, median 2.2e-5 over 32 worlds; 1.2e-2 and 2.0e-3 before the constraint solve refined
    its Newton points in float32 (the Woodbury identity cancels for stiff rows)."""
    from test_tendon_constraints import float32_step_errors

    err, _ = float32_step_errors(model(), rng)
    assert err.max() <= 3e-4 and np.median(err) <= 5e-5, (err.max(), np.median(err))


def assert_forward_matches_mj_forward(xml, rng, scale, speed, tol):
    """Physics.forward's qacc and qfrc_constraint against mj_forward (its solver run to the
    optimum) at 8 states around qpos0, velocities times ``speed``."""
    mj = exact_solver(mujoco.MjModel.from_xml_string(xml))
    phys = hw.Physics(hw.load_model(xml, device="cpu", dtype="float64", limit_law="mujoco"), verbose=False)
    qpos, qvel = near_qpos0(mj, 8, rng, scale=scale)
    qvel *= speed
    ctrl = rng.normal(0, 0.5, (8, mj.nu))
    out = phys.forward(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrl))
    d = mujoco.MjData(mj)
    for b in range(8):
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[b], qvel[b], ctrl[b]
        mujoco.mj_forward(mj, d)
        assert rel_err(out.qacc[b], d.qacc) <= tol, (b, out.qacc[b], d.qacc)
        assert rel_err(out.qfrc_constraint[b], d.qfrc_constraint) <= tol


def test_constraint_forces_match_mj_forward(rng):
    assert_forward_matches_mj_forward(model("RK4", damping=0.0), rng, scale=0.1, speed=1.0, tol=1e-9)


@pytest.mark.parametrize("name", ["connect_2d.xml", "connect_3d.xml", "weld_3d.xml"])
def test_mujocos_connect_models_step_like_mj_step(rng, name):
    """MuJoCo Warp's test models of the connect's and the weld's velocity-product terms (jdotv;
    free and hinged bodies), contact-free (MuJoCo's flag: the connected boxes touch), 100 steps."""
    mjw = pytest.importorskip("mujoco_warp")
    path = os.path.join(os.path.dirname(mjw.__file__), "test_data", "jdotv", name)
    mj = exact_solver(mujoco.MjModel.from_xml_path(path))
    mj.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
    phys = hw.Physics(hw.load_model(mj, device="cpu", dtype="float64", limit_law="mujoco"), verbose=False)
    qpos, qvel = near_qpos0(mj, 8, rng)
    qvel *= 4  # fast: the velocity-product term matters
    ctrl = rng.normal(0, 0.5, (8, 100, mj.nu))
    tr = phys.rollout(to_torch(qpos, torch.float64), to_torch(qvel, torch.float64), to_torch(ctrl, torch.float64))
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    err = rel_err(tr.qpos, mq), rel_err(tr.qvel, mv)
    assert max(err) <= 1e-8, err


@pytest.mark.parametrize("integrator", ["Euler", "RK4"])
def test_gradients_through_equality_constraints_match_central_differences(integrator):
    phys = hw.Physics(hw.load_model(model(integrator), device="cpu", dtype="float64", limit_law="mujoco"),
                      verbose=False)
    m = phys.model
    qpos, qvel = near_qpos0(m.mj, 3, np.random.default_rng(5))
    q0 = torch.tensor(qpos, requires_grad=True)
    v0 = torch.tensor(qvel, requires_grad=True)
    u = torch.tensor(np.random.default_rng(6).normal(0, 0.5, (3, 20, m.nu)), requires_grad=True)
    loss = final_state_loss(phys, (q0, v0, u))
    names = ["eq_solref", "eq_solimp", "eq_polycoef", "eq_anchor1", "eq_anchor2", "body_invweight0",
             "dof_invweight0", "body_mass", "qpos0"]
    checks = [(q0, (0, 0)), (q0, (1, 4)), (q0, (2, 7)), (v0, (0, 1)), (v0, (2, 8)), (u, (1, 5, 0)),
              ("eq_solref", (0, 0)), ("eq_solref", (2, 1)), ("eq_solimp", (1, 1)), ("eq_polycoef", (1, 1)),
              ("eq_polycoef", (1, 2)), ("eq_anchor1", (0, 0)), ("eq_anchor2", (3, 2)), ("body_invweight0", (3,)),
              ("dof_invweight0", (4,)), ("body_mass", (2,)), ("qpos0", (3,))]
    assert_grads_match_central_differences(m, names, loss, checks, eps=1e-6, tol=1e-5)


def test_equality_needs_mujocos_law():
    with pytest.raises(hw.UnsupportedFeatureError, match="limit_law='mujoco'"):
        hw.load_model(model(), device="cpu")


# welds (MuJoCo's weld: 3 translational rows at the anchors, 3 rotational of q2^-1 q1 relpose
# scaled by torquescale): a free box held at the tip of a 3-dof arm (the weld's relpose from the
# reference configuration, torquescale 0.7), and a hinged paddle welded to the world with an
# explicit relpose and anchor it does not satisfy at qpos0 (so the weld pulls from the start)
WELD = """<mujoco><option timestep="{timestep}" integrator="{integrator}"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="a" pos="0 0 1"><joint name="j0" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="1"/>
      <body name="b" pos="0.3 0 0"><joint name="j1" type="hinge" axis="0 0 1"/>
        <joint name="j2" type="hinge" axis="1 0 0"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/></body></body>
    <body name="c" pos="0.6 0.1 1.05" euler="10 20 30"><freejoint/>
      <geom type="box" size="0.05 0.04 0.03" mass="0.3"/></body>
    <body name="paddle" pos="-0.5 0 1"><joint name="p" type="hinge" axis="0.3 1 0.2" damping="0.02"/>
      <geom type="box" size="0.1 0.02 0.05" pos="0.1 0 0" mass="0.4"/></body>
  </worldbody>
  <equality>
    <weld body1="c" body2="b" torquescale="0.7" solref="0.02 1"/>
    <weld body1="paddle" relpose="0.1 0.02 0 0.98 0 0.2 0" anchor="-0.42 0 1.0" solimp="0.8 0.95 0.05 0.5 2"/>
  </equality>
  <actuator><motor joint="j0"/><motor joint="p"/></actuator>
</mujoco>"""


def weld_model(integrator="Euler"):
    return WELD.format(integrator=integrator, timestep=0.001 if integrator == "RK4" else 0.002)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_welds_step_like_mj_step(rng, integrator):
    """100-step rollouts from states where both welds are violated (positions and rotations);
    with implicitfast the free box also takes MuJoCo 4's implicit gyroscopic term. Measured:
    Euler 6.1e-10 / 6.2e-10 (one step / 100 steps; the first step's, on the free box welded to
    the damped arm), RK4 below 1e-10 / 1e-8, implicitfast within the same bounds."""
    (types, pos), one, err = rollouts_against_mj_step(weld_model(integrator), rng)
    assert (types == EQUALITY).sum() == 12
    assert np.abs(pos[3:6]).max() > 1e-2 and np.abs(pos[9:12]).max() > 1e-2  # rotations violated
    assert max(one) <= 1e-8 and max(err) <= 1e-8, (one, err)


def test_weld_forces_match_mj_forward(rng):
    """qacc and qfrc_constraint against mj_forward, fast states (the rotational rows' aref less
    their velocity-product acceleration, as MuJoCo 4's mj_Jdotv: without it 3e-4 N m off);
    measured up to 1.3e-9 (qacc up to 1e3 rad/s^2: 1e-12 of it)."""
    assert_forward_matches_mj_forward(weld_model(), rng, scale=0.2, speed=4.0, tol=1e-8)


def test_gradients_through_welds_match_central_differences():
    phys = hw.Physics(hw.load_model(weld_model(), device="cpu", dtype="float64", limit_law="mujoco"), verbose=False)
    m = phys.model
    qpos, qvel = near_qpos0(m.mj, 2, np.random.default_rng(7), scale=0.1)
    q0 = torch.tensor(qpos, requires_grad=True)
    v0 = torch.tensor(qvel, requires_grad=True)
    u = torch.tensor(np.random.default_rng(8).normal(0, 0.5, (2, 20, m.nu)), requires_grad=True)
    loss = final_state_loss(phys, (q0, v0, u))
    names = ["eq_relpose", "eq_torquescale", "eq_anchor1", "eq_anchor2", "body_invweight0r", "eq_solref"]
    checks = [(q0, (0, 5)), (q0, (1, 7)), (v0, (0, 4)), (u, (1, 5, 1)), ("eq_relpose", (0, 1)),
              ("eq_relpose", (1, 3)), ("eq_torquescale", (0,)), ("eq_anchor1", (1, 0)), ("eq_anchor2", (0, 2)),
              ("body_invweight0r", (4,))]
    # eps 1e-4: the Euler step's loss carries ~1e-12 of noise (central differences at 1e-6 and 1e-7
    # scatter by 1e-5 and 2e-4 relative around the adjoint's value; at 1e-4 they agree to 2e-7)
    assert_grads_match_central_differences(m, names, loss, checks, eps=1e-4, tol=1e-5)
    # the time constant is strongly curved (central differences 0.02713 / 0.028768 / 0.028784 at
    # eps 1e-4 / 1e-5 / 1e-6, the adjoint 0.028784)
    assert_grads_match_central_differences(m, ["eq_solref"], loss, [("eq_solref", (1, 0))], eps=1e-6, tol=1e-5)


# tendon equalities (MuJoCo's: a tendon's length minus its length at qpos0 a polynomial of
# another's, J from the tendons' Jacobians): a spatial tendon over a two-link arm coupled to a fixed
# tendon of another chain (hinge and slide), and a fixed tendon held at an offset
TENDON_EQ = """<mujoco><option timestep="{timestep}" integrator="{integrator}"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="a" pos="0 0 1"><joint name="j0" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="1"/><site name="s0" pos="0.1 0 0.05"/>
      <body name="b" pos="0.3 0 0"><joint name="j1" type="hinge" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/><site name="s1" pos="0.2 0 0.02"/></body>
    </body>
    <body name="c" pos="1 0 1"><joint name="j2" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/>
      <body pos="0.3 0 0"><joint name="j3" type="slide" axis="1 0 0"/>
        <geom type="sphere" size="0.04" mass="0.2"/></body>
    </body>
    <site name="w0" pos="0 0 1.3"/>
  </worldbody>
  <tendon>
    <fixed name="f1"><joint joint="j2" coef="1"/><joint joint="j3" coef="-2"/></fixed>
    <spatial name="sp"><site site="w0"/><site site="s0"/><site site="s1"/></spatial>
    <fixed name="f2"><joint joint="j0" coef="0.5"/></fixed>
  </tendon>
  <equality>
    <tendon tendon1="sp" tendon2="f1" polycoef="0.01 0.8 0.3 0 0" solref="0.02 1"/>
    <tendon tendon1="f2" polycoef="0.05 0 0 0 0" solimp="0.8 0.95 0.05 0.5 2"/>
  </equality>
  <actuator><motor joint="j0"/><motor joint="j2"/></actuator>
</mujoco>"""


def tendon_eq_model(integrator="Euler"):
    return TENDON_EQ.format(integrator=integrator, timestep=0.001 if integrator == "RK4" else 0.002)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_tendon_equalities_step_like_mj_step(rng, integrator):
    """100-step rollouts from states where both tendon equalities are violated (measured: one
    step below 1e-14, 100 steps 1.5e-13 (Euler)); qacc against mj_forward 1e-11 of |qacc| ~ 1e3
    (MuJoCo 4 adds no velocity-product term to a tendon equality's aref, spatial tendons
    included: checked against efc_aref)."""
    xml = tendon_eq_model(integrator)
    (types, pos), one, err = rollouts_against_mj_step(xml, rng, scale=0.2)
    assert (types == EQUALITY).sum() == 2 and np.abs(pos[:2]).min() > 1e-3
    assert max(one) <= 1e-10 and max(err) <= 1e-8, (one, err)
    if integrator == "Euler":
        assert_forward_matches_mj_forward(xml, rng, scale=0.2, speed=2.0, tol=1e-9)


def test_gradients_through_tendon_equalities_match_central_differences():
    phys = hw.Physics(hw.load_model(tendon_eq_model(), device="cpu", dtype="float64", limit_law="mujoco"),
                      verbose=False)
    m = phys.model
    qpos, qvel = near_qpos0(m.mj, 2, np.random.default_rng(9), scale=0.1)
    q0 = torch.tensor(qpos, requires_grad=True)
    v0 = torch.tensor(qvel, requires_grad=True)
    u = torch.tensor(np.random.default_rng(10).normal(0, 0.5, (2, 20, m.nu)), requires_grad=True)
    loss = final_state_loss(phys, (q0, v0, u))
    names = ["tendon_length0", "tendon_invweight0", "eq_polycoef", "site_pos"]
    checks = [(q0, (0, 1)), (q0, (1, 3)), (v0, (0, 2)), (u, (1, 5, 1)), ("tendon_length0", (0,)),
              ("tendon_length0", (1,)), ("tendon_invweight0", (2,)), ("eq_polycoef", (0, 1)),
              ("eq_polycoef", (0, 2)), ("eq_polycoef", (1, 0)), ("site_pos", (1, 2))]
    assert_grads_match_central_differences(m, names, loss, checks, eps=1e-6, tol=1e-5)


# welds and connects between sites (MuJoCo's site semantic: the sites' positions, and for the weld
# their frames in place of the anchors and relpose): a free box's site welded to a site at an arm's
# tip (torquescale 0.5), a ball-jointed rod's end site connected to a world site
SITE_EQ = """<mujoco><option timestep="{timestep}" integrator="{integrator}"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="a" pos="0 0 1"><joint name="j0" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="1"/>
      <body name="b" pos="0.3 0 0"><joint name="j1" type="hinge" axis="0 0 1"/>
        <joint name="j2" type="hinge" axis="1 0 0"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/>
        <site name="tip" pos="0.3 0.02 0" euler="0 20 40"/></body>
    </body>
    <body name="c" pos="0.62 0.05 1.0" euler="10 20 30"><freejoint/>
      <geom type="box" size="0.05 0.04 0.03" mass="0.3"/><site name="grip" pos="-0.03 0 0.01" euler="5 0 10"/></body>
    <body name="d" pos="-0.5 0 1"><joint type="ball"/>
      <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02" mass="0.2"/><site name="dend" pos="0.2 0 0"/></body>
    <site name="anchor" pos="-0.28 0.01 1.02"/>
  </worldbody>
  <equality><weld site1="grip" site2="tip" torquescale="0.5"/><connect site1="dend" site2="anchor"/></equality>
  <actuator><motor joint="j0"/></actuator>
</mujoco>"""


def site_eq_model(integrator="Euler"):
    return SITE_EQ.format(integrator=integrator, timestep=0.002)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_site_welds_and_connects_step_like_mj_step(rng, integrator):
    """100-step rollouts from violated states (measured 4.4e-12 Euler and implicitfast, 7.5e-14
    RK4)."""
    (types, pos), one, err = rollouts_against_mj_step(site_eq_model(integrator), rng)
    assert (types == EQUALITY).sum() == 9 and np.abs(pos[:9]).min() > 1e-3
    assert max(err) <= 1e-10, err


def test_gradients_through_site_equalities_match_central_differences():
    phys = hw.Physics(hw.load_model(site_eq_model(), device="cpu", dtype="float64", limit_law="mujoco"),
                      verbose=False)
    m = phys.model
    qpos, qvel = near_qpos0(m.mj, 2, np.random.default_rng(11), scale=0.1)
    q0 = torch.tensor(qpos, requires_grad=True)
    v0 = torch.tensor(qvel, requires_grad=True)
    u = torch.tensor(np.random.default_rng(12).normal(0, 0.5, (2, 20, m.nu)), requires_grad=True)
    loss = final_state_loss(phys, (q0, v0, u))
    names = ["site_pos", "site_quat", "eq_torquescale"]
    checks = [(q0, (0, 4)), (v0, (1, 7)), ("site_pos", (0, 1)), ("site_pos", (1, 2)), ("site_pos", (3, 0)),
              ("site_quat", (1, 2)), ("site_quat", (2, 0)), ("eq_torquescale", (0,))]
    assert_grads_match_central_differences(m, names, loss, checks, eps=1e-6, tol=1e-5)


def test_an_inactive_equality_leaves_the_others_parameters_in_place(rng):
    """An inactive equality (active="false": MuJoCo instantiates no rows) before the welds: their
    rows read their own solref / solimp / anchors (MuJoCo's index), 100 steps against mj_step
    (reading them at the active list's index was 65 rad/s off)."""
    xml = weld_model().replace("<equality>", '<equality><connect body1="a" body2="world" anchor="0.1 0 0" '
                                             'solref="0.5 0.2" active="false"/>')
    (types, _), _, err = rollouts_against_mj_step(xml, rng, B=4)
    assert (types == EQUALITY).sum() == 12
    assert max(err) <= 1e-8, err
