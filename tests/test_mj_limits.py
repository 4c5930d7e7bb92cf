"""MuJoCo's soft-constraint law for joint limits and dry friction (``limit_law="mujoco"``,
kernels/limits.py): steps and 100-step rollouts against mj_step from states on and beyond the
limits (Euler with implicit damping, implicitfast, RK4), the constraint solver's acceleration
against mj_forward's, float32, gradients against central differences, models written by others
(the corpus, contact-free) and what is refused."""
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
    mj_step_batch,
    random_ctrl,
    random_state,
    rel_err,
    to_torch,
)

import hybridwam as hw

# a hinge with its own solreflimit / solimplimit (power 3, midpoint 0.4) and a narrow width, a
# hinge with a limit margin and dry friction, a slide with dry friction of its own solref /
# solimp; armature, damping and motors: each row kind and each impedance branch
ARM = """<mujoco><option timestep="0.01" integrator="{integrator}"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody><body>
    <joint name="a" type="hinge" axis="0 1 0" range="-0.5 0.5" damping="{damping}" frictionloss="0.5"
           solreflimit="0.03 0.8" solimplimit="0.8 0.95 0.01 0.4 3" armature="0.01"/>
    <geom type="capsule" fromto="0 0 0 0.5 0 0" size="0.05" mass="1"/>
    <body pos="0.5 0 0">
      <joint name="b" type="hinge" axis="0 1 0" range="-1 0.3" damping="{damping}" frictionloss="0.3" margin="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.04" mass="0.7"/>
      <body pos="0.4 0 0">
        <joint name="c" type="slide" axis="1 0 0" range="-0.1 0.1" frictionloss="0.2" solreffriction="0.05 1.2"
               solimpfriction="0.7 0.9 0.001 0.5 2"/>
        <geom type="box" size="0.05 0.05 0.05" mass="0.3"/>
      </body>
    </body>
  </body></worldbody>
  <actuator><motor joint="a" gear="2"/><motor joint="b"/><position joint="c" kp="30" kv="2"/></actuator>
</mujoco>"""
INTEGRATORS = ("Euler", "implicitfast", "RK4")


def arm(integrator="Euler", damping=0.3):
    return ARM.format(integrator=integrator, damping=damping)


def beyond_limits(mj, B, rng, spread=1.5):
    """Random states with every limited joint anywhere in its range widened by ``spread`` times
    its width on both sides (most worlds have some joint beyond a limit), fast velocities."""
    qpos, qvel = random_state(mj, B, rng, vel_scale=2.0)
    for j in range(mj.njnt):
        if mj.jnt_limited[j]:
            lo, hi = mj.jnt_range[j]
            w = hi - lo
            qpos[:, mj.jnt_qposadr[j]] = rng.uniform(lo - spread * w, hi + spread * w, B)
    return qpos, qvel



def physics(xml, dtype="float64"):
    return hw.Physics(hw.load_model(xml, device="cpu", dtype=dtype, limit_law="mujoco"), verbose=False)


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_step_and_rollout_from_beyond_the_limits_match_mj_step(rng, integrator):
    xml = arm(integrator)
    mj = exact_solver(mujoco.MjModel.from_xml_string(xml))
    phys = physics(xml)
    assert phys.engine == "looped"
    B = 48
    qpos, qvel = beyond_limits(mj, B, rng)
    ctrl = random_ctrl(mj, B, rng, shape=(100,))
    # the states exercise every row state: limits violated and inactive, friction in both zones
    active = np.zeros(4, dtype=int)
    d = mujoco.MjData(mj)
    for b in range(B):
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[b], qvel[b], ctrl[b, 0]
        mujoco.mj_forward(mj, d)
        for i in range(d.nefc):
            kind = int(d.efc_type[i])
            if kind == int(mujoco.mjtConstraint.mjCNSTR_LIMIT_JOINT):
                active[0 if d.efc_state[i] == int(mujoco.mjtConstraintState.mjCNSTRSTATE_QUADRATIC) else 1] += 1
            elif kind == int(mujoco.mjtConstraint.mjCNSTR_FRICTION_DOF):
                active[2 if d.efc_state[i] == int(mujoco.mjtConstraintState.mjCNSTRSTATE_QUADRATIC) else 3] += 1
    assert (active > 0).all(), active
    q1, v1 = phys.step(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrl[:, 0]))
    mq1, mv1 = mj_step_batch(mj, qpos, qvel, ctrl[:, 0])
    assert rel_err(q1, mq1) <= 1e-12 and rel_err(v1, mv1) <= 1e-10, (rel_err(q1, mq1), rel_err(v1, mv1))
    tr = phys.rollout(to_torch(qpos, torch.float64), to_torch(qvel, torch.float64), to_torch(ctrl, torch.float64))
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    assert rel_err(tr.qpos, mq) <= 1e-8 and rel_err(tr.qvel, mv) <= 1e-8, (rel_err(tr.qpos, mq), rel_err(tr.qvel, mv))


def test_constraint_solver_acceleration_matches_mj_forward(rng):
    """Without implicit terms (RK4's stages, no damping) the step's acceleration is the constraint
    solver's: equal to mj_forward's qacc, and M qacc - qfrc_smooth is its qfrc_constraint."""
    xml = arm("RK4", damping=0.0)
    mj = exact_solver(mujoco.MjModel.from_xml_string(xml))
    phys = physics(xml)
    B = 32
    qpos, qvel = beyond_limits(mj, B, rng)
    ctrl = random_ctrl(mj, B, rng)
    out = phys.forward(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrl))
    d = mujoco.MjData(mj)
    for b in range(B):
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[b], qvel[b], ctrl[b]
        mujoco.mj_forward(mj, d)
        assert rel_err(out.qacc[b], d.qacc) <= 1e-10, (b, out.qacc[b], d.qacc)
        assert rel_err(out.qfrc_constraint[b], d.qfrc_constraint) <= 1e-10, (b, out.qfrc_constraint[b],
                                                                              d.qfrc_constraint)


def test_float32_step_matches_mj_step(rng):
    xml = arm("Euler")
    mj = exact_solver(mujoco.MjModel.from_xml_string(xml))
    phys = physics(xml, "float32")
    B = 64
    qpos, qvel = beyond_limits(mj, B, rng)
    ctrl = random_ctrl(mj, B, rng)
    qpos, qvel, ctrl = (np.asarray(x, dtype=np.float32).astype(np.float64) for x in (qpos, qvel, ctrl))
    q1, v1 = phys.step(to_torch(qpos), to_torch(qvel), to_torch(ctrl))
    mq, mv = mj_step_batch(mj, qpos, qvel, ctrl)
    assert rel_err(q1, mq) <= 1e-4 and rel_err(v1, mv) <= 1e-4, (rel_err(q1, mq), rel_err(v1, mv))


@pytest.mark.parametrize("integrator", INTEGRATORS)
def test_gradients_through_the_soft_constraints_match_central_differences(rng, integrator):
    """20 steps from states on and beyond the limits with both friction zones: the gradients of a
    final-state loss with respect to the state, the controls and every parameter of the law."""
    phys = physics(arm(integrator))
    model = phys.model
    mj = model.mj
    qpos, qvel = beyond_limits(mj, 4, np.random.default_rng(3))
    q0 = torch.tensor(qpos, requires_grad=True)
    v0 = torch.tensor(qvel, requires_grad=True)
    u = torch.tensor(random_ctrl(mj, 4, np.random.default_rng(4), shape=(20,)), requires_grad=True)
    loss = final_state_loss(phys, (q0, v0, u))
    names = ["jnt_solref", "jnt_solimp", "dof_solref", "dof_solimp", "dof_frictionloss", "jnt_range", "jnt_margin",
             "dof_invweight0", "dof_damping", "body_mass"]
    # a step of 1e-7 where the loss has a kink within 1e-6 (a row changing state in some step)
    checks = [(q0, (0, 0)), (q0, (1, 1)), (v0, (2, 2)), (u, (0, 3, 1)), ("jnt_solref", (0, 0), 1e-7),
              ("jnt_solref", (2, 1)), ("jnt_solimp", (0, 1)), ("jnt_solimp", (0, 2)), ("jnt_solimp", (1, 1)),
              ("dof_solimp", (1, 0)), ("dof_frictionloss", (0,)), ("dof_frictionloss", (2,)), ("jnt_range", (0, 1)),
              ("jnt_range", (2, 0)), ("jnt_margin", (0,)), ("dof_invweight0", (0,)), ("dof_damping", (2,)),
              ("body_mass", (2,))]
    if integrator == "RK4":  # the slide's dry friction reaches its quadratic zone
        checks.append(("dof_solref", (2, 0)))
    assert_grads_match_central_differences(model, names, loss, checks, eps=1e-6, tol=1e-5)


def test_limit_law_is_checked_and_the_unrolled_engine_refuses_mujocos():
    with pytest.raises(ValueError, match="limit_law"):
        hw.load_model(arm(), device="cpu", limit_law="soft")
    model = hw.load_model(arm(), device="cpu", limit_law="mujoco")
    with pytest.raises(ValueError, match="limit law"):
        hw.Physics(model, engine="unrolled")
    assert hw.Physics(model, verbose=False).engine == "looped"


def _corpus():
    """Models written by others with limited joints or dry friction: Gymnasium's (walkers with
    knees at their limits at qpos0) and MuJoCo Warp's test models that load."""
    out = []
    gym = None
    try:
        import gymnasium as gym
    except ImportError:
        pass
    if gym is not None:
        root = os.path.join(os.path.dirname(gym.__file__), "envs", "mujoco", "assets")
        out += [os.path.join(root, n) for n in ("ant.xml", "half_cheetah.xml", "hopper.xml", "humanoid.xml",
                                                "reacher.xml", "walker2d.xml", "pusher.xml")]
    try:
        import mujoco_warp as mjw
    except ImportError:
        return out
    root = os.path.join(os.path.dirname(mjw.__file__), "test_data")
    return out + [os.path.join(root, n) for n in ("humanoid/humanoid.xml", "humanoid/n_humanoid.xml")]


@pytest.mark.parametrize("path", _corpus(), ids=os.path.basename)
def test_models_written_by_others_step_like_mujoco_beyond_their_limits(rng, path):
    """Contact-free (MuJoCo's contact flag), from states with joints on and beyond their limits
    (the widened ranges of ``beyond_limits``), 50 steps of random controls against mj_step."""
    mj = mujoco.MjModel.from_xml_path(path)
    mj.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
    exact_solver(mj)
    if not (mj.jnt_limited.any() or (mj.dof_frictionloss > 0).any()):
        pytest.skip("no limits or dry friction")
    phys = hw.Physics(hw.load_model(mj, device="cpu", dtype="float64", limit_law="mujoco"), verbose=False)
    B = 8
    qpos, qvel = beyond_limits(mj, B, rng, spread=0.3)
    qvel *= 0.5
    ctrl = random_ctrl(mj, B, rng, shape=(50,))
    d = mujoco.MjData(mj)
    rows = 0
    for b in range(B):
        d.qpos[:], d.qvel[:] = qpos[b], qvel[b]
        mujoco.mj_forward(mj, d)
        rows += d.nefc
    assert rows > 0
    tr = phys.rollout(to_torch(qpos, torch.float64), to_torch(qvel, torch.float64), to_torch(ctrl, torch.float64))
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    one = rel_err(tr.qpos[:, 1], mq[:, 1]), rel_err(tr.qvel[:, 1], mv[:, 1])
    assert max(one) <= 1e-8, one
    err = rel_err(tr.qpos, mq), rel_err(tr.qvel, mv)
    assert max(err) <= 1e-6, err
