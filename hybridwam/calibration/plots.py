"""Figures of a calibration run (matplotlib, Agg backend; PNG files in the output folder)."""
from __future__ import annotations

import os

import numpy as np
import torch

from ..hybrid import _atomic_write
from .data import make_segments

COLORS = {"measured": "black", "nominal": "tab:gray", "identified": "tab:blue", "hybrid": "tab:red",
          "neural": "tab:green"}


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str) -> None:
    """PNG written atomically: a run killed while plotting leaves no half-written figure that a
    resume would take for a finished one."""
    _atomic_write(path, lambda p: fig.savefig(p, dpi=110, format="png"))


@torch.no_grad()
def plot_predictions(run, logs, path: str, seconds: float = 4.0, traj: int = 0) -> str:
    """Measured joint angles of one trajectory against open-loop predictions of every model, each
    window of ``eval_horizon`` seconds restarted from the logged state."""
    plt = _plt()
    m = run.model
    sub = logs.trajectory(traj)
    k = run.k_eval
    n_rows = min(len(sub) - 1, int(round(seconds / m.timestep)))
    seg = make_segments(sub, k, k, m.device, m.dtype)
    seg = seg.take(np.arange(min(len(seg), max(1, n_rows // k))))
    preds = {name: f(seg)[0].cpu().numpy() for name, f in run.predictors().items()}
    t = sub.t - sub.t[0]
    fig, axes = plt.subplots(m.nq, 1, figsize=(10, 2.6 * m.nq), sharex=True, squeeze=False)
    for j in range(m.nq):
        ax = axes[j, 0]
        end = seg.start[-1] + k + 1
        ax.plot(t[:end], sub.qpos[:end, j], color=COLORS["measured"], lw=1.6, label="measured")
        for name, Q in preds.items():
            for s in range(len(seg)):
                r = seg.start[s] + np.arange(k + 1)
                ax.plot(t[r], Q[s, :, j], color=COLORS.get(name), lw=1.0, alpha=0.9,
                        label=name if s == 0 else None)
            for s in range(len(seg)):
                ax.axvline(t[seg.start[s]], color="0.85", lw=0.5, zorder=0)
        ax.set_ylabel(f"qpos[{j}] [rad]")
    axes[0, 0].legend(loc="upper right", ncol=5, fontsize=8)
    axes[0, 0].set_title(f"{sub.names[0]}: open-loop predictions ({k * m.timestep:g} s windows) vs measured")
    axes[-1, 0].set_xlabel("time [s]")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_rmse_vs_horizon(curves: dict, dt: float, path: str, split: str) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, c in curves.items():
        ax.plot(dt * np.arange(1, len(c) + 1), c, color=COLORS.get(name), label=name)
    ax.set_xlabel("prediction horizon [s]")
    ax.set_ylabel("RMSE of qpos [rad]")
    ax.set_yscale("log")
    ax.set_title(f"open-loop error on the {split} split")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def plot_history(history: dict, path: str) -> str:
    plt = _plt()
    stages = [s for s, h in history.items() if h]
    fig, axes = plt.subplots(1, max(1, len(stages)), figsize=(4 * max(1, len(stages)), 3.2), squeeze=False)
    for ax, s in zip(axes[0], stages, strict=False):
        h = history[s]
        e = [r["epoch"] for r in h]
        ax.semilogy(e, [r["train"] for r in h], label="train")
        ax.semilogy(e, [r["val"] for r in h], label="validation")
        best = min(h, key=lambda r: r["val"])
        ax.semilogy([best["epoch"]], [best["val"]], "o", color="tab:orange", mfc="none", label="best")
        ax.set_title(s)
        ax.set_xlabel("epoch")
        ax.legend()
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def save_plots(run, report, out: str) -> list[str]:
    split, logs = next(((n, x) for n, x in (("test", run.test), ("val", run.val)) if x is not None and x.n_traj),
                       ("train", run.train))
    paths = [plot_predictions(run, logs, os.path.join(out, "predictions.png"))]
    if split in report.curves:
        paths.append(plot_rmse_vs_horizon(report.curves[split], run.model.timestep,
                                          os.path.join(out, "rmse_vs_horizon.png"), split))
    paths.append(plot_history(report.history, os.path.join(out, "training.png")))
    run._physics_ready()
    return paths
