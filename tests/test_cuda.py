"""The same physics on a CUDA device: rollouts, gradients, contacts, the hybrid model and planning
on "cuda:0" agree with the CPU (an independent build and launch of the same kernels). Skipped
where torch or Warp sees no CUDA device, which is the case in CI; ``.ci/gpu`` runs this file
on a machine with a GPU."""
from __future__ import annotations

import pytest
import torch

import hybridwam as hw


def _cuda_ready() -> bool:
    if not torch.cuda.is_available():
        return False
    import warp as wp

    return wp.is_cuda_available()


pytestmark = pytest.mark.skipif(not _cuda_ready(), reason="no CUDA device visible to torch and Warp")


def _inputs(model, batch: int, steps: int, seed: int = 0):
    from hybridwam.bench import random_inputs

    return (torch.as_tensor(x) for x in random_inputs(model, batch, steps, seed))


@pytest.mark.parametrize("scene, steps, tol", [("acrobot", 200, 1e-4), ("pusher", 50, 1e-3)])
def test_rollout_on_cuda_matches_cpu(scene, steps, tol):
    cpu = hw.load_model(scene, device="cpu")
    gpu = hw.load_model(scene, device="cuda:0")
    q, v, u = _inputs(cpu, 64, steps)
    with torch.no_grad():
        tc = hw.Physics(cpu).rollout(q.float(), v.float(), u.float())
        tg = hw.Physics(gpu).rollout(q.float().cuda(), v.float().cuda(), u.float().cuda())
    assert tg.qpos.device.type == "cuda"
    torch.testing.assert_close(tg.qpos.cpu(), tc.qpos, atol=tol, rtol=0)
    torch.testing.assert_close(tg.qvel.cpu(), tc.qvel, atol=10 * tol, rtol=0)


def test_gradients_on_cuda_match_cpu():
    out = []
    for dev in ("cpu", "cuda:0"):
        model = hw.load_model("acrobot", device=dev, dtype="float64")
        q, v, u = _inputs(model, 16, 100)
        u = u.to(dev).requires_grad_(True)
        tr = hw.Physics(model).rollout(q.to(dev), v.to(dev), u)
        (g,) = torch.autograd.grad((tr.qpos[:, -1] ** 2).sum(), u)
        out.append(g.cpu())
    torch.testing.assert_close(out[1], out[0], rtol=1e-8, atol=1e-10)


def test_hybrid_model_and_planning_on_cuda():
    model = hw.load_model("pendulum", device="cuda:0")
    physics = hw.Physics(model)
    world = hw.HybridModel(physics, hw.Residual(model, hidden=(32, 32)))
    q, v, u = _inputs(model, 8, 50)
    u = u.float().cuda().requires_grad_(True)
    tr = world.rollout(q.float().cuda(), v.float().cuda(), u)
    (g,) = torch.autograd.grad(tr.qpos[:, -1].pow(2).sum(), u)
    assert g.device.type == "cuda" and bool(torch.isfinite(g).all())
    res = hw.optimize_trajectory(physics, "pendulum_swingup", iters=150, progress=False)
    assert res.actions.device.type == "cuda" and res.cost < 0.5 * res.cost_history[0]


@pytest.mark.parametrize("scene", ["acrobot", "pusher"])
def test_captured_cuda_graph_equals_rollout(scene):
    """The CUDA-graph replay over the capture's own buffers gives Physics.rollout's numbers exactly,
    call after call with new inputs, on torch's default stream and on a side stream."""
    model = hw.load_model(scene, device="cuda:0")
    physics = hw.Physics(model)
    cap = physics.capture(32, 5)
    for seed in range(3):
        q, v, u = (x.float().cuda() for x in _inputs(model, 32, 5, seed))
        with torch.no_grad():
            ref = physics.rollout(q, v, u)
        tr = cap.rollout(q, v, u)
        assert torch.equal(tr.qpos, ref.qpos) and torch.equal(tr.qvel, ref.qvel)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        tr = cap.rollout(q, v, u)
    side.synchronize()
    assert torch.equal(tr.qpos, ref.qpos)
    assert cap.captures == 1 and "CUDA graph" in repr(cap)


def test_looped_engine_on_cuda_matches_cpu():
    """The looped engine (one compiled step for every model) on CUDA: a 31-dof tree's rollout and
    its float64 gradients (controls and a parameter), and the stage API, agree with the CPU."""
    from hybridwam.benchmodels import tree_xml

    out = []
    for dev in ("cpu", "cuda:0"):
        model = hw.load_model(tree_xml(), device=dev, dtype="float64")
        phys = hw.Physics(model, engine="looped")
        q, v, u = _inputs(model, 16, 40)
        u = u.to(dev).requires_grad_(True)
        mass = model.params["body_mass"].detach().clone().requires_grad_(True)
        model.params["body_mass"] = mass
        tr = phys.rollout(q.to(dev), v.to(dev), u)
        gu, gm = torch.autograd.grad((tr.qpos[:, -1] ** 2).sum(), (u, mass))
        M = phys.mass_matrix(q.to(dev))
        out.append([x.detach().cpu() for x in (tr.qpos, gu, gm, M)])
    for a, b in zip(*out, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-8, atol=1e-10)
