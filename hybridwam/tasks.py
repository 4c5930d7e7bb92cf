"""``hw.Task``: a control problem read from YAML (scene, horizon, initial state, goal, costs).

A task file (see ``configs/tasks/*.yaml``; every key is checked, unknown keys are errors)::

    name: cartpole_swingup
    description: swing the pole up and balance it
    scene: cartpole              # shipped scene name, or an MJCF path (relative to the YAML file)
    horizon: 300                 # control steps (decisions)
    dt: 0.01                     # control period [s]: a positive integer multiple k of the scene
                                 #   timestep; each action is held for k physics steps (action repeat)
    initial_state: {qpos: [0, 0], qvel: [0, 0]}      # default: the scene's qpos0 and zero velocity
    goal: {qpos: [0, 3.14159], qvel: [0, 0]}         # default: zeros
    cost:
      state: {qpos: [0.1, 1.0], qvel: [0.01, 0.01]}  # running joint-state tracking (per coordinate)
      sites:                                         # running site-position tracking
        - {site: fingertip, target_site: target, weight: 10, terminal: 100}
      control: 0.01                                  # effort on ctrl normalised by the bound half-width
      terminal: {qpos: [1, 10], qvel: [1, 1], steps: 1}
    success: {qpos_tol: [null, 0.1], qvel_tol: [null, 0.5], site_tol: {fingertip: 0.02}}
    bounds: {ctrl: [[-30, 30]]}                     # default: the scene's ctrlrange
    planner: {optimizer: adam, iters: 200, restarts: 8, lr: 0.05, init_std: 0.5}  # optional defaults
    # (also lr_final, knots and init: see ``hw.optimize_trajectory``; init is one constant action)

Per-coordinate lists (``qpos``, ``qvel``, weights, tolerances) may also be mappings from joint
names of hinge / slide joints to numbers (missing joints: 0, or "not checked" for tolerances).

Cost of one trajectory with actions u_0..u_{H-1} and control-step states x_1..x_H::

    J = dt * sum_{t=1..H} [ sum_i wq_i e_i(x_t)^2 + sum_i wv_i (qvel_i - goal_i)^2
                            + sum_s w_s |p_s(x_t) - target_s|^2 + sum_a wu_a (u_{t-1,a} / s_a)^2 ]
        + mean over the last ``terminal.steps`` states of the same state and site terms
          with the terminal weights

Hinge coordinates are compared on the circle: e = 2 sin((q - goal) / 2), so e^2 = 2 (1 - cos(q -
goal)) is smooth, equals (q - goal)^2 near the goal and is blind to whole turns. Other coordinates
use e = q - goal. s_a is half the width of the actuator's bounds (1 when unbounded). Site positions
p_s come from the looped engine's kinematics stage, differentiable (:class:`SiteKinematics`).
``success`` tests the final state against the tolerances (hinge errors wrapped to [-pi, pi]).
"""
from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass, field

import mujoco
import numpy as np
import torch
import yaml

from .types import HINGE, SLIDE

__all__ = ["SiteKinematics", "SiteTerm", "Task", "env_id", "list_tasks", "output_path", "resolve_task", "safe_stem"]


# ---- names that become file names ------------------------------------------------------------
#: a plain file stem: ASCII letters, digits, '_', '-' and '.', not starting with '.' or '-'
_STEM = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAX_STEM = 100


def safe_stem(name, what: str) -> str:
    """``name`` if it can be used as a file name inside an output folder, else a ValueError that
    says ``what`` it is (e.g. "task name"): a plain stem of at most MAX_STEM characters from
    ``[A-Za-z0-9_.-]`` that does not start with '.' or '-', so no path separator, no '.' or '..',
    no NUL, no absolute path, no hidden file and nothing a shell could take for an option."""
    if not isinstance(name, str):
        raise ValueError(f"{what}: expected a string, got {name!r}")
    if not name or len(name) > MAX_STEM or not _STEM.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not a plain file name: use 1 to {MAX_STEM} letters, digits, "
                         "'_', '-' or '.', not starting with '.' or '-' (it names the output files)")
    return name


def output_path(folder: str, stem: str, suffix: str = "", what: str = "name") -> str:
    """``folder/stem+suffix`` after :func:`safe_stem`, refusing (ValueError) a path that would
    resolve outside ``folder`` (say through a symbolic link planted there)."""
    path = os.path.join(folder, safe_stem(stem, what) + suffix)
    root, real = os.path.realpath(folder), os.path.realpath(path)
    if os.path.dirname(real) != root:
        raise ValueError(f"{path}: resolves to {real}, outside the output folder {root}")
    return path


# ---- differentiable forward kinematics -------------------------------------------------------
def _quat_to_mat(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternion (w, x, y, z) [..., 4] -> rotation matrix [..., 3, 3] (normalises first)."""
    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], -2)


class SiteKinematics:
    """Differentiable forward kinematics of a MuJoCo model, for site positions in task costs.

    The looped engine's kinematics stage (``kernels/smooth.kinematics``, the code every step
    runs; see ``Physics.kinematics``) on the model's numbers, in the dtype and on the device of the
    ``qpos`` it is given (a kernel per scalar type, compiled on first use and cached on disk).
    ``site_pos(qpos [..., nq], sites) -> [..., n, 3]`` in world coordinates; gradients flow to
    qpos. Model numbers are constants (taken from ``mj``).
    """

    def __init__(self, mj: mujoco.MjModel):
        self.mj = mj
        self._engines: dict = {}

    def _engine(self, dtype, device):
        key = (dtype, str(device))
        e = self._engines.get(key)
        if e is None:
            from .looped import LoopedEngine
            from .model import load_model

            model = load_model(self.mj, device=str(device), dtype=dtype)
            e = self._engines[key] = (model, LoopedEngine(model, contacts=False))
        return e

    def poses(self, qpos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Body positions [..., nbody, 3] and quaternions [..., nbody, 4] as (x, y, z, w) at
        ``qpos`` [..., nq] (float32 or float64)."""
        from .looped import kinematics

        if qpos.dtype not in (torch.float32, torch.float64):
            raise TypeError(f"qpos: expected float32 or float64, got {qpos.dtype}")
        if qpos.shape[-1] != self.mj.nq:
            raise ValueError(f"qpos: expected [..., {self.mj.nq}], got {list(qpos.shape)}")
        model, eng = self._engine(qpos.dtype, qpos.device)
        batch = qpos.shape[:-1]
        xp, xq = kinematics(eng, qpos.reshape(-1, self.mj.nq), model.params)
        return xp.reshape(*batch, self.mj.nbody, 3), xq.reshape(*batch, self.mj.nbody, 4)

    def body_frames(self, qpos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World positions [..., nbody, 3] and rotation matrices [..., nbody, 3, 3] of every body."""
        xp, xq = self.poses(qpos)
        return xp, _quat_to_mat(torch.cat([xq[..., 3:], xq[..., :3]], -1))

    def site_pos(self, qpos: torch.Tensor, sites) -> torch.Tensor:
        """World positions [..., len(sites), 3] of the sites (ids or names) at ``qpos`` [..., nq]."""
        from .looped import site_positions

        return site_positions(self.mj, *self.poses(qpos), [self.site_id(s) for s in sites])

    def site_id(self, site) -> int:
        if isinstance(site, (int, np.integer)):
            if not 0 <= int(site) < self.mj.nsite:
                raise KeyError(f"site id {site} out of range (the model has {self.mj.nsite} sites)")
            return int(site)
        i = mujoco.mj_name2id(self.mj, mujoco.mjtObj.mjOBJ_SITE, site)
        if i < 0:
            raise KeyError(site)
        return i


# ---- task files ------------------------------------------------------------------------------
_TOP_KEYS = ("name", "description", "scene", "horizon", "dt", "initial_state", "goal", "cost", "success", "bounds",
             "planner")
_STATE_KEYS = ("qpos", "qvel")
_COST_KEYS = ("state", "sites", "control", "terminal")
_TERMINAL_KEYS = ("qpos", "qvel", "steps")
_SITE_KEYS = ("site", "target", "target_site", "weight", "terminal")
_SUCCESS_KEYS = ("qpos_tol", "qvel_tol", "site_tol")
_BOUNDS_KEYS = ("ctrl",)
#: optional ``planner:`` section: defaults for ``optimize_trajectory`` when the call leaves them out
PLANNER_KEYS = ("optimizer", "iters", "restarts", "lr", "lr_final", "init_std", "init", "knots", "bounds", "population")


def list_tasks() -> list[str]:
    """Names of the task files shipped in ``configs/tasks/``."""
    from importlib import resources

    d = resources.files("hybridwam.configs") / "tasks"
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".yaml")) if d.is_dir() else []


def env_id(task_name: str) -> str:
    """Gymnasium id of a task: "cartpole_swingup" -> "hybridwam/CartpoleSwingup-v0" (the name must
    be a plain file name, :func:`safe_stem`)."""
    safe_stem(task_name, "task name")
    return "hybridwam/" + "".join(p[:1].upper() + p[1:] for p in task_name.split("_")) + "-v0"


def resolve_task(path_or_name: str) -> str:
    """A YAML path as given, else a shipped task by name ("cartpole_swingup") or file name."""
    p = os.fspath(path_or_name)
    if os.path.isfile(p):
        return p
    from importlib import resources

    base = os.path.basename(p)
    name = base if base.endswith((".yaml", ".yml")) else base + ".yaml"
    cand = resources.files("hybridwam.configs") / "tasks" / name
    if cand.is_file():
        return str(cand)
    raise FileNotFoundError(f"{p}: no such task file (and no shipped task of that name; shipped: "
                            f"{', '.join(list_tasks()) or 'none'})")


class _Checker:
    """Builds ValueErrors that name the source and the offending key."""

    def __init__(self, source: str):
        self.source = source

    def error(self, key: str, msg: str) -> ValueError:
        return ValueError(f"{self.source}: {key}: {msg}")

    def keys(self, d, allowed, key: str, required=()):
        if not isinstance(d, dict):
            raise self.error(key or "<top level>", f"expected a mapping, got {type(d).__name__}")
        for k in d:
            if k not in allowed:
                raise self.error(f"{key}.{k}" if key else str(k),
                                 f"unknown key (allowed: {', '.join(allowed)})")
        for k in required:
            if k not in d:
                raise self.error(f"{key}.{k}" if key else k, "required key is missing")

    def number(self, x, key: str, positive=False, nonneg=False) -> float:
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
            raise self.error(key, f"expected a finite number, got {x!r}")
        if positive and x <= 0:
            raise self.error(key, f"must be positive, got {x!r}")
        if nonneg and x < 0:
            raise self.error(key, f"must be non-negative, got {x!r}")
        return float(x)


@dataclass
class SiteTerm:
    """Track site ``site`` to a fixed world ``target`` [3] or to the position of ``target_site``."""

    site: str
    site_id: int
    target: np.ndarray | None
    target_site: str | None
    target_site_id: int | None
    weight: float
    terminal: float


@dataclass
class Task:
    """A trajectory-optimisation problem on one scene; see the module docstring for the YAML.

    Tensors are float64 on the CPU; the methods accept any dtype / device and answer in kind.
    ``horizon`` counts control steps of ``dt`` seconds; ``repeat = dt / timestep`` physics steps
    per control step, so a rollout has ``horizon * repeat`` physics steps.
    """

    name: str
    description: str
    source: str
    scene_path: str
    mj: mujoco.MjModel
    horizon: int
    dt: float
    repeat: int
    qpos0: torch.Tensor
    qvel0: torch.Tensor
    goal_qpos: torch.Tensor
    goal_qvel: torch.Tensor
    w_qpos: torch.Tensor
    w_qvel: torch.Tensor
    w_ctrl: torch.Tensor
    terminal_qpos: torch.Tensor
    terminal_qvel: torch.Tensor
    terminal_steps: int
    sites: list[SiteTerm]
    qpos_tol: torch.Tensor  # inf = not checked
    qvel_tol: torch.Tensor
    site_tol: dict[str, float]
    ctrl_low: torch.Tensor  # -inf / inf where unbounded
    ctrl_high: torch.Tensor
    hinge_mask: torch.Tensor = field(repr=False)
    kinematics: SiteKinematics = field(repr=False)
    planner: dict = field(default_factory=dict)
    config: dict = field(repr=False, default_factory=dict)

    # ---- construction ------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path_or_name) -> Task:
        """Load a task file, or a shipped task by name ("cartpole_swingup"). Raises ValueError
        naming the key for unknown keys, wrong shapes or values, and sites the scene lacks."""
        path = resolve_task(path_or_name)
        with open(path) as f:
            try:
                cfg = yaml.safe_load(f)
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML: {e}") from None
        return cls.from_dict(cfg if cfg is not None else {}, source=path,
                             base_dir=os.path.dirname(os.path.abspath(path)))

    @classmethod
    def from_dict(cls, cfg: dict, source: str = "<dict>", base_dir: str | None = None) -> Task:
        """Build a task from the parsed YAML mapping (same checks as :meth:`from_yaml`)."""
        from .model import ModelLoadError, UnsupportedFeatureError, resolve_scene, unsupported_features

        ck = _Checker(source)
        ck.keys(cfg, _TOP_KEYS, "", required=("scene", "horizon"))
        cfg = copy.deepcopy(cfg)
        if "name" in cfg:
            name = cfg["name"]
            try:
                safe_stem(name, "task name")
            except ValueError as e:
                raise ck.error("name", str(e)) from None
        else:  # the file's own stem, made a plain file name
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(os.path.basename(source))[0])
            name = name.strip("._-")[:MAX_STEM] or "task"
        # scene ---------------------------------------------------------------------------
        scene = cfg["scene"]
        if not isinstance(scene, str):
            raise ck.error("scene", f"expected a scene name or path, got {scene!r}")
        cand = os.path.join(base_dir, scene) if base_dir and not os.path.isabs(scene) else scene
        try:
            scene_path = os.path.abspath(resolve_scene(cand if os.path.exists(cand) else scene))
            mj = mujoco.MjModel.from_xml_path(scene_path)
        except (ModelLoadError, ValueError) as e:
            raise ck.error("scene", str(e)) from None
        # before any per-coordinate check: elements hybridwam cannot simulate are the real problem
        bad = unsupported_features(mj)
        if bad:
            raise UnsupportedFeatureError(f"{source}: scene {scene_path}", bad)
        nq, nv, nu = mj.nq, mj.nv, mj.nu
        # horizon / dt --------------------------------------------------------------------
        horizon = cfg["horizon"]
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ck.error("horizon", f"expected a positive integer (control steps), got {horizon!r}")
        ts = float(mj.opt.timestep)
        dt = ck.number(cfg.get("dt", ts), "dt", positive=True)
        repeat = round(dt / ts)
        if repeat < 1 or abs(repeat * ts - dt) > 1e-9 * max(1.0, dt):
            raise ck.error("dt", f"{dt:g} s must be a positive integer multiple of the scene timestep {ts:g} s")
        dt = repeat * ts
        # per-coordinate vectors ------------------------------------------------------------
        jnames = [mujoco.mj_id2name(mj, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(mj.njnt)]
        qadr = {n: int(mj.jnt_qposadr[j]) for j, n in enumerate(jnames)
                if n and int(mj.jnt_type[j]) in (HINGE, SLIDE)}
        vadr = {n: int(mj.jnt_dofadr[j]) for j, n in enumerate(jnames)
                if n and int(mj.jnt_type[j]) in (HINGE, SLIDE)}

        def vec(x, n, key, default=0.0, adr=None, nonneg=False, allow_null=False):
            if isinstance(x, dict):
                out = np.full(n, default, dtype=np.float64)
                for k, val in x.items():
                    if k not in adr:
                        raise ck.error(f"{key}.{k}", f"no hinge or slide joint of that name in the scene "
                                                     f"(joints: {', '.join(adr) or 'none'})")
                    out[adr[k]] = np.inf if val is None and allow_null else \
                        ck.number(val, f"{key}.{k}", nonneg=nonneg)
                return out
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                return np.full(n, ck.number(x, key, nonneg=nonneg))
            if not isinstance(x, list):
                raise ck.error(key, f"expected a list of {n} numbers, a number or a mapping by joint name, got {x!r}")
            if len(x) != n:
                raise ck.error(key, f"expected {n} values, got {len(x)}")
            return np.array([np.inf if v is None and allow_null else ck.number(v, f"{key}[{i}]", nonneg=nonneg)
                             for i, v in enumerate(x)], dtype=np.float64)

        init = cfg.get("initial_state", {}) or {}
        ck.keys(init, _STATE_KEYS, "initial_state")
        qpos0 = vec(init["qpos"], nq, "initial_state.qpos", adr=qadr) if "qpos" in init else np.array(mj.qpos0)
        if isinstance(init.get("qpos"), dict):  # unnamed coordinates keep the scene's reset value
            qpos0 = np.where(np.isin(np.arange(nq), [qadr[k] for k in init["qpos"]]), qpos0, mj.qpos0)
        qvel0 = vec(init.get("qvel", 0.0), nv, "initial_state.qvel", adr=vadr)
        goal = cfg.get("goal", {}) or {}
        ck.keys(goal, _STATE_KEYS, "goal")
        goal_qpos = vec(goal.get("qpos", 0.0), nq, "goal.qpos", adr=qadr)
        goal_qvel = vec(goal.get("qvel", 0.0), nv, "goal.qvel", adr=vadr)
        # costs -----------------------------------------------------------------------------
        cost = cfg.get("cost", {}) or {}
        ck.keys(cost, _COST_KEYS, "cost")
        st = cost.get("state", {}) or {}
        ck.keys(st, _STATE_KEYS, "cost.state")
        w_qpos = vec(st.get("qpos", 0.0), nq, "cost.state.qpos", adr=qadr, nonneg=True)
        w_qvel = vec(st.get("qvel", 0.0), nv, "cost.state.qvel", adr=vadr, nonneg=True)
        anames = [mujoco.mj_id2name(mj, mujoco.mjtObj.mjOBJ_ACTUATOR, a) for a in range(nu)]
        w_ctrl = vec(cost.get("control", 0.0), nu, "cost.control", adr={n: i for i, n in enumerate(anames) if n},
                     nonneg=True)
        term = cost.get("terminal", {}) or {}
        ck.keys(term, _TERMINAL_KEYS, "cost.terminal")
        t_qpos = vec(term.get("qpos", 0.0), nq, "cost.terminal.qpos", adr=qadr, nonneg=True)
        t_qvel = vec(term.get("qvel", 0.0), nv, "cost.terminal.qvel", adr=vadr, nonneg=True)
        t_steps = term.get("steps", 1)
        if isinstance(t_steps, bool) or not isinstance(t_steps, int) or not 1 <= t_steps <= horizon:
            raise ck.error("cost.terminal.steps", f"expected an integer in [1, horizon={horizon}], got {t_steps!r}")
        sites = []
        site_list = cost.get("sites", []) or []
        if not isinstance(site_list, list):
            raise ck.error("cost.sites", "expected a list of site terms")
        snames = [mujoco.mj_id2name(mj, mujoco.mjtObj.mjOBJ_SITE, i) for i in range(mj.nsite)]

        def site_id(s, key):
            i = mujoco.mj_name2id(mj, mujoco.mjtObj.mjOBJ_SITE, s) if isinstance(s, str) else -1
            if i < 0:
                raise ck.error(key, f"site {s!r} is not in the scene {os.path.basename(scene_path)} "
                                    f"(sites: {', '.join(n for n in snames if n) or 'none'})")
            return i

        for k, term_s in enumerate(site_list):
            key = f"cost.sites[{k}]"
            ck.keys(term_s, _SITE_KEYS, key, required=("site",))
            if ("target" in term_s) == ("target_site" in term_s):
                raise ck.error(key, "give exactly one of 'target' (world position) and 'target_site'")
            sid = site_id(term_s["site"], f"{key}.site")
            target, tsite, tsid = None, None, None
            if "target" in term_s:
                t = term_s["target"]
                if not isinstance(t, list) or len(t) != 3:
                    raise ck.error(f"{key}.target", f"expected a position [x, y, z], got {t!r}")
                target = np.array([ck.number(v, f"{key}.target[{i}]") for i, v in enumerate(t)])
            else:
                tsite, tsid = term_s["target_site"], site_id(term_s["target_site"], f"{key}.target_site")
            sites.append(SiteTerm(term_s["site"], sid, target, tsite, tsid,
                                  ck.number(term_s.get("weight", 1.0), f"{key}.weight", nonneg=True),
                                  ck.number(term_s.get("terminal", 0.0), f"{key}.terminal", nonneg=True)))
        # success -----------------------------------------------------------------------------
        succ = cfg.get("success", {}) or {}
        ck.keys(succ, _SUCCESS_KEYS, "success")
        qpos_tol = vec(succ.get("qpos_tol", None) if succ.get("qpos_tol") is not None else [None] * nq,
                       nq, "success.qpos_tol", default=np.inf, adr=qadr, nonneg=True, allow_null=True)
        qvel_tol = vec(succ.get("qvel_tol", None) if succ.get("qvel_tol") is not None else [None] * nv,
                       nv, "success.qvel_tol", default=np.inf, adr=vadr, nonneg=True, allow_null=True)
        stol = succ.get("site_tol", {}) or {}
        if not isinstance(stol, dict):
            raise ck.error("success.site_tol", "expected a mapping from site name to distance [m]")
        tracked = {s.site for s in sites}
        site_tol = {}
        for s, v in stol.items():
            if s not in tracked:
                raise ck.error(f"success.site_tol.{s}", f"no site term for site {s!r} in cost.sites "
                                                        f"(tracked: {', '.join(sorted(tracked)) or 'none'})")
            site_tol[s] = ck.number(v, f"success.site_tol.{s}", positive=True)
        if not (np.isfinite(qpos_tol).any() or np.isfinite(qvel_tol).any() or site_tol):
            raise ck.error("success", "no tolerance given (qpos_tol, qvel_tol or site_tol): success is undefined")
        # bounds --------------------------------------------------------------------------------
        bounds = cfg.get("bounds", {}) or {}
        ck.keys(bounds, _BOUNDS_KEYS, "bounds")
        lo = np.where(mj.actuator_ctrllimited.astype(bool), mj.actuator_ctrlrange[:, 0], -np.inf) if nu else np.zeros(0)
        hi = np.where(mj.actuator_ctrllimited.astype(bool), mj.actuator_ctrlrange[:, 1], np.inf) if nu else np.zeros(0)
        if "ctrl" in bounds:
            b = bounds["ctrl"]
            if not isinstance(b, list) or len(b) != nu or not all(isinstance(r, list) and len(r) == 2 for r in b):
                raise ck.error("bounds.ctrl", f"expected {nu} pairs [low, high] (one per actuator), got {b!r}")
            lo = np.array([ck.number(r[0], f"bounds.ctrl[{i}][0]") for i, r in enumerate(b)])
            hi = np.array([ck.number(r[1], f"bounds.ctrl[{i}][1]") for i, r in enumerate(b)])
            if np.any(lo >= hi):
                raise ck.error("bounds.ctrl", "every low must be below its high")
        hinge = np.zeros(nq, dtype=bool)
        for j in range(mj.njnt):
            if int(mj.jnt_type[j]) == HINGE:
                hinge[int(mj.jnt_qposadr[j])] = True
        planner = cfg.get("planner", {}) or {}
        ck.keys(planner, PLANNER_KEYS, "planner")
        for k, v in planner.items():
            if k == "optimizer" and v not in ("adam", "lbfgs", "cem"):
                raise ck.error("planner.optimizer", f"expected adam, lbfgs or cem, got {v!r}")
            if k == "bounds" and v not in ("tanh", "clip"):
                raise ck.error("planner.bounds", f"expected tanh or clip, got {v!r}")
            if k in ("iters", "restarts", "population") and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ck.error(f"planner.{k}", f"expected a positive integer, got {v!r}")
            if k == "knots" and (isinstance(v, bool) or not isinstance(v, int) or not 2 <= v <= horizon):
                raise ck.error("planner.knots", f"expected an integer from 2 to the horizon ({horizon}), got {v!r}")
            if k in ("lr", "init_std", "lr_final"):
                ck.number(v, f"planner.{k}", positive=True)
            if k == "init":
                init_u = np.asarray(v, dtype=float) if isinstance(v, list) else None
                if init_u is None or init_u.shape != (nu,) or not np.isfinite(init_u).all() \
                        or np.any(init_u < lo) or np.any(init_u > hi):
                    raise ck.error("planner.init", f"expected {nu} numbers within the control bounds (one "
                                   f"constant action to start from), got {v!r}")
        desc = cfg.get("description", "")
        if not isinstance(desc, str):
            raise ck.error("description", f"expected a string, got {desc!r}")

        def t(x, dtype=torch.float64):
            return torch.as_tensor(np.asarray(x), dtype=dtype)

        return cls(name=name, description=desc, source=source, scene_path=scene_path, mj=mj, horizon=horizon,
                   dt=dt, repeat=repeat, qpos0=t(qpos0), qvel0=t(qvel0), goal_qpos=t(goal_qpos),
                   goal_qvel=t(goal_qvel), w_qpos=t(w_qpos), w_qvel=t(w_qvel), w_ctrl=t(w_ctrl),
                   terminal_qpos=t(t_qpos), terminal_qvel=t(t_qvel), terminal_steps=t_steps, sites=sites,
                   qpos_tol=t(qpos_tol), qvel_tol=t(qvel_tol), site_tol=site_tol, ctrl_low=t(lo), ctrl_high=t(hi),
                   hinge_mask=t(hinge, torch.bool), kinematics=SiteKinematics(mj), planner=dict(planner),
                   config=cfg)

    def with_horizon(self, horizon: int) -> Task:
        """A copy with another horizon (control steps), e.g. for a receding-horizon controller."""
        if horizon < 1:
            raise ValueError(f"horizon must be positive, got {horizon}")
        out = copy.copy(self)
        out.horizon = int(horizon)
        out.terminal_steps = min(self.terminal_steps, int(horizon))
        return out

    # ---- sizes and helpers -------------------------------------------------------------------
    nq = property(lambda self: self.mj.nq)
    nv = property(lambda self: self.mj.nv)
    nu = property(lambda self: self.mj.nu)
    timestep = property(lambda self: float(self.mj.opt.timestep))

    def names(self, kind: str) -> list[str]:
        """Names of "body", "joint", "actuator", "site" or "geom" elements of the scene, in order."""
        O = mujoco.mjtObj
        objtype, n = {"body": (O.mjOBJ_BODY, self.mj.nbody), "joint": (O.mjOBJ_JOINT, self.mj.njnt),
                      "actuator": (O.mjOBJ_ACTUATOR, self.mj.nu), "site": (O.mjOBJ_SITE, self.mj.nsite),
                      "geom": (O.mjOBJ_GEOM, self.mj.ngeom)}[kind]
        return [mujoco.mj_id2name(self.mj, objtype, i) or f"{kind}{i}" for i in range(n)]

    @property
    def steps(self) -> int:
        """Physics steps of one rollout: horizon * repeat."""
        return self.horizon * self.repeat

    @property
    def duration(self) -> float:
        """Seconds covered by the horizon."""
        return self.horizon * self.dt

    def load_model(self, device: str | None = None, dtype="float32"):
        """``hw.load_model`` of the task's scene."""
        from .model import load_model

        return load_model(self.scene_path, device=device, dtype=dtype)

    def initial_state(self, batch: int | None = None, dtype=torch.float32, device="cpu"):
        """(qpos0, qvel0) as tensors, optionally with a leading batch dim."""
        q, v = self.qpos0.to(dtype=dtype, device=device), self.qvel0.to(dtype=dtype, device=device)
        if batch is not None:
            q, v = q.expand(batch, -1).contiguous(), v.expand(batch, -1).contiguous()
        return q, v

    def expand(self, actions: torch.Tensor) -> torch.Tensor:
        """Per-control-step actions [..., H, nu] -> per-physics-step ctrls [..., H * repeat, nu]."""
        return actions if self.repeat == 1 else actions.repeat_interleave(self.repeat, dim=-2)

    @property
    def ctrl_scale(self) -> torch.Tensor:
        """Half-width of each actuator's bounds (1 where unbounded) [nu]."""
        w = (self.ctrl_high - self.ctrl_low) / 2
        return torch.where(torch.isfinite(w), w, torch.ones_like(w))

    def clip(self, ctrl: torch.Tensor) -> torch.Tensor:
        """Clamp ctrl [..., nu] into the task's bounds."""
        lo, hi = self.ctrl_low.to(ctrl), self.ctrl_high.to(ctrl)
        return torch.maximum(torch.minimum(ctrl, hi), lo)

    def site_pos(self, qpos: torch.Tensor, sites) -> torch.Tensor:
        """Positions [..., len(sites), 3] of named sites at qpos [..., nq] (differentiable)."""
        return self.kinematics.site_pos(qpos, sites)

    # ---- cost --------------------------------------------------------------------------------
    def _qpos_err(self, qpos: torch.Tensor) -> torch.Tensor:
        d = qpos - self.goal_qpos.to(qpos)
        return torch.where(self.hinge_mask.to(qpos.device), 2 * torch.sin(d / 2), d)

    def _site_sq(self, qpos: torch.Tensor) -> torch.Tensor:
        """Squared distances [..., n_site_terms] of each site term to its target."""
        ids = [s.site_id for s in self.sites] + [s.target_site_id for s in self.sites if s.target_site_id is not None]
        pos = self.kinematics.site_pos(qpos, ids)
        k = len(self.sites)
        out = []
        for i, s in enumerate(self.sites):
            if s.target is not None:
                tgt = torch.as_tensor(s.target, dtype=qpos.dtype, device=qpos.device)
            else:
                tgt = pos[..., k, :]
                k += 1
            out.append(((pos[..., i, :] - tgt) ** 2).sum(-1))
        return torch.stack(out, -1)

    def _state_cost(self, qpos, qvel, wq, wv, ws) -> torch.Tensor:
        c = (wq.to(qpos) * self._qpos_err(qpos) ** 2).sum(-1)
        c = c + (wv.to(qvel) * (qvel - self.goal_qvel.to(qvel)) ** 2).sum(-1)
        if self.sites and any(w > 0 for w in ws):
            c = c + (torch.as_tensor(ws, dtype=qpos.dtype, device=qpos.device) * self._site_sq(qpos)).sum(-1)
        return c

    def cost_terms(self, qpos: torch.Tensor, qvel: torch.Tensor, actions: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cost parts, each [B]: "state", "control", "terminal" and their sum "total".

        qpos [B, T+1, nq], qvel [B, T+1, nv] at physics steps (T = H * repeat) or at control steps
        (T = H); actions [B, H, nu] per control step.
        """
        H = actions.shape[-2]
        T = qpos.shape[-2] - 1
        if T == H * self.repeat and self.repeat > 1:
            qpos, qvel = qpos[..., ::self.repeat, :], qvel[..., ::self.repeat, :]
        elif T != H:
            raise ValueError(f"states cover {T} steps, actions {H} control steps (repeat {self.repeat})")
        q, v = qpos[..., 1:, :], qvel[..., 1:, :]
        run = self._state_cost(q, v, self.w_qpos, self.w_qvel, [s.weight for s in self.sites]).sum(-1) * self.dt
        u = actions / self.ctrl_scale.to(actions)
        ctrl = (self.w_ctrl.to(actions) * u ** 2).sum(-1).sum(-1) * self.dt
        n = min(self.terminal_steps, H)
        term = self._state_cost(q[..., H - n:, :], v[..., H - n:, :], self.terminal_qpos, self.terminal_qvel,
                                [s.terminal for s in self.sites]).mean(-1)
        return {"state": run, "control": ctrl, "terminal": term, "total": run + ctrl + term}

    def cost(self, qpos: torch.Tensor, qvel: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Total cost [B] (differentiable); shapes as in :meth:`cost_terms`."""
        return self.cost_terms(qpos, qvel, actions)["total"]

    # ---- success -----------------------------------------------------------------------------
    def errors(self, qpos, qvel) -> dict[str, torch.Tensor]:
        """Final-state errors: "qpos" [..., nq] (hinges wrapped to [-pi, pi]), "qvel" [..., nv]
        and, per tracked site, "site:<name>" [...] (distance to its target, m)."""
        qpos, qvel = torch.as_tensor(qpos), torch.as_tensor(qvel)
        if not qpos.is_floating_point():
            qpos = qpos.double()
        if not qvel.is_floating_point():
            qvel = qvel.double()
        d = qpos - self.goal_qpos.to(qpos)
        d = torch.where(self.hinge_mask.to(qpos.device), torch.atan2(torch.sin(d), torch.cos(d)), d)
        out = {"qpos": d.abs(), "qvel": (qvel - self.goal_qvel.to(qvel)).abs()}
        if self.sites:
            dist = self._site_sq(qpos).sqrt()
            for i, s in enumerate(self.sites):
                out[f"site:{s.site}"] = dist[..., i]
        return out

    def success(self, qpos, qvel) -> torch.Tensor:
        """Whether states qpos [..., nq], qvel [..., nv] are within tolerance: bool [...]."""
        e = self.errors(qpos, qvel)
        ok = (e["qpos"] <= self.qpos_tol.to(e["qpos"])).all(-1) & (e["qvel"] <= self.qvel_tol.to(e["qvel"])).all(-1)
        for s, tol in self.site_tol.items():
            ok = ok & (e[f"site:{s}"] <= tol)
        return ok

    def describe_errors(self, qpos, qvel) -> str:
        """One line: the final-state errors that the success test checks, with their tolerances."""
        e = self.errors(qpos, qvel)
        parts = []
        jn = {int(self.mj.jnt_qposadr[j]): mujoco.mj_id2name(self.mj, mujoco.mjtObj.mjOBJ_JOINT, j) or f"q{j}"
              for j in range(self.mj.njnt)}
        vn = {int(self.mj.jnt_dofadr[j]): mujoco.mj_id2name(self.mj, mujoco.mjtObj.mjOBJ_JOINT, j) or f"v{j}"
              for j in range(self.mj.njnt)}
        for i in range(self.nq):
            if math.isfinite(float(self.qpos_tol[i])):
                unit = "rad" if bool(self.hinge_mask[i]) else "m"
                parts.append(f"|{jn.get(i, f'qpos[{i}]')} err| {float(e['qpos'][..., i].max()):.3g} {unit} "
                             f"(tol {float(self.qpos_tol[i]):g})")
        for i in range(self.nv):
            if math.isfinite(float(self.qvel_tol[i])):
                parts.append(f"|{vn.get(i, f'qvel[{i}]')} vel err| {float(e['qvel'][..., i].max()):.3g} "
                             f"(tol {float(self.qvel_tol[i]):g})")
        for s, tol in self.site_tol.items():
            parts.append(f"|{s} - target| {float(e[f'site:{s}'].max()):.3g} m (tol {tol:g})")
        return ", ".join(parts)
