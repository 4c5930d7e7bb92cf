"""Contact physics against MuJoCo's behaviour on the same MJCF (not identical numbers: MuJoCo
solves a soft-constraint problem, hybridwam integrates a compliant law), plus conservation
and gradient checks through contact."""
import math

import mujoco
import numpy as np
import pytest
import torch
from conftest import central_difference

import hybridwam as hw

DROP_XML = """<mujoco><compiler angle="radian"/><option integrator="Euler" timestep="0.002"/>
<worldbody><geom name="floor" type="plane" size="5 5 .1"/>
  <body name="box" pos="0 0 0.3" euler="0.3 0.2 0.1"><freejoint/><geom type="box" size=".1 .15 .05" mass="1"/></body>
  <body name="ball" pos="1 0 0.4"><freejoint/><geom type="sphere" size=".1" mass="0.5"/></body>
  <body name="capsule" pos="-1 0 0.4" euler="0.4 0 0"><freejoint/><geom type="capsule" size=".05 .2" mass="1"/></body>
</worldbody></mujoco>"""

INCLINE_XML = """<mujoco><compiler angle="radian"/><option integrator="Euler" timestep="0.002"/>
<worldbody><geom name="slope" type="plane" size="5 5 .1" friction="0.5 0.005 0.0001"/>
  <body name="box" pos="0 0 0.05"><freejoint/>
    <geom type="box" size=".1 .1 .05" mass="1" friction="0.5 0.005 0.0001"/></body>
</worldbody></mujoco>"""

_PHI = (1 + 5**0.5) / 2
_ICO = np.array([[-1, _PHI, 0], [1, _PHI, 0], [-1, -_PHI, 0], [1, -_PHI, 0], [0, -1, _PHI], [0, 1, _PHI],
                 [0, -1, -_PHI], [0, 1, -_PHI], [_PHI, 0, -1], [_PHI, 0, 1], [-_PHI, 0, -1], [-_PHI, 0, 1]]) * 0.05
MESH_XML = f"""<mujoco><compiler angle="radian"/><option integrator="Euler" timestep="0.002"/>
<asset><mesh name="ico" vertex="{' '.join(f'{v:.6f}' for v in _ICO.ravel())}"/>
  <mesh name="wedge" vertex="0 0 0  .2 0 0  0 .1 0  0 0 .08  .2 0 .08  0 .1 .08"/></asset>
<worldbody><geom name="floor" type="plane" size="5 5 .1"/>
  <body name="rock" pos="0 0 0.3" euler="0.3 0.2 0.1"><freejoint/><geom type="mesh" mesh="ico" mass="1"/></body>
  <body name="wedge" pos="1 0 0.1"><freejoint/><geom type="mesh" mesh="wedge" mass="1"/></body>
  <body name="ball" pos="1 0 0.4"><freejoint/><geom type="sphere" size="0.04" mass="0.2"/></body>
</worldbody></mujoco>"""

STACK_XML = """<mujoco><option integrator="Euler" timestep="0.002"/>
<worldbody><geom name="floor" type="plane" size="5 5 .1"/>
  <body name="b1" pos="0 0 0.1"><freejoint/><geom type="box" size=".1 .1 .1" mass="1"/></body>
  <body name="b2" pos="0.01 0 0.3"><freejoint/><geom type="box" size=".1 .1 .1" mass="1"/></body>
  <body name="b3" pos="-0.01 0.01 0.5"><freejoint/><geom type="box" size=".1 .1 .1" mass="1"/></body>
</worldbody></mujoco>"""


def _mujoco_rollout(m, qpos, qvel, steps):
    d = mujoco.MjData(m)
    d.qpos[:], d.qvel[:] = qpos, qvel
    out = [d.qpos.copy()]
    for _ in range(steps):
        mujoco.mj_step(m, d)
        out.append(d.qpos.copy())
    return np.array(out)


@pytest.fixture(scope="module", params=["unrolled", "looped"])
def drop(request):
    """The dropped bodies, through each engine (the same law; tests/test_looped_contact.py)."""
    model = hw.load_model(DROP_XML, device="cpu")
    return model, hw.Physics(model, engine=request.param)


def test_dropped_bodies_rest_within_2mm_of_mujoco(drop):
    model, phys = drop
    q0, v0 = model.default_state(1)
    tr = phys.rollout(q0, v0, torch.zeros(1, 1500, 0))
    ref = _mujoco_rollout(model.mj, model.mj.qpos0, np.zeros(model.nv), 1500)
    heights = tr.qpos[0, -1, [2, 9, 16]].numpy()
    np.testing.assert_allclose(heights, ref[-1, [2, 9, 16]], atol=2e-3)
    assert tr.qvel[0, -1].abs().max() < 1e-2  # at rest
    # the box settles flat, face down, like MuJoCo's
    up = _zaxis(tr.qpos[0, -1, 3:7].numpy())
    assert abs(up[2]) > 0.999


@pytest.mark.parametrize("engine", ["unrolled", "looped"])
def test_convex_meshes_rest_like_mujoco(engine):
    """Mesh geoms collide as convex hulls (as in MuJoCo): an icosahedron and a wedge dropped on
    the floor (the wedge flat), and a ball dropped onto the wedge, come to rest within 2 mm of
    MuJoCo's heights (through each engine)."""
    model = hw.load_model(MESH_XML, device="cpu")
    phys = hw.Physics(model, engine=engine)
    q0, v0 = model.default_state(1)
    tr = phys.rollout(q0, v0, torch.zeros(1, 2000, 0))
    ref = _mujoco_rollout(model.mj, model.mj.qpos0, np.zeros(model.nv), 2000)
    np.testing.assert_allclose(tr.qpos[0, -1, [2, 9, 16]].numpy(), ref[-1, [2, 9, 16]], atol=2e-3)
    assert tr.qvel[0, -1, :12].abs().max() < 5e-2  # rock and wedge at rest (the ball may roll)


def _zaxis(q):
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)])


@pytest.fixture(scope="module")
def incline():
    model = hw.load_model(INCLINE_XML, device="cpu")
    return model, hw.Physics(model)


def _incline_run(model, phys, angle, steps=1000):
    """Tilt the plane by `angle` about y (geom_quat is a parameter, no recompile) and place the
    box resting on it; returns the distance slid along the slope [T+1] (hybridwam, MuJoCo)."""
    q = [math.cos(angle / 2), 0, math.sin(angle / 2), 0]  # wxyz
    with torch.no_grad():
        model.params["geom_quat"][0] = torch.tensor([q[1], q[2], q[3], q[0]])
    normal = np.array([math.sin(angle), 0, math.cos(angle)])
    downhill = np.array([math.cos(angle), 0, -math.sin(angle)])
    qpos = np.concatenate([normal * 0.05, q])
    tr = phys.rollout(torch.tensor(qpos, dtype=torch.float32)[None], torch.zeros(1, 6), torch.zeros(1, steps, 0))
    ours = (tr.qpos[0, :, :3].numpy() - qpos[:3]) @ downhill
    # MuJoCo bakes static geom poses at compile time: compile the tilted slope for the reference
    m = mujoco.MjModel.from_xml_string(INCLINE_XML.replace('name="slope"', f'name="slope" euler="0 {angle} 0"'))
    ref = (_mujoco_rollout(m, qpos, np.zeros(6), steps)[:, :3] - qpos[:3]) @ downhill
    return ours, ref


@pytest.mark.parametrize("ratio", [0.7, 0.9])
def test_box_sticks_on_incline_below_friction_angle(incline, ratio):
    model, phys = incline
    mu = 0.5
    ours, ref = _incline_run(model, phys, math.atan(ratio * mu))
    # 2 s: a sliding box travels metres (next test); regularised friction (and MuJoCo's soft
    # constraints) let a sticking box creep by millimetres at most
    assert abs(ours[-1]) < 1e-2, f"slid {ours[-1]:.4f} m"
    assert abs(ref[-1]) < 1e-2  # MuJoCo agrees it sticks


@pytest.mark.parametrize("ratio", [1.3, 1.8])
def test_box_slides_on_incline_above_friction_angle(incline, ratio):
    model, phys = incline
    mu, g, h = 0.5, 9.81, 0.002
    theta = math.atan(ratio * mu)
    ours, ref = _incline_run(model, phys, theta)
    expected = g * (math.sin(theta) - mu * math.cos(theta))
    # fit s = s0 + v0 t + a t^2 / 2 over the second half (after the contact settles)
    t = np.arange(len(ours)) * h
    half = len(t) // 2
    acc = 2 * np.polyfit(t[half:], ours[half:], 2)[0]
    acc_ref = 2 * np.polyfit(t[half:], ref[half:], 2)[0]
    assert acc == pytest.approx(expected, rel=0.10), f"ours {acc:.3f} vs g(sin - mu cos) {expected:.3f}"
    assert acc_ref == pytest.approx(expected, rel=0.10)


PUSH_XML = """<mujoco><option integrator="Euler" timestep="0.005"/>
<worldbody><geom name="floor" type="plane" size="5 5 .1" friction="0.5 0.005 0.0001"/>
  <body name="box" pos="0 0 0.05"><freejoint/>
    <geom type="box" size=".1 .1 .05" mass="0.3" friction="0.5 0.005 0.0001"/></body>
</worldbody></mujoco>"""


def _push(phys, ratios, durations, settle=0.3):
    """One world per (F / (mu m g), duration): the box settles on the floor, then a horizontal
    force F acts on it for the duration. Returns its x-velocity at the end of each push."""
    model = phys.model
    h, m, mu = model.timestep, 0.3, 0.5
    ns, ends = round(settle / h), [round(d / h) for d in durations]
    frc = torch.zeros(len(ratios), ns + max(ends), 6, dtype=model.dtype)
    for b, (r, n) in enumerate(zip(ratios, ends, strict=True)):
        frc[b, ns:ns + n, 0] = r * mu * m * 9.81
    q0, v0 = model.default_state(len(ratios))
    tr = phys.rollout(q0, v0, torch.zeros(len(ratios), frc.shape[1], 0), qfrc_extra=frc)
    return [tr.qvel[b, ns + n, 0].item() for b, n in enumerate(ends)]


def test_pushed_box_breaks_away_with_coulomb_friction():
    """A resting box pushed sideways by F for t seconds leaves at Coulomb's (F - mu m g) t / m
    when F > mu m g, and stays put when F < mu m g. The friction is implicit, evaluated at the
    end of the step; taken from the slip at the start of the step it held a box breaking away
    back by far more than mu m g (34-91% too slow here), which the second, limited solve removes.
    For comparison (measured, not asserted): MuJoCo on this scene with cone="elliptic"
    impratio="10" gives 0.21, 0.50, 0.96, 1.32 m/s for the four sliding pushes (soft
    constraints; Coulomb 0.196, 0.491, 0.981, 1.643)."""
    phys = hw.Physics(hw.load_model(PUSH_XML, device="cpu"))
    ratios, durations = [0.5, 0.9, 1.2, 2.0, 5.0, 68.0], [0.5, 0.5, 0.2, 0.1, 0.05, 0.005]
    v = _push(phys, ratios, durations)
    W = 0.3 * 9.81 * 0.5
    for r, d, vi in zip(ratios, durations, v, strict=True):
        if r < 1:
            assert abs(vi) < 3e-3, f"F = {r} mu m g: the box should stick, moves at {vi:.4f} m/s"
        else:
            coulomb = (r - 1) * W * d / 0.3
            assert vi == pytest.approx(coulomb, rel=0.03), f"F = {r} mu m g for {d} s: {vi:.4f} vs {coulomb:.4f}"


def test_gradient_through_the_friction_limit():
    """d(exit speed)/d(push force) through the limited second solve matches central differences
    (float64), and Coulomb's t / m for a box sliding the whole time."""
    phys = hw.Physics(hw.load_model(PUSH_XML, device="cpu", dtype="float64"))
    model = phys.model
    ns, n = round(0.3 / model.timestep), round(0.1 / model.timestep)
    force = torch.tensor([2.0 * 0.5 * 0.3 * 9.81], dtype=torch.float64, requires_grad=True)

    def loss():
        frc = torch.zeros(1, ns + n, 6, dtype=torch.float64)
        frc[0, ns:, 0] = 1.0
        frc = frc * force
        q0, v0 = model.default_state(1)
        return phys.rollout(q0, v0, torch.zeros(1, ns + n, 0), qfrc_extra=frc).qvel[0, -1, 0]

    loss().backward()
    fd = _fd_check(loss, force, (0,))
    assert fd == pytest.approx(0.1 / 0.3, rel=0.03)


@pytest.fixture(scope="module")
def ball64():
    model = hw.load_model("ball_toss", device="cpu", dtype="float64")
    return model, hw.Physics(model)


def _energy(model, qpos, qvel):
    m, g = 0.1, 9.81
    inertia = float(model.mj.body_inertia[1, 0])
    return 0.5 * m * (qvel[..., :3] ** 2).sum(-1) + 0.5 * inertia * (qvel[..., 3:] ** 2).sum(-1) + m * g * qpos[..., 2]


def test_bounce_apex_decreases_monotonically(ball64):
    model, phys = ball64
    q0, v0 = model.default_state(1)  # 1 m above the ground, away from the wall, at rest
    tr = phys.rollout(q0, v0, torch.zeros(1, 2500, 0))
    z = tr.qpos[0, :, 2].numpy()
    vz = tr.qvel[0, :, 2].numpy()
    apex = [z[i] for i in range(1, len(z)) if vz[i - 1] > 0 >= vz[i]]
    assert len(apex) >= 3, f"expected several bounces, got apexes {apex}"
    assert all(a > b for a, b in zip(apex, apex[1:], strict=False)), apex
    assert apex[0] < 1.0
    # MuJoCo's ball on the same MJCF bounces as high: the contact damping keeps solref's ratio
    m = model.mj
    d = mujoco.MjData(m)
    zr, vr = [], []
    for _ in range(2500):
        mujoco.mj_step(m, d)
        zr.append(d.qpos[2])
        vr.append(d.qvel[2])
    ref_apex = [zr[i] for i in range(1, len(zr)) if vr[i - 1] > 0 >= vr[i]]
    np.testing.assert_allclose(apex[:3], ref_apex[:3], atol=0.03)


def _contact_potential(model, depth, k=None, meff=None):
    """Energy stored in a contact spring (pair 0's, or the given k, meff: a joint limit's):
    meff k * integral of the C1 onset profile s(d)."""
    k = model.params["pair_stiffness"][0].item() if k is None else k
    meff = model.params["pair_meff"][0].item() if meff is None else meff
    tau = model.params["contact_tau"][0].item()
    d = np.clip(depth, 0, None)
    small = d**3 / (6 * tau)
    large = tau**2 / 6 + (d**2 - tau**2) / 2 - tau * (d - tau) / 2
    return meff * k * np.where(d < tau, small, large)


def test_energy_never_grows_in_a_passive_contact_scene(ball64):
    model, phys = ball64
    assert torch.allclose(model.params["pair_stiffness"], model.params["pair_stiffness"][0])
    q0, v0 = model.default_state(1)
    v0[0, :3] = torch.tensor([3.0, 0.5, 2.0], dtype=torch.float64)  # thrown at the wall
    v0[0, 3:] = torch.tensor([0.0, 5.0, 1.0], dtype=torch.float64)  # with spin
    tr = phys.rollout(q0, v0, torch.zeros(1, 2500, 0))
    q = tr.qpos[0].numpy()
    r = 0.05
    ground, wall = r - q[:, 2], r - (2.0 - q[:, 0])
    E = (_energy(model, tr.qpos[0], tr.qvel[0]).numpy() + _contact_potential(model, ground)
         + _contact_potential(model, wall))
    assert q[:, 0].max() > 1.9  # it reached the wall (at x = 2, radius 0.05)
    # mechanical energy, contact springs included, never exceeds what the throw started with,
    # beyond the bounded O(h omega) wobble of symplectic Euler inside a contact (h omega = 0.45) ...
    assert E.max() <= E[0] * 1.005, f"energy rose to {E.max():.6f} J from {E[0]:.6f} J"
    # ... and after each contact episode the free-flight energy is lower than before it
    free = (ground < 0) & (wall < 0)
    starts = [i for i in range(1, len(free)) if free[i] and not free[i - 1]]
    flights = [E[0]] + [E[i] for i in starts]
    assert len(flights) >= 3, "expected several contacts"
    assert all(a > b for a, b in zip(flights, flights[1:], strict=False)), flights
    assert E[-1] < 0.5 * E[0]


def test_stack_of_three_boxes_stays_stacked_for_5s():
    model = hw.load_model(STACK_XML, device="cpu")
    phys = hw.Physics(model)
    q0, v0 = model.default_state(1)
    tr = phys.rollout(q0, v0, torch.zeros(1, 2500, 0))
    q = tr.qpos[0].numpy()
    ref = _mujoco_rollout(model.mj, model.mj.qpos0, np.zeros(model.nv), 2500)
    for i, adr in enumerate((0, 7, 14)):
        np.testing.assert_allclose(q[-1, adr:adr + 2], q[0, adr:adr + 2], atol=5e-3, err_msg=f"box {i} slid")
        assert abs(q[-1, adr + 2] - ref[-1, adr + 2]) < 2e-3, f"box {i} height off MuJoCo's"
        assert abs(_zaxis(q[-1, adr + 3:adr + 7])[2]) > 0.999, f"box {i} tipped"


# ---- gradients through contact ---------------------------------------------------------------

def _fd_check(loss, x, idx, eps=1e-6, rtol=1e-4):
    """Autograd's x.grad[idx] (after loss().backward()) against a central difference of loss."""
    fd = central_difference(loss, x, idx, eps)
    assert abs(x.grad[idx].item() - fd) <= 1e-6 + rtol * abs(fd), f"{idx}: autodiff {x.grad[idx].item()} fd {fd}"
    return fd


def test_gradient_through_a_bounce_off_the_wall(ball64):
    model, phys = ball64
    q0, v0 = model.default_state(1)
    v0[0, :3] = torch.tensor([3.0, 0.3, 1.5], dtype=torch.float64)
    v0.requires_grad_(True)
    w = torch.tensor([1.0, 0.3, -0.7], dtype=torch.float64)

    def loss():
        tr = phys.rollout(q0, v0, torch.zeros(1, 400, 0))
        return (tr.qpos[0, -1, :3] * w).sum()

    L = loss()
    L.backward()
    assert loss().item() == L.item()
    tr = phys.rollout(q0, v0.detach(), torch.zeros(1, 400, 0))
    assert tr.qvel[0, -1, 0] < 0  # it did bounce back off the wall
    fds = [_fd_check(loss, v0, (0, i)) for i in range(6)]
    assert abs(fds[0]) > 0.1  # the bounce makes the final x depend on the throw speed


def test_gradient_through_pushing_contact():
    """The pusher's paddle sweeps into the box (shoulder servo target ramped from the task's start
    pose): gradients of the box's final position wrt servo targets match central differences."""
    from hybridwam.tasks import Task

    task = Task.from_yaml("pusher_push")
    model = hw.load_model("pusher", device="cpu", dtype="float64")
    phys = hw.Physics(model)
    q0, v0 = task.qpos0[None].double(), task.qvel0[None].double()
    T = 120
    u = q0[:, None, :3].repeat(1, T, 1).clone()
    u[0, :, 0] += 0.4 * torch.linspace(0, 1, T, dtype=torch.float64)  # 0.4 rad shoulder sweep in 0.6 s
    u.requires_grad_(True)

    def loss():
        tr = phys.rollout(q0, v0, u)
        return tr.qpos[0, -1, 3:5].sum() + tr.qpos[0, -1, 4]

    box0 = q0[0, 3:5].clone()
    tr = phys.rollout(q0, v0, u.detach())
    assert (tr.qpos[0, -1, 3:5] - box0).norm() > 0.01, "the paddle must move the box for this test to mean anything"
    loss().backward()
    for idx in [(0, 30, 0), (0, 60, 1), (0, 100, 2)]:
        _fd_check(loss, u, idx)


# ---- joint range limits (the contact law's normal part in joint space) -----------------------
# an arm of two hinges (the elbow's limit with a margin) and a cart on a rail, one motor each
LIMIT_XML = """<mujoco><compiler angle="radian"/><option integrator="Euler" timestep="0.002"/>
<default><geom contype="0" conaffinity="0"/></default>
<worldbody>
  <body name="upper"><joint name="shoulder" type="hinge" axis="0 1 0" range="-0.6 0.5"/>
    <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.03" mass="1"/>
    <body name="lower" pos="0.4 0 0"><joint name="elbow" type="hinge" axis="0 1 0" range="-0.3 0.4" margin="0.02"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/></body></body>
  <body name="cart" pos="0 1 0"><joint name="rail" type="slide" axis="1 0 0" range="-0.2 0.3" damping="0.5"/>
    <geom type="box" size="0.05 0.05 0.05" mass="2"/></body>
</worldbody>
<actuator><motor joint="shoulder"/><motor joint="elbow"/><motor joint="rail"/></actuator></mujoco>"""
# where each joint's limit starts to act (the elbow's margin moves it 0.02 inside its range)
LIMIT_LO, LIMIT_HI = np.array([-0.6, -0.28, -0.2]), np.array([0.5, 0.38, 0.3])


def test_inactive_joint_limits_step_exactly_like_mujoco():
    """Away from the range ends a limited joint is a free joint: one step equals mj_step (float64)."""
    model = hw.load_model(LIMIT_XML, device="cpu", dtype="float64")
    assert "range=[-0.3, 0.4] margin=0.02" in model.describe()
    phys = hw.Physics(model)
    rng = np.random.default_rng(3)
    B = 16
    q = rng.uniform(LIMIT_LO + 0.1, LIMIT_HI - 0.1, size=(B, 3))
    v = rng.normal(0, 2, size=(B, 3))
    u = rng.normal(0, 3, size=(B, 3))
    q1, v1 = phys.step(torch.tensor(q), torch.tensor(v), torch.tensor(u))
    d = mujoco.MjData(model.mj)
    for b in range(B):
        d.qpos[:], d.qvel[:], d.ctrl[:] = q[b], v[b], u[b]
        mujoco.mj_step(model.mj, d)
        assert d.nefc == 0  # no limit was active in MuJoCo either
        np.testing.assert_allclose(q1[b].numpy(), d.qpos, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(v1[b].numpy(), d.qvel, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("ctrl", [(0.0, 0.0, 5.0), (-6.0, -1.5, -5.0), (-12.0, -3.0, -5.0), (3.0, 2.0, 20.0)])
def test_joints_stop_and_rest_at_their_limits_like_mujoco(ctrl):
    """Motors (and gravity) drive every joint into one end of its range for 3 s. Each stops there
    and comes to rest where MuJoCo's does, within 0.5 mrad (hinges) or 0.5 mm (the rail)
    (measured: at most 0.20 mrad and 0.11 mm; MuJoCo's resting penetrations 0.1-8 mrad or mm),
    and overshoots on the way in by at most 1.5x MuJoCo's + 0.01 (measured 0.32-1.38x)."""
    model = hw.load_model(LIMIT_XML, device="cpu")
    T = 1500
    tr = hw.Physics(model).rollout(torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor(ctrl).expand(1, T, 3))
    q, v = tr.qpos[0].numpy(), tr.qvel[0].numpy()
    d = mujoco.MjData(model.mj)
    d.ctrl[:] = ctrl
    ref = [d.qpos.copy()]
    for _ in range(T):
        mujoco.mj_step(model.mj, d)
        ref.append(d.qpos.copy())
    ref = np.array(ref)
    assert np.abs(v[-1]).max() < 1e-4  # at rest
    for j in range(3):
        upper = ref[-1, j] > 0
        limit = LIMIT_HI[j] if upper else LIMIT_LO[j]
        sign = 1 if upper else -1
        pen, pen_ref = sign * (q[-1, j] - limit), sign * (ref[-1, j] - limit)
        assert 0 < pen_ref and 0 < pen and abs(pen - pen_ref) <= 5e-4, (j, pen, pen_ref)
        over = max(sign * (x - limit) for x in q[:, j])
        over_ref = max(sign * (x - limit) for x in ref[:, j])
        assert over <= 1.5 * over_ref + 0.01, (j, over, over_ref)


def test_energy_never_grows_against_a_joint_limit():
    """An undamped rod on a hinge with limits (solref 0.05 s, damping ratio 0.4), swung upwards
    (world 0: it bounces between both limits) or dropped from horizontal (world 1: it falls onto
    the upper one). Kinetic + gravity energy (MuJoCo's mj_energyPos/Vel of the same states) + the limit
    springs' never exceeds the start by more than symplectic Euler's first-order energy error
    h/2 max |v f| (f the limit spring's force; h sqrt(k) = 0.46 here; measured: 0 J and 0.18 J
    against bounds of 0.22 J and 0.22 J, on a 1.2 J fall), and in world 0 it drops over every
    impact."""
    xml = """<mujoco><compiler angle="radian"/>
    <option integrator="Euler" timestep="0.002"><flag energy="enable"/></option>
    <worldbody><body><joint name="hinge" type="hinge" axis="0 1 0" range="-1 0.5" solreflimit="0.05 0.4"/>
      <geom type="capsule" fromto="0 0 0 0.5 0 0" size="0.03" mass="1" contype="0" conaffinity="0"/></body>
    </worldbody></mujoco>"""
    model = hw.load_model(xml, device="cpu", dtype="float64")
    v0 = torch.tensor([[4.0], [0.0]], dtype=torch.float64)
    tr = hw.Physics(model).rollout(torch.zeros_like(v0), v0, torch.zeros(2, 1500, 0, dtype=torch.float64))
    d = mujoco.MjData(model.mj)
    k, meff, tau = (model.params[n][0].item() for n in ("jnt_limit_stiffness", "dof_meff", "contact_tau"))
    for b in range(2):
        q, v = tr.qpos[b, :, 0].numpy(), tr.qvel[b, :, 0].numpy()
        E = []
        for qi, vi in zip(q, v, strict=True):
            d.qpos[0], d.qvel[0] = qi, vi
            mujoco.mj_forward(model.mj, d)
            E.append(d.energy.sum())
        upper, lower = q - 0.5, -1 - q
        E = np.array(E) + _contact_potential(model, upper, k, meff) + _contact_potential(model, lower, k, meff)
        assert q.max() < 0.6 and q.min() > -1.1  # stopped by the limits
        # the spring force meff k s(depth) of the law's C1 onset, on either side
        s = [np.where(x < tau, np.clip(x, 0, None) ** 2 / (2 * tau), x - tau / 2) for x in (upper, lower)]
        wobble = 0.5 * model.timestep * np.abs(v * meff * k * (s[0] + s[1])).max()
        assert wobble > 0.05  # a hard impact
        assert E.max() <= E[0] + wobble, f"world {b}: energy rose to {E.max():.6f} J from {E[0]:.6f} J"
        if b == 0:  # after each impact the free-swing energy is lower than before it
            free = (upper < 0) & (lower < 0)
            starts = [i for i in range(1, len(free)) if free[i] and not free[i - 1]]
            flights = [E[0]] + [E[i] for i in starts]
            assert len(flights) >= 3, "expected several impacts"
            assert all(x > y for x, y in zip(flights, flights[1:], strict=False)), flights


def test_gradient_through_joint_limits():
    """Gradients of the final state after the arm and cart hit their limits match central
    differences (float64): initial velocities, motor torques, the limits' range, margin,
    stiffness and damping."""
    model = hw.load_model(LIMIT_XML, device="cpu", dtype="float64")
    phys = hw.Physics(model)
    T = 250
    v0 = torch.tensor([[3.0, -4.0, 1.0]], dtype=torch.float64, requires_grad=True)
    u = torch.tensor([[2.0, -1.0, 4.0]], dtype=torch.float64, requires_grad=True)
    p = model.params
    for name in ("jnt_range", "jnt_margin", "jnt_limit_stiffness", "jnt_limit_damping"):
        p[name].requires_grad_(True)
    w = torch.tensor([1.0, -0.7, 0.5], dtype=torch.float64)

    def loss():
        tr = phys.rollout(torch.zeros(1, 3, dtype=torch.float64), v0, u[:, None].expand(1, T, 3))
        return (tr.qpos[0, -1] * w).sum() + 0.1 * (tr.qvel[0, -1] * w).sum()

    loss().backward()
    with torch.no_grad():  # every joint reached one of its limits
        q = phys.rollout(torch.zeros(1, 3, dtype=torch.float64), v0, u[:, None].expand(1, T, 3)).qpos[0].numpy()
    assert ((q.max(0) > LIMIT_HI) | (q.min(0) < LIMIT_LO)).all(), (q.min(0), q.max(0))
    for i in range(3):
        _fd_check(loss, v0, (0, i))
        _fd_check(loss, u, (0, i))
    for j in range(3):
        for side in range(2):
            _fd_check(loss, p["jnt_range"], (j, side), eps=1e-7)
    _fd_check(loss, p["jnt_margin"], (1,), eps=1e-7)
    fds = [_fd_check(loss, p[n], (j,), eps=1e-6 * p[n][j].item())
           for n in ("jnt_limit_stiffness", "jnt_limit_damping") for j in range(3)]
    assert max(abs(f) for f in fds) > 0  # the limits' law does reach the result


# ---- dry joint friction (MuJoCo's frictionloss: the contact law's friction in joint space) ----
FRICTIONLOSS_XML = """<mujoco><compiler angle="radian"/><option timestep="0.005" gravity="0 0 0"/>
<default><geom contype="0" conaffinity="0"/></default>
<worldbody>
  <body name="cart"><joint name="rail" type="slide" axis="1 0 0" frictionloss="2"/>
    <geom type="box" size="0.1 0.1 0.1" mass="0.5"/></body>
  <body name="upper" pos="0 1 0"><joint name="shoulder" type="hinge" axis="0 0 1" frictionloss="0.3"/>
    <geom type="capsule" fromto="0 0 0 0.4 0 0" size="0.03" mass="1"/>
    <body name="lower" pos="0.4 0 0"><joint name="elbow" type="hinge" axis="0 0 1" frictionloss="0.1" damping="0.05"/>
      <geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="0.5"/></body></body>
</worldbody>
<actuator><motor joint="rail"/><motor joint="shoulder"/><motor joint="elbow"/></actuator></mujoco>"""


def test_frictionloss_sticks_below_and_slides_with_coulomb_above():
    """A 0.5 kg cart with 2 N of dry friction pushed for 0.5 s by 0.5 to 5 times that: it stays
    below (creeping under 3 mm/s; MuJoCo's soft friction creeps 2.1 and 3.8 mm/s at 0.5 and 0.9)
    and leaves at Coulomb's (F - 2 N) t / m above (measured: exact to 4 digits, as MuJoCo)."""
    model = hw.load_model(FRICTIONLOSS_XML, device="cpu")
    assert "frictionloss=2" in model.describe()
    ratios, T = [0.5, 0.9, 1.2, 2.0, 5.0], 100
    u = torch.zeros(len(ratios), T, 3)
    u[:, :, 0] = 2.0 * torch.tensor(ratios)[:, None]
    v = hw.Physics(model).rollout(torch.zeros(len(ratios), 3), torch.zeros(len(ratios), 3), u).qvel[:, -1, 0]
    for r, vi in zip(ratios, v.tolist(), strict=True):
        if r < 1:
            assert abs(vi) < 3e-3, f"{r} x frictionloss: creeps at {vi:.4f} m/s"
        else:
            assert vi == pytest.approx((r - 1) * 2.0 * 0.5 / 0.5, rel=0.01), r


@pytest.mark.parametrize("torques", [(0.2, 0.05), (0.6, 0.3), (1.5, -0.5), (0.0, 0.5)])
def test_frictionloss_arm_follows_mujoco(torques):
    """A two-link arm with dry friction in both hinges (and elbow damping) under constant motor
    torques below, near and above the friction for 0.5 s: the joints where MuJoCo's stick stick
    (under 0.005 rad; measured creep 0.4 and 0.3 mrad, MuJoCo's 1.3 and 4.2 mrad), the others end
    within 0.02 rad and 2% + 0.02 rad/s of MuJoCo (measured: at most 0.013 rad and 0.014 rad/s)."""
    model = hw.load_model(FRICTIONLOSS_XML, device="cpu")
    T = 100
    u = torch.zeros(1, T, 3)
    u[0, :, 1:] = torch.tensor(torques)
    tr = hw.Physics(model).rollout(torch.zeros(1, 3), torch.zeros(1, 3), u)
    d = mujoco.MjData(model.mj)
    d.ctrl[:] = u[0, 0].numpy()
    for _ in range(T):
        mujoco.mj_step(model.mj, d)
    q, v = tr.qpos[0, -1, 1:].numpy(), tr.qvel[0, -1, 1:].numpy()
    for j in range(2):
        if abs(d.qpos[1 + j]) < 0.005:
            assert abs(q[j]) < 0.005, (j, q[j], d.qpos[1 + j])
        else:
            assert abs(q[j] - d.qpos[1 + j]) < 0.02, (j, q[j], d.qpos[1 + j])
            assert abs(v[j] - d.qvel[1 + j]) < 0.02 * abs(d.qvel[1 + j]) + 0.02, (j, v[j], d.qvel[1 + j])


def test_gradient_through_frictionloss():
    """d(cart speed after 0.5 s)/d(push force) and d/d(frictionloss) through the limited second
    solve match central differences (float64) and Coulomb's t / m and -t / m."""
    model = hw.load_model(FRICTIONLOSS_XML, device="cpu", dtype="float64")
    phys = hw.Physics(model)
    force = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    fl = model.params["dof_frictionloss"]
    fl.requires_grad_(True)

    def loss():
        u = torch.zeros(1, 100, 3, dtype=torch.float64)
        u[0, :, 0] = 1.0
        return phys.rollout(torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64),
                            u * force).qvel[0, -1, 0]

    loss().backward()
    assert _fd_check(loss, force, (0,)) == pytest.approx(0.5 / 0.5, rel=0.01)
    assert _fd_check(loss, fl, (0,)) == pytest.approx(-0.5 / 0.5, rel=0.01)
