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
