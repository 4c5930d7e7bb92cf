"""pusher_push: the arm pushes the box onto the goal marker, through contact (issue 5's fifth task).

What is checked:

- the task file matches the scene: its target is the ``goal`` site's (x, y) at the height where
  the box centre rests, the bounds are the ctrlrange, the start is contact-free in MuJoCo and the
  box starts 0.32 m from the goal;
- gradient-based trajectory optimisation (Adam through hybridwam's compliant contact) solves the
  task in hybridwam: the box is pushed from 0.32 m to within the 0.04 m tolerance, which it can
  only reach through the arm-box contact, so the gradients went through contact;
Not checked here (open, see issue 5): success in MuJoCo itself. Measured in this session, with
the plan replayed open-loop and with re-planning against MuJoCo's state at every control step
(receding horizon, gradient-based, warm-started from the plan), neither reaches the tolerance
reliably yet. Open-loop, the box ends 0.1-0.3 m from the goal (plans from different seeds). Closed-loop,
  1 of 4 seeds succeeds; the others end 0.04-0.07 m away. The cause is physical. Pushing with
  the fingertip is unstable in yaw and slip. MuJoCo's soft friction creeps under loads just below
  mu m g, where hybridwam's box sticks: 1.45 N on the 0.3 kg box moves it 24 mm in 1 s in MuJoCo
  and 5 mm in hybridwam. Once the box passes the goal radially, the arm (reach 0.55 m + 0.03 m
  fingertip) cannot get behind it to push it back.
"""
from __future__ import annotations

import mujoco
import numpy as np
import pytest

from hybridwam.planning import optimize_trajectory
from hybridwam.tasks import Task

TOL = 0.04  # m, the task's success.site_tol for box_center


@pytest.fixture(scope="module")
def task() -> Task:
    return Task.from_yaml("pusher_push")


@pytest.fixture(scope="module")
def world(sim, task):
    return sim(task.scene_path)[1]


@pytest.fixture(scope="module")
def plan(world, task):
    """The task's own planner settings (Adam, 300 iterations, 8 restarts), step size decaying to
    5% along the run (``lr_final`` is no YAML key yet)."""
    return optimize_trajectory(world, task, seed=0, progress=False, lr_final=0.05)


def planar_goal_distance(mj: mujoco.MjModel, qpos: np.ndarray) -> float:
    """Distance (m) in the table plane between the box_center and goal sites at qpos [nq]."""
    d = mujoco.MjData(mj)
    d.qpos[:] = qpos
    mujoco.mj_kinematics(mj, d)
    return float(np.linalg.norm(d.site("box_center").xpos[:2] - d.site("goal").xpos[:2]))


def test_task_matches_the_scene(task):
    mj = task.mj
    d = mujoco.MjData(mj)
    mujoco.mj_forward(mj, d)
    (box_term,) = [s for s in task.sites if s.site == "box_center"]
    # target: the goal marker's (x, y), at the height where the box centre rests
    np.testing.assert_allclose(box_term.target[:2], d.site("goal").xpos[:2], atol=1e-9)
    assert box_term.target[2] == pytest.approx(float(mj.geom("box_geom").size[2]))
    assert task.site_tol == {"box_center": TOL}
    # bounds: the ctrlrange (+-2 N m); 2.5 s of 0.02 s control steps
    np.testing.assert_array_equal(task.ctrl_low.numpy(), mj.actuator_ctrlrange[:, 0])
    np.testing.assert_array_equal(task.ctrl_high.numpy(), mj.actuator_ctrlrange[:, 1])
    assert task.duration == pytest.approx(2.5) and task.repeat == 4
    # start: the box where the scene puts it, 0.32 m from the goal, and nothing touches the box
    q0 = task.qpos0.numpy()
    np.testing.assert_array_equal(q0[2:], mj.qpos0[2:])
    assert planar_goal_distance(mj, q0) > 0.3
    d.qpos[:] = q0
    mujoco.mj_forward(mj, d)
    box = mj.geom("box_geom").id
    fromto = np.zeros(6)
    for g in ("upper_link", "fore_link", "fingertip_geom"):
        assert mujoco.mj_geomDistance(mj, d, mj.geom(g).id, box, 1.0, fromto) > 0.01, g
    assert not bool(task.success(task.qpos0, task.qvel0))


# ---- gradient-based optimisation through contact ---------------------------------------------------------
def test_gradient_plan_pushes_the_box_to_the_goal_in_hybridwam(task, plan):
    assert plan.optimizer == "adam" and plan.iters == task.planner["iters"]
    assert plan.actions.shape == (task.horizon, task.nu)
    lo, hi = task.ctrl_low.to(plan.actions), task.ctrl_high.to(plan.actions)
    assert bool(((plan.actions >= lo) & (plan.actions <= hi)).all())
    assert plan.cost < 0.2 * plan.cost_history[0]
    # the box moved 0.3 m, which only the arm (through contact) can do, and ends on the goal
    assert plan.success, plan.summary()
    assert float(plan.errors["site:box_center"]) < TOL
    assert planar_goal_distance(task.mj, plan.rollout.qpos[-1].double().numpy()) < TOL
