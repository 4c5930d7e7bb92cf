"""HybridModel: gradients through physics and residual, checkpointing, save/load."""
import json
import os

import pytest
import torch
from safetensors.torch import load_file

import hybridwam as hw

F64 = torch.float64


def _world(scene="pendulum", mode="acceleration", hidden=(8,), seed=0):
    model = hw.load_model(scene, device="cpu", dtype="float64")
    res = hw.Residual(model, hidden=hidden, mode=mode, activation="tanh")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in res.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=F64))
    return model, hw.HybridModel(hw.Physics(model, verbose=False), res)


def _inputs(model, B=2, T=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    q0, v0 = model.default_state(B)
    q0 = q0 + 0.5 * torch.randn(q0.shape, generator=g, dtype=F64)
    v0 = v0 + torch.randn(v0.shape, generator=g, dtype=F64)
    u = 0.5 * torch.randn(B, T, model.nu, generator=g, dtype=F64)
    return q0, v0, u


@pytest.mark.parametrize("mode", ["acceleration", "force"])
@pytest.mark.parametrize("scene", ["pendulum", "acrobot"])
def test_gradcheck_ctrls_and_initial_state(scene, mode):
    model, world = _world(scene, mode)
    q0, v0, u = _inputs(model, B=1, T=5)

    def f(q0, v0, u):
        tr = world.rollout(q0, v0, u)
        return tr.qpos[:, -1], tr.qvel[:, -1]

    assert torch.autograd.gradcheck(f, (q0.requires_grad_(), v0.requires_grad_(), u.requires_grad_()),
                                    eps=1e-6, atol=1e-6, rtol=1e-5)


class _FinalQpos(torch.nn.Module):
    def __init__(self, world):
        super().__init__()
        self.world = world

    def forward(self, q0, v0, u):
        return self.world.rollout(q0, v0, u).qpos[:, -1]


@pytest.mark.parametrize("mode", ["acceleration", "force"])
def test_gradcheck_residual_weights(mode):
    model, world = _world("acrobot", mode)
    q0, v0, u = _inputs(model, B=2, T=5)
    wrapper = _FinalQpos(world)
    params = dict(world.residual.named_parameters())
    w0 = params["net.0.weight"].detach().clone().requires_grad_()
    b2 = params["net.2.bias"].detach().clone().requires_grad_()

    def f(w0, b2):
        # functional call, so gradcheck's perturbations of the weights reach the module
        return torch.func.functional_call(
            wrapper, {"world.residual.net.0.weight": w0, "world.residual.net.2.bias": b2}, args=(q0, v0, u),
            strict=False)

    assert torch.autograd.gradcheck(f, (w0, b2), eps=1e-6, atol=1e-6, rtol=1e-5)


def test_gradients_reach_residual_and_physical_parameters():
    model, world = _world("cartpole", "force", hidden=(16, 16))
    q0, v0, u = _inputs(model, B=3, T=20)
    u.requires_grad_(True)
    model.params["body_mass"].requires_grad_(True)
    try:
        world.rollout(q0, v0, u).qpos.square().sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in world.residual.parameters())
        assert u.grad.abs().sum() > 0 and model.params["body_mass"].grad[1:].abs().sum() > 0
    finally:
        model.params["body_mass"].requires_grad_(False)


def test_checkpointed_rollout_matches_plain_rollout():
    model, world = _world("acrobot", "acceleration", hidden=(16,))
    q0, v0, u = _inputs(model, B=2, T=17)
    grads = []
    for every in (None, 5):
        uu = u.clone().requires_grad_(True)
        tr = world.rollout(q0, v0, uu, checkpoint_every=every)
        (tr.qpos.sin().sum() + tr.qvel.square().sum()).backward()
        grads.append((tr.qpos.detach(), uu.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    torch.testing.assert_close(grads[0][1], grads[1][1])


def test_fresh_hybrid_equals_physics_and_residual_changes_prediction():
    model = hw.load_model("acrobot", device="cpu", dtype="float64")
    phys = hw.Physics(model, verbose=False)
    world = hw.HybridModel(phys, hw.Residual(model, hidden=(8,)))
    q0, v0, u = _inputs(model, B=3, T=10)
    # the fused residual runs on the looped engine: bit for bit its physics, and the default
    # (unrolled, for the acrobot) engine's to rounding
    looped = hw.Physics(model, verbose=False, engine="looped")
    torch.testing.assert_close(world.rollout(q0, v0, u).qpos, looped.rollout(q0, v0, u).qpos, rtol=0, atol=0)
    torch.testing.assert_close(world.rollout(q0, v0, u).qpos, phys.rollout(q0, v0, u).qpos, rtol=0, atol=1e-12)
    # a constant acceleration correction a integrates like extra gravity: v_T - v_0 grows by T*h*a
    with torch.no_grad():
        world.residual.net[-1].bias.copy_(torch.tensor([0.5, -0.25], dtype=F64))
    dv = world.rollout(q0, v0, u).qvel[:, -1] - phys.rollout(q0, v0, u).qvel[:, -1]
    assert dv.abs().max() > 1e-3


def test_constant_acceleration_residual_is_integrated_exactly():
    """With physics forces zero (no gravity, no actuators), qacc = residual output exactly."""
    xml = """<mujoco><option integrator="Euler" gravity="0 0 0" timestep="0.01"/>
      <worldbody><body><joint name="s" type="slide" axis="1 0 0"/>
      <geom type="sphere" size=".1" mass="2" contype="0" conaffinity="0"/></body></worldbody></mujoco>"""
    model = hw.load_model(xml, device="cpu", dtype="float64")
    for mode, expect in (("acceleration", 3.0), ("force", 1.5)):  # force / mass 2 kg
        res = hw.Residual(model, hidden=(4,), mode=mode)
        with torch.no_grad():
            res.net[-1].bias.fill_(3.0)
        world = hw.HybridModel(hw.Physics(model, verbose=False), res)
        tr = world.rollout(torch.zeros(1, 1, dtype=F64), torch.zeros(1, 1, dtype=F64), torch.zeros(1, 10, 0))
        torch.testing.assert_close(tr.qvel[0, -1, 0].item(), expect * 0.1)
        # semi-implicit Euler position: h^2 * a * (1 + 2 + ... + 10)
        torch.testing.assert_close(tr.qpos[0, -1, 0].item(), expect * 1e-4 * 55)


def test_save_load_roundtrip_and_wrong_model(tmp_path):
    model, world = _world("acrobot", "force", hidden=(8, 8))
    with torch.no_grad():
        model.params["body_mass"][1] *= 1.2  # a calibrated parameter travels with the checkpoint
        world.residual.input_std.fill_(2.0)
    q0, v0, u = _inputs(model)
    expect = world.rollout(q0, v0, u).qpos
    path = world.save(str(tmp_path / "ckpt"))
    assert sorted(os.listdir(path)) == ["config.json", "weights.safetensors"]
    cfg = json.load(open(os.path.join(path, "config.json")))
    assert cfg["residual"] == {"hidden": [8, 8], "mode": "force", "activation": "tanh"}
    assert "residual.input_std" in load_file(os.path.join(path, "weights.safetensors"))
    loaded = hw.HybridModel.load(path)
    torch.testing.assert_close(loaded.model.params["body_mass"], model.params["body_mass"])
    torch.testing.assert_close(loaded.rollout(q0, v0, u).qpos, expect)
    with pytest.raises(ValueError, match="another model"):
        hw.HybridModel.load(path, model=hw.load_model("cartpole", device="cpu", dtype="float64"))
    with pytest.raises(FileNotFoundError):
        hw.HybridModel.load(str(tmp_path / "nothing"))


def test_world_model_protocol():
    model, world = _world()

    class UserModel:
        nq, nv, nu = 1, 1, 1

        def step(self, qpos, qvel, ctrl):
            return qpos, qvel

        def rollout(self, qpos0, qvel0, ctrls):
            return None

    assert isinstance(world, hw.WorldModel)
    assert isinstance(world.physics, hw.WorldModel)
    assert isinstance(UserModel(), hw.WorldModel)
    assert not isinstance(object(), hw.WorldModel)
