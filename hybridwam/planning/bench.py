"""``hybridwam bench plan``: gradient-based trajectory optimisation vs CEM at equal wall time.

Each method gets the same wall-clock budget on the same task, world model and machine (kernel
load / compile and a warm-up rollout are done before the clock starts); the row reports the best
cost it reached, how many iterations that took, and whether the plan, replayed open-loop in
MuJoCo itself, solves the task. Rows are flat dicts for ``hybridwam.bench.write_report``.
"""
from __future__ import annotations

import argparse

import torch

#: Tasks and methods of the suite (``hybridwam bench`` without a name).
SUITE_TASKS = ("cartpole_swingup", "acrobot_swingup", "double_pendulum_reach")
#: Tasks planned through a hybrid model calibrated from the shipped logs of their scene
#: (:func:`calibrated_world`) instead of the physics alone.
CALIBRATED_TASKS = ("double_pendulum_reach",)
SUITE_METHODS = ("adam", "lbfgs", "cem")
SUITE_SECONDS = 20.0


def bench_plan(tasks=SUITE_TASKS, seconds: float = SUITE_SECONDS, methods=SUITE_METHODS, device: str | None = "cpu",
               seed: int = 0, restarts: int | None = None, population: int | None = None,
               progress: bool = False, verbose: bool = True) -> list[dict]:
    """Run every method on every task for ``seconds`` of wall time each; returns one row per run.

    tasks: shipped task names or YAML paths (a single string is one task). methods: any of
    "adam", "lbfgs", "cem". restarts / population: as :func:`optimize_trajectory` (default: the
    task's planner settings, CEM 256 samples). Row keys: task, world, method, budget_s, seconds,
    iters, worlds_per_iter, cost, initial_cost, success_model, success_mujoco, final_error (the
    task's final-state error line in MuJoCo). Tasks of CALIBRATED_TASKS plan through the hybrid
    model calibrated from their scene's shipped logs (calibrated before the clocks start).
    """
    if isinstance(tasks, str):
        tasks = (tasks,)
    if isinstance(methods, str):
        methods = (methods,)
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 < seconds < float("inf"):
        raise ValueError(f"seconds must be a positive number (the wall-clock budget per method), got {seconds!r}")
    return _bench_plan(tasks, seconds, methods, device, seed, restarts, population, progress, verbose)


def _bench_plan(tasks, seconds, methods, device, seed, restarts, population, progress, verbose) -> list[dict]:
    from ..demo import replay_mujoco
    from ..model import load_model
    from ..physics import Physics
    from ..tasks import Task
    from .optimize import optimize_trajectory

    rows = []
    for name in tasks:
        task = Task.from_yaml(name)
        if task.name in CALIBRATED_TASKS:
            world, kind = calibrated_world(device, seed, verbose)
            model = world.model
        else:
            model = load_model(task.scene_path, device=device)
            world, kind = Physics(model, verbose=False), "physics"
        # warm-up outside the clock: kernel load, forward and backward once
        q, v = task.initial_state(2, model.dtype, model.device)
        u = torch.zeros(2, task.steps, task.nu, dtype=model.dtype, device=model.device, requires_grad=True)
        world.rollout(q, v, u).qpos.sum().backward()
        for method in methods:
            res = optimize_trajectory(world, task, iters=10**9, optimizer=method, restarts=restarts, seed=seed,
                                      population=population, time_budget=seconds, progress=progress)
            mq, mv = replay_mujoco(task.mj, task.qpos0.numpy(), task.qvel0.numpy(),
                                   res.ctrls.detach().double().cpu().numpy())
            qe, ve = torch.as_tensor(mq[-1]), torch.as_tensor(mv[-1])
            worlds = (population or task.planner.get("population", 256)) if method == "cem" else \
                int(res.restart_costs.numel())
            row = {"task": task.name, "world": kind, "method": method, "budget_s": float(seconds),
                   "seconds": round(res.wall_time, 2), "iters": res.iters, "worlds_per_iter": worlds,
                   "initial_cost": round(res.cost_history[0], 4), "cost": round(res.cost, 4),
                   "success_model": res.success, "success_mujoco": bool(task.success(qe, ve)),
                   "final_error": task.describe_errors(qe, ve), "device": model.device}
            rows.append(row)
            if verbose:
                print(f"plan {task.name} {method}: {row['iters']} iterations in {row['seconds']:.1f} s, cost "
                      f"{row['initial_cost']:.4g} -> {row['cost']:.4g}, MuJoCo replay "
                      f"{'solved' if row['success_mujoco'] else 'not solved'}", flush=True)
    return rows


def calibrated_world(device=None, seed: int = 0, verbose: bool = True):
    """(HybridModel, description): the shipped double pendulum calibrated from its shipped logs
    (``hybridwam calibrate``'s DFKI layout, stages identify and residual, 64x64 force residual),
    in a temporary folder; the residual runs inside the step."""
    import os
    import tempfile
    import time

    from ..calibration.cli import run_calibrate_cli
    from ..hybrid import HybridModel
    from ..logs import data_path

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        run_calibrate_cli(str(data_path("double_pendulum")), "double_pendulum", os.path.join(out, "ckpt"),
                          device=device or "cpu", seed=seed, progress=False, print_fn=None,
                          stages=("identify", "residual"), plots=False)
        world = HybridModel.load(os.path.join(out, "ckpt"), device=device or "cpu")
    if verbose:
        print(f"plan: calibrated the double pendulum from its shipped logs in {time.perf_counter() - t0:.0f} s",
              flush=True)
    return world, "calibrated hybrid (identified physics + 64x64 residual)"


def plan_table(rows: list[dict]) -> str:
    """Markdown table of :func:`bench_plan` rows."""
    lines = ["| task | world | method | budget [s] | iterations | worlds / iteration | first cost | final cost | "
             "solved in the world model | solved in MuJoCo |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---|"]
    for r in rows:
        lines.append(f"| {r['task']} | {r.get('world', 'physics')} | {r['method']} | {r['budget_s']:g} "
                     f"| {r['iters']} | {r['worlds_per_iter']} | "
                     f"{r['initial_cost']:.4g} | {r['cost']:.4g} | {'yes' if r['success_model'] else 'no'} "
                     f"| {'yes' if r['success_mujoco'] else 'no'} |")
    return "\n".join(lines)


# ---- adapters for hybridwam.bench.BENCHMARKS -----------------------------------------------------
def plan_args(p: argparse.ArgumentParser):
    """Options of ``hybridwam bench plan``."""
    p.add_argument("--task", nargs="+", default=list(SUITE_TASKS), metavar="T",
                   help=f"task names or YAML paths (default: {' '.join(SUITE_TASKS)})")
    from ..bench import positive_float

    p.add_argument("--seconds", type=positive_float, default=SUITE_SECONDS, metavar="S",
                   help=f"wall-clock budget per method and task (default: {SUITE_SECONDS:g})")
    p.add_argument("--methods", nargs="+", default=list(SUITE_METHODS), choices=("adam", "lbfgs", "cem"),
                   help="optimisers to compare (default: adam lbfgs cem)")


def plan_run(args) -> list[dict]:
    """``hybridwam bench plan`` from parsed arguments (uses args.device / args.seed when present)."""
    return bench_plan(args.task, seconds=args.seconds, methods=args.methods,
                      device=getattr(args, "device", None) or "cpu", seed=getattr(args, "seed", 0))


def plan_suite(args) -> list[dict]:
    """The suite's default run (cartpole and acrobot swing-up, Adam, L-BFGS and CEM, 20 s each)."""
    return bench_plan(SUITE_TASKS, seconds=SUITE_SECONDS, methods=SUITE_METHODS,
                      device=getattr(args, "device", None) or "cpu", seed=getattr(args, "seed", 0))
