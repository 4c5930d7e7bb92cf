"""Integrators against MuJoCo: implicitfast (joint damping and the affine-bias actuators' velocity
terms integrated implicitly, MuJoCo's M - h D with D = d (passive + actuator force) / d qvel
without the bias force) on both engines; RK4 (mj_RungeKutta) on the looped engine; what is still
refused, with its name."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from conftest import assert_grads_match_central_differences, mj_rollout, rel_err, to_torch

import hybridwam as hw

# damped hinges driven by a position servo with kv (gear 1.5) and a velocity servo, a slide driven
# by a position servo whose force saturates at +-1.5 N and a motor: every velocity term MuJoCo's
# implicitfast treats implicitly, and the one it skips while the force is clamped ({jfr}: the first
# hinge's actuatorfrcrange, which clamps the sum of its actuators)
IMPLICITFAST = """<mujoco><option integrator="implicitfast" timestep="0.01"/>{flag}
  <worldbody>
    <body><joint name="a" type="hinge" axis="0 1 0" damping="0.3" {jfr}/>
      <geom type="capsule" fromto="0 0 0 0 0 -.5" size=".05" mass="1"/>
      <body pos="0 0 -.5"><joint name="b" type="hinge" axis="0 1 0" damping="0.1"/>
        <geom type="capsule" fromto="0 0 0 0 0 -.5" size=".05" mass="1"/>
        <body pos="0 0 -.5"><joint name="c" type="slide" axis="1 0 0" damping="0.05"/>
          <geom type="sphere" size=".05" mass=".5"/></body></body></body>
  </worldbody>
  <actuator><position joint="a" kp="20" kv="2" gear="1.5"/><velocity joint="b" kv="3"/>
    <position joint="c" kp="5" kv="1" forcerange="-{fr} {fr}" forcelimited="true"/><motor joint="c" gear="2"/>
  </actuator></mujoco>"""


def _inputs(mj, B, T, seed, vel=2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.5, (B, mj.nq)), rng.normal(0, vel, (B, mj.nv)), rng.normal(0, 1.0, (B, T, mj.nu))


def _clamped_at_start(mj, qpos, qvel, ctrl) -> tuple[int, int]:
    """Worlds whose saturating servo (actuator 2) starts clamped by its forcerange, and worlds
    whose first hinge starts clamped by its actuatorfrcrange (0 without one)."""
    d = mujoco.MjData(mj)
    servo = joint = 0
    for b in range(qpos.shape[0]):
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[b], qvel[b], ctrl[b, 0]
        mujoco.mj_forward(mj, d)
        servo += abs(abs(d.actuator_force[2]) - 1.5) < 1e-12
        joint += bool(mj.jnt_actfrclimited[0]) and abs(abs(d.qfrc_actuator[0]) - mj.jnt_actfrcrange[0, 1]) < 1e-12
    return servo, joint


@pytest.mark.parametrize("engine", ["unrolled", "looped"])
@pytest.mark.parametrize("flag, jfr", [("", ""), ('<option><flag eulerdamp="disable"/></option>', ""),
                                       ("", 'actuatorfrcrange="-20 20"')],
                         ids=["default", "no-eulerdamp", "actuatorfrcrange"])
def test_implicitfast_rollouts_match_mujoco(engine, flag, jfr):
    """50-step rollouts against mj_step with integrator="implicitfast" (float64 to 1e-10, float32
    to 1e-4), from states where the saturating servo starts clamped and where it does not (and,
    with a joint's actuatorfrcrange, where that joint is clamped and where it is not); the same
    model under Euler differs from them by far more (the comparison can fail)."""
    xml = IMPLICITFAST.format(flag=flag, fr=1.5, jfr=jfr)
    mj = mujoco.MjModel.from_xml_string(xml)
    qpos, qvel, ctrl = _inputs(mj, 16, 50, seed=1)
    servo, joint = _clamped_at_start(mj, qpos, qvel, ctrl)
    assert 0 < servo < 16 and (0 < joint < 16 if jfr else joint == 0), (servo, joint)
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    euler = mujoco.MjModel.from_xml_string(xml.replace('integrator="implicitfast"', 'integrator="Euler"'))
    assert rel_err(mj_rollout(euler, qpos, qvel, ctrl)[1], mv) > 1e-2
    for dtype, tol in (("float64", 1e-10), ("float32", 1e-4)):
        model = hw.load_model(xml, dtype=dtype)
        assert model.structure.implicit_actuators and model.structure.implicit_damping
        phys = hw.Physics(model, verbose=False, engine=engine)
        tdt = model.dtype
        tr = phys.rollout(to_torch(qpos, tdt), to_torch(qvel, tdt), to_torch(ctrl, tdt))
        assert rel_err(tr.qpos, mq) <= tol and rel_err(tr.qvel, mv) <= tol, (dtype, rel_err(tr.qvel, mv))


@pytest.mark.parametrize("engine", ["unrolled", "looped"])
def test_implicitfast_gradients_match_finite_differences(engine):
    """d loss / d (controls, initial velocity, the servos' velocity gain bias[2], joint damping)
    through implicitfast rollouts against central differences (float64), from slow states where
    the saturating servo (its forcerange widened) is not clamped throughout."""
    xml = IMPLICITFAST.format(flag="", fr=6, jfr="")
    model = hw.load_model(xml, dtype="float64")
    phys = hw.Physics(model, verbose=False, engine=engine)
    qpos, qvel, ctrl = _inputs(model.mj, 2, 12, seed=2, vel=0.3)
    inputs = [to_torch(x, torch.float64).requires_grad_(True) for x in (qpos, qvel, ctrl)]
    w = torch.tensor([0.7, 1.3, 1.1], dtype=torch.float64)

    def loss():
        tr = phys.rollout(*inputs)
        return (tr.qpos[:, -1] ** 2).sum() + (tr.qvel[:, -1] * w).sum()

    checks = [(inputs[2], (0, 3, 0)), (inputs[2], (1, 7, 1)), (inputs[2], (0, 5, 2)), (inputs[1], (1, 2)),
              ("actuator_bias", (0, 2)), ("actuator_bias", (1, 2)), ("actuator_bias", (2, 2)), ("dof_damping", 0),
              ("dof_damping", 2)]
    assert_grads_match_central_differences(model, ("actuator_bias", "dof_damping"), loss, checks)


# MuJoCo 4's implicitfast treats free rigid subtrees' gyroscopic and centripetal terms implicitly
# too (their 6x6 block M - h D + h d qfrc_bias / d qvel solved on its own): a fast-spinning damped
# box with an off-centre centre of mass, a free body carrying a welded massive child (a rigid
# subtree), a free body whose child has a hinge (not a rigid subtree: no such term), beside a
# damped hinge driven by a velocity servo
FREE_BODIES = """<mujoco><option integrator="implicitfast" timestep="0.005" gravity="0 0 -3"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="box" pos="0 0 1" euler="10 20 30"><joint type="free" damping="0.02"/>
      <geom type="box" size="0.1 0.05 0.02" pos="0.02 0.01 0" mass="0.5"/></body>
    <body name="pair" pos="1 0 1"><freejoint/><geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.03" mass="0.3"/>
      <body pos="0.2 0 0.05" euler="0 30 0"><geom type="box" size="0.04 0.03 0.02" mass="0.4"/></body></body>
    <body name="flail" pos="2 0 1"><freejoint/><geom type="sphere" size="0.05" mass="0.4"/>
      <body pos="0.1 0 0"><joint name="h" type="hinge" axis="0 0 1"/>
        <geom type="capsule" fromto="0 0 0 0.2 0 0" size="0.02" mass="0.2"/></body></body>
    <body name="arm" pos="0 2 1"><joint name="a" type="hinge" axis="0 1 0" damping="0.3"/>
      <geom type="capsule" fromto="0 0 0 0 0 -.5" size=".05" mass="1"/></body>
  </worldbody>
  <actuator><velocity joint="a" kv="3"/><motor joint="h"/></actuator></mujoco>"""


def test_implicitfast_free_bodies_match_mujoco():
    """50-step rollouts of fast-spinning free bodies against mj_step (float64 to 1e-10; float32 one
    step to 1e-4, the tumbling bodies amplify its rounding over the rollout; without the free
    bodies' implicit gyroscopic term: 2.9e-2 after one step, 9.5e-2 over the 50); the looped
    engine runs them (auto), the unrolled one refuses them by name."""
    mj = mujoco.MjModel.from_xml_string(FREE_BODIES)
    qpos, qvel, ctrl = _inputs(mj, 8, 50, seed=3, vel=4.0)
    qpos = np.tile(mj.qpos0, (8, 1))
    qpos[:, 7 * 3:] += np.random.default_rng(4).normal(0, 0.3, (8, mj.nq - 21))
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    for dtype, tol in (("float64", 1e-10), ("float32", 1e-4)):
        model = hw.load_model(FREE_BODIES, dtype=dtype)
        assert model.structure.free_gyro
        phys = hw.Physics(model, verbose=False)
        assert phys.engine == "looped" and list(phys._looped._tree_np["jnt_gyro"][:3]) == [1, 2, 0]
        tdt = model.dtype
        tr = phys.rollout(to_torch(qpos, tdt), to_torch(qvel, tdt), to_torch(ctrl, tdt))
        n = None if dtype == "float64" else 2
        err = rel_err(tr.qpos[:, :n], mq[:, :n]), rel_err(tr.qvel[:, :n], mv[:, :n])
        assert max(err) <= tol, (dtype, err)
    with pytest.raises(ValueError, match="gyroscopic term of free bodies"):
        hw.Physics(hw.load_model(FREE_BODIES, dtype="float64"), engine="unrolled")


def test_implicitfast_free_body_gradients_match_finite_differences():
    """d loss / d (initial angular velocity, mass, inertia, free-joint damping) through the free
    bodies' implicit gyroscopic step against central differences (float64)."""
    model = hw.load_model(FREE_BODIES, dtype="float64")
    phys = hw.Physics(model, verbose=False)
    mj = model.mj
    qpos, qvel, ctrl = _inputs(mj, 2, 12, seed=5, vel=3.0)
    qpos = np.tile(mj.qpos0, (2, 1))
    inputs = [to_torch(x, torch.float64).requires_grad_(True) for x in (qpos, qvel, ctrl)]
    w = torch.linspace(0.5, 1.5, mj.nv, dtype=torch.float64)

    def loss():
        tr = phys.rollout(*inputs)
        return (tr.qpos[:, -1] ** 2).sum() + (tr.qvel[:, -1] * w).sum()

    checks = [(inputs[1], (0, 3)), (inputs[1], (1, 5)), (inputs[1], (0, 10)), (inputs[1], (1, 11)),
              ("body_mass", 1), ("body_mass", 3), ("body_inertia", (1, 0)), ("body_inertia", (3, 2)),
              ("dof_damping", 4)]
    assert_grads_match_central_differences(model, ("body_mass", "body_inertia", "dof_damping"), loss, checks, tol=1e-5)


def test_implicit_is_refused_by_name():
    with pytest.raises(hw.UnsupportedFeatureError, match="integrator 'mjINT_IMPLICIT'"):
        hw.load_model(IMPLICITFAST.format(flag="", fr=1.5, jfr="").replace('"implicitfast"', '"implicit"'))


# RK4: a damped, sprung hinge chain ending in a ball joint, a free body with an off-centre box,
# a motor, a position servo with kv and a saturating one (the looped engine only)
RK4 = """<mujoco><option integrator="RK4" timestep="0.01"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body pos="0 0 1"><joint name="a" type="hinge" axis="0 1 0" damping="0.3" stiffness="2" armature="0.05"/>
      <geom type="capsule" fromto="0 0 0 .3 0 0" size=".04" mass="1"/>
      <body pos=".3 0 0"><joint name="b" type="hinge" axis="0 1 1" damping="0.1"/>
        <geom type="capsule" fromto="0 0 0 .3 0 0" size=".04" mass=".5"/>
        <body pos=".3 0 0"><joint name="c" type="ball" damping="0.05"/>
          <geom type="box" size=".05 .1 .02" pos=".1 0 0" mass=".3"/></body></body></body>
    <body pos="1 0 1"><freejoint/><geom type="box" size=".1 .2 .05" pos=".05 0 0" mass="1"/></body>
  </worldbody>
  <actuator><motor joint="a" gear="2" ctrlrange="-1 1"/><position joint="b" kp="5" kv=".5"/>
    <position joint="b" kp="3" forcerange="-.5 .5" forcelimited="true"/></actuator></mujoco>"""


def _rk4_inputs(mj, B, T, seed, vel=2.0):
    rng = np.random.default_rng(seed)
    qpos = np.tile(mj.qpos0, (B, 1))
    qpos[:, :2] += rng.normal(0, 0.5, (B, 2))
    return qpos, rng.normal(0, vel, (B, mj.nv)), rng.normal(0, 1.0, (B, T, mj.nu))


def test_rk4_rollouts_match_mujoco():
    """50-step rollouts against mj_step with integrator="RK4" (MuJoCo 4's: rotations of ball and
    free joints as Munthe-Kaas's RK on the group; float64 to 1e-10, float32 to 1e-4); the same
    model under Euler differs from them by far more (the comparison can fail)."""
    mj = mujoco.MjModel.from_xml_string(RK4)
    qpos, qvel, ctrl = _rk4_inputs(mj, 8, 50, seed=1)
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    euler = mujoco.MjModel.from_xml_string(RK4.replace('integrator="RK4"', 'integrator="Euler"'))
    assert rel_err(mj_rollout(euler, qpos, qvel, ctrl)[1], mv) > 1e-3
    for dtype, tol in (("float64", 1e-10), ("float32", 1e-4)):
        model = hw.load_model(RK4, dtype=dtype)
        assert model.structure.rk4 and not model.structure.implicit_damping
        phys = hw.Physics(model, verbose=False)
        assert phys.engine == "looped"
        tdt = model.dtype
        tr = phys.rollout(to_torch(qpos, tdt), to_torch(qvel, tdt), to_torch(ctrl, tdt))
        assert rel_err(tr.qpos, mq) <= tol and rel_err(tr.qvel, mv) <= tol, (dtype, rel_err(tr.qvel, mv))
        # qacc: what the step integrated, (v' - v) / h
        torch.testing.assert_close(tr.qacc, (tr.qvel[:, 1:] - tr.qvel[:, :-1]) / mj.opt.timestep,
                                   rtol=1e-6 if dtype == "float64" else 1e-2, atol=1e-8 if dtype == "float64" else 1e-2)


def test_rk4_gradients_match_finite_differences():
    """d loss / d (controls, initial state, joint damping, body masses, the servo's kv) through RK4
    rollouts against central differences (float64), the loss reading positions (quaternions
    included), velocities and the integrated accelerations."""
    model = hw.load_model(RK4, dtype="float64")
    phys = hw.Physics(model, verbose=False)
    qpos, qvel, ctrl = _rk4_inputs(model.mj, 2, 10, seed=2, vel=1.0)
    inputs = [to_torch(x, torch.float64).requires_grad_(True) for x in (qpos, qvel, ctrl)]
    g = torch.Generator().manual_seed(0)
    wq = torch.randn(model.nq, generator=g, dtype=torch.float64)
    wv = torch.randn(model.nv, generator=g, dtype=torch.float64)

    def loss():
        tr = phys.rollout(*inputs)
        return (tr.qpos[:, -1] * wq).sum() + (tr.qvel[:, -1] * wv).sum() + 1e-3 * (tr.qacc ** 2).sum()

    # (the saturating servo's control is left out: its force is clamped in these states)
    checks = [(inputs[2], (0, 3, 0)), (inputs[2], (1, 7, 1)), (inputs[2], (0, 5, 1)), (inputs[1], (1, 2)),
              (inputs[1], (0, 4)), (inputs[1], (1, 9)), (inputs[0], (0, 0)), (inputs[0], (1, 1)), ("dof_damping", 0),
              ("dof_damping", 3), ("body_mass", 3), ("body_mass", 2), ("actuator_bias", (1, 2))]
    assert_grads_match_central_differences(model, ("dof_damping", "body_mass", "actuator_bias"), loss, checks)


def test_rk4_runs_on_the_looped_engine_only():
    model = hw.load_model(RK4, dtype="float64")
    with pytest.raises(ValueError, match=r"RK4 integrator run\(s\) on engine='looped'"):
        hw.Physics(model, verbose=False, engine="unrolled")
