"""``hw.optimize_trajectory``: shooting over an action sequence, through any world model.

Gradient methods ("adam", "lbfgs") differentiate the task cost through ``world.rollout``; the K
restarts are K worlds of one batched rollout per iteration. The sampling baseline ("cem", an
iCEM-style cross-entropy method with temporally correlated noise) evaluates its whole population
in one no-grad batched rollout per iteration. All methods work in normalised action coordinates:
a bounded actuator's ctrl is ``mid + half * y`` with y in [-1, 1] (y = tanh(z) for the gradient
methods, or z projected onto [-1, 1] with ``bounds="clip"``); an unbounded one is ctrl = z.
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field

import torch

from ..physics import Trajectory
from ..tasks import Task

OPTIMIZERS = ("adam", "lbfgs", "cem")
DEFAULT_LR = {"adam": 0.05, "lbfgs": 1.0, "cem": 0.0}


@dataclass
class PlanResult:
    """What :func:`optimize_trajectory` found.

    ``actions`` [H, nu]: the best action sequence seen (per control step); ``ctrls`` [H * repeat, nu]:
    the same per physics step (what to feed ``mj_step`` / ``rollout``); ``rollout``: its trajectory
    in the world model (qpos [T+1, nq], qvel [T+1, nv]); ``cost``: its cost; ``cost_history``: the
    lowest cost among the restarts (or the population) at each iteration; ``time_history``: seconds
    since the start at each entry; ``success``: the task's test on the final state of ``rollout``;
    ``errors``: its final-state errors (``Task.errors``); ``restart_costs`` [K]: each restart's
    cost at the last iteration (CEM: the cost of each distribution's mean).
    """

    actions: torch.Tensor
    ctrls: torch.Tensor
    rollout: Trajectory
    cost: float
    cost_history: list[float]
    time_history: list[float]
    success: bool
    errors: dict
    restart_costs: torch.Tensor
    optimizer: str
    iters: int
    wall_time: float
    task: Task = field(repr=False)

    def summary(self) -> str:
        q, v = self.rollout.qpos[-1], self.rollout.qvel[-1]
        return (f"{self.task.name}: {self.optimizer}, {self.iters} iterations in {self.wall_time:.1f} s, "
                f"cost {self.cost:.4g}, success in the model: {self.success} "
                f"({self.task.describe_errors(q, v)})")


def world_dtype_device(world) -> tuple[torch.dtype, str]:
    """dtype and device of a world model (its ``model``), else float32 on the CPU."""
    m = getattr(world, "model", None)
    if m is not None and hasattr(m, "dtype"):
        return m.dtype, str(m.device)
    return torch.float32, "cpu"


@contextlib.contextmanager
def torch_threads(n: int | None, device: str):
    """Run the block with ``n`` torch intra-op threads on the CPU (restored afterwards).

    Planning tensors are small ([worlds, steps, n]); with two or more threads, torch's OpenMP
    regions wait for each other, and on a loaded 2-core CPU this made CEM iterations 5-8x slower
    than one thread (and were no faster when the machine was quiet). ``n=None`` or a CUDA device: unchanged.
    """
    if n is None or str(device).startswith("cuda") or torch.get_num_threads() == n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def world_na(world) -> int:
    """The activation states of a world model (a Physics' or HybridModel's model.na; 0 for worlds
    without a hybridwam Model)."""
    return int(getattr(getattr(world, "model", None), "na", 0) or 0)


def check_compatible(world, task: Task):
    for n in ("nq", "nv", "nu"):
        if int(getattr(world, n)) != int(getattr(task, n)):
            raise ValueError(f"task {task.name!r} (scene {task.scene_path}) has {n}={getattr(task, n)}, "
                             f"the world model has {n}={getattr(world, n)}")
    if task.nu == 0:
        raise ValueError(f"task {task.name!r}: the scene has no actuators, there is nothing to optimise")


class ActionMap:
    """Normalised coordinates <-> ctrl for a task: ctrl = mid + half * squash(z)."""

    def __init__(self, task: Task, dtype, device, bounds: str = "tanh"):
        if bounds not in ("tanh", "clip"):
            raise ValueError(f"bounds must be 'tanh' or 'clip', got {bounds!r}")
        lo, hi = task.ctrl_low, task.ctrl_high
        bounded = torch.isfinite(lo) & torch.isfinite(hi)
        self.bounded = bounded.to(device)
        self.mid = torch.where(bounded, (lo + hi) / 2, torch.zeros_like(lo)).to(dtype=dtype, device=device)
        self.half = torch.where(bounded, (hi - lo) / 2, torch.ones_like(lo)).to(dtype=dtype, device=device)
        self.lo, self.hi = lo.to(dtype=dtype, device=device), hi.to(dtype=dtype, device=device)
        self.bounds = bounds

    def squash(self, z: torch.Tensor) -> torch.Tensor:
        if self.bounds == "tanh":
            return torch.where(self.bounded, torch.tanh(z), z)
        return torch.where(self.bounded, z.clamp(-1, 1), z)

    def to_ctrl(self, z: torch.Tensor) -> torch.Tensor:
        return self.mid + self.half * self.squash(z)

    def from_ctrl(self, u: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_ctrl`` (ctrl clipped just inside the bounds first)."""
        y = (u.to(self.mid) - self.mid) / self.half
        if self.bounds == "tanh":
            return torch.where(self.bounded, torch.atanh(y.clamp(-0.995, 0.995)), y)
        return torch.where(self.bounded, y.clamp(-1, 1), y)

    def project(self, z: torch.Tensor) -> torch.Tensor:
        return torch.where(self.bounded, z.clamp(-1, 1), z) if self.bounds == "clip" else z


class Adam:
    """Adam on a plain tensor (state kept per element, so a plan can be shifted in time)."""

    def __init__(self, x: torch.Tensor, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.lr, self.betas, self.eps = lr, betas, eps
        self.m = torch.zeros_like(x)
        self.v = torch.zeros_like(x)
        self.t = 0

    def step(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        mhat = self.m / (1 - b1 ** self.t)
        vhat = self.v / (1 - b2 ** self.t)
        return x - self.lr * mhat / (vhat.sqrt() + self.eps)

    def shift(self, n: int = 1):
        """Advance the state by n control steps along dim -2 (the last entry is repeated)."""
        self.m = shift_plan(self.m, n)
        self.v = shift_plan(self.v, n)


def shift_plan(x: torch.Tensor, n: int = 1) -> torch.Tensor:
    """Drop the first n steps of x [..., H, nu] and repeat the last one n times at the end."""
    if n <= 0:
        return x
    n = min(n, x.shape[-2])
    return torch.cat([x[..., n:, :], x[..., -1:, :].expand(*x.shape[:-2], n, x.shape[-1])], -2)


def smooth_noise(shape: tuple[int, int, int], knots: int, generator: torch.Generator,
                 dtype=torch.float32, device="cpu") -> torch.Tensor:
    """N(0, 1) values at ``knots`` evenly spaced times, linearly interpolated to [K, H, nu]."""
    K, H, nu = shape
    knots = max(2, min(knots, H))
    v = torch.randn(K * nu, 1, knots, generator=generator, dtype=torch.float64)
    v = torch.nn.functional.interpolate(v, size=H, mode="linear", align_corners=True)
    return v.reshape(K, nu, H).transpose(1, 2).to(dtype=dtype, device=device)


def colored_noise(shape: tuple[int, int, int], beta: float, generator: torch.Generator,
                  dtype=torch.float32, device="cpu") -> torch.Tensor:
    """Unit-variance noise [N, H, nu] with power spectrum ~ 1 / f^beta along H (iCEM)."""
    N, H, nu = shape
    if beta == 0 or H < 3:
        return torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
    f = torch.fft.rfftfreq(H, dtype=torch.float64)
    f[0] = f[1]
    amp = f ** (-beta / 2)
    spec = torch.complex(torch.randn(N, nu, f.numel(), generator=generator, dtype=torch.float64),
                         torch.randn(N, nu, f.numel(), generator=generator, dtype=torch.float64)) * amp
    x = torch.fft.irfft(spec, n=H)
    x = (x - x.mean(-1, keepdim=True)) / x.std(-1, keepdim=True).clamp_min(1e-12)
    return x.transpose(1, 2).to(dtype=dtype, device=device)


def knot_matrix(horizon: int, knots: int, dtype=torch.float64, device="cpu") -> torch.Tensor:
    """[horizon, knots] weights of piecewise-linear interpolation between ``knots`` values spread
    evenly over the control steps 0 .. horizon - 1 (the first and last steps sit on knots)."""
    if not 2 <= knots <= horizon:
        raise ValueError(f"knots must be an integer from 2 to the horizon ({horizon}), got {knots!r}")
    t = torch.arange(horizon, dtype=torch.float64)
    at = torch.linspace(0, horizon - 1, knots, dtype=torch.float64)
    W = (1 - (t[:, None] - at[None, :]).abs() / (at[1] - at[0])).clamp_min(0)
    return W.to(dtype=dtype, device=device)


class Problem:
    """A task bound to a world: batched cost of normalised decision variables z [K, n, nu], with
    n = horizon (one action per control step) or n = ``knots`` (actions interpolated between them)."""

    def __init__(self, world, task: Task, bounds: str = "tanh", knots: int | None = None):
        check_compatible(world, task)
        self.world, self.task = world, task
        self.dtype, self.device = world_dtype_device(world)
        self.amap = ActionMap(task, self.dtype, self.device, bounds)
        self.W = None if knots is None else knot_matrix(task.horizon, knots, self.dtype, self.device)
        self.n = task.horizon if knots is None else knots
        self.set_state(task.qpos0, task.qvel0)

    def actions_z(self, z: torch.Tensor) -> torch.Tensor:
        """Decision variables [K, n, nu] -> per-control-step normalised actions [K, H, nu]."""
        return z if self.W is None else torch.einsum("hk,bkn->bhn", self.W, z)

    def from_actions(self, u: torch.Tensor) -> torch.Tensor:
        """Actions [H, nu] -> decision variables [n, nu] (least squares through the knots, by the
        normal equations in float64: torch.linalg.lstsq differs by an ulp from call to call on
        the CPU, and through contact an ulp grows into a different plan)."""
        z = self.amap.from_ctrl(u)
        if self.W is None:
            return z
        W = self.W.double()
        return torch.linalg.solve(W.T @ W, W.T @ z.double()).to(z.dtype)

    def set_state(self, qpos, qvel, act=None):
        """The start state: qpos [nq], qvel [nv] and, for a world with activation states (na > 0),
        their values act [na] (default zero)."""
        self.qpos0 = torch.as_tensor(qpos).to(dtype=self.dtype, device=self.device).reshape(-1)
        self.qvel0 = torch.as_tensor(qvel).to(dtype=self.dtype, device=self.device).reshape(-1)
        na = world_na(self.world)
        act = torch.zeros(na) if act is None else torch.as_tensor(act)
        if act.numel() != na:
            raise ValueError(f"act: expected {na} activation value(s) (the world's na), got {act.numel()}")
        self.act0 = act.to(dtype=self.dtype, device=self.device).reshape(-1) if na else None

    def rollout(self, actions: torch.Tensor) -> Trajectory:
        """actions [K, H, nu] -> trajectory at physics steps."""
        K = actions.shape[0]
        extra = {} if self.act0 is None else {"act0": self.act0.expand(K, -1)}
        return self.world.rollout(self.qpos0.expand(K, -1), self.qvel0.expand(K, -1), self.task.expand(actions),
                                  **extra)

    def evaluate(self, z: torch.Tensor, terminal_scale: float = 1.0):
        """z [K, n, nu] -> (cost [K], actions [K, H, nu], trajectory)."""
        u = self.amap.to_ctrl(self.actions_z(z))
        tr = self.rollout(u)
        terms = self.task.cost_terms(tr.qpos, tr.qvel, u)
        cost = terms["state"] + terms["control"] + terminal_scale * terms["terminal"]
        return cost, u, tr


class _Best:
    def __init__(self):
        self.cost = math.inf
        self.actions = None
        self.qpos = self.qvel = self.qacc = None

    def update(self, cost: torch.Tensor, u: torch.Tensor, tr) -> float:
        c = cost.detach()
        i = int(torch.argmin(torch.where(torch.isfinite(c), c, torch.full_like(c, math.inf))))
        ci = float(c[i])
        if ci < self.cost:
            self.cost = ci
            self.actions = u[i].detach().clone()
            self.qpos, self.qvel = tr.qpos[i].detach().clone(), tr.qvel[i].detach().clone()
            self.qacc = tr.qacc[i].detach().clone() if getattr(tr, "qacc", None) is not None else None
        return ci


def _init_actions(init, H: int, nu: int, dtype, device) -> torch.Tensor | None:
    """``init`` as actions [H, nu]: given per control step, or one constant action [nu]."""
    if init is None:
        return None
    init = torch.as_tensor(init).to(dtype=dtype, device=device)
    if tuple(init.shape) == (nu,):
        return init.expand(H, nu).clone()
    if tuple(init.shape) != (H, nu):
        raise ValueError(f"init: expected actions of shape [{H}, {nu}] or one action [{nu}], got {list(init.shape)}")
    return init


def _init_z(problem: Problem, K: int, H: int, init, init_std: float, gen: torch.Generator) -> torch.Tensor:
    task, n = problem.task, problem.n
    knots = min(n, max(2, int(math.ceil(H * task.dt / 0.25)) + 1))
    noise = smooth_noise((K, n, task.nu), knots, gen, problem.dtype, problem.device) * init_std
    init = _init_actions(init, H, task.nu, problem.dtype, problem.device)
    if init is None:
        return noise
    z0 = problem.from_actions(init)
    noise[0] = 0  # restart 0 starts exactly at the given actions
    return z0 + 0.3 * noise


def optimize_trajectory(world, task: Task | str, iters: int | None = None, optimizer: str | None = None,
                        restarts: int | None = None, lr: float | None = None, seed: int = 0,
                        progress: bool = True, init=None, init_std: float | None = None, bounds: str | None = None,
                        population: int | None = None, elite_frac: float = 0.1, time_budget: float | None = None,
                        qpos0=None, qvel0=None, threads: int | None = 1, lr_final: float | None = None,
                        knots: int | None = None, act0=None) -> PlanResult:
    """Optimise the task's action sequence [horizon, nu] through ``world`` (any ``hw.WorldModel``).

    optimizer: "adam" (default), "lbfgs" (both gradient-based, ``restarts`` K worlds per batched
    rollout, default K = 8) or "cem" (sampling: ``population`` worlds per no-grad rollout, default
    256, ``restarts`` independent sampling distributions sharing them, default 1). Control bounds
    are the task's: tanh squashing (``bounds="tanh"``) or projection (``bounds="clip"``, Adam only).
    ``init``: initial actions [horizon, nu], or one action [nu] held throughout (restart 0 starts
    there, the others nearby); otherwise smooth random sequences with std ``init_std`` (default
    0.5) in normalised units. ``knots``: optimise the actions at that many evenly spaced control
    steps and interpolate linearly in between (smooth plans with fewer unknowns, e.g. targets of
    position servos); default: every control step is free. ``lr``: step
    size in normalised units (Adam 0.05, L-BFGS 1). ``iters`` defaults to 200. Arguments left as
    None take the task's ``planner:`` section first, then these defaults (a given ``optimizer``
    other than the task's ignores the task's ``lr``). ``time_budget``: stop after that many
    seconds even if ``iters`` are not done. ``qpos0`` / ``qvel0``: start state (default: the
    task's), ``act0`` its activations for a world with activation states (default zero).
    ``progress``: tqdm bar on stderr. ``threads``: torch intra-op threads during the
    call on the CPU (default 1, see :func:`torch_threads`; None leaves torch's setting).
    ``lr_final``: Adam's step size decays along a cosine from ``lr`` to ``lr * lr_final`` over the
    iterations (or the time budget); the default 1.0 keeps it constant, which explored better on
    the shipped swing-ups. ``init``, ``knots`` and ``lr_final`` also come from the task's planner
    section when left as None.
    Returns a :class:`PlanResult`.
    """
    if isinstance(task, str):
        task = Task.from_yaml(task)
    pl = task.planner
    if optimizer is None:
        optimizer = pl.get("optimizer", "adam")
    same = optimizer == pl.get("optimizer", "adam")
    iters = pl.get("iters", 200) if iters is None else iters
    if restarts is None and same:
        restarts = pl.get("restarts")
    if lr is None and same:
        lr = pl.get("lr")
    init_std = pl.get("init_std", 0.5) if init_std is None else init_std
    if bounds is None:
        bounds = (pl.get("bounds") if same else None) or "tanh"
    population = pl.get("population", 256) if population is None else population
    lr_final = pl.get("lr_final", 1.0) if lr_final is None else lr_final
    knots = pl.get("knots") if knots is None else knots
    init = pl.get("init") if init is None else init
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    if optimizer == "lbfgs" and bounds != "tanh":
        raise ValueError("optimizer='lbfgs' needs smooth bounds: use bounds='tanh'")
    if iters < 1:
        raise ValueError(f"iters must be positive, got {iters}")
    K = restarts if restarts is not None else (1 if optimizer == "cem" else 8)
    if K < 1:
        raise ValueError(f"restarts must be positive, got {K}")
    problem = Problem(world, task, bounds="clip" if optimizer == "cem" else bounds, knots=knots)
    if qpos0 is not None or qvel0 is not None or act0 is not None:
        problem.set_state(task.qpos0 if qpos0 is None else qpos0, task.qvel0 if qvel0 is None else qvel0, act0)
    gen = torch.Generator().manual_seed(seed)
    H = task.horizon
    lr = DEFAULT_LR[optimizer] if lr is None else lr
    best, hist, times = _Best(), [], []
    last_costs = torch.zeros(0)

    from tqdm import tqdm

    t0 = time.perf_counter()
    done = 0

    def frac() -> float:
        """Fraction of the run done: of the iterations, or of the time budget if sooner."""
        f = done / iters
        if time_budget:
            f = max(f, (time.perf_counter() - t0) / time_budget)
        return f

    with torch_threads(threads, problem.device), \
            tqdm(total=iters, desc=f"{optimizer} {task.name}", disable=not progress, leave=False,
                 dynamic_ncols=True) as bar:
        if optimizer == "cem":
            runner = _cem(problem, K, H, iters, population, elite_frac, init, init_std, gen)
        elif optimizer == "adam":
            runner = _adam(problem, K, H, iters, lr, init, init_std, gen, frac, lr_final)
        else:
            runner = _lbfgs(problem, K, H, iters, lr, init, init_std, gen)
        for cost, u, tr, rc in runner:
            c = best.update(cost, u, tr)
            last_costs = rc
            hist.append(c)
            times.append(time.perf_counter() - t0)
            done += 1
            bar.update(1)
            bar.set_postfix(cost=f"{c:.4g}", best=f"{best.cost:.4g}", refresh=False)
            if time_budget is not None and times[-1] >= time_budget:
                break
    last_costs = last_costs.detach().cpu()
    wall = time.perf_counter() - t0
    traj = Trajectory(best.qpos, best.qvel, best.qacc if best.qacc is not None else best.qvel[1:] * 0)
    errors = {k: v.detach().cpu() for k, v in task.errors(best.qpos[-1], best.qvel[-1]).items()}
    return PlanResult(actions=best.actions, ctrls=task.expand(best.actions), rollout=traj, cost=best.cost,
                      cost_history=hist, time_history=times,
                      success=bool(task.success(best.qpos[-1], best.qvel[-1])), errors=errors,
                      restart_costs=last_costs, optimizer=optimizer, iters=done, wall_time=wall, task=task)


def cosine_lr(lr: float, final: float, frac: float) -> float:
    """A step size along a half cosine from ``lr`` (frac = 0) down to ``lr * final`` (frac >= 1);
    the planners' Adam (``lr_final``) and calibration's epochs use it."""
    return lr * (final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


# ---- methods: generators of (cost [N], actions [N, H, nu], trajectory) per iteration ------------
def _adam(problem: Problem, K, H, iters, lr, init, init_std, gen, frac=None, lr_final: float = 1.0):
    z = _init_z(problem, K, H, init, init_std, gen)
    opt = Adam(z, lr)
    for _ in range(iters):
        if frac is not None and lr_final != 1.0:  # cosine decay from lr to lr * lr_final
            opt.lr = cosine_lr(lr, lr_final, frac())
        zz = z.detach().requires_grad_(True)
        cost, u, tr = problem.evaluate(zz)
        (g,) = torch.autograd.grad(cost.sum(), zz)
        yield cost, u, tr, cost
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)
        z = problem.amap.project(opt.step(z, g))


def _lbfgs(problem: Problem, K, H, iters, lr, init, init_std, gen, memory: int = 10, max_ls: int = 8,
           c1: float = 1e-4, first_step: float = 0.3):
    """Batched L-BFGS: each restart has its own curvature memory and backtracking (Armijo) line
    search; every trial step of every restart is evaluated in one batched rollout with gradients."""
    z = _init_z(problem, K, H, init, init_std, gen).reshape(K, -1)
    shape = (K, problem.n, problem.task.nu)

    def fg(x):
        xx = x.detach().reshape(shape).requires_grad_(True)
        cost, u, tr = problem.evaluate(xx)
        (g,) = torch.autograd.grad(cost.sum(), xx)
        g = torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0).reshape(K, -1)
        return cost.detach(), g, (cost, u, tr)

    f, g, ev = fg(z)
    step0 = torch.ones(K, dtype=z.dtype, device=z.device)
    S, Y, R = [], [], []  # pairs [K, N] and rho [K] (0 where a pair was rejected)
    for _ in range(iters):
        evals = [ev]
        # two-loop recursion, batched over restarts
        q = g.clone()
        alphas = []
        for s_, y_, r_ in reversed(list(zip(S, Y, R, strict=True))):
            a = r_ * (s_ * q).sum(-1)
            q -= a[:, None] * y_
            alphas.append(a)
        gamma = torch.ones(K, dtype=z.dtype, device=z.device)
        have = torch.zeros(K, dtype=torch.bool, device=z.device)
        for s_, y_, r_ in zip(S, Y, R, strict=True):  # newest valid pair sets the initial scale
            ok = r_ > 0
            gamma = torch.where(ok, (s_ * y_).sum(-1) / (y_ * y_).sum(-1).clamp_min(1e-30), gamma)
            have |= ok
        first = first_step * lr / g.abs().amax(-1).clamp_min(1e-12)
        q = q * torch.where(have, gamma, first)[:, None]
        for (s_, y_, r_), a in zip(zip(S, Y, R, strict=True), reversed(alphas), strict=True):
            b = r_ * (y_ * q).sum(-1)
            q += (a - b)[:, None] * s_
        d = -q
        slope = (g * d).sum(-1)
        bad = slope >= 0  # not a descent direction: fall back to steepest descent
        d = torch.where(bad[:, None], -g * first[:, None], d)
        slope = (g * d).sum(-1)
        # backtracking line search, all restarts in one rollout per trial; each restart starts
        # from twice its last accepted step (at most 1), or below its last failed trial
        step = step0.clone()
        done = torch.zeros(K, dtype=torch.bool, device=z.device)
        z_new, f_new, g_new = z.clone(), f.clone(), g.clone()
        for _ls in range(max_ls):
            trial = torch.where(done[:, None], z_new, z + step[:, None] * d)
            ft, gt, ev = fg(trial)
            evals.append(ev)
            acc = ~done & torch.isfinite(ft) & (ft <= f + c1 * step * slope)
            z_new = torch.where(acc[:, None], trial, z_new)
            f_new = torch.where(acc, ft, f_new)
            g_new = torch.where(acc[:, None], gt, g_new)
            done |= acc
            if bool(done.all()):
                break
            step = torch.where(done, step, step * 0.5)
        step0 = torch.where(done, (2 * step).clamp(max=1.0), step * 0.5)
        s_, y_ = z_new - z, g_new - g
        sy = (s_ * y_).sum(-1)
        r_ = torch.where(done & (sy > 1e-10), 1.0 / sy.clamp_min(1e-10), torch.zeros_like(sy))
        S.append(s_)
        Y.append(y_)
        R.append(r_)
        if len(S) > memory:
            S.pop(0), Y.pop(0), R.pop(0)
        z, f, g = z_new, f_new, g_new
        yield (*min(evals, key=lambda e: float(e[0].detach().min())), f)


def _cem(problem: Problem, K, H, iters, population, elite_frac, init, init_std, gen,
         beta: float = 2.0, alpha: float = 0.1, min_std: float = 0.05, keep_elites: float = 0.3):
    """iCEM-style: colored noise, elites carried over, mean always evaluated, smoothed updates."""
    task, amap, dt, dev = problem.task, problem.amap, problem.dtype, problem.device
    nu = task.nu
    P = max(population // K, 4)
    n_elite = max(2, int(round(elite_frac * P)))
    n_keep = int(round(keep_elites * n_elite))
    init = _init_actions(init, H, nu, dt, dev)
    H = problem.n  # decision steps: the horizon, or the knots
    if init is not None:
        mean = problem.from_actions(init).expand(K, H, nu).clone()
    else:
        mean = torch.zeros(K, H, nu, dtype=dt, device=dev)
    std = torch.full((K, H, nu), max(init_std, min_std) * 1.0, dtype=dt, device=dev)
    elites = None
    for _ in range(iters):
        noise = colored_noise((K * P, H, nu), beta, gen, dt, dev).reshape(K, P, H, nu)
        y = mean[:, None] + std[:, None] * noise
        y[:, 0] = mean
        if elites is not None and n_keep:
            y[:, 1:1 + n_keep] = elites[:, :n_keep]
        y = amap.project(y).reshape(K * P, H, nu)
        with torch.no_grad():
            cost, u, tr = problem.evaluate(y)
        yield cost, u, tr, cost.reshape(K, P)[:, 0]  # restart costs: each distribution's mean
        c = torch.nan_to_num(cost.reshape(K, P), nan=math.inf)
        idx = torch.topk(c, n_elite, dim=1, largest=False).indices
        elites = torch.gather(y.reshape(K, P, H, nu), 1, idx[:, :, None, None].expand(K, n_elite, H, nu))
        mean = alpha * mean + (1 - alpha) * elites.mean(1)
        std = (alpha * std + (1 - alpha) * elites.std(1)).clamp_min(min_std)
