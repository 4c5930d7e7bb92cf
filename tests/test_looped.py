"""The looped engine (kernels/forward.py: one compiled step for every model) against MuJoCo.

References: ``mujoco.mj_step`` (float64 C) for the step, central finite differences (float64) for
gradients. Models: one tree written here with every joint kind (free, ball, hinge, slide), two
joints on one body, branches, two kinematic trees, armature, springs, implicit damping and every
supported actuator kind with clamping; hinge chains of 8 and 40 links (40: above the unrolled
engine's nv cap, so it exists only through the looped engine); the shipped contact-free scenes.
The looped code is the same for all of them: each dtype compiles once for the whole file.
"""
from __future__ import annotations

import pytest
import torch
from conftest import (
    as_float32,
    assert_grads_match_central_differences,
    central_difference,
    mj_rollout,
    mj_step_batch,
    random_ctrl,
    random_state,
    rel_err,
    to_torch,
)

import hybridwam as hw
from hybridwam.benchmodels import chain_xml, tree_xml
from hybridwam.physics import choose_engine

TREE_XML = """
<mujoco>
  <option timestep="0.002"/>
  <worldbody>
    <body name="torso" pos="0.3 -0.2 1.2" euler="10 5 3">
      <freejoint/>
      <geom type="box" size="0.2 0.1 0.3" mass="5" contype="0" conaffinity="0"/>
      <body name="thigh_l" pos="0.1 0 -0.3">
        <joint name="hip_l" type="ball" damping="0.3" stiffness="2"/>
        <geom type="capsule" fromto="0 0 0 0.05 0 -0.4" size="0.05" mass="1.5" contype="0" conaffinity="0"/>
        <body name="shin_l" pos="0.05 0 -0.4" euler="5 0 0">
          <joint name="knee_l" type="hinge" axis="0 1 0.2" damping="0.1" ref="0.2"/>
          <joint name="knee_slide" type="slide" axis="0 0 1" stiffness="30"/>
          <geom type="capsule" fromto="0 0 0 0 0.02 -0.4" size="0.04" mass="1.0" contype="0" conaffinity="0"/>
        </body>
      </body>
      <body name="thigh_r" pos="-0.1 0 -0.3">
        <joint name="hip_r1" type="hinge" axis="1 0 0" armature="0.02" stiffness="1" springref="0.3"/>
        <joint name="hip_r2" type="hinge" axis="0 1 0" actuatorfrclimited="true" actuatorfrcrange="-0.4 0.4"/>
        <geom type="capsule" fromto="0 0 0 -0.05 0 -0.4" size="0.05" mass="1.4" contype="0" conaffinity="0"/>
        <body name="foot_r" pos="0 0.1 -0.4">
          <geom type="sphere" size="0.05" mass="0.3" contype="0" conaffinity="0"/>
        </body>
      </body>
      <body name="arm" pos="0 0.2 0.2">
        <joint name="shoulder" type="ball"/>
        <geom type="capsule" fromto="0 0 0 0 0.3 0" size="0.03" mass="0.7" contype="0" conaffinity="0"/>
      </body>
    </body>
    <body name="box2" pos="1 1 1">
      <freejoint/>
      <geom type="box" size="0.1 0.2 0.05" mass="2" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <actuator>
    <motor joint="knee_l" gear="3" ctrlrange="-1 1"/>
    <position joint="hip_r1" kp="20" ctrlrange="-0.5 0.5"/>
    <velocity joint="hip_r2" kv="2" forcerange="-1 1"/>
    <motor joint="hip_r2" gear="0.5"/>
    <motor joint="knee_slide" gear="1"/>
  </actuator>
</mujoco>
"""


# Tolerances as tests/test_physics.py (float32: a correct step lands at 5e-8..3e-5 on these
# models; float64: 1e-9, far above rounding and far below any modelling error).
TOL32, TOL64 = 1e-4, 1e-9

_CACHE: dict = {}


def looped(source: str, dtype: str = "float64", threads: int | None = None) -> tuple[hw.Model, hw.Physics]:
    key = (source, dtype, threads)
    if key not in _CACHE:
        model = hw.load_model(source, device="cpu", dtype=dtype)
        _CACHE[key] = (model, hw.Physics(model, engine="looped", threads=threads))
    return _CACHE[key]


def _step_errors(source, dtype, rng, B=32):
    model, physics = looped(source, dtype)
    qpos, qvel = random_state(model.mj, B, rng, vel_scale=2.0, pos_scale=0.5)
    ctrl = random_ctrl(model.mj, B, rng, outside=0.3)
    if dtype == "float32":
        qpos, qvel, ctrl = as_float32(qpos, qvel, ctrl)
    tdt = torch.float32 if dtype == "float32" else torch.float64
    q1, v1 = physics.step(to_torch(qpos, tdt), to_torch(qvel, tdt), to_torch(ctrl, tdt))
    mq, mv = mj_step_batch(model.mj, qpos, qvel, ctrl)
    return rel_err(q1, mq), rel_err(v1, mv)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["tree", "chain8", "humanoid31"])
def test_looped_step_matches_mujoco(rng, name, dtype):
    src = {"tree": TREE_XML, "chain8": chain_xml(8), "humanoid31": tree_xml()}[name]
    eq, ev = _step_errors(src, dtype, rng)
    tol = TOL32 if dtype == "float32" else TOL64
    assert eq <= tol and ev <= tol, f"{name} {dtype}: qpos err {eq:.2e}, qvel err {ev:.2e}"


def test_looped_runs_models_above_the_unrolled_cap(rng):
    """A 40-link chain (nv = 40 > MAX_NV = 32) loads, picks the looped engine by itself and steps
    like mj_step; float64 (float32: test_looped_float32_long_chains)."""
    src = chain_xml(40)
    model = hw.load_model(src, device="cpu", dtype="float64")
    assert model.nv == 40 > hw.model.MAX_NV
    assert choose_engine(model) == "looped"
    eq, ev = _step_errors(src, "float64", rng, B=8)
    assert eq <= TOL64 and ev <= 1e-8, (eq, ev)
    with pytest.raises(ValueError, match="above the unrolled engine's cap"):
        hw.Physics(model, engine="unrolled")


def test_looped_float32_long_chains(rng):
    """float32 one step of 8-, 16- and 24-link chains from random states against mj_step (float64):
    the solve runs on the bodies (kernels/solve.py) about each body's origin, so the error grows
    about linearly with the length instead of with the mass matrix's condition number (factoring
    M in float32 measured 1.1e-5 / 1.7e-4 / 5.8e-4; M merely rounded to float32 and solved exactly
    already misses qacc by 2.6e-5 of its largest entry at 16 links), and on chains of 10 or more
    dofs the solution is refined once on the bodies (looped.REFINE_DEPTH): over 20 batches of 32
    worlds measured 1.2e-6 .. 2.9e-6 / 1.6e-6 .. 3.8e-6 / 1.9e-6 .. 3.4e-6 relative in qvel,
    where without the refinement 16 and 24 links reached 1.07e-5 and 1.5e-5 (3 and 9 of the 20
    batches above 1e-5). Each joint's rotation is renormalised as MuJoCo's kinematics does."""
    from hybridwam.model import REFINE_DEPTH

    worst = {}
    for n in (8, 16, 24):
        model, physics = looped(chain_xml(n), "float32")
        assert physics._looped.tree.refine == int(n >= REFINE_DEPTH)  # a chain: n dofs deep
        worst[n] = max(max(_step_errors(chain_xml(n), "float32", rng, B=32)) for _ in range(4))
    assert worst[16] <= 1e-5 and worst[24] <= 1e-5, worst  # the target at 16 links, every batch
    # the refinement is what holds it: off, the same 24-link batches land further from mj_step
    model, physics = looped(chain_xml(24), "float32")
    physics._looped.tree.refine = 0
    try:
        plain = max(max(_step_errors(chain_xml(24), "float32", rng, B=32)) for _ in range(4))
    finally:
        physics._looped.tree.refine = 1
    assert plain >= 1.5 * worst[24], (plain, worst)


@pytest.mark.parametrize("scene", ["acrobot", "cartpole", "double_pendulum", "reacher", "spinning_box"])
def test_looped_matches_mujoco_on_shipped_scenes(rng, scene):
    """The shipped contact-free scenes (the unrolled engine runs them by default) through the
    looped engine: 50-step rollouts against mj_step, float64."""
    model, physics = looped(scene, "float64")
    qpos, qvel = random_state(model.mj, 4, rng, vel_scale=1.0, pos_scale=0.3)
    ctrls = random_ctrl(model.mj, 4, rng, shape=(50,))
    tr = physics.rollout(to_torch(qpos, torch.float64), to_torch(qvel, torch.float64), to_torch(ctrls, torch.float64))
    mq, mv = mj_rollout(model.mj, qpos, qvel, ctrls)
    assert rel_err(tr.qpos, mq) <= 1e-8 and rel_err(tr.qvel, mv) <= 1e-8


def test_looped_gradients_match_finite_differences(rng):
    """d loss / d (initial state, controls, physical parameters) of a 15-step rollout of the tree
    model against central differences, float64 (gravity, body_pos and body_inertia reach the solve's
    hand-written adjoint through its gravity, link-offset and inertia terms)."""
    model, physics = looped(TREE_XML, "float64")
    B, T = 2, 15
    qpos, qvel = random_state(model.mj, B, rng, vel_scale=1.0, pos_scale=0.5)
    q0, v0 = to_torch(qpos, torch.float64), to_torch(qvel, torch.float64)
    u = to_torch(random_ctrl(model.mj, B, rng, outside=0.0, shape=(T,)), torch.float64)
    names = ["body_mass", "dof_damping", "actuator_gear", "jnt_stiffness", "body_ipos", "dof_armature", "gravity",
             "body_pos", "body_inertia"]
    saved = {n: model.params[n] for n in names}
    leaves = {n: model.params[n].detach().clone().requires_grad_(True) for n in names}
    weights = torch.linspace(0.5, 1.5, model.nv, dtype=torch.float64)

    def loss(q0, v0, u):
        tr = physics.rollout(q0, v0, u)
        return (tr.qpos[:, -1] ** 2).sum() + (tr.qvel[:, -1] * weights).sum() + 1e-3 * (tr.qacc ** 2).sum()

    inputs = [x.clone().requires_grad_(True) for x in (q0, v0, u)]
    try:
        model.params.update(leaves)
        loss(*inputs).backward()
        checks = [(inputs[0], (0, 9)), (inputs[0], (1, 14)), (inputs[1], (0, 4)), (inputs[1], (1, 11)),
                  (inputs[2], (0, 3, 0)), (inputs[2], (1, 10, 2)), (inputs[2], (0, 0, 4))]
        checks += [(leaves[n], i) for n, i in (("body_mass", 2), ("body_mass", 7), ("dof_damping", 6),
                                                ("actuator_gear", 0), ("jnt_stiffness", 1),
                                                ("body_ipos", (3, 1)), ("dof_armature", 9), ("gravity", (0, 2)),
                                                ("body_pos", (4, 0)), ("body_pos", (7, 2)),
                                                ("body_inertia", (5, 1)))]
        for t, idx in checks:
            fd = central_difference(lambda: loss(*inputs), t, idx, 1e-5)
            g = t.grad[idx].item()
            assert abs(g - fd) <= 1e-6 * max(1.0, abs(fd)), (idx, g, fd)
    finally:
        model.params.update(saved)


# parameters the smooth stages (kinematics, com_vel, rne) read, which their hand-written adjoint
# reaches; the tree with gravity compensation on a ball-jointed body
SMOOTH_PARAMS = ("gravity", "body_pos", "body_quat", "body_ipos", "body_iquat", "body_mass", "body_inertia",
                 "body_gravcomp", "jnt_pos", "jnt_axis", "qpos0")
TREE_GRAVCOMP_XML = TREE_XML.replace('<body name="arm" pos="0 0.2 0.2">',
                                     '<body name="arm" pos="0 0.2 0.2" gravcomp="0.6">')


def _tree_rollout_loss(model, physics, rng, B=3, T=12):
    qpos, qvel = random_state(model.mj, B, rng, vel_scale=1.0, pos_scale=0.5)
    q0, v0 = to_torch(qpos, torch.float64), to_torch(qvel, torch.float64)
    u = to_torch(random_ctrl(model.mj, B, rng, outside=0.0, shape=(T,)), torch.float64)
    inputs = [x.clone().requires_grad_(True) for x in (q0, v0, u)]
    weights = torch.linspace(0.5, 1.5, model.nv, dtype=torch.float64)

    def loss():
        tr = physics.rollout(*inputs)
        return (tr.qpos[:, -1] ** 2).sum() + (tr.qvel[:, -1] * weights).sum() + 1e-3 * (tr.qacc ** 2).sum()
    return inputs, loss


def test_smooth_adjoint_equals_warps_reverse_mode(rng):
    """The hand-written adjoint of kinematics -> com_vel -> rne (kernels/smooth.py, the backward
    pass's) against Warp's reverse mode of the same stages (the engine's other path, stage_a's
    adjoint): gradients of a rollout loss with respect to the initial state, the controls and
    every parameter those stages read, on the tree with every joint kind and gravity
    compensation, float64."""
    model, physics = looped(TREE_GRAVCOMP_XML, "float64")
    eng = physics._looped
    assert eng.smooth_adjoint
    inputs, loss = _tree_rollout_loss(model, physics, rng)
    saved = {n: model.params[n] for n in SMOOTH_PARAMS}
    grads = []
    try:
        for hand in (True, False):
            eng.smooth_adjoint = hand
            leaves = {n: saved[n].detach().clone().requires_grad_(True) for n in SMOOTH_PARAMS}
            model.params.update(leaves)
            for x in inputs:
                x.grad = None
            loss().backward()
            grads.append([x.grad for x in inputs] + [leaves[n].grad for n in SMOOTH_PARAMS])
    finally:
        eng.smooth_adjoint = True
        model.params.update(saved)
    for name, a, b in zip(("qpos", "qvel", "ctrl", *SMOOTH_PARAMS), *grads, strict=True):
        assert b.abs().max() > 0, name
        assert (a - b).abs().max() <= 1e-10 * max(1.0, b.abs().max().item()), name


def test_smooth_adjoint_parameter_gradients_match_finite_differences(rng):
    """The parameters only the smooth stages read (orientations of bodies and inertia frames,
    joint axes and anchors, reference positions, gravity compensation), through the hand-written
    adjoint, against central differences, float64."""
    model, physics = looped(TREE_GRAVCOMP_XML, "float64")
    _, loss = _tree_rollout_loss(model, physics, rng, B=2, T=10)
    checks = [("body_quat", (2, 0)), ("body_quat", (3, 3)), ("body_iquat", (1, 2)), ("body_iquat", (6, 1)),
              ("jnt_axis", (2, 1)), ("jnt_axis", (3, 2)), ("jnt_pos", (2, 0)), ("jnt_pos", (1, 1)), ("qpos0", 11),
              ("qpos0", 12),
              ("body_gravcomp", 6), ("body_ipos", (6, 0))]
    assert_grads_match_central_differences(model, SMOOTH_PARAMS, loss, checks, eps=1e-6, tol=1e-6)


def test_looped_threads_are_bit_identical(rng):
    """Trajectories and gradients (controls and a parameter) with 1 and 3 threads, 96 worlds."""
    out = []
    qpos, qvel = random_state(hw.load_model(TREE_XML, device="cpu").mj, 96, rng, vel_scale=1.0, pos_scale=0.5)
    ctrls = random_ctrl(hw.load_model(TREE_XML, device="cpu").mj, 96, rng, shape=(50,))
    for threads in (1, 3):
        model, physics = looped(TREE_XML, "float32", threads=threads)
        mass = model.params["body_mass"]
        leaf = mass.detach().clone().requires_grad_(True)
        model.params["body_mass"] = leaf
        try:
            u = to_torch(ctrls).requires_grad_(True)
            tr = physics.rollout(to_torch(qpos), to_torch(qvel), u)
            (tr.qpos[:, -1] ** 2).sum().backward()
            out.append((tr.qpos.detach(), tr.qvel.detach(), u.grad, leaf.grad))
        finally:
            model.params["body_mass"] = mass
    for a, b in zip(*out, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("threads", [1, 3])
def test_looped_capture_equals_rollout(rng, threads):
    """Captured rollouts (Warp's CPU graph on one thread; recorded launches replayed on three)."""
    model, physics = looped(TREE_XML, "float32", threads=threads)
    B, H = 64, 80
    qpos, qvel = random_state(model.mj, B, rng, vel_scale=1.0, pos_scale=0.5)
    ctrls = to_torch(random_ctrl(model.mj, B, rng, shape=(H,)))
    q0, v0 = to_torch(qpos), to_torch(qvel)
    ref = physics.rollout(q0, v0, ctrls)
    cap = physics.capture(B, H)
    assert cap._split == (threads > 1)
    for _ in range(2):
        tr = cap.rollout(q0, v0, ctrls)
        assert torch.equal(tr.qpos, ref.qpos) and torch.equal(tr.qvel, ref.qvel)
    assert cap.captures == 1


def test_engine_choice_and_errors():
    small = hw.load_model("acrobot", device="cpu")
    assert choose_engine(small) == "unrolled"  # the shipped scenes keep their unrolled kernels
    assert choose_engine(small, "looped") == "looped"
    pusher = hw.load_model("pusher", device="cpu")
    assert choose_engine(pusher) == "unrolled"  # small contact scenes too (faster there)
    with pytest.raises(ValueError, match="engine must be"):
        choose_engine(small, "fast")
    # above the unrolled cap, contacts load and take the looped engine
    floor = '<worldbody><geom type="plane" size="5 5 .1"/>'
    big = hw.load_model(chain_xml(40, contype=1).replace("<worldbody>", floor), device="cpu")
    assert big.structure.pairs and choose_engine(big) == "looped"
    with pytest.raises(ValueError, match="above the unrolled engine's cap"):
        choose_engine(big, "unrolled")


def test_looped_gravity_compensation_matches_mujoco(rng):
    """Gravity compensation (passive, and counted as actuator force with its clamp) on the model
    of tests/test_physics.py: one step against mj_step, float64."""
    from test_physics import GRAVCOMP_XML

    eq, ev = _step_errors(GRAVCOMP_XML, "float64", rng)
    assert eq <= TOL64 and ev <= TOL64, (eq, ev)


def test_looped_joint_limits_equal_the_unrolled_law(rng):
    """Joint limits are hybridwam's law, not MuJoCo's solver (README): inside the ranges one step
    equals mj_step; driven into the limits for 0.5 s, the looped engine's trajectory and its
    gradients equal the unrolled engine's (an independent implementation of the same law, whose
    own tests compare it with MuJoCo's resting positions and with finite differences)."""
    from test_contact import LIMIT_HI, LIMIT_LO, LIMIT_XML

    model, phys = looped(LIMIT_XML, "float64")
    q = rng.uniform(LIMIT_LO + 0.1, LIMIT_HI - 0.1, size=(8, 3))
    v, u = rng.normal(0, 2, size=(8, 3)), rng.normal(0, 3, size=(8, 3))
    q1, v1 = phys.step(torch.tensor(q), torch.tensor(v), torch.tensor(u))
    mq, mv = mj_step_batch(model.mj, q, v, u)
    assert rel_err(q1, mq) <= TOL64 and rel_err(v1, mv) <= TOL64
    unrolled = hw.Physics(model, engine="unrolled")
    T = 250
    out = []
    for p in (phys, unrolled):
        v0 = torch.tensor([[3.0, -4.0, 1.0]], dtype=torch.float64, requires_grad=True)
        ctrl = torch.tensor([[2.0, -1.0, 4.0]], dtype=torch.float64)[:, None].repeat(1, T, 1).requires_grad_(True)
        stiff = model.params["jnt_limit_stiffness"]
        leaf = stiff.detach().clone().requires_grad_(True)
        model.params["jnt_limit_stiffness"] = leaf
        try:
            tr = p.rollout(torch.zeros(1, 3, dtype=torch.float64), v0, ctrl)
            ((tr.qpos[0, -1] * torch.tensor([1.0, -0.7, 0.5], dtype=torch.float64)).sum()).backward()
        finally:
            model.params["jnt_limit_stiffness"] = stiff
        out.append((tr.qpos.detach(), v0.grad, ctrl.grad, leaf.grad))
    qpos = out[0][0][0].numpy()
    assert ((qpos.max(0) > LIMIT_HI) | (qpos.min(0) < LIMIT_LO)).all()  # every joint reached a limit
    for a, b in zip(*out, strict=True):
        assert (a - b).abs().max().item() <= 1e-9 * max(1.0, b.abs().max().item())
