"""Narrow phase: every collision pair against analytic distances and normals.

The pair functions of kernels/contact.py are called with a unit spring law (meff = k = 1, no
damping, no friction, onset length 1e-12 m), so the returned force is the sum over contact
points of the penetration depth along each normal: F = sum(max(depth, 0) * n). Touching,
separated, deeply penetrating and degenerate configurations are checked; none may give NaN.
"""
import math

import numpy as np
import pytest
import warp as wp
from hybridwam.kernels import contact as C

wp.config.quiet = True
V = wp.vec3d
M = wp.mat33d
VP = wp.types.vector(length=10, dtype=wp.float64)


@wp.func
def _prm():
    return VP(wp.float64(1.0), wp.float64(1.0), wp.float64(0.0), wp.float64(0.0), wp.float64(1.0e-12),
              wp.float64(1.0), wp.float64(0.0), wp.float64(0.0), wp.float64(0.0), wp.float64(0.0))


@wp.kernel
def _pairs(kind: int, a: wp.array(dtype=V), b: wp.array(dtype=V), Ra: wp.array(dtype=M), Rb: wp.array(dtype=M),
           sa: wp.array(dtype=V), sb: wp.array(dtype=V), out_f: wp.array(dtype=V), out_n: wp.array(dtype=V)):
    """kind: 0 plane-sphere 1 plane-capsule 2 plane-box 3 sphere-sphere 4 sphere-capsule
    5 sphere-box 6 capsule-capsule 7 capsule-box 8 box-box. Capsules: axis = R column 2,
    half-length sa/sb[1], radius [0]. Boxes: half sizes. Planes: normal = R column 2."""
    i = wp.tid()
    z3 = V(wp.float64(0.0), wp.float64(0.0), wp.float64(0.0))
    z = wp.matrix_from_rows(z3, z3)  # body velocities (start of step; predicted end): at rest
    za = V(Ra[i][0, 2], Ra[i][1, 2], Ra[i][2, 2])
    zb = V(Rb[i][0, 2], Rb[i][1, 2], Rb[i][2, 2])
    a0 = a[i] - za * sa[i][1]
    a1 = a[i] + za * sa[i][1]
    b0 = b[i] - zb * sb[i][1]
    b1 = b[i] + zb * sb[i][1]
    rc = b[i]
    N = z3
    F = z3
    if kind == 0:
        N, F, A_, B_, C_ = C.pair_plane_sphere(a[i], za, b[i], sb[i][0], rc, z, z, z, z, _prm())
    elif kind == 1:
        N, F, A_, B_, C_ = C.pair_plane_capsule(a[i], za, b0, b1, sb[i][0], rc, z, z, z, z, _prm())
    elif kind == 2:
        N, F, A_, B_, C_ = C.pair_plane_box(a[i], za, b[i], Rb[i], sb[i], rc, z, z, z, z, _prm())
    elif kind == 3:
        N, F, A_, B_, C_ = C.pair_sphere_sphere(a[i], sa[i][0], b[i], sb[i][0], rc, z, z, z, z, _prm())
    elif kind == 4:
        N, F, A_, B_, C_ = C.pair_sphere_capsule(a[i], sa[i][0], b0, b1, sb[i][0], rc, z, z, z, z, _prm())
    elif kind == 5:
        N, F, A_, B_, C_ = C.pair_sphere_box(a[i], sa[i][0], b[i], Rb[i], sb[i], rc, z, z, z, z, _prm())
    elif kind == 6:
        N, F, A_, B_, C_ = C.pair_capsule_capsule(a0, a1, sa[i][0], b0, b1, sb[i][0], rc, z, z, z, z, _prm())
    elif kind == 7:
        N, F, A_, B_, C_ = C.pair_capsule_box(a0, a1, sa[i][0], b[i], Rb[i], sb[i], rc, z, z, z, z, _prm())
    else:
        N, F, A_, B_, C_ = C.pair_box_box(a[i], Ra[i], sa[i], b[i], Rb[i], sb[i], rc, z, z, z, z, _prm())
    out_f[i] = F
    out_n[i] = N


KINDS = {"plane-sphere": 0, "plane-capsule": 1, "plane-box": 2, "sphere-sphere": 3, "sphere-capsule": 4,
         "sphere-box": 5, "capsule-capsule": 6, "capsule-box": 7, "box-box": 8}
I3 = np.eye(3)


def rot(axis, angle):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def run(kind, cases):
    """cases: list of (a, b, Ra, Rb, sa, sb); returns (F [n, 3], N [n, 3]) about b."""
    cols = list(zip(*cases, strict=True))
    arr = [wp.array(np.array(c, dtype=np.float64), dtype=t) for c, t in zip(cols, (V, V, M, M, V, V), strict=True)]
    f = wp.zeros(len(cases), dtype=V)
    n = wp.zeros(len(cases), dtype=V)
    wp.launch(_pairs, dim=len(cases), inputs=[KINDS[kind], *arr, f, n], device="cpu")
    F, Nm = f.numpy(), n.numpy()
    assert np.all(np.isfinite(F)) and np.all(np.isfinite(Nm)), f"{kind}: non-finite contact"
    return F, Nm


def z(v):
    return np.array([0, 0, v], float)


def test_plane_sphere():
    tilt = rot([1, 0, 0], 0.3)
    F, _ = run("plane-sphere", [
        (z(0), z(0.1), I3, I3, z(0), [0.1, 0, 0]),      # touching
        (z(0), z(0.3), I3, I3, z(0), [0.1, 0, 0]),      # separated by 0.2
        (z(0), z(-0.5), I3, I3, z(0), [0.1, 0, 0]),     # deep: centre 0.5 below the surface
        (z(0), tilt @ z(0.05), tilt, I3, z(0), [0.1, 0, 0]),  # tilted plane, 0.05 deep along its normal
    ])
    np.testing.assert_allclose(F[0], 0, atol=1e-9)
    np.testing.assert_allclose(F[1], 0, atol=1e-12)
    np.testing.assert_allclose(F[2], z(0.6), atol=1e-9)
    np.testing.assert_allclose(F[3], 0.05 * tilt[:, 2], atol=1e-9)


def test_plane_capsule():
    lying = rot([0, 1, 0], math.pi / 2)  # axis along x
    tilted = rot([0, 1, 0], math.pi / 6)
    F, N = run("plane-capsule", [
        (z(0), z(0.04), I3, lying, z(0), [0.05, 0.2, 0]),   # lying, both ends 0.01 deep
        (z(0), z(0.5), I3, tilted, z(0), [0.05, 0.2, 0]),   # separated
        (z(0), z(0.1), I3, tilted, z(0), [0.05, 0.2, 0]),   # lower end only
        (z(0), z(-1), I3, I3, z(0), [0.05, 0.2, 0]),        # upright, far below: both ends deep
    ])
    np.testing.assert_allclose(F[0], z(0.02), atol=1e-9)
    # the two equal end contacts balance: no moment about the centre
    np.testing.assert_allclose(N[0], 0, atol=1e-9)
    np.testing.assert_allclose(F[1], 0, atol=1e-12)
    low_end = 0.1 - 0.2 * math.cos(math.pi / 6)
    np.testing.assert_allclose(F[2], z(0.05 - low_end), atol=1e-9)
    np.testing.assert_allclose(F[3], z((0.05 + 1 + 0.2) + (0.05 + 1 - 0.2)), atol=1e-9)


def test_plane_box():
    half = [0.1, 0.2, 0.05]
    r = rot([1, 1, 0], 0.4)
    corners = np.array([[sx * half[0], sy * half[1], sz * half[2]] for sx in (-1, 1) for sy in (-1, 1)
                        for sz in (-1, 1)])
    c = z(0.1)
    depth_tilted = np.clip(-(c + corners @ r.T)[:, 2], 0, None).sum()
    F, N = run("plane-box", [
        (z(0), z(0.04), I3, I3, z(0), half),   # face down, 0.01 deep: 4 corners
        (z(0), z(0.2), I3, I3, z(0), half),    # separated
        (z(0), c, I3, r, z(0), half),          # tilted: some corners below
        (z(0), z(0.05), I3, I3, z(0), half),   # exactly touching face-face: no NaN, no force
    ])
    np.testing.assert_allclose(F[0], z(0.04), atol=1e-9)
    np.testing.assert_allclose(N[0], 0, atol=1e-9)
    np.testing.assert_allclose(F[1], 0, atol=1e-12)
    assert depth_tilted > 0
    np.testing.assert_allclose(F[2], z(depth_tilted), atol=1e-9)
    np.testing.assert_allclose(F[3], 0, atol=1e-9)


def test_sphere_sphere():
    d = np.array([1.0, 2.0, 2.0]) / 3
    F, _ = run("sphere-sphere", [
        (z(0), 0.25 * d, I3, I3, [0.1, 0, 0], [0.2, 0, 0]),   # 0.05 overlap along d
        (z(0), 0.3 * d, I3, I3, [0.1, 0, 0], [0.2, 0, 0]),    # touching
        (z(0), 2.0 * d, I3, I3, [0.1, 0, 0], [0.2, 0, 0]),    # separated
        (z(0), z(0), I3, I3, [0.1, 0, 0], [0.2, 0, 0]),       # coincident centres: finite, full depth
    ])
    np.testing.assert_allclose(F[0], 0.05 * d, atol=1e-9)
    np.testing.assert_allclose(F[1], 0, atol=1e-9)
    np.testing.assert_allclose(F[2], 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(F[3]), 0.3, atol=1e-9)


def test_sphere_capsule():
    F, _ = run("sphere-capsule", [
        (np.array([0.0, 0.15, 0.05]), z(0), I3, I3, [0.1, 0, 0], [0.1, 0.3, 0]),  # beside the shaft
        (z(0.5), z(0), I3, I3, [0.1, 0, 0], [0.1, 0.3, 0]),                       # above the end cap
        (np.array([0.0, 0.5, 0.0]), z(0), I3, I3, [0.1, 0, 0], [0.1, 0.3, 0]),   # separated
        (z(0.1), z(0), I3, I3, [0.1, 0, 0], [0.1, 0.3, 0]),                       # centre on the axis
    ])
    # force on the capsule (second geom) points away from the sphere
    np.testing.assert_allclose(F[0], [0, -0.05, 0], atol=1e-9)
    np.testing.assert_allclose(F[1], z(-(0.2 - 0.2)), atol=1e-9)
    np.testing.assert_allclose(F[2], 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(F[3]), 0.2, atol=1e-9)


def test_sphere_box():
    half = [0.1, 0.2, 0.3]
    F, _ = run("sphere-box", [
        (np.array([0.15, 0, 0]), z(0), I3, I3, [0.1, 0, 0], half),         # against the +x face, 0.05 deep
        (np.array([0.15, 0.25, 0.35]), z(0), I3, I3, [0.1, 0, 0], half),   # near a corner
        (np.array([0.5, 0, 0]), z(0), I3, I3, [0.1, 0, 0], half),          # separated
        (np.array([0.0, 0, 0.25]), z(0), I3, I3, [0.1, 0, 0], half),       # centre inside, nearest face +z
        (z(0), z(0), I3, I3, [0.1, 0, 0], half),                           # at the box centre: finite
    ])
    np.testing.assert_allclose(F[0], [-0.05, 0, 0], atol=1e-9)
    corner_dist = np.linalg.norm([0.05, 0.05, 0.05])
    np.testing.assert_allclose(F[1], -(0.1 - corner_dist) * np.ones(3) / math.sqrt(3), atol=1e-9)
    np.testing.assert_allclose(F[2], 0, atol=1e-12)
    np.testing.assert_allclose(F[3], z(-(0.1 + 0.05)), atol=1e-9)
    np.testing.assert_allclose(np.linalg.norm(F[4]), 0.2, atol=1e-9)


def test_capsule_capsule():
    along_x = rot([0, 1, 0], math.pi / 2)
    along_y = rot([1, 0, 0], math.pi / 2)
    F, _ = run("capsule-capsule", [
        (z(0), z(0.15), along_x, along_y, [0.1, 0.5, 0], [0.1, 0.5, 0]),   # crossed, 0.05 deep
        (z(0), z(0.15), along_x, along_x, [0.1, 0.5, 0], [0.1, 0.5, 0]),   # parallel (degenerate)
        (z(0), np.array([0.6, 0, 0.15]), along_x, along_x, [0.1, 0.5, 0], [0.1, 0.5, 0]),  # parallel, offset
        (z(0), z(0.5), along_x, along_y, [0.1, 0.5, 0], [0.1, 0.5, 0]),    # separated
        (z(0), z(0), along_x, along_x, [0.1, 0.5, 0], [0.1, 0.5, 0]),      # coincident axes: finite
    ])
    np.testing.assert_allclose(F[0], z(0.05), atol=1e-9)
    np.testing.assert_allclose(F[1], z(0.05), atol=1e-9)
    np.testing.assert_allclose(F[2], z(0.05), atol=1e-9)
    np.testing.assert_allclose(F[3], 0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(F[4]), 0.2, atol=1e-9)


def test_capsule_box():
    along_x = rot([0, 1, 0], math.pi / 2)
    along_y = rot([1, 0, 0], math.pi / 2)
    half = [0.3, 0.3, 0.1]
    F, N = run("capsule-box", [
        (z(0.14), z(0), along_x, I3, [0.05, 0.2, 0], half),   # lying on the top face, 0.01 deep: 3 spheres
        (z(0.5), z(0), along_x, I3, [0.05, 0.2, 0], half),    # separated
        (z(0.34), z(0), I3, I3, [0.05, 0.2, 0], half),        # upright, lower end cap 0.01 into the top
        (np.array([0.3, 0, 0.14]), z(0), along_x, I3, [0.05, 0.2, 0], half),  # across the +x edge
        # a paddle pressed 0.01 into the +x side face, 0.1 longer than the face on either side
        (np.array([0.34, 0, 0]), z(0), along_y, I3, [0.05, 0.4, 0], half),
        # the same paddle 0.01 into the face but shifted along y: it overhangs one edge by 0.3
        (np.array([0.34, 0.2, 0]), z(0), along_y, I3, [0.05, 0.4, 0], half),
        # a long capsule across the top, ends and centre far outside the box's extent
        (np.array([0.0, 0.0, 0.14]), z(0), along_x, I3, [0.05, 1.0, 0], half),
    ])
    np.testing.assert_allclose(F[0], z(-0.03), atol=1e-9)
    np.testing.assert_allclose(F[1], 0, atol=1e-12)
    np.testing.assert_allclose(F[2], z(-0.01), atol=1e-9)
    # the stretch over the face (inner end to the edge), 3 contacts of 0.01
    np.testing.assert_allclose(F[3], z(-0.03), atol=1e-9)
    # overhanging a face: pushed along the face normal only, over the face's extent (MuJoCo's
    # capsule-box collider does the same); the overhanging ends do not pull it sideways
    np.testing.assert_allclose(F[4], [-0.03, 0, 0], atol=1e-9)
    np.testing.assert_allclose(F[5], [-0.03, 0, 0], atol=1e-9)
    # 3 equal contacts at y = -0.2, 0.3 (the clipped stretch's ends) and 0.05: the moment about
    # the box centre is that of the total force at y = 0.05
    np.testing.assert_allclose(N[5], np.cross([0.3, 0.05, 0], [-0.03, 0, 0]), atol=1e-9)
    np.testing.assert_allclose(F[6], z(-0.03), atol=1e-9)


def test_box_box():
    h = [0.1, 0.1, 0.1]
    F, N = run("box-box", [
        (z(0), z(0.19), I3, I3, h, h),                        # face-face stacked, 0.01 deep: 4 corners
        (z(0), np.array([0.05, 0.05, 0.19]), I3, I3, h, h),   # offset: overlap polygon corners
        (z(0), z(0.5), I3, I3, h, h),                         # separated
        (z(0), np.array([0.19, 0, 0]), I3, I3, h, h),         # side by side along x
        (z(0), z(0.2), I3, I3, h, h),                         # exactly touching (degenerate)
        (z(0), z(0), I3, I3, h, h),                           # coincident: finite
    ])
    np.testing.assert_allclose(F[0], z(0.04), atol=1e-9)
    np.testing.assert_allclose(N[0], 0, atol=1e-9)
    # the overlap is a 0.15 x 0.15 square centred at (0.025, 0.025): 4 contacts of depth 0.01,
    # whose moment about the upper box centre (0.05, 0.05) is that of 0.04 at (0.025, 0.025)
    np.testing.assert_allclose(F[1], z(0.04), atol=1e-9)
    np.testing.assert_allclose(N[1], np.cross([-0.025, -0.025, 0], z(0.04)), atol=1e-9)
    np.testing.assert_allclose(F[2], 0, atol=1e-12)
    np.testing.assert_allclose(F[3], [0.04, 0, 0], atol=1e-9)
    np.testing.assert_allclose(F[4], 0, atol=1e-9)
    assert np.linalg.norm(F[5]) > 0


@pytest.mark.parametrize("kind", list(KINDS))
def test_random_configurations_are_finite(kind):
    rng = np.random.default_rng(KINDS[kind])
    cases = []
    for _ in range(200):
        cases.append((rng.normal(size=3) * 0.2, rng.normal(size=3) * 0.2, rot(rng.normal(size=3), rng.uniform(0, 6)),
                      rot(rng.normal(size=3), rng.uniform(0, 6)), rng.uniform(0.05, 0.3, 3), rng.uniform(0.05, 0.3, 3)))
    F, N = run(kind, cases)
    assert np.abs(F).max() < 10 and np.abs(N).max() < 10


@wp.kernel
def _mesh_point(planes: wp.array(dtype=wp.vec4d), count: int, c: wp.array(dtype=V), r: wp.array(dtype=wp.float64),
                out_d: wp.array(dtype=wp.float64), out_n: wp.array(dtype=V)):
    i = wp.tid()
    R = wp.identity(n=3, dtype=wp.float64)
    mp = V(wp.float64(1.0), wp.float64(2.0), wp.float64(3.0))
    d, n, p = C.mesh_point(planes, 0, count, mp, R, c[i] + mp, r[i])
    out_d[i] = d
    out_n[i] = n


def test_convex_mesh_point_queries():
    """A cube hull (|x|, |y|, |z| <= 0.1 as 6 planes) against points and spheres."""
    planes = np.array([[1, 0, 0, .1], [-1, 0, 0, .1], [0, 1, 0, .1], [0, -1, 0, .1], [0, 0, 1, .1], [0, 0, -1, .1]])
    cases = [((0.05, 0, 0), 0.0, 0.05, (1, 0, 0)),        # inside: nearest face +x
             ((0, -0.08, 0.01), 0.0, 0.02, (0, -1, 0)),   # inside near -y
             ((0.15, 0, 0), 0.1, 0.05, (1, 0, 0)),        # sphere overlapping the +x face
             ((0, 0, 0.5), 0.1, -0.3, (0, 0, 1)),         # separated above
             ((0, 0, 0.2), 0.1, 0.0, (0, 0, 1))]          # touching
    c = wp.array(np.array([x[0] for x in cases], float), dtype=V)
    r = wp.array(np.array([x[1] for x in cases], float), dtype=wp.float64)
    d = wp.zeros(len(cases), dtype=wp.float64)
    n = wp.zeros(len(cases), dtype=V)
    wp.launch(_mesh_point, dim=len(cases), inputs=[wp.array(planes, dtype=wp.vec4d), 6, c, r, d, n], device="cpu")
    np.testing.assert_allclose(d.numpy(), [x[2] for x in cases], atol=1e-12)
    np.testing.assert_allclose(n.numpy(), [x[3] for x in cases], atol=1e-12)
