"""Gymnasium environments over any hybridwam scene + task: a batched ``VectorEnv`` and a one-world ``Env``.

``make_vec_env(task, num_envs)`` steps all worlds in ONE batched ``world.rollout`` call (for
:class:`hw.Physics` and a :class:`hw.HybridModel` whose residual runs inside the step: one fused
Warp launch, replayed from a graph captured on the first step, see ``Physics.capture``), on the
world model's device; ``world=`` swaps the physics for
any ``hw.WorldModel`` (e.g. a calibrated :class:`hw.HybridModel`). Needs ``gymnasium`` (the
``gym`` extra: ``pip install "hybridwam[gym]"``). Conventions:

- **observation** ``concat(qpos, qvel)`` [nq + nv] (for a world with activation dynamics also
  the activations, ``concat(qpos, qvel, act)`` [nq + nv + na]) in the model's dtype (float32 by
  default); hinge angles as they are (not wrapped to [-pi, pi]: a pendulum that turned twice reads 4 pi),
  free/ball quaternions as in qpos (w, x, y, z). Box(-inf, inf).
- **action** ``ctrl`` [nu]: Box(task bounds), i.e. the actuators' ``ctrlrange`` unless the task
  file sets ``bounds.ctrl``; actions outside are clipped (physics and cost see the clipped value).
  One env step holds the action for ``frame_skip`` physics steps (default: the task's
  ``repeat = dt / timestep``).
- **reward** = minus the task's per-step cost (:func:`step_cost`): with ``x_{t+1}`` the state after
  action ``u_t``, ``dt * (state terms of x_{t+1} + control term of u_t)``, plus, in the last
  ``terminal.steps`` steps of an episode, ``1 / terminal.steps`` of the terminal state terms. The
  rewards of a whole episode (default frame_skip and length) sum to ``-Task.cost`` of its trajectory.
- **terminated** never by default (the shipped tasks ask to reach the goal *and stay*, so ending
  on arrival would teach a policy not to hold); ``terminate_on_success=True`` ends an episode when
  ``Task.success`` holds. ``info["success"]`` [B] reports the test after every step either way.
- **truncated** after ``max_episode_steps`` steps (default: the task's horizon, i.e. its duration
  in steps of ``frame_skip * timestep``).
- **reset**: the task's initial state plus uniform noise U(-s, s), ``s = reset_noise_scale``
  (default 0.01 rad, m, rad/s, m/s), on hinge and slide coordinates and velocities; free and ball
  joints start exactly at the task's state (a box resting on a table stays on it). World i of
  ``reset(seed=k)`` draws its noise from ``gymnasium.utils.seeding.np_random(k + i)``, the
  generator that a one-world :class:`HybridWamEnv` uses after ``reset(seed=k + i)`` (the same
  convention as gymnasium's ``SyncVectorEnv``), so batched and one-at-a-time runs are identical.
- **autoreset** (``metadata["autoreset_mode"]``): ``"next_step"`` by default (gymnasium 1.x's
  default: the step after an episode ended resets that world, ignores its action and returns its
  first observation with reward 0, terminated = truncated = False); ``"same_step"`` (the reset
  happens within the ending step, the last observation is in ``info["final_obs"]``, and
  ``info["final_info"]``); ``"disabled"`` (reset worlds yourself with
  ``reset(options={"reset_mask": mask})``).
- **outputs** are numpy arrays (reward float64, terminated / truncated bool) by default;
  ``torch_output=True`` returns torch tensors on the model's device (reward in the model dtype)
  and then also accepts actions as tensors on that device, with no host round trip.
- No rendering (``render_modes`` is empty); no gradients (steps run under ``torch.no_grad``: for
  gradients call ``world.rollout`` directly).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

try:
    import gymnasium as gym
    from gymnasium import spaces
    from gymnasium.utils import seeding
    from gymnasium.vector import AutoresetMode, VectorEnv
    from gymnasium.vector.utils import batch_space
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("hybridwam.envs needs gymnasium: pip install \"hybridwam[gym]\" "
                      "(or pip install gymnasium)") from e

from .hybrid import HybridModel
from .physics import Physics
from .planning.optimize import world_na
from .tasks import Task, env_id
from .types import HINGE, SLIDE

__all__ = ["ENV_IDS", "HybridWamEnv", "HybridWamVecEnv", "env_id", "make_vec_env", "register_envs", "step_cost"]

_AUTORESET = {"next_step": AutoresetMode.NEXT_STEP, "same_step": AutoresetMode.SAME_STEP,
              "disabled": AutoresetMode.DISABLED}


def _as_task(task) -> Task:
    return task if isinstance(task, Task) else Task.from_yaml(task)


def step_cost(task: Task, qpos0, qvel0, qpos1, qvel1, ctrl, terminal_weight=0.0, dt: float | None = None):
    """Per-step cost [B] of the transition (qpos0, qvel0) --ctrl--> (qpos1, qvel1).

    ``dt * (state and site terms of (qpos1, qvel1) + control term of ctrl)`` with the task's running
    weights, plus ``terminal_weight`` [B] (or a number) times the state and site terms with the
    terminal weights. With ``dt = task.dt`` and ``terminal_weight = 1 / terminal.steps`` in the last
    ``terminal.steps`` steps (0 before), the sum over an episode is :meth:`Task.cost` of the
    trajectory. Composed from :meth:`Task.cost_terms` of the one-step trajectory. Shapes: qpos
    [B, nq], qvel [B, nv], ctrl [B, nu]; any dtype / device.
    """
    terms = task.cost_terms(torch.stack([qpos0, qpos1], -2), torch.stack([qvel0, qvel1], -2), ctrl.unsqueeze(-2))
    running = terms["state"] + terms["control"]
    if dt is not None and dt != task.dt:
        running = running * (dt / task.dt)
    return running + terminal_weight * terms["terminal"]


def _world_device_dtype(world) -> tuple[str, torch.dtype]:
    m = getattr(world, "model", None)
    if m is not None and hasattr(m, "device") and hasattr(m, "dtype"):
        return str(m.device), m.dtype
    return "cpu", torch.float32


def _same_device(a, b) -> bool:
    """"cuda" and "cuda:0" name the same device (an unindexed device matches any index)."""
    da, db = torch.device(a), torch.device(b)
    return da.type == db.type and (da.index is None or db.index is None or da.index == db.index)


class HybridWamVecEnv(VectorEnv):
    """``num_envs`` worlds of one task, stepped together in one batched world-model call.

    ``task``: a :class:`hw.Task`, a shipped task name ("cartpole_swingup") or a YAML path.
    ``world``: any ``hw.WorldModel`` for the task's scene (default: ``hw.Physics`` of the scene on
    ``device``, default "cuda:0" when available, else "cpu"). See the module docstring for the
    observation, action, reward, termination, reset and autoreset conventions.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(self, task="cartpole_swingup", num_envs: int = 1, *, device: str | None = None, world=None,
                 torch_output: bool = False, frame_skip: int | None = None, max_episode_steps: int | None = None,
                 reset_noise_scale: float = 0.01, terminate_on_success: bool = False,
                 autoreset_mode: str | AutoresetMode = "next_step", render_mode: str | None = None):
        if render_mode is not None:
            raise ValueError(f"render_mode={render_mode!r}: hybridwam environments do not render (render_modes=[])")
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if not (isinstance(reset_noise_scale, (int, float)) and math.isfinite(reset_noise_scale)
                and reset_noise_scale >= 0):
            raise ValueError(f"reset_noise_scale must be a finite number >= 0, got {reset_noise_scale!r}")
        mode = autoreset_mode if isinstance(autoreset_mode, AutoresetMode) else _AUTORESET.get(str(autoreset_mode))
        if mode is None:
            raise ValueError(f"autoreset_mode must be one of {sorted(_AUTORESET)}, got {autoreset_mode!r}")
        self.task = task = _as_task(task)
        # world model ---------------------------------------------------------------------------
        if world is None:
            world = Physics(task.load_model(device=device))
        elif device is not None and not _same_device(device, _world_device_dtype(world)[0]):
            raise ValueError(f"device={device!r} but the world model lives on {_world_device_dtype(world)[0]!r}")
        if (world.nq, world.nv, world.nu) != (task.nq, task.nv, task.nu):
            raise ValueError(f"world model has nq/nv/nu={world.nq}/{world.nv}/{world.nu}, the task's scene "
                             f"{task.scene_path} has {task.nq}/{task.nv}/{task.nu}")
        wm = getattr(world, "model", None)
        if wm is not None and hasattr(wm, "names") and wm.names("joint") != task.names("joint"):
            raise ValueError(f"world model joints {wm.names('joint')} differ from the task's {task.names('joint')}")
        self.world = world
        self._captured = None  # Physics and fused hybrid worlds: a CapturedRollout, made on the first step
        self.device, self.dtype = _world_device_dtype(world)
        self.torch_output = bool(torch_output)
        self.num_envs = int(num_envs)
        # time --------------------------------------------------------------------------------
        self.frame_skip = task.repeat if frame_skip is None else int(frame_skip)
        if self.frame_skip < 1:
            raise ValueError(f"frame_skip must be a positive integer, got {frame_skip!r}")
        self.dt = self.frame_skip * task.timestep
        if max_episode_steps is None:
            max_episode_steps = max(1, round(task.steps / self.frame_skip))
        if isinstance(max_episode_steps, bool) or int(max_episode_steps) != max_episode_steps or max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be a positive integer, got {max_episode_steps!r}")
        self.max_episode_steps = int(max_episode_steps)
        # the terminal window keeps its duration (task.terminal_steps control steps of task.dt)
        self.terminal_steps = min(self.max_episode_steps,
                                  max(1, round(task.terminal_steps * task.repeat / self.frame_skip)))
        self.reset_noise_scale = float(reset_noise_scale)
        self.terminate_on_success = bool(terminate_on_success)
        self.autoreset_mode = mode
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}
        self.render_mode = None
        # spaces ------------------------------------------------------------------------------
        np_dtype = np.float32 if self.dtype == torch.float32 else np.float64
        #: activation states of the world (actuators with dynamics): part of the state and the
        #: observation (after qvel), zero at reset as MuJoCo's mj_resetData
        self.na = world_na(world)
        n_obs = task.nq + task.nv + self.na
        self.single_observation_space = spaces.Box(-np.inf, np.inf, (n_obs,), dtype=np_dtype)
        self.single_action_space = spaces.Box(task.ctrl_low.numpy().astype(np_dtype),
                                              task.ctrl_high.numpy().astype(np_dtype), (task.nu,), dtype=np_dtype)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        # constants on the device ------------------------------------------------------------
        tk = {"dtype": self.dtype, "device": self.device}
        self._lo, self._hi = task.ctrl_low.to(**tk), task.ctrl_high.to(**tk)
        mj = task.mj
        qmask, vmask = np.zeros(task.nq), np.zeros(task.nv)
        for j in range(mj.njnt):
            if int(mj.jnt_type[j]) in (HINGE, SLIDE):
                qmask[int(mj.jnt_qposadr[j])] = 1.0
                vmask[int(mj.jnt_dofadr[j])] = 1.0
        self._noise_mask = np.concatenate([qmask, vmask])
        self._x0 = np.concatenate([task.qpos0.numpy(), task.qvel0.numpy()])
        # state -------------------------------------------------------------------------------
        B = self.num_envs
        self._rngs: list[np.random.Generator] | None = None
        self._qpos = torch.zeros(B, task.nq, **tk)
        self._qvel = torch.zeros(B, task.nv, **tk)
        self._act = torch.zeros(B, self.na, **tk)
        self._elapsed = np.zeros(B, dtype=np.int64)
        self._autoreset = np.zeros(B, dtype=bool)
        self._needs_reset = True

    # ---- state -------------------------------------------------------------------------------
    @property
    def qpos(self) -> torch.Tensor:
        """Current qpos [B, nq] of every world (a tensor on the model's device; do not modify)."""
        return self._qpos

    @property
    def qvel(self) -> torch.Tensor:
        """Current qvel [B, nv] of every world."""
        return self._qvel

    @property
    def act(self) -> torch.Tensor:
        """Current activations [B, na] of every world (empty for worlds without activation states)."""
        return self._act

    @property
    def elapsed_steps(self) -> np.ndarray:
        """Steps taken in each world's current episode [B]."""
        return self._elapsed.copy()

    def _seed_worlds(self, seed, idx: np.ndarray):
        if self._rngs is None:
            self._rngs = [None] * self.num_envs
        if seed is None:
            for i in idx:
                if self._rngs[i] is None:
                    self._rngs[i] = seeding.np_random()[0]
            return
        seeds = [seed + int(i) for i in idx] if isinstance(seed, (int, np.integer)) else list(seed)
        if len(seeds) != len(idx):
            raise ValueError(f"seed: expected an int or {len(idx)} ints (one per world reset), got {len(seeds)}")
        for i, s in zip(idx, seeds, strict=True):
            self._rngs[i] = seeding.np_random(int(s))[0]

    def _initial_states(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh initial (qpos [n, nq], qvel [n, nv]) for worlds ``idx``, from their generators."""
        s, n = self.reset_noise_scale, self._x0.size
        noise = np.stack([self._rngs[i].uniform(-s, s, n) for i in idx]) if len(idx) else np.zeros((0, n))
        x = self._x0 + noise * self._noise_mask
        x = torch.as_tensor(x, dtype=self.dtype).to(self.device)
        return x[:, :self.task.nq].contiguous(), x[:, self.task.nq:].contiguous()

    def _reset_worlds(self, idx: np.ndarray):
        q, v = self._initial_states(idx)
        if len(idx) == self.num_envs:
            self._qpos, self._qvel = q, v
            self._act = torch.zeros_like(self._act)
        elif len(idx):
            ti = torch.as_tensor(idx, device=self.device)
            self._qpos, self._qvel, self._act = self._qpos.clone(), self._qvel.clone(), self._act.clone()
            self._qpos[ti], self._qvel[ti] = q, v
            self._act[ti] = 0
        self._elapsed[idx] = 0
        self._autoreset[idx] = False

    def _obs(self, qpos: torch.Tensor, qvel: torch.Tensor, act: torch.Tensor | None = None):
        obs = torch.cat([qpos, qvel] if act is None or not act.shape[-1] else [qpos, qvel, act], -1)
        return obs if self.torch_output else obs.cpu().numpy()

    def _out(self, x: np.ndarray):
        return torch.as_tensor(x, device=self.device) if self.torch_output else x

    # ---- gymnasium API -----------------------------------------------------------------------
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        """Reset every world (or those in ``options["reset_mask"]``, a bool array [B]).

        ``seed``: an int k (world i gets k + i), a list of ints (one per world reset), or None
        (worlds keep drawing from their generators; unseeded ones get fresh entropy).
        Returns (obs [B, nq + nv], info {}).
        """
        options = dict(options or {})
        mask = options.pop("reset_mask", None)
        if options:
            raise ValueError(f"reset: unknown options {sorted(options)} (supported: reset_mask)")
        if mask is None:
            idx = np.arange(self.num_envs)
            if isinstance(seed, (int, np.integer)):
                super().reset(seed=int(seed))
        else:
            mask = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
            if mask.shape != (self.num_envs,) or mask.dtype != np.bool_:
                raise ValueError(f"options['reset_mask'] must be a bool array of shape ({self.num_envs},), "
                                 f"got {mask.dtype} {mask.shape}")
            if self._needs_reset and not mask.all():
                raise RuntimeError("the first reset must reset every world (no reset_mask)")
            idx = np.flatnonzero(mask)
        self._seed_worlds(seed, idx)
        self._reset_worlds(idx)
        self._needs_reset = False
        return self._obs(self._qpos, self._qvel, self._act), {}

    def _ctrl(self, actions) -> torch.Tensor:
        B, nu = self.num_envs, self.task.nu
        a = actions if isinstance(actions, torch.Tensor) else torch.as_tensor(np.asarray(actions))
        a = a.to(device=self.device, dtype=self.dtype)
        if tuple(a.shape) != (B, nu):
            raise ValueError(f"actions: expected shape [{B}, {nu}] (num_envs, nu), got {list(a.shape)}")
        return torch.maximum(torch.minimum(a, self._hi), self._lo)

    def step(self, actions):
        """Advance every world by one control step (``frame_skip`` physics steps, one batched call).

        actions [B, nu] (numpy, or torch on any device). Returns (obs [B, nq + nv], reward [B],
        terminated [B], truncated [B], info) with ``info["success"]`` [B] (and ``"_success"``).
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        B = self.num_envs
        ctrl = self._ctrl(actions)
        q0, v0, a0 = self._qpos, self._qvel, self._act
        a1 = a0
        with torch.no_grad():
            if isinstance(self.world, Physics) or (isinstance(self.world, HybridModel)
                                                   and self.world.fused_engine() is not None):
                # the same launch every step: replay it from a captured graph (CUDA or Warp CPU
                # graph); a hybrid model's residual runs inside that launch
                if self._captured is None:
                    self._captured = self.world.capture(B, self.frame_skip)
                if self.na:
                    q1, v1, a1 = self._captured.step(q0, v0, ctrl, act=a0)
                else:
                    q1, v1 = self._captured.step(q0, v0, ctrl)
            else:
                ctrls = ctrl.unsqueeze(1).expand(B, self.frame_skip, self.task.nu).contiguous()
                traj = self.world.rollout(q0, v0, ctrls, **({"act0": a0} if self.na else {}))
                q1, v1 = traj.qpos[:, -1].contiguous(), traj.qvel[:, -1].contiguous()
                if self.na:
                    a1 = traj.act[:, -1].contiguous()
            elapsed = self._elapsed + 1
            wterm = np.where(elapsed > self.max_episode_steps - self.terminal_steps, 1.0 / self.terminal_steps, 0.0)
            wterm_t = torch.as_tensor(wterm, dtype=self.dtype).to(self.device)
            cost = step_cost(self.task, q0, v0, q1, v1, ctrl, wterm_t, dt=self.dt)
            success_t = self.task.success(q1, v1)
        success = success_t.cpu().numpy().copy()
        reward = -cost
        terminated = success.copy() if self.terminate_on_success else np.zeros(B, dtype=bool)
        truncated = elapsed >= self.max_episode_steps
        info_mask = np.ones(B, dtype=bool)
        self._qpos, self._qvel, self._act, self._elapsed = q1, v1, a1, elapsed
        info: dict[str, Any] = {}
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            rs = np.flatnonzero(self._autoreset)
            if len(rs):
                self._reset_worlds(rs)
                ti = torch.as_tensor(rs, device=self.device)
                reward = reward.clone()
                reward[ti] = 0
                terminated[rs] = truncated[rs] = success[rs] = info_mask[rs] = False
            self._autoreset = terminated | truncated
        elif self.autoreset_mode == AutoresetMode.SAME_STEP:
            done = terminated | truncated
            rs = np.flatnonzero(done)
            if len(rs):
                final_obs = self._obs(q1, v1, a1)
                self._reset_worlds(rs)
                info["final_obs"] = final_obs
                info["_final_obs"] = self._out(done)
                info["final_info"] = {"success": self._out(success.copy()), "_success": self._out(done.copy())}
                info["_final_info"] = self._out(done.copy())
        info["success"], info["_success"] = self._out(success), self._out(info_mask)
        if not self.torch_output:
            reward = reward.detach().cpu().numpy().astype(np.float64)
        return (self._obs(self._qpos, self._qvel, self._act), reward, self._out(terminated), self._out(truncated),
                info)

    def render(self):
        """No rendering (``render_modes`` is empty): returns None."""
        return None

    def close_extras(self, **kwargs):
        self._rngs = None

    def __repr__(self) -> str:
        return (f"HybridWamVecEnv({self.task.name}, num_envs={self.num_envs}, device={self.device}, "
                f"world={type(self.world).__name__})")


def make_vec_env(task_or_yaml="cartpole_swingup", num_envs: int = 1, device: str | None = None, world=None,
                 torch_output: bool = False, frame_skip: int | None = None, **kwargs) -> HybridWamVecEnv:
    """A :class:`HybridWamVecEnv` of ``num_envs`` worlds of a task (a Task, a shipped name or a YAML path).

    Further keywords: ``max_episode_steps``, ``reset_noise_scale`` (0.01), ``terminate_on_success``
    (False) and ``autoreset_mode`` ("next_step", "same_step" or "disabled").
    """
    return HybridWamVecEnv(task_or_yaml, num_envs, device=device, world=world, torch_output=torch_output,
                           frame_skip=frame_skip, **kwargs)


class HybridWamEnv(gym.Env):
    """One world of a task as a ``gymnasium.Env`` (a one-world :class:`HybridWamVecEnv` underneath).

    Same conventions and keywords as :func:`make_vec_env`; observation [nq + nv], action [nu],
    reward a float (a 0-d tensor with ``torch_output=True``). It truncates by itself after
    ``max_episode_steps`` steps; stepping on after the end continues the same world.
    """

    metadata = {"render_modes": []}

    def __init__(self, task="cartpole_swingup", *, device: str | None = None, world=None, torch_output: bool = False,
                 frame_skip: int | None = None, max_episode_steps: int | None = None,
                 reset_noise_scale: float = 0.01, terminate_on_success: bool = False,
                 render_mode: str | None = None):
        self._vec = HybridWamVecEnv(task, 1, device=device, world=world, torch_output=torch_output,
                                    frame_skip=frame_skip, max_episode_steps=max_episode_steps,
                                    reset_noise_scale=reset_noise_scale, terminate_on_success=terminate_on_success,
                                    autoreset_mode="disabled", render_mode=render_mode)
        self.task, self.world = self._vec.task, self._vec.world
        self.torch_output = self._vec.torch_output
        self.observation_space = self._vec.single_observation_space
        self.action_space = self._vec.single_action_space
        self.metadata = {**type(self).metadata, "torch": self.torch_output}
        self.render_mode = None

    max_episode_steps = property(lambda self: self._vec.max_episode_steps)
    frame_skip = property(lambda self: self._vec.frame_skip)
    dt = property(lambda self: self._vec.dt)
    qpos = property(lambda self: self._vec.qpos[0])
    qvel = property(lambda self: self._vec.qvel[0])

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start an episode; returns (obs [nq + nv], {}). ``options`` are not used."""
        super().reset(seed=seed)
        v = self._vec
        v._rngs = [self.np_random]
        v._reset_worlds(np.zeros(1, dtype=np.int64))
        v._needs_reset = False
        return v._obs(v.qpos, v.qvel, v.act)[0], {}

    def step(self, action):
        a = action if isinstance(action, torch.Tensor) else np.asarray(action)
        obs, reward, term, trunc, info = self._vec.step(a[None])
        info = {"success": info["success"][0] if self.torch_output else bool(info["success"][0])}
        if self.torch_output:
            return obs[0], reward[0], term[0], trunc[0], info
        return obs[0], float(reward[0]), bool(term[0]), bool(trunc[0]), info

    def render(self):
        """No rendering (``render_modes`` is empty): returns None."""
        return None

    def close(self):
        self._vec.close()


# ---- registry ----------------------------------------------------------------------------------
#: shipped task name -> gymnasium id, filled by :func:`register_envs`
ENV_IDS: dict[str, str] = {}


def register_envs() -> dict[str, str]:
    """Register every shipped task with gymnasium (idempotent): ``gym.make(id)`` gives a
    :class:`HybridWamEnv`, ``gym.make_vec(id, num_envs=N)`` a :class:`HybridWamVecEnv`. Keywords
    of either (``device``, ``frame_skip``, ...) pass through ``make`` / ``make_vec``.
    ``import hybridwam`` already did this (the ids name this module by string, so it loads on the
    first ``gym.make``); ids are from :func:`env_id`."""
    from . import _register_gymnasium_envs

    ENV_IDS.update(_register_gymnasium_envs(gym))
    return dict(ENV_IDS)


register_envs()
