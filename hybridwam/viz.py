"""Plots of trajectories (matplotlib, Agg backend: files only, no screen needed)."""
from __future__ import annotations

import os

import numpy as np

from .types import BALL, FREE, HINGE


def qpos_labels(model) -> list[str]:
    """One label per qpos coordinate: the joint name, with a suffix for free and ball joints."""
    m = model.mj
    names = model.names("joint")
    labels = [f"qpos[{i}]" for i in range(m.nq)]
    for j in range(m.njnt):
        a, t = int(m.jnt_qposadr[j]), int(m.jnt_type[j])
        parts = (("x", "y", "z", "qw", "qx", "qy", "qz") if t == FREE
                 else ("qw", "qx", "qy", "qz") if t == BALL else ("",))
        for k, p in enumerate(parts):
            labels[a + k] = f"{names[j]}.{p}" if p else names[j]
    return labels


def qpos_units(model) -> list[str]:
    """"rad" for hinge coordinates, "m" for slide / free positions, "" for quaternion parts."""
    m = model.mj
    units = [""] * m.nq
    for j in range(m.njnt):
        a, t = int(m.jnt_qposadr[j]), int(m.jnt_type[j])
        if t == FREE:
            units[a:a + 3] = ["m"] * 3
        elif t != BALL:
            units[a] = "rad" if t == HINGE else "m"
    return units


def plot_trajectories(model, qpos, path: str, worlds: int = 4, ctrls=None, reference=None,
                      reference_label: str = "MuJoCo (world 0)", title: str | None = None,
                      max_coords: int = 12) -> str:
    """Plot qpos per coordinate against time for the first ``worlds`` worlds; returns ``path``.

    qpos: [B, T+1, nq] (tensor or array); ctrls: optional [B, T, nu], world 0's in a last panel;
    reference: optional [T+1, nq] trajectory of world 0 from another simulator, drawn dashed.
    At most ``max_coords`` qpos coordinates are drawn (the first ones).
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    q = _np(qpos)
    B, T1, nq_all = q.shape
    nq = min(nq_all, max_coords)
    n = min(worlds, B)
    t = np.arange(T1) * model.timestep
    labels, units = qpos_labels(model), qpos_units(model)
    u = None if ctrls is None or model.nu == 0 else _np(ctrls)
    panels = nq + (u is not None)
    fig, axes = plt.subplots(panels, 1, figsize=(8, 2.2 * panels + 0.6), sharex=True, squeeze=False)
    axes = axes[:, 0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i in range(nq):
        ax = axes[i]
        for w in range(n):
            ax.plot(t, q[w, :, i], color=colors[w % len(colors)], lw=1.2, label=f"world {w}")
        if reference is not None:
            ax.plot(t, _np(reference)[:, i], "k--", lw=1.0, label=reference_label)
        ax.set_ylabel(f"{labels[i]}" + (f" [{units[i]}]" if units[i] else ""))
        ax.grid(alpha=0.3)
    if u is not None:  # controls of world 0 only: random controls of several worlds are unreadable
        ax = axes[-1]
        tc = np.arange(u.shape[1] + 1) * model.timestep
        act = model.names("actuator")
        for a in range(u.shape[2]):
            ax.stairs(u[0, :, a], tc, color=colors[a % len(colors)] if u.shape[2] > 1 else colors[0], lw=0.8,
                      label=act[a])
        ax.set_ylabel("ctrl, world 0")
        if u.shape[2] > 1:
            ax.legend(loc="upper right", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="upper right", fontsize=8, ncol=min(n + (reference is not None), 5))
    axes[-1].set_xlabel("time [s]")
    more = f", first {nq} of {nq_all} coordinates" if nq < nq_all else ""
    fig.suptitle(title or f"{os.path.basename(model.source)}: {n} of {B} worlds{more}")
    fig.tight_layout()
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)
