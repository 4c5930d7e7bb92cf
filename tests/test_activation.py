"""Actuator activation dynamics (MuJoCo's dyntype integrator, filter, filterexact; actearly,
actlimited) and affine gains against mj_step / mj_forward, and their gradients.

The model is written here: a 3-dof arm (two hinges, a slide) with a filtered position servo, an
integrated-velocity actuator (MuJoCo's intvelocity: integrator, activation clamped to actrange),
a filtered motor with actearly, an affine gain without dynamics, a filtered tendon actuator with
actearly and a limited activation, and an integrator with an affine gain. States start with
activations inside and beyond their ranges, controls partly beyond theirs.
"""
import mujoco
import numpy as np
import pytest
import torch
from conftest import assert_grads_match_central_differences, mj_rollout, rel_err

import hybridwam as hw
from hybridwam.model import UnsupportedFeatureError

ARM = """
<mujoco model="activation arm">
  <option timestep="0.004" integrator="{integrator}"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="l1" pos="0 0 1">
      <joint name="j1" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.04" mass="1"/>
      <body name="l2" pos="0.3 0 0">
        <joint name="j2" type="hinge" axis="0 1 0" damping="0.05"/>
        <geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.035" mass="0.7"/>
        <body name="l3" pos="0.25 0 0">
          <joint name="j3" type="slide" axis="1 0 0" damping="0.2"/>
          <geom type="box" size="0.05 0.03 0.03" mass="0.4"/>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon>
    <fixed name="t12"><joint joint="j1" coef="0.5"/><joint joint="j2" coef="-0.3"/></fixed>
  </tendon>
  <actuator>
    <general name="servo1" joint="j1" dyntype="filterexact" dynprm="0.05" gainprm="30" biastype="affine"
             biasprm="0 -30 -1" ctrllimited="true" ctrlrange="-1.5 1.5"/>
    <intvelocity name="iv2" joint="j2" kp="20" kv="0.5" actrange="-1 1"/>
    <general name="m3" joint="j3" dyntype="filter" dynprm="0.02" gainprm="5" actearly="true"/>
    <general name="aff" joint="j2" gaintype="affine" gainprm="0.8 0.5 -0.2" ctrllimited="true" ctrlrange="-1 1"/>
    <general name="ten" tendon="t12" dyntype="filter" dynprm="0.03" gainprm="2" actearly="true" actlimited="true"
             actrange="-0.5 0.8"/>
    <general name="int3" joint="j3" dyntype="integrator" gaintype="affine" gainprm="1 0.3 -0.1" actlimited="true"
             actrange="-2 2"/>
  </actuator>
</mujoco>
"""


def arm(integrator="Euler"):
    return ARM.format(integrator=integrator)


def states(mj, B, rng):
    """B random states: qpos, qvel, act (beyond actrange in some worlds) and ctrl [B, T, nu]."""
    qpos = rng.normal(0, 0.4, (B, mj.nq))
    qvel = rng.normal(0, 1.0, (B, mj.nv))
    act = rng.normal(0, 1.2, (B, mj.na))
    return qpos, qvel, act


@pytest.fixture(scope="module")
def arms():
    """(MjModel, Physics float64) per integrator, built once (Euler and implicitfast share a module)."""
    out = {}

    def get(integrator, dtype="float64"):
        if (integrator, dtype) not in out:
            xml = arm(integrator)
            out[(integrator, dtype)] = (mujoco.MjModel.from_xml_string(xml),
                                        hw.Physics(hw.load_model(xml, device="cpu", dtype=dtype), verbose=False))
        return out[(integrator, dtype)]
    return get


@pytest.mark.parametrize("integrator", ["Euler", "implicitfast", "RK4"])
def test_activation_rollouts_match_mj_step(arms, rng, integrator):
    mj, phys = arms(integrator)
    assert phys.engine == "looped" and phys.model.na == 5
    B, T = 6, 100
    qpos, qvel, act = states(mj, B, rng)
    ctrl = rng.normal(0, 1.2, (B, T, mj.nu))  # beyond the servo's and the affine gain's ctrlrange too
    mq, mv, ma = mj_rollout(mj, qpos, qvel, ctrl, act)
    assert np.abs(ma[:, 1:]).max() > 0.5 and (np.abs(ma[:, 1, [1, 3]]) >= [1.0, 0.5]).any()  # the clamps bind
    tr = phys.rollout(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrl), act0=torch.tensor(act))
    assert tr.act.shape == (B, T + 1, mj.na)
    err = rel_err(tr.qpos, mq), rel_err(tr.qvel, mv), rel_err(tr.act, ma)
    assert max(err) <= 1e-10, err
    # without dynamics the activations would be the controls: the filters' lag shows
    assert np.abs(ma[:, 1:, 0] - np.clip(ctrl[:, :, 0], -1.5, 1.5)).max() > 0.1


def test_activation_step_float32(arms, rng):
    mj, phys = arms("Euler", "float32")
    B = 32
    qpos, qvel, act = states(mj, B, rng)
    ctrl = rng.normal(0, 1.2, (B, 1, mj.nu))
    mq, mv, ma = mj_rollout(mj, qpos, qvel, ctrl, act)
    f = torch.float32
    q1, v1, a1 = phys.step(torch.tensor(qpos, dtype=f), torch.tensor(qvel, dtype=f), torch.tensor(ctrl[:, 0], dtype=f),
                           act=torch.tensor(act, dtype=f))
    err = rel_err(q1, mq[:, 1]), rel_err(v1, mv[:, 1]), rel_err(a1, ma[:, 1])
    assert max(err) <= 1e-4, err


def test_activation_forward_and_capture(arms, rng):
    """Physics.forward reads act (qfrc_actuator, qacc against mj_forward); a captured rollout
    carries act like Physics.rollout; step returns it."""
    mj, phys = arms("Euler")
    B = 5
    qpos, qvel, act = states(mj, B, rng)
    ctrl = rng.normal(0, 1.2, (B, mj.nu))
    out = phys.forward(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrl), act=torch.tensor(act))
    d = mujoco.MjData(mj)
    for b in range(B):
        d.qpos[:], d.qvel[:], d.act[:], d.ctrl[:] = qpos[b], qvel[b], act[b], ctrl[b]
        mujoco.mj_forward(mj, d)
        assert rel_err(out.qfrc_actuator[b], d.qfrc_actuator) <= 1e-12, (b, out.qfrc_actuator[b], d.qfrc_actuator)
        assert rel_err(out.qacc[b], d.qacc) <= 1e-10
    H = 7
    ctrls = rng.normal(0, 1.0, (B, H, mj.nu))
    cap = phys.capture(B, H)
    tc = cap.rollout(qpos, qvel, ctrls, act0=act)
    tr = phys.rollout(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrls), act0=torch.tensor(act))
    assert torch.equal(tc.act, tr.act) and torch.equal(tc.qpos, tr.qpos) and torch.equal(tc.qacc, tr.qacc)
    q1, v1, a1 = phys.step(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrls[:, 0]), act=torch.tensor(act))
    assert torch.equal(a1, tr.act[:, 1]) and torch.equal(q1, tr.qpos[:, 1])
    # the default act0 is zero (MuJoCo's mj_resetData)
    tz = phys.rollout(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrls))
    assert torch.equal(tz.act[:, 0], torch.zeros(B, mj.na))
    with pytest.raises(ValueError, match="act0: expected shape"):
        phys.rollout(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrls), act0=torch.zeros(B, 2))


@pytest.mark.parametrize("integrator", ["implicitfast", "RK4"])
def test_activation_gradients_match_central_differences(arms, rng, integrator):
    """Gradients through 30 steps: initial activations, controls, time constants, affine gains and
    the activation range (where the clamp binds) against central differences."""
    mj, phys = arms(integrator)
    m = phys.model
    qpos, qvel, act = states(mj, 2, rng)
    act[0, 1] = 1.3  # iv2 beyond its range: clamped to 1 in its first step
    q0, v0 = torch.tensor(qpos), torch.tensor(qvel)
    a0 = torch.tensor(act, requires_grad=True)
    u = torch.tensor(rng.normal(0, 0.8, (2, 30, mj.nu)), requires_grad=True)
    w = torch.tensor(rng.normal(0, 1, (2, 31, mj.nq + mj.nv + mj.na)))

    def loss():
        tr = phys.rollout(q0, v0, u, act0=a0)
        return (torch.cat([tr.qpos, tr.qvel, tr.act], -1) * w).sum()

    names = ["actuator_dynprm", "actuator_gain_affine", "actuator_actrange"]
    checks = [(a0, (0, 0)), (a0, (1, 2)), (a0, (0, 4)), (u, (0, 3, 0)), (u, (1, 10, 2)), (u, (0, 5, 3)),
              (u, (1, 0, 5)), ("actuator_dynprm", (0,), 1e-7), ("actuator_dynprm", (2,), 1e-7),
              ("actuator_gain_affine", (3, 0)), ("actuator_gain_affine", (5, 1)), ("actuator_actrange", (1, 1))]
    assert_grads_match_central_differences(m, names, loss, checks, eps=1e-6, tol=1e-5)


def test_activation_refusals():
    """What is not simulated is refused by name: muscles, and the unrolled engine."""
    muscle = """<mujoco><worldbody><body><joint name="j" type="hinge" range="-1 1"/><geom size=".1"/></body></worldbody>
      <tendon><fixed name="t"><joint joint="j" coef="1"/></fixed></tendon>
      <actuator><muscle name="mus" tendon="t"/></actuator></mujoco>"""
    with pytest.raises(UnsupportedFeatureError, match="mus.*dynamics 'muscle' \\(simulated: integrator, filter, "
                                                      "filterexact\\)"):
        hw.load_model(muscle)
    m = hw.load_model(arm(), device="cpu")
    with pytest.raises(ValueError, match="activation dynamics"):
        hw.Physics(m, engine="unrolled")
    assert hw.Physics(m, verbose=False).engine == "looped"


def arm_task(tmp_path, integrator="Euler"):
    scene = tmp_path / "arm.xml"
    scene.write_text(arm(integrator))
    return hw.Task.from_dict({"name": "arm_reach", "scene": str(scene), "horizon": 10, "dt": 0.02,
                              "initial_state": {"qpos": {"j1": 0.2}},
                              "cost": {"state": {"qpos": {"j1": 1.0}}, "control": 0.01},
                              "success": {"qpos_tol": {"j1": 0.1}}}, source="arm_reach.yaml")


def test_activation_env_and_planning_carry_act(arms, rng, tmp_path):
    """The vector env carries the activations (observation after qvel, zero at reset) as
    Physics.rollout does; planning and MPC start their rollouts from the given activations."""
    gym_envs = pytest.importorskip("hybridwam.envs")
    mj, phys = arms("Euler")
    task = arm_task(tmp_path)
    env = gym_envs.make_vec_env(task, num_envs=3, world=phys, reset_noise_scale=0.0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, mj.nq + mj.nv + mj.na) and not obs[:, mj.nq + mj.nv:].any()
    actions = rng.uniform(-1, 1, (4, 3, mj.nu))
    for a in actions:
        obs, *_ = env.step(a)
    ctrl = np.repeat(np.clip(actions, env.single_action_space.low, env.single_action_space.high), env.frame_skip, 0)
    q0 = torch.tensor(np.tile(mj.qpos0, (3, 1)))
    q0[:, 0] = 0.2
    tr = phys.rollout(q0, torch.zeros(3, mj.nv), torch.tensor(ctrl.transpose(1, 0, 2)))
    assert np.abs(tr.act[:, -1].numpy()).max() > 0.05
    np.testing.assert_allclose(obs, torch.cat([tr.qpos[:, -1], tr.qvel[:, -1], tr.act[:, -1]], -1).numpy(),
                               rtol=0, atol=1e-12)
    # planning: the problem's rollouts start from the given activations
    from hybridwam.planning.optimize import Problem

    p = Problem(phys, task)
    a0 = rng.normal(0, 0.3, mj.na)
    p.set_state(task.qpos0, task.qvel0, a0)
    tp = p.rollout(torch.zeros(2, task.horizon, mj.nu, dtype=torch.float64))
    assert torch.equal(tp.act[:, 0], torch.tensor(a0).expand(2, -1))
    with pytest.raises(ValueError, match="act: expected 5 activation"):
        p.set_state(task.qpos0, task.qvel0, np.zeros(2))
    res = hw.optimize_trajectory(phys, task, iters=3, restarts=2, progress=False, act0=a0)
    assert np.isfinite(res.cost)
    mpc = hw.MPC(phys, task, horizon=5, iters_per_step=1)
    seen = []
    orig = mpc.act
    mpc.act = lambda q, v, a=None: (seen.append(a), orig(q, v, a))[1]
    out = hw.run_mpc_mujoco(mpc, mj, seconds=0.06)
    assert len(seen) == 3 and all(a is not None and a.shape == (mj.na,) for a in seen) and np.abs(seen[-1]).max() > 0
    assert out["qpos"].shape[1] == mj.nq


def test_activation_hybrid_fused_equals_its_definition(arms, rng):
    """A HybridModel's fused rollout (the residual inside the step) carries act and equals the
    stepwise loop of Physics.step with the residual's force, from the same activations."""
    mj, phys = arms("Euler")
    torch.manual_seed(0)
    res = hw.Residual(phys.model, hidden=(16,), mode="force")
    with torch.no_grad():
        for p in res.parameters():
            p.normal_(0, 0.3)
    world = hw.HybridModel(phys, res)
    qpos, qvel, act = states(mj, 3, rng)
    u = torch.tensor(rng.normal(0, 0.8, (3, 20, mj.nu)))
    q, v, a = torch.tensor(qpos), torch.tensor(qvel), torch.tensor(act)
    tr = world.rollout(q, v, u, act0=a)
    for t in range(20):
        with torch.no_grad():
            f = res(q, v, u[:, t])
        q, v, a = phys.step(q, v, u[:, t], qfrc_extra=f, act=a)
    assert rel_err(tr.qpos[:, -1], q) <= 1e-10 and rel_err(tr.act[:, -1], a) <= 1e-12
    assert rel_err(tr.qvel[:, -1], v) <= 1e-10
    plain = phys.rollout(torch.tensor(qpos), torch.tensor(qvel), u, act0=torch.tensor(act))
    assert (plain.qvel[:, -1] - v).abs().max() > 1e-4  # the residual acts
    q1, v1, a1 = world.step(torch.tensor(qpos), torch.tensor(qvel), u[:, 0], act=torch.tensor(act))
    assert torch.equal(a1, tr.act[:, 1]) and torch.equal(q1, tr.qpos[:, 1])
