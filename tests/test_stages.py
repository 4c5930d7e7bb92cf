"""Stage-level API (Physics.kinematics, .mass_matrix, .forward), one test per stage against
MuJoCo's mjData after mj_forward (xpos, xquat, site_xpos; mj_fullM; qfrc_bias, qfrc_passive,
qfrc_actuator, qacc), on every shipped scene and on a model with every joint kind; and their
gradients against central differences. The stages are the looped engine's (kernels/smooth.py,
passive.py, actuation.py, solve.py), whatever engine the Physics steps with.
"""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from conftest import central_difference, random_ctrl, random_state, to_torch
from test_looped import TREE_XML

import hybridwam as hw

SITE_TREE = TREE_XML.replace('<geom type="sphere" size="0.05" mass="0.3"',
                             '<site name="toe" pos="0.1 0.2 0.3"/><geom type="sphere" size="0.05" mass="0.3"')
MODELS = [*hw.list_scenes(), "tree"]
_CACHE: dict = {}


def physics(name: str) -> tuple[hw.Model, hw.Physics]:
    if name not in _CACHE:
        model = hw.load_model(SITE_TREE if name == "tree" else name, device="cpu", dtype="float64")
        _CACHE[name] = (model, hw.Physics(model, verbose=False))
    return _CACHE[name]


def _reference(mj, qpos, qvel, ctrl):
    d = mujoco.MjData(mj)
    out = {k: [] for k in ("xpos", "xquat", "site_xpos", "M", "qacc", "qfrc_bias", "qfrc_passive", "qfrc_actuator",
                            "qfrc_constraint")}
    for b in range(len(qpos)):
        d.qpos[:], d.qvel[:] = qpos[b], qvel[b]
        if mj.nu:
            d.ctrl[:] = ctrl[b]
        mujoco.mj_forward(mj, d)
        M = np.zeros((mj.nv, mj.nv))
        mujoco.mj_fullM(mj, d, M)
        for k in out:
            out[k].append(M if k == "M" else np.array(getattr(d, k)))
    return {k: np.stack(v) for k, v in out.items()}


def _state(model, rng, B=6):
    qpos, qvel = random_state(model.mj, B, rng, vel_scale=1.5, pos_scale=0.5)
    return qpos, qvel, random_ctrl(model.mj, B, rng, outside=0.3)


@pytest.mark.parametrize("name", MODELS)
def test_kinematics_matches_mj_forward(rng, name):
    model, phys = physics(name)
    qpos, qvel, ctrl = _state(model, rng)
    ref = _reference(model.mj, qpos, qvel, ctrl)
    k = phys.kinematics(to_torch(qpos, torch.float64))
    assert k.site_xpos.shape == ref["site_xpos"].shape
    for got, want in ((k.xpos, ref["xpos"]), (k.xquat, ref["xquat"]), (k.site_xpos, ref["site_xpos"])):
        # quaternions: MuJoCo's sign is kept, not just the rotation
        assert np.abs(got.numpy() - want).max(initial=0.0) < 1e-12
    if name == "tree":
        assert k.site_xpos.shape == (6, 1, 3)


@pytest.mark.parametrize("name", MODELS)
def test_mass_matrix_matches_mj_fullM(rng, name):
    model, phys = physics(name)
    qpos, qvel, ctrl = _state(model, rng)
    ref = _reference(model.mj, qpos, qvel, ctrl)
    M = phys.mass_matrix(to_torch(qpos, torch.float64)).numpy()
    assert np.abs(M - ref["M"]).max() <= 1e-12 * max(1.0, np.abs(ref["M"]).max())
    # unbatched input, unbatched output
    assert phys.mass_matrix(to_torch(qpos[0], torch.float64)).shape == (model.nv, model.nv)


@pytest.mark.parametrize("name", MODELS)
def test_forward_matches_mj_forward(rng, name):
    model, phys = physics(name)
    qpos, qvel, ctrl = _state(model, rng)
    args = (to_torch(qpos, torch.float64), to_torch(qvel, torch.float64), to_torch(ctrl, torch.float64))
    if model.structure.pairs or any(model.structure.dof_frictionloss):
        with pytest.raises(NotImplementedError, match="does not cover"):
            phys.forward(*args)
        return
    ref = _reference(model.mj, qpos, qvel, ctrl)
    f = phys.forward(*args)
    for key in ("qfrc_bias", "qfrc_passive", "qfrc_actuator", "qfrc_constraint", "qacc"):
        got, want = getattr(f, key).numpy(), ref[key]
        assert np.abs(got - want).max() <= 1e-10 * max(1.0, np.abs(want).max()), key


def test_stage_gradients_match_finite_differences(rng):
    model, phys = physics("tree")
    qpos, qvel, ctrl = _state(model, rng, B=2)
    q = to_torch(qpos, torch.float64).requires_grad_(True)
    v = to_torch(qvel, torch.float64).requires_grad_(True)
    u = to_torch(ctrl, torch.float64).requires_grad_(True)
    mass = model.params["body_mass"]
    leaf = mass.detach().clone().requires_grad_(True)
    w = torch.linspace(0.3, 1.7, model.nv, dtype=torch.float64)
    try:
        model.params["body_mass"] = leaf

        def loss():
            k = phys.kinematics(q)
            M = phys.mass_matrix(q)
            f = phys.forward(q, v, u)
            return (k.site_xpos ** 2).sum() + k.xquat[:, 3].sum() + (M * M).sum() * 0.1 + (f.qacc * w).sum() * 1e-3

        loss().backward()
        for t, idx in ((q, (0, 2)), (q, (1, 9)), (q, (0, 15)), (v, (0, 7)), (v, (1, 12)), (u, (0, 1)),
                       (leaf, 3), (leaf, 6)):
            fd = central_difference(loss, t, idx, 1e-6)
            assert abs(t.grad[idx].item() - fd) <= 1e-6 * max(1.0, abs(fd)), (idx, t.grad[idx].item(), fd)
    finally:
        model.params["body_mass"] = mass


def test_stage_api_checks_replaced_parameters():
    """The stages read parameter arrays by index without bounds checks, so a replaced parameter of
    the wrong shape is refused by name, as Physics.rollout refuses it."""
    model, phys = physics("tree")
    q = torch.as_tensor(model.mj.qpos0, dtype=torch.float64)[None]
    mass = model.params["body_mass"]
    try:
        model.params["body_mass"] = mass[:3].clone()
        with pytest.raises(ValueError, match=r"model.params\['body_mass'\]: expected shape"):
            phys.mass_matrix(q)
    finally:
        model.params["body_mass"] = mass
    assert phys.mass_matrix(q).shape == (1, model.nv, model.nv)
