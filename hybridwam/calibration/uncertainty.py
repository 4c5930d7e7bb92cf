"""Confidence intervals of identified physical parameters (Gauss-Newton at the optimum), and the
parameters the logs cannot identify, by name.

At the identified theta (kernels in float64, whatever the calibration's dtype) the residuals r of
the multi-step loss (predicted minus logged positions over open-loop segments, plus velocities
weighted by sqrt(vel_weight)) have the Jacobian J = dr/dtheta, by central differences in theta
(the parametrisation of :class:`PhysicalParameters`: logarithmic for positive quantities). With H
= J^T J (Gauss-Newton's Hessian of 0.5 |r|^2) the covariance of theta is the cluster-robust
sandwich H^-1 (sum_s J_s^T r_s r_s^T J_s) H^-1 over the segments s, which allows errors within a
segment to be correlated (an open-loop rollout accumulates them) and only assumes segments to be
independent: use segments that do not overlap (``segments_for_uncertainty``). Intervals are theta
+- z std, mapped to physical units (multiplicative for log-parametrised quantities).

A parameter is flagged unidentifiable when more than 1 % of it lies in the directions of theta the
residuals barely see (eigenvectors of the column-scaled H with eigenvalues below ``null_tol`` times the largest:
changing those parameters together leaves the motion unchanged, e.g. every mass, armature,
damping and gain scaled alike), when the residuals do not depend on it at all, or (a
log-parametrised one) when its interval spans more than a factor ``exp(2 z max_std)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from .data import Segments, make_segments
from .params import PhysicalParameters

#: two-sided normal quantiles of the supported confidence levels
_Z = {0.68: 0.9945, 0.9: 1.6449, 0.95: 1.9600, 0.99: 2.5758}


@dataclass
class ParameterUncertainty:
    """Per parameter (``labels`` order): the identified ``value`` (physical units), ``std`` (in
    theta, the calibration's parametrisation), the ``interval`` (lo, hi) at ``level`` in physical
    units; ``flagged``: {label: why} for parameters the logs do not identify; ``eigenvalues`` of
    the column-scaled Gauss-Newton matrix (ascending, relative to the largest) and ``sigma``, the
    residuals' RMS."""

    labels: list[str]
    value: dict[str, float]
    std: dict[str, float]
    interval: dict[str, tuple[float, float]]
    level: float
    flagged: dict[str, str] = field(default_factory=dict)
    eigenvalues: list[float] = field(default_factory=list)
    sigma: float = float("nan")
    n_residuals: int = 0
    n_segments: int = 0

    def table(self) -> str:
        lines = [f"| parameter | identified | {int(round(100 * self.level))} % interval | identifiable |",
                 "|---|---|---|---|"]
        for k in self.labels:
            lo, hi = self.interval[k]
            lines.append(f"| {k} | {self.value[k]:.6g} | [{lo:.6g}, {hi:.6g}] | "
                         + (f"no: {self.flagged[k]}" if k in self.flagged else "yes") + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready (unbounded ends and standard deviations as None)."""
        def fin(x):
            return x if math.isfinite(x) else None

        return {"level": self.level, "sigma": self.sigma, "n_residuals": self.n_residuals,
                "n_segments": self.n_segments, "eigenvalues": self.eigenvalues,
                "parameters": {k: {"value": self.value[k], "std_theta": fin(self.std[k]),
                                   "interval": [fin(x) for x in self.interval[k]],
                                   "identifiable": k not in self.flagged, **({"why": self.flagged[k]}
                                                                             if k in self.flagged else {})}
                               for k in self.labels}}


def segments_for_uncertainty(logs, horizon: int, max_segments: int | None = 2048) -> Segments:
    """Non-overlapping segments of ``horizon`` steps (float64): the sandwich covariance treats
    segments as independent."""
    return make_segments(logs, horizon, horizon, dtype=torch.float64, max_segments=max_segments)


def _float64_copy(pp: PhysicalParameters):
    """(model, PhysicalParameters) in float64 on the CPU with pp.model's current parameters and the
    same theta parametrisation (pp's nominal values)."""
    from ..model import load_model

    m = pp.model
    model = load_model(m.mj, device="cpu", dtype="float64")
    with torch.no_grad():
        for k, v in m.params.items():
            model.params[k].copy_(v.detach().to(device="cpu", dtype=torch.float64))
    nominal = {k: v.detach().to(device="cpu", dtype=torch.float64) for k, v in pp.nominal.items()}
    return model, PhysicalParameters(model, pp.groups, nominal=nominal)


def parameter_uncertainty(pp: PhysicalParameters, theta: torch.Tensor, segments: Segments, *, predict=None,
                          vel_weight: float = 0.0, level: float = 0.95, step: float = 1e-5,
                          null_tol: float = 1e-8, max_std: float = 1.0) -> ParameterUncertainty:
    """Confidence intervals of ``theta`` (pp's parametrisation) from the residuals on ``segments``.

    ``predict(physics, segments) -> (Q, V)``: the segments' predicted positions and velocities by
    a Physics of the float64 copy of the model (default: open loop from each segment's first
    logged state; the calibration passes one that applies its per-run offsets). ``step``: the
    central differences' step in theta.
    """
    from ..physics import Physics

    if level not in _Z:
        raise ValueError(f"level must be one of {sorted(_Z)}, got {level}")
    model, pp64 = _float64_copy(pp)
    phys = Physics(model, verbose=False)
    if predict is None:
        def predict(phys, s):
            tr = phys.rollout(s.qpos[:, 0], s.qvel[:, 0], s.ctrl)
            return tr.qpos, tr.qvel

    seg = Segments(*(x.to(dtype=torch.float64, device="cpu") for x in (segments.qpos, segments.qvel, segments.ctrl)),
                   segments.traj, segments.start)
    theta = theta.detach().to(torch.float64).cpu()
    wv = math.sqrt(vel_weight)

    @torch.no_grad()
    def residuals(th):
        pp64.write(th)
        Q, V = predict(phys, seg)
        r = Q[:, 1:] - seg.qpos[:, 1:]
        if wv:
            r = torch.cat([r, wv * (V[:, 1:] - seg.qvel[:, 1:])], -1)
        return r.reshape(len(seg), -1).numpy()

    r0 = residuals(theta)
    n = len(theta)
    J = np.empty(r0.shape + (n,))
    for i in range(n):
        e = torch.zeros(n, dtype=torch.float64)
        e[i] = step
        J[..., i] = (residuals(theta + e) - residuals(theta - e)) / (2 * step)
    pp64.write(theta)
    S, K = J.shape[0], J.shape[1]
    Jf = J.reshape(S * K, n)
    H = Jf.T @ Jf
    # the sandwich's meat: per-segment score J_s^T r_s
    g = np.einsum("skn,sk->sn", J, r0)
    meat = g.T @ g * (S / max(S - 1, 1))
    labels = pp.labels
    scale = np.sqrt(np.diag(H))
    flagged: dict[str, str] = {}
    dead = scale <= 1e-12 * max(float(scale.max()), 1e-300)
    for i in np.where(dead)[0]:
        flagged[labels[i]] = "the residuals do not depend on it"
    live = ~dead
    cov = np.full((n, n), np.inf)
    eig_rel: list[float] = []
    if live.any():
        d = scale[live]
        Hs = H[np.ix_(live, live)] / np.outer(d, d)
        lam, vec = np.linalg.eigh(Hs)
        lam = np.maximum(lam, 0.0)
        eig_rel = [float(x / lam[-1]) for x in lam]
        null = lam < null_tol * lam[-1]
        idx = np.where(live)[0]
        # a parameter's share of the directions the residuals do not see (its unit vector projected
        # onto that subspace): above 0.01 it cannot be told apart from the others it moves with
        V0 = vec[:, null] / d[:, None]  # in theta's own coordinates, orthonormalised
        if V0.shape[1]:
            V0 = np.linalg.qr(V0)[0]
        share = (V0 ** 2).sum(1)
        for k in np.where(share > 0.01)[0]:
            with_ = [labels[idx[m]] for m in np.where(share > 0.01)[0] if m != k and np.abs(V0[k] @ V0[m]) > 1e-3]
            flagged[labels[idx[k]]] = ("not identifiable apart from " + ", ".join(with_)
                                       + " (changed together they leave the motion unchanged)")
        inv = np.zeros_like(lam)
        inv[~null] = 1.0 / lam[~null]
        Hinv = (vec * inv) @ vec.T / np.outer(d, d)
        cov[np.ix_(live, live)] = Hinv @ meat[np.ix_(live, live)] @ Hinv
        for k in np.where(share > 0.01)[0]:  # unbounded along the unseen directions
            cov[idx[k], idx[k]] = np.inf
    z = _Z[level]
    std = {labels[i]: float(math.sqrt(cov[i, i])) if np.isfinite(cov[i, i]) else float("inf") for i in range(n)}
    value = pp.physical(theta)
    interval = {}
    wide = (f"its {int(round(100 * level))} % interval spans more than a factor {math.exp(2 * z * max_std):.3g}")
    for i, k in enumerate(labels):
        s = std[k]
        log = pp.entries[i].kind != "lin"
        if log and s > max_std:
            flagged.setdefault(k, wide)
        if not math.isfinite(s) or (log and z * s > 50.0):  # unbounded (a factor beyond e^50 is too)
            interval[k] = (0.0 if log else float("-inf"), float("inf"))
            continue
        lo, hi = theta.clone(), theta.clone()
        lo[i] -= z * s
        hi[i] += z * s
        interval[k] = (pp.physical(lo)[k], pp.physical(hi)[k])
    return ParameterUncertainty(labels=labels, value=value, std=std, interval=interval, level=level, flagged=flagged,
                                eigenvalues=eig_rel, sigma=float(np.sqrt(np.mean(r0 ** 2))), n_residuals=int(r0.size),
                                n_segments=S)
