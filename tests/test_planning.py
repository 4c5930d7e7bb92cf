"""Trajectory optimisation and MPC: shipped tasks are solved in MuJoCo itself, restarts and CEM
populations are single batched rollouts, bounds hold, MPC closes the loop on a plant whose masses
differ from the model's by 20%."""
from __future__ import annotations

import math

import mujoco
import numpy as np
import pytest
import torch

from hybridwam.demo import replay_mujoco
from hybridwam.planning import MPC, bench_plan, optimize_trajectory, plan_table, run_mpc_mujoco, scaled_mass_model
from hybridwam.planning.optimize import knot_matrix, shift_plan
from hybridwam.tasks import Task

_TASKS: dict[str, Task] = {}


def task_and_world(sim, name):
    if name not in _TASKS:
        _TASKS[name] = Task.from_yaml(name)
    task = _TASKS[name]
    _, physics = sim(task.scene_path)
    return task, physics


class RecordingWorld:
    """Delegates to a world model and records (batch, steps, grad enabled) of every rollout."""

    def __init__(self, world):
        self.world, self.calls = world, []
        self.model = world.model

    nq = property(lambda self: self.world.nq)
    nv = property(lambda self: self.world.nv)
    nu = property(lambda self: self.world.nu)

    def step(self, qpos, qvel, ctrl):
        return self.world.step(qpos, qvel, ctrl)

    def rollout(self, qpos0, qvel0, ctrls):
        self.calls.append((ctrls.shape[0], ctrls.shape[1], torch.is_grad_enabled() and ctrls.requires_grad))
        return self.world.rollout(qpos0, qvel0, ctrls)


def mujoco_final(task, ctrls, mj_model=None):
    q, v = replay_mujoco(mj_model or task.mj, task.qpos0.numpy(), task.qvel0.numpy(),
                         torch.as_tensor(ctrls).double().numpy())
    return torch.as_tensor(q), torch.as_tensor(v)


# ---- every shipped task is solved in MuJoCo itself -------------------------------------------------
@pytest.mark.parametrize("name, iters", [
    ("pendulum_swingup", 100),
    ("cartpole_swingup", 100),
    ("reacher_target", None),   # the task's planner settings (100 iterations, 4 restarts)
    ("acrobot_swingup", None),  # 300 iterations, 8 restarts
    ("double_pendulum_reach", None),  # 200 iterations, 4 restarts
])
def test_task_solved_open_loop_in_mujoco(sim, name, iters):
    """Optimise through hybridwam, replay the actions open-loop with ``mj_step`` on the scene's
    own MjModel, and require the task's success tolerance on MuJoCo's final state.

    The acrobot is verified open-loop as well (not with MPC): its cost concentrates on the final
    states (terminal term over the last 0.1 s) and the 5 s replay stays within tolerance, since
    one hybridwam step equals MuJoCo's to float32 rounding.
    """
    task, world = task_and_world(sim, name)
    res = optimize_trajectory(world, task, iters=iters, seed=0, progress=False)
    H = task.horizon
    assert res.actions.shape == (H, task.nu)
    assert res.ctrls.shape == (task.steps, task.nu)
    assert res.rollout.qpos.shape == (task.steps + 1, task.nq)
    assert bool((res.actions >= task.ctrl_low.to(res.actions)).all()) and \
        bool((res.actions <= task.ctrl_high.to(res.actions)).all())
    assert len(res.cost_history) == res.iters == (iters or task.planner["iters"])
    assert res.cost <= min(res.cost_history) + 1e-9 and res.cost < 0.2 * res.cost_history[0]
    assert res.success, res.summary()
    q, v = mujoco_final(task, res.ctrls)
    assert bool(task.success(q[-1], v[-1])), f"{name} in MuJoCo: {task.describe_errors(q[-1], v[-1])}"
    # the plan and MuJoCo's replay agree along the whole trajectory
    assert float((q - res.rollout.qpos.double()).abs().max()) < 1e-2


# ---- optimiser mechanics ----------------------------------------------------------------------------
def test_restarts_are_one_batched_gradient_rollout_per_iteration(sim, capsys):
    task, world = task_and_world(sim, "pendulum_swingup")
    rec = RecordingWorld(world)
    res = optimize_trajectory(rec, task, iters=6, restarts=5, progress=False)
    assert rec.calls == [(5, task.steps, True)] * 6
    assert res.restart_costs.shape == (5,) and len(res.cost_history) == 6
    cap = capsys.readouterr()
    assert cap.err == "" and cap.out == ""  # progress=False is silent


def test_progress_bar(sim, capsys):
    task, world = task_and_world(sim, "pendulum_swingup")
    optimize_trajectory(world, task, iters=3, restarts=2, progress=True)
    assert "adam pendulum_swingup" in capsys.readouterr().err


def test_cem_uses_batched_no_grad_rollouts_and_improves(sim):
    task, world = task_and_world(sim, "pendulum_swingup")
    rec = RecordingWorld(world)
    res = optimize_trajectory(rec, task, iters=15, optimizer="cem", population=128, progress=False)
    assert rec.calls == [(128, task.steps, False)] * 15
    assert res.cost < 0.5 * res.cost_history[0]
    lo, hi = task.ctrl_low.to(res.actions), task.ctrl_high.to(res.actions)
    assert bool(((res.actions >= lo) & (res.actions <= hi)).all())
    # several independent distributions share one population rollout
    rec.calls.clear()
    res = optimize_trajectory(rec, task, iters=2, optimizer="cem", population=128, restarts=4, progress=False)
    assert rec.calls == [(128, task.steps, False)] * 2 and res.restart_costs.shape == (4,)


def test_lbfgs_improves_within_bounds(sim):
    task, world = task_and_world(sim, "cartpole_swingup")
    res = optimize_trajectory(world, task, iters=15, optimizer="lbfgs", restarts=4, progress=False)
    assert res.cost < 0.3 * res.cost_history[0]
    assert float(res.actions.abs().max()) <= 30.0
    assert res.restart_costs.shape == (4,)


def test_clip_bounds_warm_start_and_time_budget(sim):
    task, world = task_and_world(sim, "cartpole_swingup")
    first = optimize_trajectory(world, task, iters=20, restarts=4, bounds="clip", lr=0.1, progress=False)
    assert float(first.actions.abs().max()) <= 30.0 + 1e-5
    # restart 0 of a warm start begins exactly at the given actions
    rec = RecordingWorld(world)
    warm = optimize_trajectory(rec, task, iters=1, restarts=3, init=first.actions, bounds="clip", progress=False)
    assert warm.cost_history[0] == pytest.approx(first.cost, rel=1e-4)
    # a time budget stops early
    res = optimize_trajectory(world, task, iters=100_000, restarts=2, time_budget=0.5, progress=False)
    assert res.iters < 100_000 and res.wall_time < 5.0
    with pytest.raises(ValueError, match="optimizer"):
        optimize_trajectory(world, task, iters=1, optimizer="sgd")
    with pytest.raises(ValueError, match="init"):
        optimize_trajectory(world, task, iters=1, init=torch.zeros(3, 1))


def test_knot_matrix_interpolates_linearly():
    W = knot_matrix(13, 4)  # knots at control steps 0, 4, 8, 12
    np.testing.assert_allclose(W.sum(1).numpy(), 1.0, atol=1e-12)
    at = torch.tensor([0.0, 4.0, 8.0, 12.0], dtype=torch.float64)
    f = lambda t: 0.3 - 2.0 * t  # noqa: E731  (linear: reproduced exactly)
    np.testing.assert_allclose((W @ f(at)).numpy(), f(torch.arange(13.0, dtype=torch.float64)).numpy(), atol=1e-12)
    np.testing.assert_allclose(W[[0, 4, 8, 12]].numpy(), np.eye(4), atol=1e-12)
    for bad in (1, 14):
        with pytest.raises(ValueError, match="knots"):
            knot_matrix(13, bad)


def test_knots_give_piecewise_linear_plans_and_a_constant_init(sim):
    task, world = task_and_world(sim, "pendulum_swingup")
    hold = torch.tensor([0.3])
    res = optimize_trajectory(world, task, iters=30, restarts=2, knots=6, init=hold, lr=0.1, progress=False)
    assert res.cost < res.cost_history[0]
    # tanh-squashed interpolation: the pre-squash values are linear between knots, so the
    # second difference of atanh(ctrl / bound) vanishes away from the 6 knots
    lo, hi = float(task.ctrl_low[0]), float(task.ctrl_high[0])
    z = torch.atanh(((res.actions[:, 0].double() - (lo + hi) / 2) / ((hi - lo) / 2)).clamp(-0.999999, 0.999999))
    at = torch.linspace(0, task.horizon - 1, 6)
    inner = [t for t in range(1, task.horizon - 1) if bool((at - t).abs().min() >= 1.0)]
    d2 = (z[2:] - 2 * z[1:-1] + z[:-2])[[t - 1 for t in inner]]
    assert float(d2.abs().max()) < 1e-4 * float(z.abs().max())
    # a constant init [nu]: restart 0 starts by holding it
    rec = RecordingWorld(world)
    first = optimize_trajectory(rec, task, iters=1, restarts=2, knots=6, init=hold, progress=False)
    cost0 = task.cost(*_rollout_states(world, task, hold.expand(task.horizon, 1)), hold.expand(task.horizon, 1)[None])
    assert float(first.restart_costs[0]) == pytest.approx(float(cost0), rel=1e-5)
    with pytest.raises(ValueError, match="init"):
        optimize_trajectory(world, task, iters=1, init=torch.zeros(2))
    # CEM samples the knots too: its plan is piecewise linear in ctrl (projection keeps the knots
    # inside the bounds, so the interpolation never clips)
    cem = optimize_trajectory(world, task, iters=3, optimizer="cem", population=16, knots=6, progress=False)
    u = cem.actions[:, 0].double()
    d2 = (u[2:] - 2 * u[1:-1] + u[:-2])[[t - 1 for t in inner]]
    assert cem.actions.shape == (task.horizon, 1) and float(d2.abs().max()) < 1e-5


def _rollout_states(world, task, actions):
    tr = world.rollout(task.qpos0[None].float(), task.qvel0[None].float(), task.expand(actions.float())[None])
    return tr.qpos, tr.qvel


def test_task_from_other_scene_is_rejected(sim):
    task, _ = task_and_world(sim, "reacher_target")
    _, cartpole = sim(Task.from_yaml("cartpole_swingup").scene_path)
    with pytest.raises(ValueError, match="nq=3"):
        optimize_trajectory(cartpole, task, iters=1, progress=False)


def test_hybrid_model_is_a_world(sim):
    """Any hw.WorldModel plans: a HybridModel with a (zero-initialised) residual network."""
    from hybridwam.hybrid import HybridModel
    from hybridwam.residual import Residual

    task, physics = task_and_world(sim, "pendulum_swingup")
    short = task.with_horizon(60)
    world = HybridModel(physics, Residual(physics.model, hidden=(16,)))
    res = optimize_trajectory(world, short, iters=4, restarts=2, progress=False)
    ref = optimize_trajectory(physics, short, iters=4, restarts=2, progress=False)
    assert res.cost == pytest.approx(ref.cost, rel=1e-3)  # zero residual: the same problem


# ---- MPC -----------------------------------------------------------------------------------------------
def test_shift_plan():
    x = torch.arange(5.0).reshape(5, 1)
    assert shift_plan(x, 2)[:, 0].tolist() == [2, 3, 4, 4, 4]


def test_mpc_warm_start_shifts_the_plan(sim):
    task, world = task_and_world(sim, "pendulum_swingup")
    init = torch.linspace(-1, 1, 30).reshape(30, 1).double()
    mpc = MPC(world, task, horizon=20, iters_per_step=1, init=init, lr=1e-9)
    torch.testing.assert_close(mpc.plan[:, 0].double(), init[:20, 0], atol=1e-4, rtol=0)
    u = mpc.act(task.qpos0.numpy(), task.qvel0.numpy())  # numpy in, numpy out
    assert isinstance(u, np.ndarray) and u.shape == (1,) and u[0] == pytest.approx(-1.0, abs=1e-4)
    # shifted by one step, and the tail comes from init
    torch.testing.assert_close(mpc.plan[:, 0].double(), init[1:21, 0], atol=1e-4, rtol=0)
    u = mpc.act(task.qpos0.float(), task.qvel0.float())  # tensor in, tensor out
    assert isinstance(u, torch.Tensor)


def test_mpc_with_a_fixed_end_shrinks_its_window_to_the_task_end(sim):
    """fixed_end: the window slides while the task's end is further away, then ends there and
    shrinks (never below one step); reset() gives back the full window. With a vanishing step
    size the plan is the init's remaining actions throughout."""
    task, world = task_and_world(sim, "pendulum_swingup")
    task = task.with_horizon(30)
    init = torch.linspace(-1, 1, 30).reshape(30, 1).double()
    mpc = MPC(world, task, horizon=20, iters_per_step=1, init=init, lr=1e-9, fixed_end=True)
    q, v = task.qpos0.numpy(), task.qvel0.numpy()
    lengths = []
    for k in range(32):
        u = mpc.act(q, v)
        assert u[0] == pytest.approx(init[min(k, 29), 0].item(), abs=1e-4)
        lengths.append(mpc.plan.shape[0])
        torch.testing.assert_close(mpc.plan[:, 0].double(), init[k + 1:k + 1 + lengths[-1], 0]
                                   if k < 29 else init[-1:, 0], atol=1e-4, rtol=0)
    # 20 steps while the end is 20 or more steps away, then 19, 18, ..., 1, and 1 after the end
    assert lengths == [20] * 10 + list(range(19, 0, -1)) + [1] * 3
    mpc.reset(init)
    assert mpc.plan.shape == (20, 1) and mpc.horizon == 20
    # without fixed_end the window keeps its length past the task's end
    mpc = MPC(world, task, horizon=20, iters_per_step=1, init=init, lr=1e-9)
    for _ in range(25):
        mpc.act(q, v)
    assert mpc.plan.shape == (20, 1)


def test_mpc_closes_the_loop_on_a_heavier_mujoco_plant(sim):
    """Cartpole swing-up and balance on a MuJoCo plant whose bodies are 20% heavier (masses and
    inertias x 1.2) than hybridwam's model. The offline plan, replayed open-loop on that plant,
    misses the goal; MPC (1 s window, 2 Adam iterations per 10 ms step, warm-started from the
    offline plan) swings the pole up and keeps it upright for the last second."""
    task, world = task_and_world(sim, "cartpole_swingup")
    plan = optimize_trajectory(world, task, iters=100, seed=0, progress=False)
    heavy = scaled_mass_model(task.mj, 1.2)
    assert heavy.body_mass[1] == pytest.approx(1.2 * task.mj.body_mass[1])
    q, v = mujoco_final(task, plan.ctrls, heavy)
    assert not bool(task.success(q[-1], v[-1]))  # open loop fails on the heavier plant

    mpc = MPC(world, task, horizon=80, iters_per_step=2, init=plan.actions)
    out = run_mpc_mujoco(mpc, heavy, seconds=4.0)
    assert out["qpos"].shape == (401, task.nq) and out["ctrl"].shape == (400, task.nu)
    Q, V = torch.as_tensor(out["qpos"]), torch.as_tensor(out["qvel"])
    assert out["success"], task.describe_errors(Q[-1], V[-1])
    # balanced through the whole last second, not only at the end
    pole_err = task.errors(Q[-100:], V[-100:])["qpos"][:, 1]
    assert float(pole_err.max()) < 0.1
    assert float(np.abs(out["ctrl"]).max()) <= 30.0
    assert len(mpc.solve_times) == 400


# ---- benchmark -----------------------------------------------------------------------------------------
def test_bench_plan_rows():
    threads = torch.get_num_threads()
    rows = bench_plan("pendulum_swingup", seconds=0.5, methods=("adam", "cem"), verbose=False)
    assert torch.get_num_threads() == threads  # restored
    assert [r["method"] for r in rows] == ["adam", "cem"]
    for r in rows:
        assert r["task"] == "pendulum_swingup" and r["iters"] >= 1 and math.isfinite(r["cost"])
        assert r["seconds"] < 3.0 and isinstance(r["success_mujoco"], bool)
    assert "| pendulum_swingup | physics | cem |" in plan_table(rows)


def test_mujoco_plant_helpers():
    task = Task.from_yaml("pendulum_swingup")
    heavy = scaled_mass_model(task.mj, 1.2)
    np.testing.assert_allclose(heavy.body_inertia, 1.2 * task.mj.body_inertia)
    assert task.mj.body_mass[1] != heavy.body_mass[1]  # a copy: the original is untouched
    d = mujoco.MjData(heavy)
    mujoco.mj_step(heavy, d)
