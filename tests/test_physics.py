"""hw.Physics against MuJoCo (mujoco.mj_step, float64) as the independent reference.

Covered: one step on every shipped scene from random states and controls; 200-step rollouts of
the non-chaotic scenes; models written here that exercise ball and free joints, non-diagonal
inertia, several joints on one body, joint ref, armature, implicit damping, springs (hinge, slide,
ball, free), every supported actuator type with gear, ctrl / force / joint-actuator-force clamping,
in float32 and float64; input validation and NonFiniteError; batch consistency; conservation of
angular momentum of a free rigid body (independent of MuJoCo).
"""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from conftest import (
    as_float32,
    mj_rollout,
    mj_step_batch,
    random_ctrl,
    random_free_state,
    random_state,
    random_unit_quat,
    rel_err,
    to_torch,
)

import hybridwam as hw

# Tolerances (rel_err: |a - b| / max(1, |b|), elementwise max; see conftest.rel_err).
# float32 carries ~6e-8 relative precision; one step accumulates rounding of a few hundred
# operations (kinematics, CRBA, RNE, Cholesky); measured, a correct float32 step lands at 5e-8..2e-5
# (the top: the ball chain, whose small link inertias give accelerations of ~1e3 rad/s^2). 1e-4
# keeps a margin of 5x over that, while a modelling error (a missing term, a wrong frame or sign,
# an unclamped force) shows up at 1e-3 or far above (checked by mutating the generated kernel).
TOL32 = 1e-4
# float64: the same algorithms differ from MuJoCo's only in the order of operations, ~1e-14
# per operation; 1e-9 is far above that and far below any modelling error.
TOL64 = 1e-9
# 200-step rollouts: float32 rounding (~1e-7 per step) accumulates at most linearly for these
# non-chaotic systems, i.e. ~1e-5 after 200 steps; 1e-3 is the bound.
TOL_ROLLOUT = 1e-3


def _scene_path(scene: str) -> str:
    """Absolute path of a shipped scene (to compile a fresh, editable MjModel from it)."""
    return hw.load_model(scene, device="cpu").source


def _compare_step(model: hw.Model, physics: hw.Physics, qpos, qvel, ctrl, dtype=torch.float32):
    """(err_qpos, err_qvel) of one hybridwam step against mj_step from the same inputs."""
    q1, v1 = physics.step(to_torch(qpos, dtype), to_torch(qvel, dtype), to_torch(ctrl, dtype))
    mq, mv = mj_step_batch(model.mj, qpos, qvel, ctrl)
    return rel_err(q1, mq), rel_err(v1, mv)


# ==== 1. every shipped scene, one step, random states and controls ==================================
# Scenes with collision geometry are compared in contact-free configurations only (every
# collidable pair at least 2 cm apart): hybridwam's contact is a smooth compliant law while
# MuJoCo's is a constraint solver, so in contact they agree in behaviour, not in numbers (that is
# the contact tests' subject). Away from contact the step must be MuJoCo's exactly.
SCENES = hw.list_scenes()


@pytest.mark.parametrize("scene", SCENES)
def test_scene_step_matches_mujoco(sim, rng, scene):
    model, physics = sim(scene)
    B = 64
    qpos, qvel = random_free_state(model.mj, B, rng, vel_scale=3.0)
    ctrl = random_ctrl(model.mj, B, rng, outside=0.3)  # ~37% of the draws lie outside ctrlrange
    qpos, qvel, ctrl = as_float32(qpos, qvel, ctrl)
    if model.nu:
        lo, hi = model.mj.actuator_ctrlrange[:, 0], model.mj.actuator_ctrlrange[:, 1]
        outside = (ctrl < lo) | (ctrl > hi)
        assert outside.any() and not outside.all(), "the draw must exercise clamping and the free range"
    eq, ev = _compare_step(model, physics, qpos, qvel, ctrl)
    assert eq <= TOL32 and ev <= TOL32, f"{scene}: qpos err {eq:.2e}, qvel err {ev:.2e}"


def test_scene_qacc_is_the_velocity_increment(sim, rng):
    """Trajectory.qacc is the acceleration actually integrated (the implicit-damping one):
    qvel[t+1] = qvel[t] + h * qacc[t], compared with MuJoCo's velocity increment."""
    model, physics = sim("cartpole")
    qpos, qvel = random_state(model.mj, 16, rng)
    ctrl = random_ctrl(model.mj, 16, rng)
    qpos, qvel, ctrl = as_float32(qpos, qvel, ctrl)
    tr = physics.rollout(to_torch(qpos), to_torch(qvel), to_torch(ctrl)[:, None])
    _, mv = mj_step_batch(model.mj, qpos, qvel, ctrl)
    assert tr.qacc.shape == (16, 1, model.nv)
    assert rel_err(tr.qacc[:, 0] * model.timestep, mv - qvel) <= TOL32


# ==== 2. rollouts of the non-chaotic scenes ==========================================================
# Only scenes whose trajectories do not amplify perturbations exponentially can be compared with
# MuJoCo over 200 steps: float32 rounding (~1e-7) is a perturbation, and a positive Lyapunov
# exponent lambda multiplies it by exp(lambda * t). The acrobot (double pendulum with gravity) at
# large energy is chaotic with lambda of several 1/s: measured, MuJoCo against MuJoCo itself from
# initial angles perturbed by 1e-7 (float32 rounding) already differs by 8e-4 after these 200 steps
# of 0.01 s at moderate energy (|qd| ~ 6 rad/s), i.e. an amplification of ~1e4 that keeps growing
# exponentially. A mismatch there would measure the chaos, not the correctness of the step (which
# the one-step test checks on all scenes, the acrobot included).
#   pendulum:        1 dof, bounded smooth torques; a 1-dof driven system over 2 s.
#   cartpole:        small forces (|u| <= 2 N); the unforced system is integrable (momentum
#                    along the rail reduces it to a pendulum).
#   reacher:         horizontal arm (gravity does no work), moderate torques (10% of ctrlrange);
#                    full-range torques spin the light links up to 35 rad/s, where the 3-link
#                    chain becomes sensitive (MuJoCo vs itself perturbed by 1e-7: 1e-4).
#   spinning_box:    a torque-free rigid body is integrable (Euler's equations); spin about a
#                    generic axis, not near the unstable intermediate one.
#   double_pendulum: small amplitude near hanging (+-0.15 rad): the near-linear regime, where
#                    motion is quasi-periodic (normal modes), not chaotic.
ROLLOUTS = {
    # scene: (initial angle / position scale, velocity scale, control scale as a fraction of ctrlrange)
    "pendulum": (np.pi, 2.0, 1.0),
    "cartpole": (np.pi, 1.0, 2.0 / 30.0),
    "reacher": (np.pi, 1.0, 0.1),
    "spinning_box": (1.0, 2.0, 0.0),
    "double_pendulum": (0.15, 0.3, 0.005),
}


@pytest.mark.parametrize("scene", list(ROLLOUTS))
def test_rollout_matches_mujoco(sim, rng, scene):
    model, physics = sim(scene)
    mj = model.mj
    ang, vel, frac = ROLLOUTS[scene]
    B, T = 8, 200
    qpos, qvel = random_state(mj, B, rng, vel_scale=vel)
    for j in range(mj.njnt):  # hinge amplitudes as requested for this scene
        if mj.jnt_type[j] == mujoco.mjtJoint.mjJNT_HINGE:
            a = mj.jnt_qposadr[j]
            qpos[:, a] = rng.uniform(-ang, ang, B)
    # smooth controls: a random sinusoid per world and actuator, inside frac * ctrlrange
    t = np.arange(T) * mj.opt.timestep
    freq = rng.uniform(0.2, 2.0, (B, 1, mj.nu))
    phase = rng.uniform(0, 2 * np.pi, (B, 1, mj.nu))
    amp = frac * (mj.actuator_ctrlrange[:, 1] if mj.nu else np.zeros(0))
    ctrls = amp * np.sin(2 * np.pi * freq * t[None, :, None] + phase)
    qpos, qvel, ctrls = as_float32(qpos, qvel, ctrls)
    tr = physics.rollout(to_torch(qpos), to_torch(qvel), to_torch(ctrls))
    assert tr.qpos.shape == (B, T + 1, model.nq) and tr.qvel.shape == (B, T + 1, model.nv)
    mq, mv = mj_rollout(mj, qpos, qvel, ctrls)
    eq, ev = rel_err(tr.qpos, mq), rel_err(tr.qvel, mv)
    assert eq <= TOL_ROLLOUT and ev <= TOL_ROLLOUT, f"{scene}: qpos err {eq:.2e}, qvel err {ev:.2e}"
    # the motion is not trivial: the state moved by O(1) over the horizon
    assert np.abs(mq[:, -1] - mq[:, 0]).max() > 0.1


# ==== 3. models written here: joints, inertia, passive forces, actuators ============================
# Geoms never collide (contype = conaffinity = 0): contacts are outside this comparison.
BALL_CHAIN_XML = """
<mujoco model="ball_chain">
  <compiler angle="radian"/>
  <option timestep="0.005" gravity="0 0 -9.81" integrator="Euler"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="link1" pos="0 0 0" quat="0.9 0.1 0.3 0.2">
      <joint name="ball1" type="ball" damping="0.3" armature="0.02" stiffness="1.5"/>
      <geom type="capsule" fromto="0 0 0 0.1 0.05 -0.4" size="0.04" mass="1.2"/>
      <body name="link2" pos="0.1 0.05 -0.4" euler="0.3 -0.2 0.5">
        <joint name="ball2" type="ball" pos="0 0 0.02" damping="0.1" stiffness="0.8"/>
        <geom type="box" size="0.05 0.03 0.15" pos="0.02 0 -0.15" euler="0.2 0.4 0" mass="0.7"/>
        <body name="link3" pos="0 0 -0.3">
          <joint name="hinge3" type="hinge" axis="0.3 1 0.2" ref="0.4" armature="0.01"
                 stiffness="0.5" springref="-0.3"/>
          <geom type="ellipsoid" size="0.03 0.05 0.08" pos="0 0.02 -0.08" mass="0.3"/>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>
"""

# A free body with a full (non-diagonal) inertia tensor, so body_iquat is not the identity, and a
# hinged arm on it (free base dynamics with a coupled child). The free joint has a spring (to its
# reference pose), damping (implicit) and armature.
FREE_XML = """
<mujoco model="free_body">
  <compiler angle="radian"/>
  <option timestep="0.004" gravity="0 0 -9.81"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="base" pos="0.1 -0.2 0.5" quat="0.8 0.2 -0.3 0.4">
      <joint name="root" type="free" stiffness="3" damping="0.2" armature="0.01"/>
      <inertial pos="0.02 -0.01 0.03" mass="1.7" fullinertia="0.05 0.04 0.03 0.01 -0.005 0.008"/>
      <geom type="box" size="0.1 0.08 0.05"/>
      <body name="arm" pos="0.15 0 0" euler="0.1 0.2 0.3">
        <joint name="arm_hinge" type="hinge" axis="0 0.6 0.8" pos="-0.02 0 0" damping="0.05"
               stiffness="0.3" springref="0.2"/>
        <geom type="capsule" fromto="0 0 0 0.2 0.05 0" size="0.03" mass="0.4"/>
      </body>
    </body>
  </worldbody>
</mujoco>
"""
# Same structure (hence the same compiled kernel), only gravity and the inertia acting: no spring
# and no damping on the free joint.
FREE_PLAIN_XML = FREE_XML.replace('stiffness="3" damping="0.2" armature="0.01"', "")

# Two joints (hinge + slide) on one body, joint ref, springs with springref, armature, damping,
# and every supported actuator: motor, position (kp, kv), velocity (kv), general with affine bias;
# gear != 1 (also negative); ctrllimited and unlimited; forcelimited; joint actuatorfrcrange;
# two actuators on one joint.
ACTUATED_XML = """
<mujoco model="actuated">
  <compiler angle="radian"/>
  <option timestep="0.01" gravity="0 0 -9.81"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="carriage" pos="0 0 0.2" euler="0 0.3 0">
      <joint name="swing" type="hinge" axis="0 1 0" pos="0 0 0.1" ref="0.3" stiffness="4"
             springref="-0.2" damping="0.2" armature="0.05"/>
      <joint name="extend" type="slide" axis="0 0.2 -1" ref="0.1" stiffness="10" springref="0.25"
             damping="0.5" armature="0.1" actuatorfrcrange="-3 3"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.03" mass="0.8"/>
      <body name="wrist" pos="0 0 -0.5">
        <joint name="twist" type="hinge" axis="1 0 0" armature="0.01"/>
        <geom type="box" size="0.1 0.04 0.02" pos="0 0 -0.05" mass="0.3"/>
      </body>
    </body>
    <body name="slider" pos="1 0 0">
      <joint name="rail" type="slide" axis="1 0 0.2"/>
      <geom type="sphere" size="0.1" mass="2"/>
    </body>
  </worldbody>
  <actuator>
    <motor name="m_swing" joint="swing" gear="2.5" ctrlrange="-1 1"/>
    <position name="p_extend" joint="extend" kp="60" kv="4" ctrlrange="-0.2 0.6" forcerange="-15 15"/>
    <velocity name="v_twist" joint="twist" kv="3" gear="-1.5" ctrlrange="-2 2" forcerange="-1.5 1.5"/>
    <general name="g_rail" joint="rail" gear="0.8" gainprm="7" biastype="affine" biasprm="0.5 -3 -0.7"
             ctrlrange="-2 2" forcerange="-4 4"/>
    <motor name="m_rail" joint="rail" ctrllimited="false"/>
    <position name="p_swing" joint="swing" kp="5" gear="1.3"/>
  </actuator>
</mujoco>
"""


# Gravity compensation (body gravcomp): full, partial and over-compensated bodies in a hinge chain
# (a body without it between them), a ball-jointed and a free body; the elbow counts its share as
# actuator force (actuatorgravcomp), clamped with its motor's by actuatorfrcrange.
GRAVCOMP_XML = """
<mujoco model="gravcomp">
  <compiler angle="radian"/>
  <option timestep="0.01"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="upper" pos="0 0 1" gravcomp="1">
      <joint name="shoulder" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0.4 0 0.1" size="0.03" mass="1.2"/>
      <body name="middle" pos="0.4 0 0.1">
        <joint name="elbow" type="hinge" axis="0 1 0" actuatorgravcomp="true" actuatorfrcrange="-1.5 1.5"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.8"/>
        <body name="hand" pos="0.3 0 0" gravcomp="0.5">
          <joint name="wrist" type="slide" axis="1 0 1"/>
          <geom type="box" size="0.05 0.03 0.02" pos="0.05 0 0" mass="0.5"/>
        </body>
      </body>
    </body>
    <body name="ball" pos="1 0 0.5" gravcomp="1.5">
      <joint name="ball_joint" type="ball"/>
      <geom type="capsule" fromto="0 0 0 0.1 0.05 -0.3" size="0.03" mass="0.7"/>
    </body>
    <body name="floater" pos="-1 0 0.5" gravcomp="0.7">
      <freejoint/>
      <geom type="box" size="0.1 0.05 0.03" mass="0.4"/>
    </body>
  </worldbody>
  <actuator><motor name="elbow_motor" joint="elbow" ctrlrange="-2 2"/></actuator>
</mujoco>
"""


def _with_random_spring_refs(xml: str, seed: int) -> mujoco.MjModel:
    """Compile ``xml`` and give every ball / free joint a random spring reference orientation (and
    free joints a reference position), so that the rotational spring (MuJoCo's mju_subQuat) is
    tested away from the identity; MJCF's springref only sets hinge / slide references."""
    m = mujoco.MjModel.from_xml_string(xml)
    rng = np.random.default_rng(seed)
    for j in range(m.njnt):
        a = m.jnt_qposadr[j]
        if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
            m.qpos_spring[a:a + 4] = random_unit_quat(rng, 1)[0]
        elif m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            m.qpos_spring[a:a + 3] = rng.uniform(-0.5, 0.5, 3)
            m.qpos_spring[a + 3:a + 7] = random_unit_quat(rng, 1)[0]
    return m


CUSTOM = {
    "ball_chain": lambda: _with_random_spring_refs(BALL_CHAIN_XML, 1),
    "free_body": lambda: _with_random_spring_refs(FREE_XML, 2),
    "free_body_plain": lambda: mujoco.MjModel.from_xml_string(FREE_PLAIN_XML),
    "actuated": lambda: mujoco.MjModel.from_xml_string(ACTUATED_XML),
    "gravcomp": lambda: mujoco.MjModel.from_xml_string(GRAVCOMP_XML),
}


def _custom(sim, name: str, dtype: str):
    return sim((name, CUSTOM[name]()), dtype)


# A jointless "mount" body between the world and a jointed arm (a robot base bolted to a table,
# pusher.xml's "base"): a static body that is not the world itself.
STATIC_MOUNT_XML = """
<mujoco model="static_mount">
  <compiler angle="radian"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="mount" pos="0.1 0 0.5" euler="0 0 0.3">
      <geom type="box" size="0.05 0.05 0.05" mass="1"/>
      <body name="arm" pos="0 0 0.05">
        <joint name="shoulder" type="hinge" axis="0 1 0" damping="0.1"/>
        <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02" mass="0.5"/>
      </body>
    </body>
  </worldbody>
  <actuator><motor name="shoulder_motor" joint="shoulder" ctrlrange="-1 1"/></actuator>
</mujoco>
"""


def test_jointed_body_under_a_static_body_matches_mujoco(sim, rng):
    model, physics = sim(STATIC_MOUNT_XML)
    qpos, qvel = random_state(model.mj, 32, rng)
    ctrl = random_ctrl(model.mj, 32, rng)
    qpos, qvel, ctrl = as_float32(qpos, qvel, ctrl)
    eq, ev = _compare_step(model, physics, qpos, qvel, ctrl)
    assert eq <= TOL32 and ev <= TOL32


def test_custom_models_are_what_the_tests_claim(sim):
    """Guard the fixtures: the features the comparisons below rely on are really in the models."""
    m = _custom(sim, "ball_chain", "float32")[0].mj
    assert list(m.jnt_type) == [1, 1, 3] and m.nq == 9 and m.nv == 7
    assert m.qpos0[8] == pytest.approx(0.4) and m.qpos_spring[8] == pytest.approx(-0.3)
    assert not np.allclose(m.qpos_spring[0:4], [1, 0, 0, 0])
    m = _custom(sim, "free_body", "float32")[0].mj
    assert list(m.jnt_type) == [0, 3] and m.jnt_stiffness[0] == 3 and m.dof_damping[0] == 0.2
    assert not np.allclose(m.body_iquat[1], [1, 0, 0, 0])  # non-diagonal inertia
    assert m.opt.gravity[2] == pytest.approx(-9.81)
    m = _custom(sim, "actuated", "float32")[0].mj
    assert m.body_jntnum[1] == 2  # hinge + slide on one body
    assert m.qpos0[0] == pytest.approx(0.3) and m.qpos0[1] == pytest.approx(0.1)
    assert list(m.actuator_biastype) == [0, 1, 1, 1, 0, 1]
    assert m.actuator_biasprm[1, 2] == -4 and m.actuator_biasprm[2, 2] == -3  # position kv, velocity kv
    assert list(m.actuator_ctrllimited) == [1, 1, 1, 1, 0, 0]
    assert list(m.actuator_forcelimited) == [0, 1, 1, 1, 0, 0]
    assert list(m.jnt_actfrclimited) == [0, 1, 0, 0]
    model = _custom(sim, "gravcomp", "float32")[0]
    text = model.describe()
    assert "gravity compensation  'upper' 1, 'hand' 0.5, 'ball' 1.5, 'floater' 0.7" in text
    assert "actuatorgravcomp" in text
    m = model.mj
    assert list(m.body_gravcomp) == [0, 1, 0, 0.5, 1.5, 0.7] and list(m.jnt_actgravcomp) == [0, 1, 0, 0, 0]
    assert list(m.jnt_type) == [3, 3, 2, 1, 0]


def _actuation_stats(mj, qpos, qvel, ctrl):
    """MuJoCo's actuator forces and joint actuator forces per sample (to check clamping is hit)."""
    d = mujoco.MjData(mj)
    af, qa = np.empty((len(qpos), mj.nu)), np.empty((len(qpos), mj.nv))
    for b in range(len(qpos)):
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[b], qvel[b], ctrl[b]
        mujoco.mj_forward(mj, d)
        af[b], qa[b] = d.actuator_force, d.qfrc_actuator
    return af, qa


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(CUSTOM))
def test_custom_model_step_matches_mujoco(sim, rng, name, dtype):
    model, physics = _custom(sim, name, dtype)
    mj = model.mj
    B = 128
    qpos, qvel = random_state(mj, B, rng, vel_scale=3.0)
    ctrl = random_ctrl(mj, B, rng, outside=0.5, scale=5.0)
    tdt = torch.float32 if dtype == "float32" else torch.float64
    if dtype == "float32":
        qpos, qvel, ctrl = as_float32(qpos, qvel, ctrl)
    if name == "actuated":
        # the draw really exercises every clamp: some samples at each force bound, some inside
        af, qa = _actuation_stats(mj, qpos, qvel, ctrl)
        for a in np.flatnonzero(mj.actuator_forcelimited):
            at_bound = np.isclose(np.abs(af[:, a]), mj.actuator_forcerange[a, 1])
            assert 0 < at_bound.sum() < B, mj.actuator(a).name
        at_bound = np.isclose(np.abs(qa[:, 1]), 3.0)  # joint "extend": actuatorfrcrange [-3, 3]
        assert 0 < at_bound.sum() < B
    if name == "gravcomp":  # the elbow's motor + gravity compensation hits its clamp, sometimes
        at_bound = np.isclose(np.abs(_actuation_stats(mj, qpos, qvel, ctrl)[1][:, 1]), 1.5)
        assert 0 < at_bound.sum() < B
    eq, ev = _compare_step(model, physics, qpos, qvel, ctrl, tdt)
    tol = TOL32 if dtype == "float32" else TOL64
    assert eq <= tol and ev <= tol, f"{name} {dtype}: qpos err {eq:.2e}, qvel err {ev:.2e}"


# Where a model sits in the world must not matter. hybridwam's spatial algebra is expressed about
# the world origin (kernels/dynamics.py: inertia about the origin J = I_com + m (|c|^2 1 - c c^T)),
# so a body at distance r carries O(m r^2) terms from which an O(I_com) result is recovered by
# cancellation: float32 error grows like r^2 / I_com. Measured on the ball chain (qvel error):
# 1.7e-5 at the origin, 1.1e-4 at 1 m, 2.4e-3 at 3 m, 1.6e-2 at 10 m, 1.1e-1 at 30 m (float64 stays
# at ~1e-13 everywhere, so the model is right and the precision is lost). MuJoCo avoids this by
# taking each kinematic tree's centre of mass (subtree_com of its root) as the reference point.
FAR_CHAIN_XML = BALL_CHAIN_XML.replace('name="link1" pos="0 0 0"', 'name="link1" pos="2 0 2.2"')


def test_float32_step_accuracy_does_not_depend_on_distance_from_origin(sim, rng):
    model, physics = sim(("ball_chain_far", _with_random_spring_refs(FAR_CHAIN_XML, 1)))
    qpos, qvel = random_state(model.mj, 128, rng, vel_scale=3.0)
    qpos, qvel = as_float32(qpos, qvel)
    eq, ev = _compare_step(model, physics, qpos, qvel, np.zeros((128, 0)))
    assert eq <= TOL32 and ev <= TOL32, f"3 m from the origin: qpos err {eq:.2e}, qvel err {ev:.2e}"


def test_float64_step_far_from_origin_matches_mujoco(sim, rng):
    """The same far-away chain is right in float64: the xfail above is precision, not modelling."""
    model, physics = sim(("ball_chain_far", _with_random_spring_refs(FAR_CHAIN_XML, 1)), "float64")
    qpos, qvel = random_state(model.mj, 64, rng, vel_scale=3.0)
    eq, ev = _compare_step(model, physics, qpos, qvel, np.zeros((64, 0)), torch.float64)
    assert eq <= TOL64 and ev <= TOL64


@pytest.mark.parametrize("name", ["ball_chain", "free_body"])
def test_custom_model_rollout_matches_mujoco_float64(sim, rng, name):
    """50 steps in float64: the quaternion integration on the ball / free manifolds compounds
    correctly (not only a single step)."""
    model, physics = _custom(sim, name, "float64")
    qpos, qvel = random_state(model.mj, 8, rng, vel_scale=1.0)
    ctrls = np.zeros((8, 50, model.nu))
    tr = physics.rollout(to_torch(qpos, torch.float64), to_torch(qvel, torch.float64),
                         to_torch(ctrls, torch.float64))
    mq, mv = mj_rollout(model.mj, qpos, qvel, ctrls)
    assert rel_err(tr.qpos, mq) <= 1e-7 and rel_err(tr.qvel, mv) <= 1e-7


def test_parameters_edited_in_place_are_used(sim, rng):
    """model.params are the simulator's parameters: editing them (as calibration does) changes
    the step exactly as editing the MjModel changes mj_step."""
    model, physics = sim(("actuated_edit", mujoco.MjModel.from_xml_string(ACTUATED_XML)), "float64")
    mj = model.mj
    with torch.no_grad():
        model.params["body_mass"][2] *= 1.7
        model.params["jnt_stiffness"][1] = 25.0
        model.params["actuator_gain"][0] = 3.0
    mj.body_mass[2] *= 1.7
    mj.jnt_stiffness[1] = 25.0
    mj.actuator_gainprm[0, 0] = 3.0
    qpos, qvel = random_state(mj, 16, rng)
    ctrl = random_ctrl(mj, 16, rng)
    eq, ev = _compare_step(model, physics, qpos, qvel, ctrl, torch.float64)
    assert eq <= TOL64 and ev <= TOL64


def test_extra_generalized_forces_and_accelerations(sim, rng):
    """qfrc_extra is MuJoCo's qfrc_applied; qacc_extra is added to the integrated acceleration,
    so it shifts qvel' by exactly h * qacc_extra (up to float32 rounding)."""
    model, physics = _custom(sim, "actuated", "float32")
    B = 32
    qpos, qvel = random_state(model.mj, B, rng)
    ctrl = random_ctrl(model.mj, B, rng)
    frc = rng.normal(scale=3.0, size=(B, model.nv))
    acc = rng.normal(scale=5.0, size=(B, model.nv))
    qpos, qvel, ctrl, frc, acc = as_float32(qpos, qvel, ctrl, frc, acc)
    q1, v1 = physics.step(to_torch(qpos), to_torch(qvel), to_torch(ctrl), qfrc_extra=to_torch(frc))
    mq, mv = mj_step_batch(model.mj, qpos, qvel, ctrl, qfrc_applied=frc)
    assert rel_err(q1, mq) <= TOL32 and rel_err(v1, mv) <= TOL32
    _, v2 = physics.step(to_torch(qpos), to_torch(qvel), to_torch(ctrl), qfrc_extra=to_torch(frc),
                         qacc_extra=to_torch(acc))
    assert rel_err(v2 - v1, model.timestep * acc) <= 1e-5
    with pytest.raises(ValueError, match="NaN or inf"):
        physics.step(to_torch(qpos), to_torch(qvel), to_torch(ctrl), qfrc_extra=torch.full((B, model.nv), np.nan))


# ==== 4. input validation and non-finite results ===================================================
def test_wrong_shapes_raise_value_error_naming_expected_shape(sim):
    model, physics = sim("acrobot")  # nq = nv = 2, nu = 1
    q, v = model.default_state(4)
    u = torch.zeros(4, 1)
    with pytest.raises(ValueError, match=r"expected shape \[B, 2\]"):
        physics.step(torch.zeros(4, 3), v, u)
    with pytest.raises(ValueError, match=r"expected shape \[B, 2\]"):
        physics.step(q, torch.zeros(4, 5), u)
    with pytest.raises(ValueError, match=r"expected shape \[B, 2\]"):
        physics.step(q, torch.zeros(3, 2), u)  # batch mismatch
    with pytest.raises(ValueError, match=r"expected shape \[B, (1, )?1\]"):
        physics.step(q, v, torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"expected shape \[B, (1, )?1\]"):
        physics.step(q, v, torch.zeros(3, 1))
    with pytest.raises(ValueError, match=r"expected shape"):
        physics.step(torch.zeros(4, 2, 2), v, u)
    with pytest.raises(ValueError, match=r"expected shape \[B, 2\]"):
        physics.step(torch.zeros(3), torch.zeros(2), torch.zeros(1))  # unbatched, wrong nq
    with pytest.raises(ValueError, match=r"expected shape \[B, 200, 1\]"):
        physics.rollout(q, v, torch.zeros(4, 200, 3))
    with pytest.raises(ValueError, match=r"expected shape \[B, T, 1\]"):
        physics.rollout(q, v, torch.zeros(4, 1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("which", ["qpos", "qvel", "ctrl"])
def test_non_finite_inputs_raise_value_error(sim, which, bad):
    model, physics = sim("acrobot")
    args = {"qpos": model.default_state(5)[0], "qvel": model.default_state(5)[1], "ctrl": torch.zeros(5, 1)}
    args[which][3, 0] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        physics.step(args["qpos"], args["qvel"], args["ctrl"])


def test_step_overflow_raises_non_finite_error_listing_only_bad_worlds(sim):
    """A finite but huge velocity overflows float32 in the velocity-product (centrifugal) terms of
    the double pendulum (~qd^2 = 1e40 > 3.4e38): those worlds, and only those, are reported."""
    model, physics = sim("acrobot")
    q, v = model.default_state(6)
    q[:, 0] = 0.3
    v[[1, 4], 1] = 1e20
    with pytest.raises(hw.NonFiniteError) as ei:
        physics.step(q, v, torch.zeros(6, 1))
    assert sorted(ei.value.worlds) == [1, 4]
    assert isinstance(ei.value, FloatingPointError)
    # the same worlds one step with moderate velocities are fine
    v[[1, 4], 1] = 10.0
    physics.step(q, v, torch.zeros(6, 1))


def test_unstable_rollout_raises_non_finite_error_at_the_step_it_blows_up(sim):
    """A very stiff spring (k = 1e6) with a large timestep (0.1 s): semi-implicit Euler is
    unstable for h * sqrt(k / I) > 2 and grows by ~(h^2 k / I) per step until float32 overflows.
    Worlds resting exactly at the spring's rest position (hanging, zero velocity: every force is
    exactly zero) stay finite and must not be listed."""
    mj = mujoco.MjModel.from_xml_path(_scene_path("pendulum"))
    mj.jnt_stiffness[0] = 1e6
    mj.opt.timestep = 0.1
    model, physics = sim(("pendulum_stiff", mj))  # same structure as the pendulum scene
    q, v = model.default_state(5)
    q[[0, 2], 0] = 0.01
    with pytest.raises(hw.NonFiniteError) as ei:
        physics.rollout(q, v, torch.zeros(5, 100, 1))
    assert sorted(ei.value.worlds) == [0, 2]
    assert 1 < ei.value.step <= 100
    tr = physics.rollout(q[[1, 3, 4]], v[[1, 3, 4]], torch.zeros(3, 100, 1))
    assert torch.equal(tr.qpos, torch.zeros(3, 101, 1))


def test_check_finite_can_be_disabled(sim):
    model, _ = sim("acrobot")
    physics = hw.Physics(model, check_finite=False)
    q, v = model.default_state(2)
    v[1, 1] = 1e20
    q1, v1 = physics.step(q, v, torch.zeros(2, 1))
    assert torch.isfinite(v1[0]).all() and not torch.isfinite(v1[1]).all()


# ==== 5. batch consistency ==========================================================================
@pytest.mark.parametrize("name", ["actuated", "ball_chain"])
def test_batched_step_equals_one_world_at_a_time(sim, rng, name):
    model, physics = _custom(sim, name, "float32")
    B = 12
    qpos, qvel = (to_torch(x) for x in random_state(model.mj, B, rng))
    ctrl = to_torch(random_ctrl(model.mj, B, rng))
    q1, v1 = physics.step(qpos, qvel, ctrl)
    assert q1.shape == (B, model.nq) and v1.shape == (B, model.nv)
    for b in range(B):
        qb, vb = physics.step(qpos[b:b + 1], qvel[b:b + 1], ctrl[b:b + 1])  # batch of one
        qu, vu = physics.step(qpos[b], qvel[b], ctrl[b])  # unbatched
        assert qu.shape == (model.nq,) and vu.shape == (model.nv,)
        # one thread per world running the same code: bitwise identical
        assert torch.equal(qb[0], q1[b]) and torch.equal(vb[0], v1[b])
        assert torch.equal(qu, q1[b]) and torch.equal(vu, v1[b])
    # reordering the worlds reorders the results
    perm = torch.from_numpy(rng.permutation(B))
    qp, vp = physics.step(qpos[perm], qvel[perm], ctrl[perm])
    assert torch.equal(qp, q1[perm]) and torch.equal(vp, v1[perm])
    # numpy / float64 inputs are accepted and converted to the model's dtype
    qn, vn = physics.step(qpos.double().numpy(), qvel.double().numpy(), ctrl.double().numpy())
    assert qn.dtype == torch.float32 and torch.equal(qn, q1) and torch.equal(vn, v1)


def test_rollout_batched_unbatched_and_stepwise_agree(sim, rng):
    model, physics = sim("reacher")
    B, T = 4, 25
    qpos, qvel = (to_torch(x) for x in random_state(model.mj, B, rng))
    ctrls = to_torch(random_ctrl(model.mj, B, rng, shape=(T,)))
    tr = physics.rollout(qpos, qvel, ctrls)
    assert tr.qpos.shape == (B, T + 1, 3) and tr.qvel.shape == (B, T + 1, 3) and tr.qacc.shape == (B, T, 3)
    assert tr.horizon == T
    assert torch.equal(tr.qpos[:, 0], qpos) and torch.equal(tr.qvel[:, 0], qvel)
    tu = physics.rollout(qpos[2], qvel[2], ctrls[2])
    assert tu.qpos.shape == (T + 1, 3) and tu.qvel.shape == (T + 1, 3) and tu.qacc.shape == (T, 3)
    assert torch.equal(tu.qpos, tr.qpos[2]) and torch.equal(tu.qvel, tr.qvel[2])
    # T single steps reproduce the fused rollout (up to the compiler's freedom between the two
    # kernels: allow a few float32 ulps)
    q, v = qpos, qvel
    for t in range(T):
        q, v = physics.step(q, v, ctrls[:, t])
    assert rel_err(q, tr.qpos[:, -1].numpy()) <= 1e-5 and rel_err(v, tr.qvel[:, -1].numpy()) <= 1e-5


def test_spinning_box_without_actuators_accepts_empty_ctrl(sim):
    model, physics = sim("spinning_box")
    assert model.nu == 0
    q, v = model.default_state(3)
    v[:, 3:] = torch.tensor([0.0, 5.0, 0.0])
    q1, v1 = physics.step(q, v, torch.zeros(3, 0))
    assert q1.shape == (3, 7) and torch.isfinite(q1).all()
    tr = physics.rollout(q[0], v[0], torch.zeros(10, 0))
    assert tr.qpos.shape == (11, 7)


# ==== 6. conservation (independent of MuJoCo) ======================================================
def _world_angular_momentum(mj: mujoco.MjModel, qpos: np.ndarray, qvel: np.ndarray) -> np.ndarray:
    """L = R(q) R_i diag(I) R_i^T w_body for the free box (qvel[3:6] is the body-frame angular
    velocity; the centre of mass is the body origin, so L is about the moving centre of mass)."""
    Ri = np.zeros(9)
    mujoco.mju_quat2Mat(Ri, mj.body_iquat[1])
    Ri = Ri.reshape(3, 3)
    Ib = Ri @ np.diag(mj.body_inertia[1]) @ Ri.T
    out = np.empty((len(qpos), 3))
    R = np.zeros(9)
    for i, (q, v) in enumerate(zip(qpos, qvel, strict=True)):
        quat = q[3:7] / np.linalg.norm(q[3:7])
        mujoco.mju_quat2Mat(R, quat)
        out[i] = R.reshape(3, 3) @ Ib @ v[3:6]
    return out


def test_spinning_box_conserves_angular_momentum(sim):
    """Torque-free tumbling: the world-frame angular momentum L must stay fixed while the body
    frame one (I w) rotates a lot.

    Semi-implicit Euler is not symplectic for the gyroscopic term: the explicit update
    I w' = I w + h (I w) x w adds a vector perpendicular to I w each step, so |L| grows by
    O(h^2 |w|^2) per step, i.e. a drift O(h t |w|^2) after time t that is first order in h. With
    w = (3, 1, 2) rad/s, h = 5 ms and t = 2.5 s (500 steps) that drift is ~2% (MuJoCo's float64
    Euler: 2.110%, hybridwam float32: 2.110%). We assert what an integrator that is exact in the
    limit h -> 0 must satisfy and a wrong gyroscopic term, frame or inertia would break:
      * the drift is bounded (< 3%) although the body-frame momentum turns by > 45 degrees
        (measured 86 degrees);
      * the drift is a truncation error: halving h halves it (ratio 2 +- 0.1, measured 2.01);
      * the linear momentum (zero force) is conserved to float32 rounding and the centre of mass
        moves on a straight line.
    """
    base = mujoco.MjModel.from_xml_path(_scene_path("spinning_box"))
    assert np.all(base.opt.gravity == 0) and np.all(base.dof_damping == 0)
    w0 = np.array([3.0, 1.0, 2.0])
    drifts = []
    for k, h in enumerate((0.005, 0.0025)):
        mj = mujoco.MjModel.from_xml_path(_scene_path("spinning_box"))
        mj.opt.timestep = h
        model, physics = sim((f"spinning_box_h{k}", mj))  # same structure: no new compile
        n = int(round(2.5 / h))
        q0, v0 = model.default_state()
        v0[:3] = torch.tensor([0.3, -0.2, 0.1])
        v0[3:] = torch.as_tensor(w0, dtype=v0.dtype)
        tr = physics.rollout(q0, v0, torch.zeros(n, 0))
        Q, V = tr.qpos.double().numpy(), tr.qvel.double().numpy()
        L = _world_angular_momentum(mj, Q, V)
        drift = np.linalg.norm(L - L[0], axis=1) / np.linalg.norm(L[0])
        drifts.append(drift[-1])
        assert drift.max() < 0.03, f"h={h}: angular momentum drifted by {drift.max():.3%}"
        # the body-frame momentum I w really rotates (otherwise the check would be trivial)
        Ib = V[:, 3:] * mj.body_inertia[1]
        cosang = Ib[0] @ Ib[-1] / np.linalg.norm(Ib[0]) / np.linalg.norm(Ib[-1])
        assert cosang < np.cos(np.radians(45))
        # linear momentum and straight-line motion of the centre of mass
        np.testing.assert_allclose(V[:, :3], np.broadcast_to(V[0, :3], V[:, :3].shape), atol=1e-6)
        t = np.arange(n + 1) * h
        np.testing.assert_allclose(Q[:, :3], Q[0, :3] + t[:, None] * V[0, :3], atol=1e-4)
    ratio = drifts[0] / drifts[1]
    assert 1.9 < ratio < 2.1, f"drift not first order in h: {drifts}"


# ==== 7. captured rollouts (Physics.capture) =======================================================
# A captured rollout replays one recorded launch over its own buffers; the pitfalls it must avoid
# are stale buffers (inputs of an earlier call, extras left set) and stale addresses (parameter
# tensors replaced after the capture). Each test checks against MuJoCo or against Physics.rollout,
# which section 1-3 check against MuJoCo.
def _capture_inputs(model, B, T, rng, seed_shift=0.0):
    qpos, qvel = random_free_state(model.mj, B, rng, vel_scale=1.0)
    ctrls = np.stack([random_ctrl(model.mj, B, rng) for _ in range(T)], 1)
    return (to_torch(x) for x in as_float32(qpos + seed_shift, qvel, ctrls))


@pytest.mark.parametrize("scene", ["acrobot", "pusher"])
def test_captured_rollout_equals_rollout_bit_for_bit(sim, rng, scene):
    """Three calls with fresh inputs (the pusher's box on the table: contacts), as a graph and
    without one: every output equals Physics.rollout exactly; one capture serves all calls."""
    model, physics = sim(scene)
    B, T = 16, 4
    cap, direct = physics.capture(B, T), physics.capture(B, T, graph=False)
    for _ in range(3):
        q, v, u = _capture_inputs(model, B, T, rng)
        ref = physics.rollout(q, v, u)
        for tr in (cap.rollout(q, v, u), direct.rollout(q, v, u)):
            for a, b in ((tr.qpos, ref.qpos), (tr.qvel, ref.qvel), (tr.qacc, ref.qacc)):
                assert torch.equal(a, b)
        q1, v1 = cap.step(q, v, u[:, 0])  # ctrl held for the horizon (a frame skip)
        held = physics.rollout(q, v, u[:, :1].expand(B, T, model.nu))
        assert torch.equal(q1, held.qpos[:, -1]) and torch.equal(v1, held.qvel[:, -1])
    assert cap.captures == 1 and cap.graph is not None and direct.graph is None


def test_captured_step_matches_mujoco_and_follows_parameter_edits(sim, rng):
    """In-place edits of model.params reach the next call through the same graph; a parameter
    tensor replaced by a new one is captured again. Both checked against mj_step with the same
    edit in the MjModel."""
    model, physics = sim(("actuated_capture", mujoco.MjModel.from_xml_string(ACTUATED_XML)), "float64")
    mj, B = model.mj, 8
    cap = physics.capture(B, 1)

    def check():
        qpos, qvel = random_state(mj, B, rng)
        ctrl = random_ctrl(mj, B, rng)
        q1, v1 = cap.step(to_torch(qpos, torch.float64), to_torch(qvel, torch.float64),
                          to_torch(ctrl, torch.float64))
        mq, mv = mj_step_batch(mj, qpos, qvel, ctrl)
        assert rel_err(q1, mq) <= TOL64 and rel_err(v1, mv) <= TOL64

    check()
    with torch.no_grad():
        model.params["body_mass"][2] *= 1.7
    mj.body_mass[2] *= 1.7
    check()
    assert cap.captures == 1
    model.params["actuator_gain"] = torch.full_like(model.params["actuator_gain"], 3.0)
    mj.actuator_gainprm[:, 0] = 3.0
    check()
    assert cap.captures == 2


def test_captured_extras_do_not_stick_and_outputs_copy_or_alias(sim, rng):
    model, physics = sim("acrobot")
    B, T = 8, 3
    q, v, u = _capture_inputs(model, B, T, rng)
    frc = torch.full((B, T, model.nv), 2.0)
    cap = physics.capture(B, T)
    assert torch.equal(cap.rollout(q, v, u, qfrc_extra=frc).qvel, physics.rollout(q, v, u, qfrc_extra=frc).qvel)
    plain = physics.rollout(q, v, u)
    first = cap.rollout(q, v, u)
    assert torch.equal(first.qvel, plain.qvel)  # the extra force of the previous call is gone
    cap.rollout(q, v, -u)
    assert torch.equal(first.qvel, plain.qvel)  # copies by default: the next call changed nothing here
    view = physics.capture(B, T, copy_outputs=False)
    out = view.rollout(q, v, u).qvel
    assert torch.equal(out, plain.qvel)
    view.rollout(q, v, -u)
    assert not torch.equal(out, plain.qvel)  # views of the buffers, as documented


def test_captured_rollout_errors(sim, rng):
    model, physics = sim("acrobot")
    cap = physics.capture(4, 2)
    q, v, u = _capture_inputs(model, 4, 2, rng)
    with pytest.raises(ValueError, match=r"ctrls: expected shape \[4, 2, 1\].*batch=4, horizon=2"):
        cap.rollout(q, v, u[:, :1])
    with pytest.raises(ValueError, match=r"qpos0: expected shape \[4, 2\]"):
        cap.rollout(q[:3], v, u)
    with pytest.raises(ValueError, match="NaN or inf"):
        cap.rollout(q, v * float("nan"), u)
    with pytest.raises(RuntimeError, match="no gradients"):
        cap.rollout(q, v, u.clone().requires_grad_(True))
    with pytest.raises(hw.NonFiniteError):
        cap.rollout(q, v + 1e38, u)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="positive integer"):
            physics.capture(bad)


def test_captured_model_without_actuators(sim):
    model, physics = sim("spinning_box")
    q, v = model.default_state(3)
    v[:, 3:] = torch.tensor([0.0, 5.0, 0.0])
    tr = physics.capture(3, 5).rollout(q, v, torch.zeros(3, 5, 0))
    assert torch.equal(tr.qpos, physics.rollout(q, v, torch.zeros(3, 5, 0)).qpos)


def test_captured_step_takes_numpy_arrays(sim, rng):
    """numpy inputs (float64 here) go straight into the buffers: the same numbers as torch
    inputs through Physics.step, and the same checks."""
    model, physics = sim("acrobot")
    qpos, qvel = random_state(model.mj, 4, rng)
    ctrl = random_ctrl(model.mj, 4, rng)
    cap = physics.capture(4)
    q1, v1 = cap.step(qpos, qvel, ctrl)
    r1, w1 = physics.step(to_torch(qpos), to_torch(qvel), to_torch(ctrl))
    assert torch.equal(q1, r1) and torch.equal(v1, w1)
    with pytest.raises(ValueError, match=r"qvel: contains NaN or inf \(worlds \[2\]\)"):
        cap.step(qpos, np.where(np.arange(4)[:, None] == 2, np.nan, qvel), ctrl)
    with pytest.raises(TypeError, match="real numbers"):
        cap.step(qpos.astype(bool), qvel, ctrl)
