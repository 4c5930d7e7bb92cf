"""Segments of logged trajectories: the training and evaluation samples of calibration.

A segment is ``horizon`` steps of one trajectory: the logged start state (q0, v0), the logged
controls of those steps, and the logged states it should reproduce. Segments never cross a
trajectory boundary.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..logs import Logs


@dataclass
class Segments:
    """qpos [S, k+1, nq], qvel [S, k+1, nv] (logged, row 0 = start state), ctrl [S, k, nu];
    traj [S] trajectory index, start [S] row of the start state in the Logs."""

    qpos: torch.Tensor
    qvel: torch.Tensor
    ctrl: torch.Tensor
    traj: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return self.qpos.shape[0]

    @property
    def horizon(self) -> int:
        return self.ctrl.shape[1]

    @property
    def q0(self) -> torch.Tensor:
        return self.qpos[:, 0]

    @property
    def v0(self) -> torch.Tensor:
        return self.qvel[:, 0]

    def take(self, idx) -> Segments:
        idx_t = torch.as_tensor(idx, dtype=torch.long, device=self.qpos.device)
        idx_n = np.asarray(idx.cpu() if isinstance(idx, torch.Tensor) else idx, dtype=np.int64)
        return Segments(self.qpos[idx_t], self.qvel[idx_t], self.ctrl[idx_t], self.traj[idx_n], self.start[idx_n])


def segment_starts(logs: Logs, horizon: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(start rows, trajectory of each) of every segment of ``horizon`` steps, ``stride`` apart."""
    starts, trajs = [], []
    for i in range(logs.n_traj):
        a, b = logs.bounds(i)
        s = np.arange(a, b - horizon, max(1, int(stride)))
        starts.append(s)
        trajs.append(np.full(len(s), i))
    if not starts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(starts).astype(np.int64), np.concatenate(trajs).astype(np.int64)


def make_segments(logs: Logs, horizon: int, stride: int, device="cpu", dtype=torch.float32,
                  max_segments: int | None = None) -> Segments:
    """All segments of ``horizon`` steps starting every ``stride`` rows; with ``max_segments``, an
    evenly spaced subset of them (deterministic)."""
    s, tr = segment_starts(logs, horizon, stride)
    if max_segments is not None and len(s) > max_segments:
        keep = np.unique(np.linspace(0, len(s) - 1, max_segments).round().astype(np.int64))
        s, tr = s[keep], tr[keep]
    if not len(s):
        longest = max((logs.duration(i) for i in range(logs.n_traj)), default=0.0)
        raise ValueError(f"no segment of {horizon} steps fits in the logs (longest trajectory {longest:.3g} s)")
    rows = s[:, None] + np.arange(horizon + 1)[None, :]

    def T(x):
        return torch.as_tensor(x, dtype=dtype, device=device)

    return Segments(T(logs.qpos[rows]), T(logs.qvel[rows]), T(logs.ctrl[rows[:, :-1]]), tr, s)
