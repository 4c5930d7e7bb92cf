"""Contact dimensionality (MuJoCo's condim) and friction mixing: frictionless contacts (condim 1),
the higher priority geom's friction, torsional (condim 4) and rolling (condim 6) friction.

References: MuJoCo's own contacts (mjData.contact: dim and friction after its mixing rules),
mj_step with cone="elliptic" (isotropic friction, as hybridwam's), Coulomb's law for a spinning
and a rolling sphere, and central differences for the gradients.
"""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch

import hybridwam as hw

G = 9.81
R, MASS = 0.05, 1.0
INERTIA = 0.4 * MASS * R**2  # a solid sphere

SPHERE = """<mujoco><option timestep="0.002" cone="elliptic"/>
  <worldbody><geom type="plane" size="2 2 .1" condim="{c}" friction="{f}"/>
    <body pos="0 0 0.0499"><freejoint/><geom type="sphere" size="{r}" condim="{c}" mass="{m}" friction="{f}"/></body>
  </worldbody></mujoco>"""


def sphere(condim: int, friction: str):
    return SPHERE.format(c=condim, f=friction, r=R, m=MASS)


def mj_run(xml: str, qvel0, steps: int):
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    d.qvel[:] = qvel0
    out = []
    for _ in range(steps):
        mujoco.mj_step(m, d)
        out.append(d.qvel.copy())
    return np.array(out)


def hw_run(model, qvel0, steps: int, phys=None):
    phys = phys or hw.Physics(model, verbose=False, engine="looped")
    q0 = torch.tensor(model.mj.qpos0, dtype=model.dtype)[None]
    v0 = torch.as_tensor(np.asarray(qvel0), dtype=model.dtype)[None]
    tr = phys.rollout(q0, v0, torch.zeros(1, steps, 0, dtype=model.dtype))
    return tr.qvel[0, 1:].numpy()


def test_pair_friction_is_mujocos_mixed_contact_friction():
    """Per pair the friction MuJoCo's contacts carry (mjContact.friction, its dim), for pairs of
    every condim, equal and different priorities and different coefficients."""
    xml = """<mujoco><option cone="elliptic"/><worldbody>
      <geom name="floor" type="plane" size="3 3 .1" condim="3" friction="0.8 0.02 0.003"/>
      <body pos="0 0 0.04"><freejoint/><geom name="a" type="sphere" size="0.05" condim="1"
        friction="1.2 0.01 0.001"/></body>
      <body pos="0.5 0 0.04"><freejoint/><geom name="b" type="sphere" size="0.05" condim="4"
        friction="0.5 0.03 0.001"/></body>
      <body pos="1 0 0.04"><freejoint/><geom name="c" type="sphere" size="0.05" condim="6"
        friction="0.6 0.01 0.004"/></body>
      <body pos="1.5 0 0.04"><freejoint/><geom name="d" type="box" size="0.05 0.05 0.05" condim="1" priority="1"
        friction="0.3 0.01 0.001"/></body>
      <body pos="-0.5 0 0.04"><freejoint/><geom name="e" type="sphere" size="0.05" condim="6" priority="-1"
        friction="2 0.05 0.01"/></body>
      <body pos="0 0.5 0.04"><freejoint/><geom name="f" type="capsule" size="0.05 0.1" condim="1"
        friction="0.4 0.01 0.001"/></body>
    </worldbody></mujoco>"""
    m = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    model = hw.load_model(xml, device="cpu")
    pairs = list(model.structure.pairs)
    pf = model.params["pair_friction"].double().numpy()
    seen = set()
    for c in d.contact[:d.ncon]:
        i = pairs.index(tuple(sorted((int(c.geom1), int(c.geom2)), key=lambda g: (m.geom_type[g], g))))
        want = [c.friction[0] if c.dim > 1 else 0.0, c.friction[2] if c.dim >= 4 else 0.0,
                c.friction[3] if c.dim == 6 else 0.0]
        np.testing.assert_allclose(pf[i], want, rtol=1e-6, err_msg=str(c.dim))
        seen.add(int(c.dim))
    assert seen == {1, 3, 4, 6}, seen  # every kind of contact was compared
    assert model.structure.spin_roll
    # describe() shows each pair's friction: the priority winner's condim 1, the mixed condim 4
    text = model.describe()
    assert "floor - d  frictionless" in text and "floor - b  friction 0.8, torsional 0.03 m\n" in text, text


def test_frictionless_contact_slides_like_mujoco():
    """condim 1 on both geoms: a box launched along the floor keeps its speed (it stopped within
    4 cm while the contact took the geoms' sliding friction)."""
    xml = """<mujoco><option timestep="0.002" cone="elliptic"/><worldbody><geom type="plane" size="2 2 .1" condim="1"/>
      <body pos="0 0 0.05"><freejoint/><geom type="box" size="0.05 0.05 0.05" condim="1" mass="1"/></body>
    </worldbody></mujoco>"""
    v0 = np.array([1.0, 0.3, 0, 0, 0, 0])
    ref = mj_run(xml, v0, 250)
    got = hw_run(hw.load_model(xml, device="cpu", dtype=torch.float64), v0, 250)
    np.testing.assert_allclose(got[:, :2], ref[:, :2], atol=1e-9)
    np.testing.assert_allclose(got[-1, :2], v0[:2], atol=1e-9)


@pytest.fixture(scope="module")
def spin_model():
    return hw.load_model(sphere(4, "1 0.01 0.0001"), device="cpu", dtype=torch.float64)


def test_torsional_friction_spins_a_sphere_down_as_mujoco(spin_model):
    """A sphere spinning about the vertical on the floor (no slip, so only torsional friction
    acts): Coulomb's law decelerates it at mu_spin m g / I, as MuJoCo does."""
    w0, mu = 20.0, 0.01
    v0 = np.array([0, 0, 0, 0, 0, w0])
    ref = mj_run(sphere(4, "1 0.01 0.0001"), v0, 300)
    got = hw_run(spin_model, v0, 300)
    t = 49  # 0.1 s
    coulomb = w0 - mu * MASS * G / INERTIA * 0.1
    assert abs(got[t, 5] - coulomb) < 0.02 * w0, (got[t, 5], coulomb)
    assert abs(got[t, 5] - ref[t, 5]) < 0.02 * w0, (got[t, 5], ref[t, 5])
    # stopped by about the time Coulomb's law says (0.204 s) in both, and stays stopped
    assert abs(ref[-1, 5]) < 1e-3 and abs(got[-1, 5]) < 1e-3, (ref[-1, 5], got[-1, 5])
    assert got[110, 5] < 0.1 * w0
    # without condim 4 (the same friction coefficients) it keeps spinning, in both
    plain = sphere(3, "1 0.01 0.0001")
    assert abs(mj_run(plain, v0, 100)[-1, 5] - w0) < 1e-6
    assert abs(hw_run(hw.load_model(plain, device="cpu", dtype=torch.float64), v0, 100)[-1, 5] - w0) < 1e-6


def test_rolling_friction_decelerates_a_rolling_sphere_as_mujoco():
    """A sphere rolling without slipping (condim 6): the rolling torque mu_roll m g about the
    contact decelerates it at mu_roll g / (r (1 + I / (m r^2))), as MuJoCo (elliptic cone) does."""
    v, mu = 0.5, 0.002
    v0 = np.array([v, 0, 0, 0, v / R, 0])
    xml = sphere(6, f"1 0.005 {mu}")
    ref = mj_run(xml, v0, 400)
    got = hw_run(hw.load_model(xml, device="cpu", dtype=torch.float64), v0, 400)
    decel = mu * G / (R * (1 + INERTIA / (MASS * R**2)))
    for t in (99, 399):
        coulomb = v - decel * 0.002 * (t + 1)
        assert abs(got[t, 0] - coulomb) < 0.02 * v, (t, got[t, 0], coulomb)
        assert abs(got[t, 0] - ref[t, 0]) < 0.02 * v, (t, got[t, 0], ref[t, 0])
        assert abs(got[t, 4] * R - got[t, 0]) < 0.01 * v  # still rolling, not sliding


def test_spin_and_roll_gradients_match_central_differences(spin_model):
    """d(final state) / d(torsional, rolling coefficient, sliding coefficient, initial spin)
    against central differences, float64, while the sphere spins and rolls."""
    model = spin_model
    phys = hw.Physics(model, verbose=False, engine="looped")
    orig = model.params["pair_friction"]
    base = orig.clone()
    base[0, 2] = 0.003  # rolling on too (a parameter, not the structure)
    q0 = torch.tensor(model.mj.qpos0, dtype=torch.float64)[None]
    v0 = torch.tensor([[0.3, 0.1, 0, 0.5, 6.0, 15.0]], dtype=torch.float64)
    weights = torch.tensor([0.0, 0.0, 0.0, 1.0, 0.7, 0.3], dtype=torch.float64)
    pos_w = torch.tensor([1.0, -0.5, 0.0], dtype=torch.float64)

    def loss(pf, v):
        model.params["pair_friction"] = pf
        tr = phys.rollout(q0, v, torch.zeros(1, 40, 0, dtype=torch.float64))
        return (tr.qvel[0, -1] * weights).sum() + (tr.qpos[0, -1, :3] * pos_w).sum()

    pf = base.clone().requires_grad_(True)
    v = v0.clone().requires_grad_(True)
    loss(pf, v).backward()
    try:
        for k in range(3):
            e = torch.zeros_like(base)
            e[0, k] = 1e-6
            with torch.no_grad():
                fd = (loss(base + e, v0) - loss(base - e, v0)) / 2e-6
            assert abs(float(pf.grad[0, k]) - float(fd)) < 1e-5 * max(1.0, abs(float(fd))), (k, pf.grad, fd)
        for k in (3, 4, 5):
            e = torch.zeros_like(v0)
            e[0, k] = 1e-6
            with torch.no_grad():
                fd = (loss(base, v0 + e) - loss(base, v0 - e)) / 2e-6
            assert abs(float(v.grad[0, k]) - float(fd)) < 1e-5 * max(1.0, abs(float(fd))), (k, v.grad, fd)
        assert abs(float(pf.grad[0, 1])) > 1.0 and abs(float(pf.grad[0, 2])) > 1.0  # both terms act
    finally:
        model.params["pair_friction"] = orig


def test_unrolled_engine_refuses_torsional_and_rolling_friction(spin_model):
    with pytest.raises(ValueError, match="torsional and rolling friction"):
        hw.Physics(spin_model, engine="unrolled")
