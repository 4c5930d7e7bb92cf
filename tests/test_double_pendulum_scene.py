"""scenes/double_pendulum.xml against the equations of motion in the data README (DFKI double
pendulum, parameters "model 2.0"): mass matrix, Coriolis, gravity and viscous friction, via
hybridwam's Physics one-step accelerations (float64).

The lab's equations:  M qdd = G + tau - C qd - b qd  (Coulomb friction left out here; hybridwam
models it separately with ``dof_coulomb``). The scene leaves out the off-diagonal rotor coupling
-gr Ir of M12 (about 4.6e-4 kg m^2, as its header states), so the closed form below omits it too,
and a separate check confirms that this is the only difference. hybridwam, like MuJoCo's Euler
integrator, treats joint damping implicitly: the step's acceleration solves (M + h B) qdd = f.
"""
import math

import numpy as np
import pytest
import torch

import hybridwam as hw

P = dict(m1=0.5593806151425046, m2=0.6043459469186889, l1=0.3, l2=0.2, r1=0.3, r2=0.18377686083653508,
         I1=0.053470810264216295, I2=0.02392374528789766, Ir=7.659297952841183e-05, gr=6.0, b1=0.001, b2=0.001,
         g=9.81)


def readme_terms(q, qd, p=P, coupling=False):
    """M [B,2,2], C [B,2,2], G [B,2] from the README, with q2 relative and q = 0 hanging down."""
    q1, q2 = q[:, 0], q[:, 1]
    c2, s2 = np.cos(q2), np.sin(q2)
    m2l1r2 = p["m2"] * p["l1"] * p["r2"]
    M = np.zeros((len(q), 2, 2))
    M[:, 0, 0] = p["I1"] + p["I2"] + p["m2"] * p["l1"] ** 2 + 2 * m2l1r2 * c2 + p["gr"] ** 2 * p["Ir"] + p["Ir"]
    M[:, 0, 1] = M[:, 1, 0] = p["I2"] + m2l1r2 * c2 - (p["gr"] * p["Ir"] if coupling else 0.0)
    M[:, 1, 1] = p["I2"] + p["gr"] ** 2 * p["Ir"]
    C = np.zeros((len(q), 2, 2))
    C[:, 0, 0] = -2 * m2l1r2 * s2 * qd[:, 1]
    C[:, 0, 1] = -m2l1r2 * s2 * qd[:, 1]
    C[:, 1, 0] = m2l1r2 * s2 * qd[:, 0]
    G = np.zeros((len(q), 2))
    G[:, 0] = (-p["m1"] * p["g"] * p["r1"] * np.sin(q1)
               - p["m2"] * p["g"] * (p["l1"] * np.sin(q1) + p["r2"] * np.sin(q1 + q2)))
    G[:, 1] = -p["m2"] * p["g"] * p["r2"] * np.sin(q1 + q2)
    return M, C, G


@pytest.fixture(scope="module")
def sim():
    model = hw.load_model("double_pendulum", device="cpu", dtype="float64")
    return model, hw.Physics(model, verbose=False)


def _qacc(sim, q, qd, tau):
    model, phys = sim
    T = lambda x: torch.as_tensor(x, dtype=torch.float64)  # noqa: E731
    return phys.rollout(T(q), T(qd), T(tau)[:, None]).qacc[:, 0].numpy()


def _states(n=64, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.uniform(-math.pi, math.pi, (n, 2))
    qd = rng.normal(0, 4.0, (n, 2))
    tau = rng.uniform(-2, 2, (n, 2))
    return q, qd, tau


def test_scene_matches_the_published_parameters(sim):
    model, _ = sim
    mj = model.mj
    assert (model.nq, model.nv, model.nu) == (2, 2, 2) and model.timestep == 0.002
    assert np.allclose(mj.body_mass[1:], [P["m1"], P["m2"]])
    assert np.allclose(mj.dof_damping, [P["b1"], P["b2"]])
    assert np.allclose(mj.actuator_gear[:, 0], 1.0) and np.allclose(mj.actuator_ctrlrange, [[-10, 10], [-10, 10]])


def test_mass_matrix_against_readme(sim):
    """Probe (M + hB)^-1 column by column with unit torques at rest, invert, compare."""
    model, _ = sim
    h = model.timestep
    q, _, _ = _states(32, seed=1)
    zero = np.zeros_like(q)
    a0 = _qacc(sim, q, zero, zero)
    cols = [_qacc(sim, q, zero, np.tile(e, (len(q), 1))) - a0 for e in np.eye(2)]
    Minv = np.stack(cols, -1)
    M_hw = np.linalg.inv(Minv) - h * np.diag([P["b1"], P["b2"]])
    M, _, _ = readme_terms(q, zero)
    np.testing.assert_allclose(M_hw, M, rtol=1e-9, atol=1e-12)
    # the one stated omission: the rotor coupling -gr Ir in M12
    M_full, _, _ = readme_terms(q, zero, coupling=True)
    np.testing.assert_allclose(M_hw[:, 0, 1] - M_full[:, 0, 1], P["gr"] * P["Ir"], rtol=1e-6)


def test_accelerations_against_readme(sim):
    """Full one-step acceleration at random states and torques: gravity, Coriolis, damping, tau."""
    model, _ = sim
    h = model.timestep
    q, qd, tau = _states(64, seed=2)
    M, C, G = readme_terms(q, qd)
    B = np.diag([P["b1"], P["b2"]])
    rhs = G + tau - np.einsum("bij,bj->bi", C, qd) - qd @ B.T
    expected = np.linalg.solve(M + h * B, rhs[..., None])[..., 0]
    got = _qacc(sim, q, qd, tau)
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9)
    # gravity alone (at rest, no torque) has the right sign: hanging down is stable
    a = _qacc(sim, np.array([[0.1, 0.0]]), np.zeros((1, 2)), np.zeros((1, 2)))
    assert a[0, 0] < 0


def test_coulomb_friction_term(sim):
    """hybridwam's smooth Coulomb friction is -c tanh(qd / v); the lab writes cf atan(100 qd), so the
    two agree at speed for c = cf pi / 2 (and differ only within a few 0.01 rad/s of rest)."""
    model, _ = sim
    h = model.timestep
    q, qd, tau = _states(16, seed=3)
    cf = np.array([0.093, 0.078])
    with torch.no_grad():
        model.params["dof_coulomb"].copy_(torch.as_tensor(cf * math.pi / 2))
    try:
        got = _qacc(sim, q, qd, tau)
    finally:
        with torch.no_grad():
            model.params["dof_coulomb"].zero_()
    M, C, G = readme_terms(q, qd)
    B = np.diag([P["b1"], P["b2"]])
    fric_hw = -cf * math.pi / 2 * np.tanh(qd / 0.01)
    rhs = G + tau - np.einsum("bij,bj->bi", C, qd) - qd @ B.T + fric_hw
    np.testing.assert_allclose(got, np.linalg.solve(M + h * B, rhs[..., None])[..., 0], rtol=1e-9, atol=1e-9)
    fast = np.abs(qd) > 0.5
    assert np.allclose(fric_hw[fast], -cf[np.nonzero(fast)[1]] * np.arctan(100 * qd[fast]), atol=5e-3)
