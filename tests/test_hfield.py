"""Height fields (MuJoCo's hfield geom) against spheres, capsules and boxes: rest heights against
MuJoCo's and against the exact geometry of the triangulated surface, and gradients through the
terrain's heights.

Terrains are written here: an egg crate (peaks, dips and slopes on a coarse grid) and a flat
plateau inside a bowl. Bodies hang on vertical slides over chosen points of the egg crate
(frictionless, so that the rest height is unique), or fall freely onto the plateau.
"""
import mujoco
import numpy as np
import pytest
import torch
from conftest import central_difference

import hybridwam as hw
from hybridwam.model import UnsupportedFeatureError

N = 21
_X, _Y = np.meshgrid(np.linspace(-1, 1, N), np.linspace(-1, 1, N))
EGG = 0.5 + 0.5 * np.cos(2 * np.pi * _X / 0.8) * np.cos(2 * np.pi * _Y / 0.8)
_R = np.maximum(np.hypot(_X, _Y) - 0.45, 0)
BOWL = 0.2 + 1.2 * _R ** 2 + 0.02 * np.sin(7 * _X) * (_R > 0)

SCENE = """
<mujoco>
  <option timestep="0.002"/>
  <asset><hfield name="terrain" nrow="{n}" ncol="{n}" size="1 1 {top} 0.1" elevation="{elev}"/></asset>
  <worldbody>
    <geom name="ground" type="hfield" hfield="terrain" condim="{condim}"/>
    {body}
  </worldbody>
</mujoco>"""
SLIDE = '<body pos="{x} {y} 0.4"><joint type="slide" axis="0 0 1" damping="5"/>{geom}</body>'
FREE = '<body pos="{x} {y} 0.6"><freejoint/>{geom}</body>'
GEOMS = {"sphere": '<geom type="sphere" size="0.08" mass="1" condim="{condim}"/>',
         "capsule": '<geom type="capsule" size="0.05 0.1" euler="0 90 30" mass="1" condim="{condim}"/>',
         "box": '<geom type="box" size="0.08 0.06 0.05" euler="0 0 20" mass="1" condim="{condim}"/>'}


def scene(terrain, top, body, geom, x, y, condim=3):
    elev = " ".join(f"{v:.6f}" for v in terrain.reshape(-1))
    return SCENE.format(n=N, top=top, elev=elev, condim=condim,
                        body=body.format(x=x, y=y, geom=GEOMS[geom].format(condim=condim)))


def rest(xml, steps):
    """The final qpos after ``steps`` steps from qpos0 in MuJoCo and in hybridwam (float64)."""
    mj = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(mj)
    for _ in range(steps):
        mujoco.mj_step(mj, d)
    phys = hw.Physics(hw.load_model(xml, device="cpu", dtype="float64"), verbose=False)
    assert phys.engine == "looped"
    tr = phys.rollout(torch.tensor(mj.qpos0)[None], torch.zeros(1, mj.nv), torch.zeros(1, steps, 0))
    assert float(tr.qvel[0, -1, :3].abs().max()) < 2e-3  # at rest (a lying capsule may still roll, slowly)
    return d.qpos.copy(), tr.qpos[0, -1].numpy(), mj


def rigid_sphere_height(mj, x, y, r):
    """The height at which a rigid sphere of radius r above (x, y) first touches the triangulated
    surface (the grid's cells split from (row + 1, col) to (row, col + 1), as MuJoCo's), by
    bisection on its distance to dense samples of the triangles: the exact geometry."""
    Z = np.asarray(mj.hfield_data).reshape(N, N) * mj.hfield_size[0, 2]
    V = np.stack([_X, _Y, Z], -1)
    u = np.linspace(0, 1, 161)
    U, W = np.meshgrid(u, u)
    keep = U + W <= 1
    U, W = U[keep, None], W[keep, None]
    pts = []
    for r_ in range(N - 1):
        for c in range(N - 1):
            if abs(_X[0, c] - x) < 0.25 and abs(_Y[r_, 0] - y) < 0.25:
                a, b, cc, dd = V[r_, c], V[r_ + 1, c], V[r_, c + 1], V[r_ + 1, c + 1]
                pts += [a + U * (cc - a) + W * (b - a), b + U * (cc - b) + W * (dd - b)]
    pts = np.concatenate(pts)
    under = pts[np.argmin(np.hypot(pts[:, 0] - x, pts[:, 1] - y))]
    lo, hi = under[2], under[2] + 2 * r  # the centre on the surface (touching), a diameter above (clear)
    for _ in range(40):
        mid = (lo + hi) / 2
        if np.min(np.linalg.norm(pts - [x, y, mid], axis=1)) > r:
            hi = mid
        else:
            lo = mid
    return hi


#: points of the egg crate: a peak, a dip, a saddle and two slopes
EGG_POINTS = {"peak": (0.0, 0.0), "dip": (0.4, 0.0), "saddle": (0.2, 0.2), "slope": (0.2, -0.13),
              "steep": (0.45, 0.05)}


@pytest.mark.parametrize("geom", ["sphere", "capsule", "box"])
def test_hfield_rest_heights_on_a_terrain(geom):
    """Frictionless bodies on vertical slides over the egg crate come to rest within 2 mm of
    MuJoCo's height at its peak and dip; elsewhere MuJoCo's prism contacts do not follow the
    surface (a sphere at the saddle rests 2.7 mm above where it touches it, on the slopes 2.5
    and 5.6 mm below): a sphere rests within 1 mm below the exact contact height of the
    triangulated surface at every point (the compliant law's penetration, 0.6 mm)."""
    for where, (x, y) in EGG_POINTS.items():
        mq, hq, mj = rest(scene(EGG, 0.15, SLIDE, geom, x, y, condim=1), 1000)
        if where in ("peak", "dip"):
            assert abs(hq[0] - mq[0]) < 2e-3, (where, hq[0], mq[0])
        if geom == "sphere":
            exact = rigid_sphere_height(mj, x, y, 0.08) - 0.4
            assert 0 < exact - hq[0] < 1e-3, (where, hq[0], exact, mq[0])


@pytest.mark.parametrize("geom", ["sphere", "capsule", "box"])
def test_hfield_bodies_dropped_onto_a_plateau_rest_at_mujocos_height(geom):
    for x, y in ((0.05, -0.1), (-0.25, 0.2)):
        mq, hq, _ = rest(scene(BOWL, 0.5, FREE, geom, x, y), 1500)
        assert abs(hq[2] - mq[2]) < 2e-3, (geom, hq[2], mq[2])
        assert np.hypot(*(hq[:2] - [x, y])) < 0.01  # it stays where it landed


def test_hfield_gradients_through_the_terrain():
    """The resting height of a sphere on a slope against central differences in the terrain's
    heights (the grid vertices under it: the parameter hull_verts) and the initial velocity."""
    xml = scene(EGG, 0.15, SLIDE, "sphere", 0.2, -0.13, condim=1)
    m = hw.load_model(xml, device="cpu", dtype="float64")
    phys = hw.Physics(m, verbose=False)
    verts = m.params["hull_verts"].detach().clone().requires_grad_(True)
    v0 = torch.tensor([[-0.5]], dtype=torch.float64, requires_grad=True)
    saved = m.params["hull_verts"]

    def loss():
        m.params["hull_verts"] = verts
        try:
            tr = phys.rollout(torch.zeros(1, 1, dtype=torch.float64), v0, torch.zeros(1, 200, 0))
        finally:
            m.params["hull_verts"] = saved
        return tr.qpos[0, -1, 0] + 0.3 * tr.qvel[0, 120, 0]

    loss().backward()
    # the grid vertices around (0.2, -0.13): rows 8-9, columns 11-12
    touched = 0
    for r, c in ((8, 11), (8, 12), (9, 11), (9, 12)):
        idx = (r * N + c, 2)
        fd = central_difference(loss, verts, idx, 1e-6)
        assert abs(verts.grad[idx].item() - fd) <= 1e-5 * max(1.0, abs(fd)), (r, c, verts.grad[idx].item(), fd)
        touched += abs(fd) > 1e-3
    assert touched >= 2
    fd = central_difference(loss, v0, (0, 0), 1e-6)
    assert fd != 0 and abs(v0.grad[0, 0].item() - fd) <= 1e-5 * max(1.0, abs(fd))


def test_hfield_against_other_geoms_is_refused_by_name():
    xml = scene(EGG, 0.15, FREE, "sphere", 0, 0).replace('<geom type="sphere" size="0.08"',
                                                          '<geom type="cylinder" size="0.08 0.05"')
    with pytest.raises(UnsupportedFeatureError, match="hfield-cylinder contact, 1 candidate pair"):
        hw.load_model(xml)
    m = hw.load_model(scene(EGG, 0.15, FREE, "box", 0, 0), device="cpu")
    with pytest.raises(ValueError, match="height field contacts"):
        hw.Physics(m, engine="unrolled")
