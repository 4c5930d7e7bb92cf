"""Reverse-mode gradients of Physics rollouts against central finite differences (float64).

Every differentiable input is checked: initial state, every control (random directions plus
single entries) and each exposed physical parameter, on a 50-step rollout of the pendulum,
acrobot, cartpole and reacher.
"""
import pytest
import torch
from conftest import central_difference

import hybridwam as hw

SCENES = ["pendulum", "acrobot", "cartpole", "reacher"]
PARAMS = ["body_mass", "body_inertia", "body_ipos", "dof_damping", "dof_armature", "jnt_stiffness",
          "actuator_gear", "actuator_gain", "actuator_bias", "gravity", "dof_coulomb", "dof_coulomb_vel"]
T = 50
EPS = 1e-6
RTOL = 1e-5


def _setup(scene, dtype="float64", seed=0):
    model = hw.load_model(scene, device="cpu", dtype=dtype)
    phys = hw.Physics(model, verbose=False)
    g = torch.Generator().manual_seed(seed)
    B = 2
    f64 = torch.float64  # draw in float64 so both precisions see the same numbers
    q0, v0 = model.default_state(B)
    q0 = q0 + 0.4 * torch.randn(q0.shape, generator=g, dtype=f64).to(q0.dtype)
    v0 = v0 + 0.5 * torch.randn(v0.shape, generator=g, dtype=f64).to(q0.dtype)
    lo, hi = (torch.as_tensor(model.mj.actuator_ctrlrange[:, i], dtype=f64) for i in (0, 1))
    # inside the ctrlrange, away from the clamp's kinks
    u = ((lo + hi) / 2 + (hi - lo) / 2 * 0.5 * (2 * torch.rand(B, T, model.nu, generator=g, dtype=f64) - 1))
    u = u.to(q0.dtype)
    wq = torch.randn(B, T + 1, model.nq, generator=g, dtype=f64).to(q0.dtype)
    wv = torch.randn(B, T + 1, model.nv, generator=g, dtype=f64).to(q0.dtype)

    def loss(q0=q0, v0=v0, u=u):
        tr = phys.rollout(q0, v0, u)
        return (tr.qpos * wq).sum() + 0.1 * (tr.qvel * wv).sum()

    return model, loss, q0, v0, u


def _assert_close(ad, fd, what, rtol=RTOL, atol=1e-7):
    assert abs(ad - fd) <= atol + rtol * abs(fd), f"{what}: autodiff {ad:.9e} vs finite differences {fd:.9e}"


@pytest.mark.parametrize("scene", SCENES)
def test_state_and_control_gradients(scene):
    model, loss, q0, v0, u = _setup(scene)
    for x in (q0, v0, u):
        x.requires_grad_(True)
    loss().backward()
    for name, x in (("qpos0", q0), ("qvel0", v0)):
        for idx in torch.cartesian_prod(torch.arange(x.shape[0]), torch.arange(x.shape[1])).tolist():
            fd = central_difference(loss, x, tuple(idx), EPS)
            _assert_close(x.grad[tuple(idx)].item(), fd, f"{scene} d/d{name}{idx}")
    # single controls early, middle and late in the horizon
    for idx in [(0, 0, 0), (1, T // 2, model.nu - 1), (0, T - 1, 0), (1, 1, 0)]:
        _assert_close(u.grad[idx].item(), central_difference(loss, u, idx, EPS), f"{scene} d/dctrl{idx}")
    # directional derivatives cover every control entry at once
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        d = torch.randn(u.shape, generator=g, dtype=u.dtype)
        with torch.no_grad():
            fd = (loss(u=u + EPS * d).item() - loss(u=u - EPS * d).item()) / (2 * EPS)
        _assert_close((u.grad * d).sum().item(), fd, f"{scene} directional d/dctrls")


@pytest.mark.parametrize("scene", SCENES)
def test_parameter_gradients(scene):
    model, loss, *_ = _setup(scene, seed=2)
    with torch.no_grad():  # smooth Coulomb friction is off by default; switch it on to test it
        model.params["dof_coulomb"].fill_(0.05)
        model.params["dof_coulomb_vel"].fill_(0.5)
    for n in PARAMS:
        model.params[n].requires_grad_(True)
    try:
        loss().backward()
        checked = 0
        for n in PARAMS:
            p = model.params[n]
            # only entries the model uses: world body (0) and padding entries have no effect
            for idx in torch.nonzero(torch.ones_like(p)).tolist():
                idx = tuple(idx)
                if n.startswith("body_") and idx[0] == 0:
                    continue
                _assert_close(p.grad[idx].item(), central_difference(loss, p, idx, EPS), f"{scene} d/d{n}{list(idx)}",
                              atol=1e-6)
                checked += 1
        assert checked > 10
    finally:
        for n in PARAMS:
            model.params[n].requires_grad_(False)
            model.params[n].grad = None


def test_float32_gradients_within_documented_tolerance():
    """float32 gradients agree with float64 ones to 1e-2 relative (documented float32 bound)."""
    grads = {}
    for dtype in ("float32", "float64"):
        model, loss, q0, v0, u = _setup("acrobot", dtype=dtype, seed=3)
        u.requires_grad_(True)
        model.params["body_mass"].requires_grad_(True)
        loss().backward()
        grads[dtype] = (u.grad.double(), model.params["body_mass"].grad.double())
        model.params["body_mass"].requires_grad_(False)
    for a, b in zip(grads["float32"], grads["float64"], strict=True):
        err = ((a - b).norm() / b.norm()).item()
        assert err < 1e-2, f"float32 gradient off by {err:.2e} relative"


def test_gradients_match_mujoco_finite_differences():
    """d(qpos', qvel')/d(ctrl, state) of one step equals MuJoCo's own transition Jacobians."""
    import mujoco
    import numpy as np

    model = hw.load_model("acrobot", device="cpu", dtype="float64")
    phys = hw.Physics(model, verbose=False)
    m = model.mj
    d = mujoco.MjData(m)
    d.qpos[:] = [0.7, -0.4]
    d.qvel[:] = [0.3, -1.1]
    d.ctrl[:] = [0.8]
    A = np.zeros((2 * m.nv, 2 * m.nv))
    Bm = np.zeros((2 * m.nv, m.nu))
    mujoco.mjd_transitionFD(m, d, 1e-7, 1, A, Bm, None, None)
    q = torch.tensor(d.qpos, requires_grad=True)
    v = torch.tensor(d.qvel, requires_grad=True)
    c = torch.tensor(d.ctrl, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda q, v, c: torch.cat(phys.step(q, v, c)), (q, v, c))
    ours_A = torch.cat([jac[0], jac[1]], 1).numpy()
    np.testing.assert_allclose(ours_A, A, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(jac[2].numpy(), Bm, rtol=1e-5, atol=1e-6)


def test_gravity_compensation_gradients():
    """Through MuJoCo's gravcomp (tests/test_physics.py's model, every joint type, one joint with
    it as clamped actuator force): the per-body compensation factors, masses and the motor."""
    from test_physics import GRAVCOMP_XML

    model = hw.load_model(GRAVCOMP_XML, device="cpu", dtype="float64")
    phys = hw.Physics(model, verbose=False)
    g = torch.Generator().manual_seed(3)
    q0, v0 = model.default_state(1)
    v0 = v0 + 0.5 * torch.randn(v0.shape, generator=g, dtype=torch.float64)
    u = torch.full((1, T, 1), 0.3, dtype=torch.float64, requires_grad=True)  # elbow clamp not hit
    wq = torch.randn(1, T + 1, model.nq, generator=g, dtype=torch.float64)
    gc, mass = model.params["body_gravcomp"], model.params["body_mass"]
    gc.requires_grad_(True)
    mass.requires_grad_(True)

    def loss():
        return (phys.rollout(q0, v0, u).qpos * wq).sum()

    loss().backward()
    for b in range(1, model.nbody):
        for name, x in (("body_gravcomp", gc), ("body_mass", mass)):
            _assert_close(x.grad[b].item(), central_difference(loss, x, (b,), EPS), f"d/d{name}[{b}]")
    # every compensated body's factor reaches the loss; bodies with gravcomp="0" in the MJCF get
    # no compensation code at all (a structural zero: editing their factor later does nothing)
    assert (gc.grad[gc.detach() != 0].abs() > 0).all() and gc.grad[2] == 0
    _assert_close(u.grad[0, 5, 0].item(), central_difference(loss, u, (0, 5, 0), EPS), "d/dctrl")
