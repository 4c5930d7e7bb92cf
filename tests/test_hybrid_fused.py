"""The residual inside the step (kernels/residual.py): HybridModel's fused rollout against its
definition, a loop of ``Physics.step(q, v, u, qfrc_extra=residual(q, v, u))`` (or qacc_extra),
and its gradients against torch autograd through that loop and central differences."""
from __future__ import annotations

import pytest
import torch
from conftest import central_difference, rel_err

import hybridwam as hw
from hybridwam.hybrid import step_rollout
from hybridwam.model import list_scenes

# (scene, dtype, mode, activation): every activation, both modes, a contact scene with a free joint
CASES = [("acrobot", torch.float64, "force", "silu"), ("acrobot", torch.float64, "acceleration", "tanh"),
         ("pusher", torch.float64, "force", "gelu"), ("acrobot", torch.float32, "force", "relu"),
         ("pusher", torch.float32, "acceleration", "silu")]
_BUILT: dict = {}


def _world(scene, dtype, mode, act):
    key = (scene, dtype, mode, act)
    if key not in _BUILT:
        model = hw.load_model(scene, dtype=dtype)
        phys = hw.Physics(model, verbose=False)
        res = hw.Residual(model, hidden=(16, 8), mode=mode, activation=act)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in res.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            res.input_mean.copy_(0.1 * torch.randn(res.input_mean.shape, generator=g, dtype=torch.float64))
            res.input_std.copy_(1 + 0.2 * torch.rand(res.input_std.shape, generator=g, dtype=torch.float64))
            # the pusher's light links would be flung by a residual of ~1 N m: keep it a correction
            scale = 0.02 if scene == "pusher" else 1.0
            res.output_scale.copy_(scale * (0.5 + torch.rand(res.output_scale.shape, generator=g, dtype=torch.float64)))
        _BUILT[key] = (model, phys, res, hw.HybridModel(phys, res))
    return _BUILT[key]


def _inputs(model, B=3, T=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    q0, v0 = model.default_state(B)
    if model.nq == model.nv:  # hinge models: perturb the angles (the pusher keeps its box at rest)
        q0 = q0 + (0.1 * torch.randn(q0.shape, generator=g, dtype=torch.float64)).to(q0)
    v0 = v0 + (0.1 * torch.randn(v0.shape, generator=g, dtype=torch.float64)).to(v0)
    u = (0.3 * torch.randn(B, T, model.nu, generator=g, dtype=torch.float64)).to(q0)
    return q0, v0, u


def _definition(phys, res):
    def step(q, v, u):
        r = res(q, v, u)
        return phys.step(q, v, u, **({"qfrc_extra": r} if res.mode == "force" else {"qacc_extra": r}))
    return step


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[2]}-{c[3]}-{str(c[1])[6:]}")
def test_fused_rollout_equals_its_definition(case):
    model, phys, res, world = _world(*case)
    assert world.fused_engine() is not None
    q0, v0, u = _inputs(model)
    # float32: the definition stepped by the engine the fused residual runs on (the looped one);
    # the shipped scenes' default engine (unrolled) rounds differently, which a contact scene
    # amplifies beyond 1e-5 in 20 steps. float64: the default engine, across engines.
    ref = hw.Physics(model, verbose=False, engine="looped") if case[1] == torch.float32 else phys
    with torch.no_grad():
        tr = world.rollout(q0, v0, u)
        Q, V = step_rollout(_definition(ref, res), q0, v0, u)
    tol = 1e-10 if case[1] == torch.float64 else 1e-5
    assert rel_err(tr.qpos, Q) <= tol and rel_err(tr.qvel, V) <= tol, (rel_err(tr.qpos, Q), rel_err(tr.qvel, V))
    # the residual acts: the same rollout without it differs
    assert rel_err(phys.rollout(q0, v0, u).qvel, V) > 100 * tol
    # qacc is the integrated acceleration, residual included (float32: the velocity difference over
    # one 2 ms step keeps ~eps |qvel| / h of it)
    f64 = case[1] == torch.float64
    torch.testing.assert_close(tr.qacc, (tr.qvel[:, 1:] - tr.qvel[:, :-1]) / model.timestep,
                               rtol=1e-6 if f64 else 1e-3, atol=1e-8 if f64 else 1e-3)


@pytest.mark.parametrize("case", [c for c in CASES if c[1] == torch.float64], ids=lambda c: f"{c[0]}-{c[2]}")
def test_fused_gradients_match_autograd_through_the_definition(case):
    """d loss / d (weights, biases, ctrls, initial state, a physical parameter) of the fused
    rollout against torch autograd through the stepwise definition (float64). Five worlds: the
    residual's adjoint takes them four at a time on the CPU (kernels/residual.GROUP), so a whole
    group and one of a single world (the next test's batches of two and three give the others)."""
    model, phys, res, world = _world(*case)
    q0, v0, u = _inputs(model, B=5, T=15)
    w = torch.linspace(0.5, 1.5, model.nv, dtype=torch.float64)
    _assert_gradients_equal_the_definitions(
        model, phys, res, world, q0, v0, u,
        lambda Q, V: (Q[:, -1] ** 2).sum() + (V[:, -1] * w).sum() + 0.1 * (V ** 2).sum())


def _assert_gradients_equal_the_definitions(model, phys, res, world, q0, v0, u, loss):
    """d loss(Q, V) / d (qpos0, qvel0, ctrls, dof_damping, every weight and bias) of the fused
    rollout equal torch autograd's through the stepwise definition to 1e-9, none of them zero."""
    old = model.params["dof_damping"]
    damping = old.detach().clone().requires_grad_(True)

    def fused(q0, v0, u):
        tr = world.rollout(q0, v0, u)
        return tr.qpos, tr.qvel

    def stepwise(q0, v0, u):
        return step_rollout(_definition(phys, res), q0, v0, u)

    grads = []
    try:
        model.params["dof_damping"] = damping
        for fn in (fused, stepwise):
            x = [t.clone().requires_grad_(True) for t in (q0, v0, u)]
            grads.append(torch.autograd.grad(loss(*fn(*x)), [*x, damping, *res.parameters()]))
    finally:
        model.params["dof_damping"] = old
    names = ["qpos0", "qvel0", "ctrls", "dof_damping"] + [n for n, _ in res.named_parameters()]
    for n, a, b in zip(names, *grads, strict=True):
        assert b.abs().max() > 0, n
        assert rel_err(a, b) <= 1e-9, (n, rel_err(a, b))


def test_one_world_per_thread_residual_adjoint_gives_the_same_gradients(monkeypatch):
    """The residual's adjoint as a GPU runs it, one world per thread (kernels/residual.GROUP
    patched to 1, so the CPU compiles that variant too), gives the gradients of the CPU's four
    worlds per thread (five worlds: a whole group and a partial one), float64."""
    import hybridwam.kernels.residual as kr

    model, phys, res, world = _world("acrobot", torch.float64, "force", "silu")
    q0, v0, u = _inputs(model, B=5, T=10, seed=4)

    def grads(w):
        x = [t.clone().requires_grad_(True) for t in (q0, v0, u)]
        return torch.autograd.grad((w.rollout(*x).qpos[:, -1] ** 2).sum(), [*x, *res.parameters()])

    four = grads(world)
    assert world.fused_engine().group == kr.GROUP > 1
    monkeypatch.setattr(kr, "GROUP", 1)
    one_world = hw.HybridModel(phys, res)
    assert one_world.fused_engine().group == 1
    for a, b in zip(grads(one_world), four, strict=True):
        assert b.abs().max() > 0
        assert rel_err(a, b) <= 1e-12, rel_err(a, b)

def test_rk4_fused_rollout_and_gradients_equal_the_definition():
    """With MuJoCo's RK4 (the looped engine's four stages per step) the fused residual is
    evaluated once per step, at its state, and held over the stages, as the definition's
    qfrc_extra is: the rollout equals it to 1e-10 and its gradients (initial state, controls, joint
    damping, weights and biases) equal autograd's through it to 1e-9 (float64; a chain ending in
    a ball joint, a free body)."""
    from test_integrators import RK4

    key = ("rk4", torch.float64, "force", "silu")
    if key not in _BUILT:
        model = hw.load_model(RK4, dtype="float64")
        phys = hw.Physics(model, verbose=False)
        res = hw.Residual(model, hidden=(16, 8), mode="force")
        g = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for p in res.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
            res.output_scale.fill_(0.5)
        _BUILT[key] = (model, phys, res, hw.HybridModel(phys, res))
    model, phys, res, world = _BUILT[key]
    assert model.structure.rk4 and world.fused_engine().features.rk4
    q0, v0, u = _inputs(model, B=5, T=12, seed=5)
    with torch.no_grad():
        tr = world.rollout(q0, v0, u)
        Q, V = step_rollout(_definition(phys, res), q0, v0, u)
        assert rel_err(tr.qpos, Q) <= 1e-10 and rel_err(tr.qvel, V) <= 1e-10, (rel_err(tr.qpos, Q), rel_err(tr.qvel, V))
        assert rel_err(phys.rollout(q0, v0, u).qvel, V) > 1e-6  # the residual acts
    _assert_gradients_equal_the_definitions(model, phys, res, world, q0, v0, u,
                                            lambda Q, V: (Q[:, -1] ** 2).sum() + (V ** 2).sum() * 0.1)


def test_backward_passes_one_after_another_keep_their_gradients():
    """The backward pass keeps its packed launches for the next one (hybridwam.replay), which
    repacks only what changed: new inputs, another horizon, a pass with a parameter gradient in
    between and a batch of another size still give autograd's gradients through the stepwise
    definition (the passes without a parameter gradient reuse the launches: checked)."""
    model, phys, res, world = _world("acrobot", torch.float64, "force", "silu")
    eng = world.fused_engine()
    old = model.params["dof_damping"]
    plain = old.detach().clone()
    made = []
    try:
        model.params["dof_damping"] = plain
        for seed, (B, T, with_param) in enumerate([(2, 12, False), (2, 12, False), (2, 9, False), (2, 9, True),
                                                   (3, 9, False), (2, 12, False), (2, 7, False)]):
            q0, v0, u = _inputs(model, B=B, T=T, seed=10 + seed)
            damping = plain.clone().requires_grad_(True)
            if with_param:
                model.params["dof_damping"] = damping
            grads = []
            for fn in (lambda *x: world.rollout(*x).qpos, lambda *x: step_rollout(_definition(phys, res), *x)[0]):
                x = [t.clone().requires_grad_(True) for t in (q0, v0, u)]
                wrt = [*x, *([damping] if with_param else []), *res.parameters()]
                grads.append(torch.autograd.grad((fn(*x)[:, -1] ** 2).sum(), wrt))
            model.params["dof_damping"] = plain
            for a, b in zip(*grads, strict=True):
                assert b.abs().max() > 0
                assert rel_err(a, b) <= 1e-9, (seed, rel_err(a, b))
            made.append(id(eng._bufs[("replay", B, 0, B)][1][0]))
    finally:
        model.params["dof_damping"] = old
    # the launches were reused by the second and third passes and by the last
    assert made[0] == made[1] == made[2] and made[5] == made[6] and made[3] != made[2]


def test_fused_gradients_match_finite_differences():
    """The fused rollout's gradient w.r.t. weight and bias entries and a control against central
    differences of its own forward (float64, the contact scene)."""
    model, phys, res, world = _world("pusher", torch.float64, "force", "gelu")
    q0, v0, u = _inputs(model, B=1, T=12)
    w = torch.as_tensor([0.3, -0.7, 1.1, 0.4, -0.2, 0.9, 0.5, -1.3, 0.8][:model.nv], dtype=torch.float64)

    def loss():
        tr = world.rollout(q0, v0, u)
        return (tr.qvel[:, -1] * w).sum() + (tr.qpos[:, -1] ** 2).sum()

    W0, b1 = res.net[0].weight, res.net[2].bias
    u.requires_grad_(True)
    gW, gb, gu = torch.autograd.grad(loss(), [W0, b1, u])
    u.requires_grad_(False)
    for t, g, idx in ((W0, gW, (3, 1)), (W0, gW, (10, 6)), (b1, gb, (2,)), (u, gu, (0, 4, 1))):
        with torch.no_grad():
            fd = central_difference(loss, t, idx, 1e-6)
        assert abs(g[idx].item() - fd) <= 1e-6 * max(1.0, abs(fd)), (idx, g[idx].item(), fd)


def test_own_module_residual_keeps_the_stepwise_path():
    """A user's torch module (not hw.Residual) as the residual: no fused engine, the stepwise loop."""
    model, phys, _, _ = _world("acrobot", torch.float64, "force", "silu")

    class Own(torch.nn.Module):
        nq, nv, nu, mode = model.nq, model.nv, model.nu, "acceleration"

        def forward(self, q, v, u):
            return -0.5 * v

    world = hw.HybridModel(phys, Own())
    assert world.fused_engine() is None
    q0, v0, u = _inputs(model, B=2, T=5)
    Q, V = step_rollout(lambda q, v, c: phys.step(q, v, c, qacc_extra=-0.5 * v), q0, v0, u)
    torch.testing.assert_close(world.rollout(q0, v0, u).qvel, V, rtol=0, atol=0)


def test_captured_hybrid_equals_its_steps_and_sees_new_weights():
    """HybridModel.capture: the captured step equals HybridModel.step bit for bit, and weights
    trained (edited) between calls reach the next replay; a module of one's own is refused."""
    model, phys, res, world = _world("acrobot", torch.float64, "force", "silu")
    q0, v0, u = _inputs(model, B=4, T=3)
    plant = world.capture(4, horizon=2)
    q, v = q0, v0
    for t in range(3):
        qc, vc = plant.step(q, v, u[:, t])
        with torch.no_grad():
            tr = world.rollout(q, v, u[:, t:t + 1].expand(4, 2, model.nu))
        torch.testing.assert_close(qc, tr.qpos[:, -1], rtol=0, atol=0)
        torch.testing.assert_close(vc, tr.qvel[:, -1], rtol=0, atol=0)
        q, v = qc, vc
    old = res.net[0].bias.detach().clone()
    try:
        with torch.no_grad():
            before = world.rollout(q0, v0, u[:, :1].expand(4, 2, model.nu)).qvel[:, -1]
        # an edit through .data (which torch's version counter does not see), then an in-place one
        for edit in (lambda b: b.data.add_(0.5), lambda b: b.add_(0.25)):
            with torch.no_grad():
                edit(res.net[0].bias)
                tr = world.rollout(q0, v0, u[:, :1].expand(4, 2, model.nu))
            assert (tr.qvel[:, -1] - before).abs().max() > 1e-6  # the rollout sees the new weights
            qc, vc = plant.step(q0, v0, u[:, 0])
            torch.testing.assert_close(vc, tr.qvel[:, -1], rtol=0, atol=0)  # and so does the capture
            before = tr.qvel[:, -1]
    finally:
        with torch.no_grad():
            res.net[0].bias.copy_(old)
    class Own(torch.nn.Module):
        nq, nv, nu, mode = model.nq, model.nv, model.nu, "force"

        def forward(self, q, v, c):
            return 0 * v

    own = hw.HybridModel(phys, Own())
    with pytest.raises(ValueError, match="needs a residual that runs inside the step"):
        own.capture(4)


@pytest.mark.parametrize("scene", list_scenes())
def test_fused_rollout_equals_its_definition_on_every_shipped_scene(scene):
    """Every shipped scene (contacts, free joints, no actuators among them): the fused rollout
    against its definition, float64, force mode."""
    model = hw.load_model(scene, dtype=torch.float64)
    phys = hw.Physics(model, verbose=False)
    res = hw.Residual(model, hidden=(16,), mode="force")
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in res.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64))
        res.output_scale.fill_(0.02)
    world = hw.HybridModel(phys, res)
    q0, v0, u = _inputs(model, B=2, T=15, seed=3)
    with torch.no_grad():
        tr = world.rollout(q0, v0, u)
        Q, V = step_rollout(_definition(phys, res), q0, v0, u)
        plain = phys.rollout(q0, v0, u)
    assert rel_err(tr.qpos, Q) <= 1e-10 and rel_err(tr.qvel, V) <= 1e-10, (rel_err(tr.qpos, Q), rel_err(tr.qvel, V))
    assert rel_err(plain.qvel, V) > 1e-8  # the residual acts
