"""Worlds split across CPU threads (hybridwam.parallel): the same bits with 1 and N threads.

A world's computation does not depend on the slice it lands in, so trajectories must be equal bit
for bit; parameter gradients sum over worlds in fixed chunks (independent of the thread count),
so they must be equal bit for bit too. Three threads on this 2-core machine exercise uneven
slices; the speed-up is measured by ``hybridwam bench step --threads``, not here.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import random_ctrl, random_state

import hybridwam as hw
from hybridwam import parallel

SCENES = ["acrobot", "ball_toss", "cartpole", "double_pendulum", "pendulum", "pusher", "reacher", "spinning_box"]


def _inputs(model, B, T, rng):
    q, v = random_state(model.mj, B, rng, vel_scale=0.5, pos_scale=0.2)
    if model.structure.pairs:  # contact scenes: start from the reset pose, perturbed a little
        q = model.mj.qpos0[None].repeat(B, 0) + rng.normal(scale=0.01, size=(B, model.nq))
        for j in range(model.njnt):
            if int(model.mj.jnt_type[j]) == 0:  # free joint: keep the quaternion normalised
                a = int(model.mj.jnt_qposadr[j]) + 3
                q[:, a:a + 4] /= np.linalg.norm(q[:, a:a + 4], axis=1, keepdims=True)
    u = 0.2 * random_ctrl(model.mj, B, rng, shape=(T,))  # mild: light arms whipped by full torques blow up
    return (torch.as_tensor(x, dtype=model.dtype) for x in (q, v, u))


@pytest.mark.parametrize("scene", SCENES)
def test_trajectories_identical_with_1_and_3_threads(sim, rng, scene):
    model, _ = sim(scene)
    one, three = hw.Physics(model, threads=1), hw.Physics(model, threads=3)
    B, T = 64, 64
    assert len(parallel.slices(B, three.threads, T)) == 3  # really split (22 + 21 + 21 worlds)
    q, v, u = _inputs(model, B, T, rng)
    with torch.no_grad():
        a, b = one.rollout(q, v, u), three.rollout(q, v, u)
    for x, y in ((a.qpos, b.qpos), (a.qvel, b.qvel), (a.qacc, b.qacc)):
        assert torch.equal(x, y)
    # captured stepping: recorded launches on three threads == one thread's CPU graph
    c1, c3 = one.capture(B, T), three.capture(B, T)
    assert "3 threads" in repr(c3) and "graph" in repr(c1)
    s1, s3 = c1.step(q, v, u[:, 0]), c3.step(q, v, u[:, 0])
    assert torch.equal(s1[0], s3[0]) and torch.equal(s1[1], s3[1])
    ref = one.rollout(q, v, u[:, :1].expand(B, T, model.nu).contiguous()) if model.nu else None
    if ref is not None:
        assert torch.equal(s3[0], ref.qpos[:, -1].detach())


@pytest.mark.parametrize("scene", ["acrobot", "pusher"])
def test_gradients_identical_with_1_and_3_threads(sim, rng, scene):
    model, _ = sim(scene)
    B, T = 150, 32  # three gradient chunks of worlds (64 + 64 + 22), run on the threads
    q, v, u = _inputs(model, B, T, rng)
    names = ["body_mass", "dof_damping", "actuator_gain"]
    out = []
    for threads in (1, 3):
        phys = hw.Physics(model, threads=threads)
        params = {n: model.params[n].detach().clone().requires_grad_(True) for n in names}
        saved = {n: model.params[n] for n in names}
        model.params.update(params)
        try:
            q0, v0, uu = (x.clone().requires_grad_(True) for x in (q, v, u))
            tr = phys.rollout(q0, v0, uu)
            (tr.qpos.pow(2).sum() + tr.qvel.sin().sum()).backward()
        finally:
            model.params.update(saved)
        out.append([q0.grad, v0.grad, uu.grad, *(params[n].grad for n in names)])
    for x, y in zip(*out, strict=True):
        assert x is not None and torch.isfinite(x).all() and torch.equal(x, y)
    assert any(bool(g.abs().sum() > 0) for g in out[0][3:])


def test_gradients_over_chunks_match_one_launch(sim, rng):
    """Summing the parameter adjoints chunk by chunk gives the one-launch sum up to rounding."""
    model, _ = sim("acrobot", "float64")
    B, T = 150, 8
    q, v, u = _inputs(model, B, T, rng)
    mass = model.params["body_mass"]
    grads = []
    for size in (parallel.GRAD_CHUNK_WORLDS, B):
        old = parallel.GRAD_CHUNK_WORLDS
        parallel.GRAD_CHUNK_WORLDS = size
        try:
            p = mass.detach().clone().requires_grad_(True)
            model.params["body_mass"] = p
            tr = hw.Physics(model, threads=2).rollout(q, v, u)
            tr.qpos.pow(2).sum().backward()
            grads.append(p.grad)
        finally:
            parallel.GRAD_CHUNK_WORLDS = old
            model.params["body_mass"] = mass
    assert torch.allclose(grads[0], grads[1], rtol=1e-12, atol=1e-12)


def test_slices_and_threads_setting():
    assert parallel.slices(10, 4) == [(0, 10)]  # too small to split
    assert parallel.slices(1000, 4, steps=1) == [(0, 1000)]  # too little work per launch to split
    assert len(parallel.slices(1000, 4, steps=100)) == 4
    sl = parallel.slices(1000, 3)
    assert sl[0][0] == 0 and sl[-1][1] == 1000 and all(a[1] == b[0] for a, b in zip(sl, sl[1:], strict=False))
    assert max(b - a for a, b in sl) - min(b - a for a, b in sl) <= 1
    assert parallel.chunks(150) == [(0, 64), (64, 128), (128, 150)]
    assert parallel.resolve_threads(None, "cpu") == parallel.usable_cores()
    assert parallel.resolve_threads(4, "cuda:0") == 1
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            parallel.resolve_threads(bad, "cpu")


def test_an_error_in_one_slice_reaches_the_caller():
    ran = []

    def ok(i):
        return lambda: ran.append(i)

    def boom():
        raise RuntimeError("slice failed")

    with pytest.raises(RuntimeError, match="slice failed"):
        parallel.run([ok(0), boom, ok(2), ok(3)], 2)
    assert sorted(ran) == [0, 2, 3]  # the other slices still ran to the end


def test_threads_shown_by_info_and_simulate(capsys):
    from hybridwam.cli import main

    assert main(["info", "pendulum"]) == 0
    assert f"threads  {parallel.usable_cores()} CPU threads" in capsys.readouterr().out
    assert main(["simulate", "pendulum", "--steps", "64", "--batch", "64", "--threads", "3"]) == 0
    assert "3 thread(s)" in capsys.readouterr().out
    assert main(["simulate", "pendulum", "--threads", "0"]) == 2
