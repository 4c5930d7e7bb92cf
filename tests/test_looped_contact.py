"""Contacts and dry friction in the looped engine (kernels/collision.py) against the unrolled one.

The contact law is hybridwam's (README), so MuJoCo is the reference for behaviour only
(tests/test_contact.py: resting heights, friction cones, conservation, which run on both engines
where marked). Here the reference is the unrolled engine: an independent implementation of the
same law (generated straight-line code per model, its pair functions summing in registers),
itself tested against MuJoCo's behaviour and finite differences. In float64 the two must give the
same trajectories and gradients up to rounding, on models where contacts are active: a pile of
primitives touching each other and the floor (plane-box, plane-sphere, capsule-box, sphere-box,
sphere-capsule), a stack of boxes (box-box), an arm folding onto itself (capsule-capsule within
one tree, treated explicitly), convex meshes, the shipped pusher and dry friction alone.
The looped code compiles per group of pair kinds, not per model: the primitive models here share
one module set per dtype.
"""
from __future__ import annotations

from importlib import resources

import numpy as np
import pytest
import torch
from conftest import central_difference
from test_contact import DROP_XML, FRICTIONLOSS_XML, MESH_XML, STACK_XML

import hybridwam as hw

#: A folded arm whose tip falls onto its first link: a contact within one kinematic tree, which
#: the law treats explicitly (no implicit stiffness share)
FOLD_XML = """<mujoco><compiler angle="radian"/><option integrator="Euler" timestep="0.002"/>
<worldbody><body name="b1" pos="0 0 0.5"><joint name="j1" type="hinge" axis="0 1 0" damping="0.5"/>
    <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.02" mass="1"/>
    <body name="b2" pos="0.3 0 0"><joint type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 -0.25 0 0.07" size="0.015" mass="0.3"/>
      <body name="b3" pos="-0.25 0 0.07"><joint type="hinge" axis="0 1 0"/>
        <geom type="capsule" fromto="0 0 0 0 0.05 0" size="0.03" mass="0.2"/></body></body></body>
</worldbody><actuator><motor joint="j1" gear="0.2"/></actuator></mujoco>"""

#: Trajectory and gradient agreement, float64, relative to each quantity's largest magnitude
#: (measured: 1e-17..3e-11 for trajectories, 1e-18..1e-12 for gradients over these horizons);
#: one float32 step from the same state: the project's float32 tolerance (measured: up to 1.1e-5
#: in qvel where a stiff contact turns the rounding of a depth into velocity).
TOL, TOL32 = 1e-8, 1e-4

_CACHE: dict = {}


def engines(xml: str, dtype: str = "float64"):
    """(model, looped Physics, unrolled Physics), built once per file (the unrolled structures
    are those tests/test_contact.py compiles too, but the folded arm's)."""
    if (xml, dtype) not in _CACHE:
        model = hw.load_model(xml, device="cpu", dtype=dtype)
        _CACHE[xml, dtype] = (model, hw.Physics(model, engine="looped", verbose=False),
                              hw.Physics(model, engine="unrolled", verbose=False))
    return _CACHE[xml, dtype]


#: float64 rollouts: a ball bouncing on the floor and walls (plane-sphere), the shipped pusher
#: (plane-box, the arm's capsule against the box), the folded arm, dry friction alone
MODELS = {"ball_toss": "ball_toss", "pusher": "pusher", "fold": FOLD_XML, "frictionloss": FRICTIONLOSS_XML}
#: float32 single steps: bodies dropped on the floor (plane-box, plane-sphere, plane-capsule), a
#: stack of boxes (box-box), convex meshes on the floor and on each other
MODELS32 = {"drop": DROP_XML, "stack": STACK_XML, "mesh": MESH_XML}


#: horizons: the folded arm's tip spins up after its impact and the two engines' rounding
#: differences (3e-14 per step from the same state) grow chaotically there, to 1e-5 by step 200
STEPS = {"fold": 120}
#: downward speed added to a free body's start (the tossed ball hits the floor within 0.2 s)
DOWN = {"ball_toss": 4.0}


def _inputs(model, rng, B=4, T=200, vel=0.3, down=0.0):
    q0 = torch.as_tensor(np.tile(model.mj.qpos0, (B, 1)))
    v0 = torch.as_tensor(rng.normal(size=(B, model.nv)) * vel)
    v0[:, 2] -= down
    u = torch.as_tensor(rng.uniform(-1, 1, size=(B, T, model.nu)))
    return q0, v0, u


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / max(b.abs().max(), 1e-12))


@pytest.mark.parametrize("name", MODELS)
def test_looped_contacts_equal_the_unrolled_engine(rng, name):
    """200 steps (120 for the arm) from perturbed resting states, contacts active: the same trajectory; and the
    gradient of a loss on 60 steps w.r.t. initial state and controls."""
    model, looped, unrolled = engines(MODELS[name])
    assert looped.engine == "looped" and unrolled.engine == "unrolled"
    q0, v0, u = _inputs(model, rng, T=STEPS.get(name, 200), down=DOWN.get(name, 0.0))
    a, b = looped.rollout(q0, v0, u), unrolled.rollout(q0, v0, u)
    assert _rel(a.qpos, b.qpos) <= TOL and _rel(a.qvel, b.qvel) <= TOL
    w = torch.as_tensor(rng.normal(size=(4, 61, model.nv)))
    grads = []
    for phys in (looped, unrolled):
        q, v, c = q0.clone().requires_grad_(), v0.clone().requires_grad_(), u[:, :60].clone().requires_grad_()
        tr = phys.rollout(q, v, c)
        loss = (tr.qvel * w).sum() + (tr.qpos ** 2).sum()
        grads.append(torch.autograd.grad(loss, [q, v, c] if model.nu else [q, v]))
    for x, y in zip(*grads, strict=True):
        assert _rel(x, y) <= TOL


@pytest.mark.parametrize("name", MODELS32)
def test_looped_contact_steps_equal_the_unrolled_engine_float32(rng, name):
    """float32: one step from each state of a 300-step trajectory (bodies landing, resting,
    sliding) equals the unrolled engine's step from the same state."""
    model, looped, unrolled = engines(MODELS32[name], "float32")
    q0, v0, u = _inputs(model, rng, B=2, T=300)
    q0, v0, u = q0.float(), v0.float(), u.float()
    with torch.no_grad():
        tr = unrolled.rollout(q0, v0, u)
        Q, V = tr.qpos[:, :-1].reshape(-1, model.nq), tr.qvel[:, :-1].reshape(-1, model.nv)
        U = u.reshape(Q.shape[0], model.nu)
        (qa, va), (qb, vb) = looped.step(Q, V, U), unrolled.step(Q, V, U)
    assert _rel(qa, qb) <= TOL32 and _rel(va, vb) <= TOL32


def test_contacts_are_active_in_the_compared_models(rng):
    """The comparisons above mean something: in each contact model some pair touches (its
    trajectory differs from the same model without contacts)."""
    cases = [(MODELS[n], "float64", n) for n in ("ball_toss", "pusher", "fold")]
    cases += [(MODELS32[n], "float32", n) for n in MODELS32]
    for xml, dtype, name in cases:
        model, looped, _ = engines(xml, dtype)
        inputs = _inputs(model, rng, T=STEPS.get(name, 200), down=DOWN.get(name, 0.0))
        q0, v0, u = (x.to(model.dtype) for x in inputs)
        free = hw.load_model(_without_contacts(xml), device="cpu", dtype=dtype)
        assert not free.structure.pairs
        with torch.no_grad():
            a = looped.rollout(q0, v0, u)
            b = hw.Physics(free, engine="looped", verbose=False).rollout(q0, v0, u)
        assert _rel(a.qvel, b.qvel) > 1e-3, name


def _without_contacts(xml: str) -> str:
    """The model with MuJoCo's contact flag off (a shipped scene name: its file's text)."""
    if not xml.lstrip().startswith("<"):
        xml = (resources.files("hybridwam.scenes") / f"{xml}.xml").read_text()
    return xml.replace("<worldbody>", '<option><flag contact="disable"/></option><worldbody>', 1)


def test_looped_contact_gradients_match_finite_differences(rng):
    """The looped engine's own gradient through the pusher's contacts (the arm pushing the box
    over the floor) w.r.t. initial velocities and the contact stiffness of each pair, against
    central differences (float64)."""
    model, looped, _ = engines("pusher")
    q0, v0, u = _inputs(model, rng, B=1, T=40)
    old = model.params["pair_stiffness"]
    k = model.params["pair_stiffness"] = old.detach().clone().requires_grad_(True)
    w = torch.as_tensor(rng.normal(size=(1, 41, model.nv)))

    def loss():
        return (looped.rollout(q0, v0, u).qvel * w).sum()

    try:
        v0.requires_grad_(True)
        gv, gk = torch.autograd.grad(loss(), [v0, k])
        for idx in [(0, i) for i in range(0, model.nv, 2)]:
            fd = central_difference(loss, v0, idx, 1e-6)
            assert abs(gv[idx].item() - fd) <= 1e-5 * max(1.0, abs(fd)), (idx, gv[idx].item(), fd)
        assert gk.abs().max() > 0
        for i in torch.argsort(gk.abs(), descending=True)[:3].tolist():
            fd = central_difference(loss, k, i, 1e-4 * float(k[i].detach()))
            assert abs(gk[i].item() - fd) <= 1e-4 * abs(fd) + 1e-12, (i, gk[i].item(), fd)
    finally:
        model.params["pair_stiffness"] = old
