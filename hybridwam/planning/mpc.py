"""``hw.MPC``: receding-horizon control through a world model, with warm starts.

Each :meth:`MPC.act` call sets the measured state as the start of the plan, improves the current
plan by a few optimiser iterations, returns its first action and shifts the plan (and the Adam
moments) by one control step, so the next call starts from where this one left off. The plant
can be anything that gives back (qpos, qvel): MuJoCo itself, hardware, another world model::

    mpc = hw.MPC(world, task, horizon=100, iters_per_step=5, init=result.actions)
    for t in range(steps):                       # one call per control step (task.dt)
        d.ctrl[:] = mpc.act(d.qpos, d.qvel)
        for _ in range(task.repeat):
            mujoco.mj_step(m, d)
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch

from ..tasks import Task
from .optimize import Adam, Problem, colored_noise, shift_plan, torch_threads


class MPC:
    """Receding-horizon controller for ``task`` through ``world`` (any ``hw.WorldModel``).

    horizon: planning window in control steps (default: the task's horizon); the task's running,
    control and terminal costs are applied over the window (the terminal term scaled by
    ``terminal_scale``). iters_per_step: optimiser iterations per :meth:`act` (``warmup_iters``
    on the first call). optimizer: "adam" (gradients through the world model, ``restarts`` = 1
    world) or "cem" (``population`` sampled worlds per no-grad rollout). init: actions [N, nu]
    to start from, e.g. an offline plan (``PlanResult.actions``); when the plan shifts, the
    actions after the window are taken from ``init`` while it lasts (then the last is repeated).
    Default: the task's ``planner.init`` action held, else the middle of the bounds.
    lr: Adam's step size (default: where the task's offline schedule ends, ``planner.lr`` x
    ``planner.lr_final``: MPC warm-started from a plan continues that optimisation).
    fixed_end: the task ends at its horizon (reach a goal by then, as pushing does) instead of
    going on (balance): the window stops at the task's end and shrinks towards it (never below
    one step), so the terminal cost stays on the task's final time. A window that slides past it
    asks for the goal one window ahead, again at every step, and pushes too hard.
    threads: torch intra-op threads while solving on the CPU (see ``optimize.torch_threads``).
    """

    def __init__(self, world, task: Task | str, horizon: int | None = None, iters_per_step: int = 5,
                 optimizer: str = "adam", lr: float | None = None, init=None, warmup_iters: int = 0,
                 terminal_scale: float = 1.0, bounds: str = "tanh", population: int = 128,
                 init_std: float = 0.3, seed: int = 0, threads: int | None = 1, fixed_end: bool = False):
        if isinstance(task, str):
            task = Task.from_yaml(task)
        if optimizer not in ("adam", "cem"):
            raise ValueError(f"MPC optimizer must be 'adam' or 'cem', got {optimizer!r}")
        if iters_per_step < 1:
            raise ValueError(f"iters_per_step must be positive, got {iters_per_step}")
        self.full_task = task
        self.task = task.with_horizon(horizon or task.horizon)
        self.horizon = self.task.horizon
        self.optimizer = optimizer
        self.iters_per_step = iters_per_step
        self.warmup_iters = warmup_iters
        self.terminal_scale = terminal_scale
        self.population = population
        self.init_std = init_std
        self.threads = threads
        pl = task.planner
        self.lr = lr if lr is not None else (pl.get("lr", 0.05) * pl.get("lr_final", 1.0)
                                             if pl.get("optimizer", "adam") == "adam" else 0.05)
        self.fixed_end = fixed_end
        self.window = self.horizon  # the window's length while the task's end is further away
        self.problem = Problem(world, self.task, bounds="clip" if optimizer == "cem" else bounds)
        self.gen = torch.Generator().manual_seed(seed)
        if init is None and pl.get("init") is not None:
            init = torch.as_tensor(pl["init"], dtype=torch.float64)[None]  # one action, held
        self.reset(init)

    # ---- state ---------------------------------------------------------------------------------
    def reset(self, init=None):
        """Start over from ``init`` actions [N, nu] (default: the middle of the bounds)."""
        if self.horizon != self.window:
            self._set_window(self.window)
        p, H, nu = self.problem, self.horizon, self.task.nu
        if init is None:
            self._tail = torch.zeros(0, nu, dtype=p.dtype, device=p.device)
            z = torch.zeros(H, nu, dtype=p.dtype, device=p.device)
        else:
            init = torch.as_tensor(init).to(dtype=p.dtype, device=p.device)
            if init.dim() != 2 or init.shape[1] != nu or init.shape[0] < 1:
                raise ValueError(f"init: expected actions of shape [N, {nu}], got {list(init.shape)}")
            zi = p.amap.from_ctrl(init)
            z = zi[:H] if zi.shape[0] >= H else torch.cat([zi, zi[-1:].expand(H - zi.shape[0], nu)])
            self._tail = zi[H:]
        self.z = z
        self.adam = Adam(z, self.lr)
        self.std = torch.full_like(z, self.init_std)
        self.steps = 0
        self.last_cost = math.nan
        self.solve_times: list[float] = []
        self._fit_window()

    @property
    def plan(self) -> torch.Tensor:
        """The current planned actions [horizon, nu] (what the next :meth:`act` starts from)."""
        return self.problem.amap.to_ctrl(self.z).detach()

    @property
    def repeat(self) -> int:
        """Physics steps per control step: hold each returned ctrl for this many plant steps."""
        return self.task.repeat

    # ---- control ---------------------------------------------------------------------------------
    def act(self, qpos, qvel, act=None):
        """Measured state (qpos [nq], qvel [nv]; for a world with activation states also their
        values ``act`` [na], default zero) -> ctrl [nu] for the next control step.

        Returns a numpy array for numpy input (e.g. ``mujoco.MjData`` fields), else a tensor.
        """
        as_numpy = not isinstance(qpos, torch.Tensor)
        p = self.problem
        p.set_state(torch.as_tensor(np.asarray(qpos) if as_numpy else qpos),
                    torch.as_tensor(np.asarray(qvel) if as_numpy else qvel),
                    None if act is None else torch.as_tensor(np.asarray(act) if as_numpy else act))
        t0 = time.perf_counter()
        iters = self.warmup_iters if (self.steps == 0 and self.warmup_iters) else self.iters_per_step
        with torch_threads(self.threads, p.device):
            if self.optimizer == "adam":
                self._adam(iters)
            else:
                self._cem(iters)
        self.solve_times.append(time.perf_counter() - t0)
        u0 = p.amap.to_ctrl(self.z[0]).detach()
        self._shift()
        self.steps += 1
        self._fit_window()
        return u0.cpu().double().numpy() if as_numpy else u0

    def _cost(self, z):
        cost, _, _ = self.problem.evaluate(z, terminal_scale=self.terminal_scale)
        return cost

    def _adam(self, iters):
        z = self.z
        for _ in range(iters):
            zz = z.detach()[None].requires_grad_(True)
            cost = self._cost(zz)
            (g,) = torch.autograd.grad(cost.sum(), zz)
            self.last_cost = float(cost.detach()[0])
            g = torch.nan_to_num(g[0], nan=0.0, posinf=0.0, neginf=0.0)
            z = self.problem.amap.project(self.adam.step(z, g))
        self.z = z.detach()

    def _cem(self, iters, elite_frac=0.1, alpha=0.1, min_std=0.05):
        H, nu, P = self.horizon, self.task.nu, self.population
        n_elite = max(2, int(round(elite_frac * P)))
        mean, std = self.z, self.std.clamp_min(self.init_std * 0.5)
        for _ in range(iters):
            y = mean + std * colored_noise((P, H, nu), 2.0, self.gen, mean.dtype, mean.device)
            y[0] = mean
            y = self.problem.amap.project(y)
            with torch.no_grad():
                cost = torch.nan_to_num(self._cost(y), nan=math.inf)
            self.last_cost = float(cost.min())
            elites = y[torch.topk(cost, n_elite, largest=False).indices]
            mean = alpha * mean + (1 - alpha) * elites.mean(0)
            std = (alpha * std + (1 - alpha) * elites.std(0)).clamp_min(min_std)
        self.z, self.std = mean, std

    def _set_window(self, n: int):
        self.task = self.full_task.with_horizon(n)
        self.horizon = n
        self.problem = Problem(self.problem.world, self.task, bounds=self.problem.amap.bounds)

    def _fit_window(self):
        """With a fixed end, keep only the plan's steps up to the task's end (at least one)."""
        n = max(self.full_task.horizon - self.steps, 1)
        if self.fixed_end and n < self.horizon:
            self._set_window(n)
            self.z, self.std = self.z[:n], self.std[:n]
            self.adam.m, self.adam.v = self.adam.m[:n], self.adam.v[:n]

    def _shift(self):
        nxt = self._tail[:1]
        self._tail = self._tail[1:]
        z = shift_plan(self.z[None])[0]
        if nxt.shape[0]:
            z[-1] = nxt[0]
        self.z = z
        self.adam.shift(1)
        self.std = shift_plan(self.std[None])[0]
        self.std[-1] = self.init_std


def run_mpc_mujoco(mpc: MPC, mj_model, seconds: float, qpos0=None, qvel0=None, progress: bool = False):
    """Close the loop on a MuJoCo plant: ``mj_model`` (an ``mujoco.MjModel``, e.g. with other
    masses than the world model) from (qpos0, qvel0) (default: the task's) for ``seconds``.

    Returns a dict of numpy arrays: "qpos" [N+1, nq], "qvel" [N+1, nv], "ctrl" [N, nu] at the
    plant's physics steps, "t" [N+1] (s), and "success" (the task's test on the final state).
    """
    import mujoco

    task = mpc.full_task
    d = mujoco.MjData(mj_model)
    d.qpos[:] = (task.qpos0 if qpos0 is None else torch.as_tensor(qpos0)).double().cpu().numpy()
    d.qvel[:] = (task.qvel0 if qvel0 is None else torch.as_tensor(qvel0)).double().cpu().numpy()
    n_ctrl = int(round(seconds / task.dt))
    Q, V, U = [d.qpos.copy()], [d.qvel.copy()], []
    from tqdm import tqdm

    for _ in tqdm(range(n_ctrl), desc="MPC", disable=not progress, leave=False):
        u = mpc.act(d.qpos.copy(), d.qvel.copy(), d.act.copy() if mj_model.na else None)
        for _ in range(task.repeat):
            d.ctrl[:] = u
            mujoco.mj_step(mj_model, d)
            Q.append(d.qpos.copy())
            V.append(d.qvel.copy())
            U.append(np.array(u, dtype=np.float64))
    Q, V = np.array(Q), np.array(V)
    ok = bool(task.success(torch.as_tensor(Q[-1]), torch.as_tensor(V[-1])))
    return {"qpos": Q, "qvel": V, "ctrl": np.array(U), "t": np.arange(len(Q)) * mj_model.opt.timestep,
            "success": ok}


def scaled_mass_model(mj_model, scale: float = 1.2):
    """A copy of an ``mujoco.MjModel`` with every body's mass and inertia scaled by ``scale``
    (a consistently heavier body: same shape and centre of mass)."""
    import copy

    m2 = copy.deepcopy(mj_model)
    m2.body_mass[:] *= scale
    m2.body_inertia[:] *= scale
    return m2
