"""hw.Task: YAML loading and validation, differentiable site kinematics (against MuJoCo's
``mj_kinematics``), costs with angle wrapping, action repeat and the batched success test."""
from __future__ import annotations

import math
import os

import mujoco
import numpy as np
import pytest
import torch
import yaml

from hybridwam.model import list_scenes, resolve_scene
from hybridwam.tasks import SiteKinematics, Task, list_tasks

SHIPPED = ("acrobot_swingup", "cartpole_swingup", "pendulum_swingup", "reacher_target")

# a chain exercising what the shipped scenes do not: rotated bodies, joint offsets (jnt_pos), joint
# reference angles (qpos0 != 0), a slide on a tilted axis, a ball joint, several joints in one body
KIN_XML = """
<mujoco>
  <compiler angle="radian"/>
  <worldbody>
    <body name="a" pos="0.1 -0.2 0.3" quat="0.9 0.1 0.3 -0.2">
      <joint name="s" type="slide" axis="1 1 0" ref="0.2"/>
      <joint name="h1" type="hinge" axis="0 0 1" pos="0.05 0 0" ref="0.4"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02"/>
      <site name="s_a" pos="0.3 0.01 0.02"/>
      <body name="b" pos="0.3 0 0" euler="0.3 -0.2 0.5">
        <joint name="ball" type="ball" pos="0 0.02 0"/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.25" size="0.02"/>
        <body name="c" pos="0 0 -0.25">
          <joint name="h2" type="hinge" axis="0.3 1 0.2" pos="0 0 0.01"/>
          <geom type="sphere" size="0.03" pos="0 0 -0.1"/>
          <site name="tip" pos="0.02 0 -0.1" quat="0.7 0.7 0 0"/>
        </body>
      </body>
    </body>
    <body name="free" pos="1 0 0">
      <freejoint/>
      <geom type="box" size="0.1 0.05 0.02"/>
      <site name="corner" pos="0.1 0.05 0.02"/>
    </body>
  </worldbody>
</mujoco>
"""


def _random_qpos(m: mujoco.MjModel, n: int, rng) -> np.ndarray:
    q = np.tile(m.qpos0, (n, 1)).astype(np.float64)
    for j in range(m.njnt):
        a, t = int(m.jnt_qposadr[j]), int(m.jnt_type[j])
        if t in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
            q[:, a] = rng.uniform(-3, 3, n)
        else:
            k = 3 if t == mujoco.mjtJoint.mjJNT_FREE else 0
            q[:, a:a + k] = rng.uniform(-1, 1, (n, k))
            quat = rng.normal(size=(n, 4))
            q[:, a + k:a + k + 4] = quat / np.linalg.norm(quat, axis=1, keepdims=True)
    return q


def _mj_site_xpos(m: mujoco.MjModel, qpos: np.ndarray) -> np.ndarray:
    d = mujoco.MjData(m)
    out = np.empty((len(qpos), m.nsite, 3))
    for i, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        out[i] = d.site_xpos
    return out


@pytest.mark.parametrize("scene", [*list_scenes(), "<kinematics test chain>"])
def test_kinematics_matches_mujoco(scene, rng):
    """The kinematics stage's body frames and site positions equal ``mj_kinematics`` on random
    states (float64)."""
    if scene.startswith("<"):
        m = mujoco.MjModel.from_xml_string(KIN_XML)
    else:
        m = mujoco.MjModel.from_xml_path(resolve_scene(scene))
    q = _random_qpos(m, 16, rng)
    kin = SiteKinematics(m)
    xpos, xmat = kin.body_frames(torch.as_tensor(q))
    d = mujoco.MjData(m)
    for i in range(len(q)):
        d.qpos[:] = q[i]
        mujoco.mj_kinematics(m, d)
        for b in range(m.nbody):
            np.testing.assert_allclose(xpos[i, b].numpy(), d.xpos[b], atol=1e-10, rtol=0)
            np.testing.assert_allclose(xmat[i, b].numpy().ravel(), d.xmat[b], atol=1e-10, rtol=0)
    if m.nsite:
        ours = kin.site_pos(torch.as_tensor(q), list(range(m.nsite))).numpy()
        np.testing.assert_allclose(ours, _mj_site_xpos(m, q), atol=1e-10, rtol=0)


def test_site_kinematics_gradient_matches_finite_differences(rng):
    m = mujoco.MjModel.from_xml_string(KIN_XML)
    kin = SiteKinematics(m)
    q = torch.as_tensor(_random_qpos(m, 1, rng)[0])
    w = torch.as_tensor(rng.normal(size=(m.nsite, 3)))

    def f(x):
        return (kin.site_pos(x, list(range(m.nsite))) * w).sum()

    x = q.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    eps = 1e-6
    fd = torch.stack([(f(q + eps * e) - f(q - eps * e)) / (2 * eps) for e in torch.eye(m.nq, dtype=q.dtype)])
    torch.testing.assert_close(g, fd, atol=1e-6, rtol=1e-6)


def test_site_kinematics_float32_batched():
    m = mujoco.MjModel.from_xml_path(resolve_scene("reacher"))
    q = torch.zeros(4, 7, m.nq, dtype=torch.float32)
    p = SiteKinematics(m).site_pos(q, ["fingertip", "target"])
    assert p.shape == (4, 7, 2, 3) and p.dtype == torch.float32
    torch.testing.assert_close(p[0, 0], torch.tensor([[0.75, 0, 0], [0.4, 0.3, 0]]))


# ---- shipped tasks -------------------------------------------------------------------------------
def test_shipped_tasks_listed():
    assert set(SHIPPED) | {"pusher_push"} <= set(list_tasks())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_task_loads(name):
    task = Task.from_yaml(name)
    assert task.name == name and os.path.isfile(task.scene_path)
    assert task.horizon >= 1 and task.repeat >= 1
    assert math.isclose(task.dt, task.repeat * task.timestep)
    assert task.qpos0.shape == (task.nq,) and task.qvel0.shape == (task.nv,)
    m = task.mj
    lo = np.where(m.actuator_ctrllimited, m.actuator_ctrlrange[:, 0], -np.inf)
    np.testing.assert_array_equal(task.ctrl_low.numpy(), lo)  # bounds default to the scene's ctrlrange
    # success is batched and judged on the final state
    q = task.goal_qpos.expand(5, -1).clone()
    v = task.goal_qvel.expand(5, -1).clone()
    q[1] = task.qpos0
    ok = task.success(q, v)
    assert ok.shape == (5,) and ok.dtype == torch.bool
    if not task.sites:
        assert ok.tolist() == [True, False, True, True, True]
    assert not bool(task.success(task.qpos0, task.qvel0))  # the start is not a solution
    # also loadable by path
    assert Task.from_yaml(task.source).horizon == task.horizon


def test_pendulum_torque_limit_below_mgl():
    task = Task.from_yaml("pendulum_swingup")
    m = task.mj
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    mgl = -m.opt.gravity[2] * sum(m.body_mass[b] * np.linalg.norm(d.xipos[b]) for b in range(1, m.nbody))
    assert float(task.ctrl_high.max()) < mgl


def test_cartpole_goal_is_pole_upright():
    task = Task.from_yaml("cartpole_swingup")
    tip = task.site_pos(task.goal_qpos, ["pole_tip"])[0]
    assert float(tip[2]) > 0.79  # q = pi points the pole up in scenes/cartpole.xml


# ---- costs -------------------------------------------------------------------------------------
def test_cost_wraps_hinge_angles_and_is_differentiable():
    task = Task.from_yaml("cartpole_swingup")
    H = task.horizon
    q = task.goal_qpos.expand(3, H + 1, -1).clone()
    q[1, :, 1] += 2 * math.pi  # a whole turn away: same state
    q[2, :, 1] -= 0.3
    v = torch.zeros(3, H + 1, task.nv, dtype=torch.float64)
    u = torch.zeros(3, H, task.nu, dtype=torch.float64, requires_grad=True)
    terms = task.cost_terms(q, v, u)
    c = terms["total"]
    cd = c.detach()
    assert float(cd[0]) == pytest.approx(0.0, abs=1e-9)
    assert float(cd[1]) == pytest.approx(0.0, abs=1e-9)
    assert float(cd[2]) > 0
    torch.testing.assert_close(terms["state"] + terms["control"] + terms["terminal"], c)
    # hinge error 2 sin(d/2): the squared error is (q - goal)^2 near the goal
    wq = float(task.w_qpos[1])
    expect = wq * (2 * math.sin(0.15)) ** 2 * H * task.dt + float(task.terminal_qpos[1]) * (2 * math.sin(0.15)) ** 2
    assert float(cd[2]) == pytest.approx(expect, rel=1e-9)
    (c.sum() + (u ** 2).sum()).backward()
    assert u.grad is not None
    # success: wrapped angle within tolerance, batched
    assert task.success(q[:, -1], v[:, -1]).tolist() == [True, True, False]


def test_control_cost_normalised_by_bounds():
    task = Task.from_yaml("cartpole_swingup")
    H = task.horizon
    q = task.goal_qpos.expand(1, H + 1, -1)
    v = torch.zeros(1, H + 1, task.nv, dtype=torch.float64)
    u = torch.full((1, H, 1), 30.0, dtype=torch.float64)  # at the bound: normalised 1
    assert float(task.cost_terms(q, v, u)["control"][0]) == pytest.approx(float(task.w_ctrl[0]) * H * task.dt)


def test_site_cost_and_site_success():
    task = Task.from_yaml("reacher_target")
    H = task.horizon
    q = torch.zeros(2, H + 1, task.nq, dtype=torch.float64)
    v = torch.zeros(2, H + 1, task.nv, dtype=torch.float64)
    # an arm pose with the fingertip on the target (0.4, 0.3): elbow-up IK for the first two links
    # with the wrist straight (links 0.3 and 0.25 + 0.2)
    l1, l2, x, y = 0.3, 0.45, 0.4, 0.3
    c2 = (x * x + y * y - l1 * l1 - l2 * l2) / (2 * l1 * l2)
    q2 = math.acos(c2)
    q1 = math.atan2(y, x) - math.atan2(l2 * math.sin(q2), l1 + l2 * math.cos(q2))
    q[1, :, 0], q[1, :, 1] = q1, q2
    tip = task.site_pos(q[1, -1], ["fingertip"])[0]
    torch.testing.assert_close(tip, torch.tensor([0.4, 0.3, 0.0], dtype=torch.float64))
    u = torch.zeros(2, H, task.nu, dtype=torch.float64)
    c = task.cost(q, v, u)
    assert float(c[1]) == pytest.approx(0.0, abs=1e-12) and float(c[0]) > 1
    assert task.success(q[:, -1], v[:, -1]).tolist() == [False, True]
    assert task.errors(q[:, -1], v[:, -1])["site:fingertip"][0] == pytest.approx(math.hypot(0.35, 0.3))


# ---- YAML validation ---------------------------------------------------------------------------
def _cfg(**over):
    cfg = yaml.safe_load(open(Task.from_yaml("cartpole_swingup").source))
    for k, v in over.items():
        cfg[k] = v
    return cfg


def _write(tmp_path, cfg, name="task.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg))
    return str(p)


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c.update(horizn=10), "horizn"),
    (lambda c: c["cost"].update(stat={}), "cost.stat"),
    (lambda c: c["cost"]["terminal"].update(qpso=[1, 1]), "cost.terminal.qpso"),
    (lambda c: c["goal"].update(qpos=[0.0, 1.0, 2.0]), "goal.qpos"),
    (lambda c: c["initial_state"].update(qvel=[0.0]), "initial_state.qvel"),
    (lambda c: c["cost"]["state"].update(qpos={"no_such_joint": 1.0}), "cost.state.qpos.no_such_joint"),
    (lambda c: c["cost"]["state"].update(qvel=[0.1, -1.0]), "cost.state.qvel[1]"),
    (lambda c: c.update(dt=0.015), "dt"),
    (lambda c: c.update(horizon=0), "horizon"),
    (lambda c: c.pop("scene"), "scene"),
    (lambda c: c.update(scene="no_such_scene"), "scene"),
    (lambda c: c["cost"].update(sites=[{"site": "no_such_site", "target": [0, 0, 0]}]), "cost.sites[0].site"),
    (lambda c: c["cost"].update(sites=[{"site": "pole_tip", "target_site": "nope"}]), "cost.sites[0].target_site"),
    (lambda c: c["cost"].update(sites=[{"site": "pole_tip", "target": [0, 0]}]), "cost.sites[0].target"),
    (lambda c: c["success"].update(site_tol={"pole_tip": 0.1}), "success.site_tol.pole_tip"),
    (lambda c: c.update(bounds={"ctrl": [[-1, 1], [-1, 1]]}), "bounds.ctrl"),
    (lambda c: c.update(planner={"optimizer": "sgd"}), "planner.optimizer"),
    (lambda c: c.update(planner={"knots": 1}), "planner.knots"),
    (lambda c: c.update(planner={"init": [0.0, 0.0]}), "planner.init"),
    (lambda c: c.update(planner={"init": [1e6]}), "planner.init"),
    (lambda c: c.update(planner={"lr_final": -1}), "planner.lr_final"),
    (lambda c: c["cost"]["terminal"].update(steps=10_000), "cost.terminal.steps"),
])
def test_bad_yaml_names_the_key(tmp_path, mutate, key):
    cfg = _cfg()
    mutate(cfg)
    path = _write(tmp_path, cfg)
    with pytest.raises(ValueError) as e:
        Task.from_yaml(path)
    msg = str(e.value)
    assert f": {key}:" in msg and path in msg, msg


def test_not_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("scene: [unclosed\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        Task.from_yaml(str(p))
    with pytest.raises(FileNotFoundError, match="cartpole_swingup"):
        Task.from_yaml("no_such_task")


def test_scene_relative_to_yaml_and_action_repeat(tmp_path):
    import shutil

    shutil.copy(resolve_scene("pendulum"), tmp_path / "my_pendulum.xml")
    cfg = {"scene": "my_pendulum.xml", "horizon": 50, "dt": 0.03,
           "goal": {"qpos": [3.14159]}, "cost": {"state": {"qpos": [1.0]}},
           "success": {"qpos_tol": [0.1]}, "bounds": {"ctrl": [[-1.0, 1.5]]}}
    task = Task.from_yaml(_write(tmp_path, cfg, "sub.yaml"))
    assert task.scene_path == str(tmp_path / "my_pendulum.xml")
    assert task.name == "sub" and task.repeat == 3 and task.steps == 150
    assert task.ctrl_low.tolist() == [-1.0] and task.ctrl_high.tolist() == [1.5]
    a = torch.arange(4.0).reshape(1, 4, 1)
    assert task.expand(a)[0, :, 0].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    # cost accepts states at physics steps (sampled every `repeat`) or at control steps
    u = torch.zeros(2, 50, 1, dtype=torch.float64)
    qs = torch.rand(2, 151, 1, dtype=torch.float64)
    vs = torch.rand(2, 151, 1, dtype=torch.float64)
    torch.testing.assert_close(task.cost(qs, vs, u), task.cost(qs[:, ::3], vs[:, ::3], u))
    # missing tolerances entirely is an error (success would be undefined)
    cfg.pop("success")
    with pytest.raises(ValueError, match="success"):
        Task.from_yaml(_write(tmp_path, cfg, "nosucc.yaml"))


def test_with_horizon_copy():
    task = Task.from_yaml("cartpole_swingup")
    short = task.with_horizon(50)
    assert short.horizon == 50 and task.horizon == 300
    assert short.terminal_steps <= 50
