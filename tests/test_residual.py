"""Residual features and normalisation: invariances that hold by construction of the physics."""
import math

import pytest
import torch

import hybridwam as hw

BALL_XML = """
<mujoco><option integrator="Euler"/>
  <worldbody><body name="b" pos="0 0 1"><joint name="ball" type="ball"/>
    <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.05" contype="0" conaffinity="0"/>
    <body name="c" pos="0 0 -0.5"><joint name="slider" type="slide" axis="0 0 1"/>
      <geom type="sphere" size="0.05" contype="0" conaffinity="0"/></body>
  </body></worldbody>
  <actuator><motor name="m" joint="slider" ctrllimited="true" ctrlrange="-1 3"/></actuator>
</mujoco>"""


def _randomize(res, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in res.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_hinge_angles_enter_periodically():
    model = hw.load_model("acrobot", device="cpu", dtype="float64")
    res = hw.Residual(model, hidden=(16, 16))
    _randomize(res)
    q = torch.rand(5, model.nq, dtype=torch.float64) * 6 - 3
    v = torch.randn(5, model.nv, dtype=torch.float64)
    u = torch.randn(5, model.nu, dtype=torch.float64)
    out = res(q, v, u)
    assert out.shape == (5, model.nv) and out.abs().max() > 0
    torch.testing.assert_close(res(q + 2 * math.pi, v, u), out)
    assert not torch.allclose(res(q + 0.5, v, u), out)


def test_quaternion_sign_does_not_matter_and_controls_are_scaled():
    model = hw.load_model(BALL_XML, device="cpu", dtype="float64")
    res = hw.Residual(model, hidden=(8,))
    _randomize(res)
    q = torch.randn(4, model.nq, dtype=torch.float64)
    q[:, :4] /= q[:, :4].norm(dim=1, keepdim=True)
    v = torch.randn(4, model.nv, dtype=torch.float64)
    u = torch.tensor([[-1.0], [3.0], [1.0], [0.0]], dtype=torch.float64)
    q_neg = q.clone()
    q_neg[:, :4] = -q[:, :4]
    torch.testing.assert_close(res(q_neg, v, u), res(q, v, u))
    f = res.features(q, v, u)
    # ctrlrange [-1, 3] maps to [-1, 1]
    torch.testing.assert_close(f[:, -1], torch.tensor([-1.0, 1.0, 0.0, -0.5], dtype=torch.float64))


def test_fit_normalization_standardises_features_and_output_scale():
    model = hw.load_model("reacher", device="cpu", dtype="float64")
    res = hw.Residual(model, hidden=(8,), mode="force")
    g = torch.Generator().manual_seed(0)
    q = torch.randn(256, model.nq, generator=g, dtype=torch.float64)
    v = 3 * torch.randn(256, model.nv, generator=g, dtype=torch.float64) + 1
    u = torch.rand(256, model.nu, generator=g, dtype=torch.float64)
    target = torch.randn(256, model.nv, generator=g, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1])
    res.fit_normalization(q, v, u, target)
    z = (res.features(q, v, u) - res.input_mean) / res.input_std
    torch.testing.assert_close(z.mean(0), torch.zeros(res.n_features, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(z.std(0), torch.ones(res.n_features, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(res.output_scale, target.std(0))
    # a fresh residual predicts exactly zero: the hybrid model starts as the physics
    assert res(q, v, u).abs().max() == 0


@pytest.mark.parametrize("bad", [{"mode": "torque"}, {"activation": "sigmoidx"}, {"hidden": (0,)}])
def test_bad_settings_are_rejected(bad):
    model = hw.load_model("pendulum", device="cpu")
    with pytest.raises(ValueError):
        hw.Residual(model, **bad)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_kernel_exp_and_activations_match_numpy_and_torch(dtype):
    """The residual stage's own e^x (kernels/residual.exp_fast: no library call, so its loops
    vectorize) against numpy's exp over the range an activation sees, and its activations and
    their derivatives (kernels/residual.activate) against torch's and autograd's."""
    import numpy as np
    import warp as wp
    from hybridwam.kernels import residual as kr

    T = wp.float32 if dtype == "float32" else wp.float64
    VB = wp.types.vector(kr.BLOCK, T)
    fns = kr.make(T)
    exp_fast, activate = fns["exp_fast"], fns["activate"]

    @wp.kernel(module="unique")
    def run(x: wp.array(dtype=T), e: wp.array(dtype=T), y: wp.array(dtype=VB), d: wp.array(dtype=VB),
            k: int):
        i = wp.tid()
        e[i] = exp_fast(x[i])
        if i % kr.BLOCK == 0:
            v = VB()
            for j in range(kr.BLOCK):
                v[j] = x[i + j]
            a, b = activate(k, v)
            y[i / kr.BLOCK] = a
            d[i / kr.BLOCK] = b

    n = 32 * 200
    rng = np.random.default_rng(0)
    xs = np.concatenate([np.linspace(-30, 30, n // 2), rng.normal(0, 3, n // 2 - 4), [0.0, -0.0, 1e-30, -100.0]])
    npt = np.float32 if dtype == "float32" else np.float64
    x = wp.array(xs.astype(npt), dtype=T)
    e = wp.zeros(n, dtype=T)
    ref = np.exp(xs.astype(npt).astype(np.float64))
    tol = 4e-7 if dtype == "float32" else 1e-15
    tdt = torch.float32 if dtype == "float32" else torch.float64
    xt = torch.tensor(xs, dtype=tdt, requires_grad=True)
    for k, name in enumerate(kr.ACT_NAMES):
        y = wp.zeros(n // kr.BLOCK, dtype=VB)
        d = wp.zeros(n // kr.BLOCK, dtype=VB)
        wp.launch(run, dim=n, inputs=[x, e, y, d, k])
        if k == 0:
            big = np.abs(xs) < 80
            assert np.max(np.abs(e.numpy()[big] / ref[big] - 1)) < tol
        f = {"silu": torch.nn.functional.silu, "tanh": torch.tanh, "relu": torch.relu,
             "gelu": torch.nn.functional.gelu}[name]
        yt = f(xt)
        (gt,) = torch.autograd.grad(yt.sum(), xt)
        scale = 1 + np.abs(yt.detach().numpy())
        err = np.abs(y.numpy().reshape(-1) - yt.detach().numpy()) / scale
        assert err.max() < 4 * tol, (name, err.max(), xs[err.argmax()])
        assert np.max(np.abs(d.numpy().reshape(-1) - gt.numpy()) / (1 + np.abs(gt.numpy()))) < 4 * tol, name
