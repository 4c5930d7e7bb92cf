"""Shared fixtures and MuJoCo reference helpers for the hybridwam core tests.

MuJoCo (``mujoco.mj_step``, float64 C code) is the independent reference: hybridwam reads the
same ``MjModel`` and, for contact-free models with the Euler integrator, one step must agree with
``mj_step`` up to floating-point rounding.

Compile budget: every distinct model *structure* (joint types, tree, actuator flags, dtype)
compiles one Warp module (~1.5-3 s on a 2-core CPU the first time, cached on disk afterwards).
Models are therefore built once per session through :func:`sim` and the test files keep the number
of distinct structures small; models that differ only in numbers share one compiled module.
"""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

import hybridwam as hw

FREE, BALL, SLIDE, HINGE = (int(mujoco.mjtJoint.mjJNT_FREE), int(mujoco.mjtJoint.mjJNT_BALL),
                            int(mujoco.mjtJoint.mjJNT_SLIDE), int(mujoco.mjtJoint.mjJNT_HINGE))


# ---- finite differences -----------------------------------------------------------------------
def central_difference(loss, t: torch.Tensor, idx, eps: float) -> float:
    """(loss(t[idx] + eps) - loss(t[idx] - eps)) / (2 eps), with t edited in place and restored."""
    with torch.no_grad():
        old = t[idx].item()
        t[idx] = old + eps
        lp = loss().item()
        t[idx] = old - eps
        lm = loss().item()
        t[idx] = old
    return (lp - lm) / (2 * eps)


def assert_grads_match_central_differences(model, names, loss, checks, eps=1e-6, tol=1e-6):
    """Gradients of ``loss()`` (a scalar tensor, read after the parameters ``names`` of ``model``
    are swapped for leaf copies) against central differences: ``checks`` is a list of (tensor
    or parameter name, index[, step]); each gradient within tol * max(1, |fd|) of its difference
    quotient, which must be non-zero. The parameters are restored afterwards."""
    saved = {n: model.params[n] for n in names}
    leaves = {n: model.params[n].detach().clone().requires_grad_(True) for n in names}
    try:
        model.params.update(leaves)
        loss().backward()
        for t, idx, *step in checks:
            t = leaves[t] if isinstance(t, str) else t
            fd = central_difference(loss, t, idx, step[0] if step else eps)
            g = t.grad[idx].item()
            assert fd != 0 and abs(g - fd) <= tol * max(1.0, abs(fd)), (idx, g, fd)
    finally:
        model.params.update(saved)


# ---- random states and controls -----------------------------------------------------------------
def random_unit_quat(rng: np.random.Generator, n: int) -> np.ndarray:
    """n uniformly distributed unit quaternions in MuJoCo's (w, x, y, z) order."""
    q = rng.normal(size=(n, 4))
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def random_state(mj: mujoco.MjModel, batch: int, rng: np.random.Generator, vel_scale: float = 2.0,
                 pos_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Random valid (qpos [batch, nq], qvel [batch, nv]) for any model, float64.

    Hinge: uniform angle in [-pi, pi]; slide: uniform in [-pos_scale, pos_scale]; ball: random unit
    quaternion (w, x, y, z); free: position uniform in the box [-pos_scale, pos_scale]^3 and a random
    unit quaternion. Velocities are normal with standard deviation ``vel_scale``.
    """
    qpos = np.zeros((batch, mj.nq))
    for j in range(mj.njnt):
        a, t = int(mj.jnt_qposadr[j]), int(mj.jnt_type[j])
        if t == HINGE:
            qpos[:, a] = rng.uniform(-np.pi, np.pi, batch)
        elif t == SLIDE:
            qpos[:, a] = rng.uniform(-pos_scale, pos_scale, batch)
        elif t == BALL:
            qpos[:, a:a + 4] = random_unit_quat(rng, batch)
        else:
            qpos[:, a:a + 3] = rng.uniform(-pos_scale, pos_scale, (batch, 3))
            qpos[:, a + 3:a + 7] = random_unit_quat(rng, batch)
    qvel = rng.normal(scale=vel_scale, size=(batch, mj.nv))
    return qpos, qvel


def random_ctrl(mj: mujoco.MjModel, batch: int, rng: np.random.Generator, outside: float = 0.3,
                scale: float = 2.0, shape: tuple[int, ...] = ()) -> np.ndarray:
    """Random controls [batch, *shape, nu], float64.

    A ctrl-limited actuator with range [lo, hi] draws uniformly from
    [lo - outside * (hi - lo), hi + outside * (hi - lo)], so (with the default) a quarter of the
    draws lie outside the range and exercise clamping; an unlimited one draws N(0, scale^2).
    """
    out = np.zeros((batch, *shape, mj.nu))
    for a in range(mj.nu):
        if mj.actuator_ctrllimited[a]:
            lo, hi = mj.actuator_ctrlrange[a]
            w = hi - lo
            out[..., a] = rng.uniform(lo - outside * w, hi + outside * w, (batch, *shape))
        else:
            out[..., a] = rng.normal(scale=scale, size=(batch, *shape))
    return out


def as_float32(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Round to float32 and back, so that MuJoCo and hybridwam start from bit-identical inputs
    and the comparison measures only the arithmetic inside the step."""
    return tuple(np.asarray(a, dtype=np.float32).astype(np.float64) for a in arrays)


def collision_candidates(mj: mujoco.MjModel) -> list[tuple[int, int]]:
    """Geom pairs that may collide (a superset of MuJoCo's filtered pairs): compatible
    contype/conaffinity bits, different bodies, not both welded to the world."""
    out = []
    for g1 in range(mj.ngeom):
        for g2 in range(g1 + 1, mj.ngeom):
            if not ((mj.geom_contype[g1] & mj.geom_conaffinity[g2]) or (mj.geom_contype[g2] & mj.geom_conaffinity[g1])):
                continue
            b1, b2 = int(mj.geom_bodyid[g1]), int(mj.geom_bodyid[g2])
            if b1 == b2 or (mj.body_weldid[b1] == 0 and mj.body_weldid[b2] == 0):
                continue
            out.append((g1, g2))
    return out


def clearance(mj: mujoco.MjModel, qpos: np.ndarray) -> np.ndarray:
    """Smallest distance (m) between any two geoms that may collide, per world [B] (inf when the
    model has no such pair); negative when they penetrate. ``mujoco.mj_geomDistance`` at the
    configuration qpos [B, nq]."""
    pairs = collision_candidates(mj)
    out = np.full(len(qpos), np.inf)
    if not pairs:
        return out
    d = mujoco.MjData(mj)
    fromto = np.zeros(6)
    for b, q in enumerate(qpos):
        d.qpos[:] = q
        mujoco.mj_kinematics(mj, d)
        out[b] = min(mujoco.mj_geomDistance(mj, d, g1, g2, 10.0, fromto) for g1, g2 in pairs)
    return out


def random_free_state(mj: mujoco.MjModel, batch: int, rng: np.random.Generator, min_clearance: float = 0.02,
                      **kw) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`random_state`, but only configurations in which no two geoms are closer than
    ``min_clearance`` (m), so that neither MuJoCo nor hybridwam applies a contact force in the
    step: there the two must agree exactly (with contact they follow different contact laws)."""
    qs, vs, n = [], [], 0
    for _ in range(100):
        q, v = random_state(mj, 4 * batch, rng, **kw)
        keep = clearance(mj, q) > min_clearance
        qs.append(q[keep])
        vs.append(v[keep])
        n += int(keep.sum())
        if n >= batch:
            return np.concatenate(qs)[:batch], np.concatenate(vs)[:batch]
    raise RuntimeError("could not draw contact-free states")


# ---- MuJoCo reference -----------------------------------------------------------------------------
def mj_step_batch(mj: mujoco.MjModel, qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray,
                  qfrc_applied: np.ndarray | None = None, act: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """One ``mujoco.mj_step`` per world: qpos [B, nq], qvel [B, nv], ctrl [B, nu] (and optional
    generalized forces qfrc_applied [B, nv]) -> (qpos', qvel'); with activations ``act`` [B, na]
    -> (qpos', qvel', act')."""
    d = mujoco.MjData(mj)
    B = qpos.shape[0]
    q1, v1, a1 = np.empty((B, mj.nq)), np.empty((B, mj.nv)), np.empty((B, mj.na))
    for b in range(B):
        mujoco.mj_resetData(mj, d)
        d.qpos[:] = qpos[b]
        d.qvel[:] = qvel[b]
        if act is not None:
            d.act[:] = act[b]
        if mj.nu:
            d.ctrl[:] = ctrl[b]
        if qfrc_applied is not None:
            d.qfrc_applied[:] = qfrc_applied[b]
        mujoco.mj_step(mj, d)
        q1[b], v1[b], a1[b] = d.qpos, d.qvel, d.act
    return (q1, v1) if act is None else (q1, v1, a1)


def mj_rollout(mj: mujoco.MjModel, qpos0: np.ndarray, qvel0: np.ndarray, ctrls: np.ndarray,
               act0: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """T ``mj_step`` calls per world: ctrls [B, T, nu] -> qpos [B, T+1, nq], qvel [B, T+1, nv];
    with activations ``act0`` [B, na] also act [B, T+1, na]."""
    d = mujoco.MjData(mj)
    B, T = ctrls.shape[:2]
    Q, V, A = np.empty((B, T + 1, mj.nq)), np.empty((B, T + 1, mj.nv)), np.empty((B, T + 1, mj.na))
    for b in range(B):
        mujoco.mj_resetData(mj, d)
        d.qpos[:], d.qvel[:] = qpos0[b], qvel0[b]
        if act0 is not None:
            d.act[:] = act0[b]
        Q[b, 0], V[b, 0], A[b, 0] = d.qpos, d.qvel, d.act
        for t in range(T):
            if mj.nu:
                d.ctrl[:] = ctrls[b, t]
            mujoco.mj_step(mj, d)
            Q[b, t + 1], V[b, t + 1], A[b, t + 1] = d.qpos, d.qvel, d.act
    return (Q, V) if act0 is None else (Q, V, A)


# ---- error metric -----------------------------------------------------------------------------------
def rel_err(a, b) -> float:
    """max over elements of |a - b| / max(1, |b|) (b is the float64 MuJoCo reference).

    Pure relative error is meaningless for entries near zero (a velocity that crosses zero, a
    quaternion component of 1e-9): float32 rounding of O(1) intermediates leaves an absolute
    error of ~1e-7 there. Entries of these models (rad, m, rad/s, m/s) are O(1) to O(10), so the
    error is absolute below magnitude 1 and relative above it, which bounds the error by
    tol * max(1, |b|) elementwise with no division by tiny numbers.
    """
    a = a.detach().cpu().double().numpy() if isinstance(a, torch.Tensor) else np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b) / np.maximum(1.0, np.abs(b)))) if a.size else 0.0


def to_torch(x: np.ndarray, dtype=torch.float32) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x), dtype=dtype)


def exact_solver(mj: mujoco.MjModel) -> mujoco.MjModel:
    """``mj`` with MuJoCo's constraint solver run to its optimum: it stops at a relative
    improvement of opt.tolerance (1e-8 by default, which leaves up to 3e-6 rad/s of a step's
    velocity on tests/test_mj_limits.py's arm; MuJoCo's law here solves exactly)."""
    mj.opt.tolerance = 1e-14
    mj.opt.iterations = 1000
    return mj


def final_state_loss(phys, inputs, seed: int = 0):
    """A scalar loss of ``phys.rollout(*inputs)``: the final positions and velocities weighted by
    fixed random weights (float64), for gradient checks."""
    g = torch.Generator().manual_seed(seed)
    wq = torch.randn(phys.model.nq, generator=g, dtype=torch.float64)
    wv = torch.randn(phys.model.nv, generator=g, dtype=torch.float64)

    def loss():
        tr = phys.rollout(*inputs)
        return (tr.qpos[:, -1] * wq).sum() + (tr.qvel[:, -1] * wv).sum()

    return loss


def assert_looped_rollout_matches_mujoco(xml: str, qpos: np.ndarray, qvel: np.ndarray, ctrl: np.ndarray,
                                         tol: float):
    """The float64 looped-engine rollout of the MJCF ``xml`` from (qpos, qvel) [B, .] under ctrl [B,
    T, nu] within ``tol`` (rel_err, qpos and qvel) of mj_step's; returns (Physics.forward at the
    first controls, the per-world MjData after mj_forward at that state) for stage comparisons."""
    mj = mujoco.MjModel.from_xml_string(xml)
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    phys = hw.Physics(hw.load_model(xml, dtype="float64"), verbose=False)
    assert phys.engine == "looped"
    t = torch.float64
    tr = phys.rollout(to_torch(qpos, t), to_torch(qvel, t), to_torch(ctrl, t))
    err = rel_err(tr.qpos, mq), rel_err(tr.qvel, mv)
    assert max(err) <= tol, err
    out = phys.forward(to_torch(qpos, t), to_torch(qvel, t), to_torch(ctrl[:, 0], t))
    datas = []
    for b in range(len(qpos)):
        d = mujoco.MjData(mj)
        d.qpos[:], d.qvel[:], d.ctrl[:] = qpos[b], qvel[b], ctrl[b, 0]
        mujoco.mj_forward(mj, d)
        datas.append(d)
    return out, datas


# ---- session-scoped models -----------------------------------------------------------------------------
class SimCache:
    """Models and Physics built once per session, keyed by (source, dtype).

    ``source`` is a shipped scene name, an XML string, or a ``(key, MjModel)`` pair (for models
    whose numbers were edited after compilation).
    """

    def __init__(self):
        self._cache: dict[tuple, tuple[hw.Model, hw.Physics]] = {}

    def __call__(self, source, dtype: str = "float32") -> tuple[hw.Model, hw.Physics]:
        key = (source[0] if isinstance(source, tuple) else source, dtype)
        if key not in self._cache:
            src = source[1] if isinstance(source, tuple) else source
            model = hw.load_model(src, device="cpu", dtype=dtype)
            self._cache[key] = (model, hw.Physics(model))
        return self._cache[key]


@pytest.fixture(scope="session")
def sim() -> SimCache:
    """``sim(scene_or_xml, dtype="float32") -> (model, physics)``, cached for the session."""
    return SimCache()


@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh, fixed-seed generator per test (tests are independent of their order)."""
    return np.random.default_rng(20240611)
