"""Collision and the contact action on the tree (MuJoCo's mj_collision with the contact forces
that its constraint solver would add to qfrc_constraint), looped over candidate pairs and points.

Per step:

- ``geom_poses`` (MuJoCo's geom_xpos / geom_xmat) and ``narrow_phase``, once per step (positions
  only): per candidate pair a bounding-sphere (plane: half-space) test, then the narrow phase of
  the pair's kind from the pair table (``narrow`` in :func:`make`, types.PAIR_KINDS order,
  compiled for the kinds a model's group has), which writes the pair's POINTS[kind] contact
  points (depth, normal, point); far pairs write depth -1.
- ``assemble``, before each solve (one slot of kernels.tree.SLOT per solve): the contact law of
  kernels/contact.py at every point with depth > 0 (one copy of its code, whatever the kinds),
  summed per pair about its reference point (the second geom's centre): force, moment and the
  implicit stiffness (A, B, C); each pair's action shifted to the origin of each of its bodies
  (the reference point of kernels/smooth.py) and summed over subtrees, each child's sum shifted
  to its parent's origin (``xn``, ``xf``), and for pairs treated implicitly the stiffness, scaled
  by pair_iscale, into each body's own oA, oB, oC (the solve adds them to the bodies' inertias:
  the contact's share J^T K J of the system is never formed in joint space); then the solve's
  inputs: qts = qt + cdof . (subtree contact wrench) + dry friction, dg = diag + dry friction's
  implicit share.

A second solve (slot 1) exists when some pair is treated implicitly or some dof has dry friction:
it re-evaluates the friction of those with the end-of-step velocities the first solve predicted
(kernels/contact.contact_force, joint_friction) and runs only where that limit changed a
viscosity (``lim`` > 0); elsewhere the first solve's acceleration stands, as in the unrolled
engine, whose pair functions give the same sums point by point.

Every sum is an atomic add into a slot stored once per step and read after its last add, so that
Warp's reverse mode differentiates the loops exactly; dynamic loops carry no register values.
"""
import hashlib
import inspect
import sys

import warp as wp

from ..types import BOX, CAPSULE, CYLINDER, ELLIPSOID, HFIELD, MESH, PAIR_KINDS, PLANE, SPHERE
from . import contact as _contact
from . import limits as _limits
from .contact import (
    box_box_face,
    box_box_point,
    box_corner,
    box_point,
    capsule_box_params,
    capsule_cylinder_params,
    contact_force,
    cylinder_point,
    cylinder_rim_point,
    ellipsoid_support,
    joint_friction,
    mesh_point,
    plane_point,
    safe_normalize,
    segment_point,
    segment_segment,
    shift_moment,
    shift_stiffness,
    skew,
    sphere_sphere,
    spin_roll_torque,
    triangle_closest,
)
from .dynamics import shift_motion_v
from .tree import NO_FEATURES, Tree, aliases, per_dtype, stored

_PLANE = wp.constant(PLANE)

# Warp's module hash misses functions called through a static expression that depends on a loop
# variable (``wp.static(funcs[q])`` in narrow_phase: an edited narrow phase kept the old binary
# from the kernel cache): narrow_phase also carries a digest of the source of this file and of
# kernels/contact.py, the narrow phases' call trees, as a static value Warp does hash
try:
    _SOURCE = inspect.getsource(sys.modules[__name__]) + inspect.getsource(_contact)
except (OSError, TypeError):  # no source files (a frozen install): Warp then has none to hash either
    _SOURCE = ""
TABLE_DIGEST = int(hashlib.sha1(_SOURCE.encode()).hexdigest()[:7], 16)

#: Contact points of a pair of each kind (types.PAIR_KINDS), from the hull vertex counts of its
#: geoms (0 for geoms that are not meshes): the narrow phase writes that many (depth, normal,
#: point) per pair, the law runs on those with depth > 0.
POINTS = {(PLANE, SPHERE): lambda v1, v2: 1, (PLANE, CAPSULE): lambda v1, v2: 2, (PLANE, BOX): lambda v1, v2: 8,
          (SPHERE, SPHERE): lambda v1, v2: 1, (SPHERE, CAPSULE): lambda v1, v2: 1, (SPHERE, BOX): lambda v1, v2: 1,
          (CAPSULE, CAPSULE): lambda v1, v2: 1, (CAPSULE, BOX): lambda v1, v2: 3, (BOX, BOX): lambda v1, v2: 8,
          (PLANE, MESH): lambda v1, v2: v2, (SPHERE, MESH): lambda v1, v2: 1, (CAPSULE, MESH): lambda v1, v2: 3 + v2,
          (BOX, MESH): lambda v1, v2: 8 + v2, (MESH, MESH): lambda v1, v2: v1 + v2,
          (PLANE, CYLINDER): lambda v1, v2: 6, (SPHERE, CYLINDER): lambda v1, v2: 1,
          (CAPSULE, CYLINDER): lambda v1, v2: 3, (PLANE, ELLIPSOID): lambda v1, v2: 1,
          (CYLINDER, BOX): lambda v1, v2: 29, (CYLINDER, CYLINDER): lambda v1, v2: 15,
          (HFIELD, SPHERE): lambda v1, v2: 1, (HFIELD, CAPSULE): lambda v1, v2: 3, (HFIELD, BOX): lambda v1, v2: 9}
assert set(POINTS) == set(PAIR_KINDS)


@per_dtype
def make(T, features=NO_FEATURES):
    """The collision stage functions for scalar ``T`` and the model ``features``, as a dict."""
    a = aliases(T)
    V3, M33, S, A3, V4, P = a["V3"], a["M33"], a["S"], a["A3"], a["V4"], a["P"]

    @wp.func
    def axis(R: M33):
        return V3(R[0, 2], R[1, 2], R[2, 2])

    @wp.func
    def seg0(p: V3, R: M33, size: V3):
        return p - axis(R) * size[1]

    @wp.func
    def seg1(p: V3, R: M33, size: V3):
        return p + axis(R) * size[1]

    @stored
    @wp.func
    def put(w: int, s: S, j: int, depth: T, n: V3, p: V3):
        s.cdepth[w, j] = depth
        s.cnormal[w, j] = n
        s.cpoint[w, j] = p

    # ---- the pair table: one narrow phase per kind, all with one signature: the pair's
    # contact points into s.cdepth / cnormal / cpoint from index j (POINTS[kind] of them)
    @stored
    @wp.func
    def plane_sphere(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                     p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                     planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        d, n, p = plane_point(p1, axis(R1), p2, s2[0])
        put(w, s, j, d, n, p)

    @stored
    @wp.func
    def plane_capsule(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                      p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                      planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        d, n, p = plane_point(p1, axis(R1), seg0(p2, R2, s2), s2[0])
        put(w, s, j, d, n, p)
        d1, n1, q1 = plane_point(p1, axis(R1), seg1(p2, R2, s2), s2[0])
        put(w, s, j + 1, d1, n1, q1)

    @stored
    @wp.func
    def plane_box(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                  p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                  planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        for k in range(tree.pair_pnum[i]):  # 8, a dynamic loop: one copy of its code
            d, n, p = plane_point(p1, axis(R1), box_corner(p2, R2, s2, k), T(0.0))
            put(w, s, j + k, d, n, p)

    @stored
    @wp.func
    def sphere_sphere_(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                       p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                       planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        d, n, p = sphere_sphere(p1, s1[0], p2, s2[0])
        put(w, s, j, d, n, p)

    @stored
    @wp.func
    def sphere_capsule(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                       p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                       planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        d, n, p = sphere_sphere(p1, s1[0], segment_point(seg0(p2, R2, s2), seg1(p2, R2, s2), p1), s2[0])
        put(w, s, j, d, n, p)

    @stored
    @wp.func
    def sphere_box(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                   p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                   planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        d, n, p = box_point(p2, R2, s2, p1, s1[0])
        put(w, s, j, d, -n, p)  # box_point's normal points from the box (second) to the sphere

    @stored
    @wp.func
    def capsule_capsule(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                        p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                        planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        pa, pb = segment_segment(seg0(p1, R1, s1), seg1(p1, R1, s1), seg0(p2, R2, s2), seg1(p2, R2, s2))
        d, n, p = sphere_sphere(pa, s1[0], pb, s2[0])
        put(w, s, j, d, n, p)

    @stored
    @wp.func
    def capsule_box(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                    p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                    planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        a0 = seg0(p1, R1, s1)
        ab = seg1(p1, R1, s1) - a0
        t0, t1 = capsule_box_params(a0, a0 + ab, s1[0], p2, R2, s2)
        c0 = a0 + ab * t0
        c1 = a0 + ab * t1
        d, n, p = box_point(p2, R2, s2, c0, s1[0])
        put(w, s, j, d, -n, p)
        d1, n1, q1 = box_point(p2, R2, s2, c1, s1[0])
        put(w, s, j + 1, d1, -n1, q1)
        d2, n2, q2 = box_point(p2, R2, s2, (c0 + c1) * T(0.5), s1[0])
        put(w, s, j + 2, d2, -n2, q2)

    @stored
    @wp.func
    def box_box(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        best_a, n = box_box_face(p1, R1, s1, p2, R2, s2)
        for k in range(tree.pair_pnum[i]):  # 8
            d, nk, p = box_box_point(p1, R1, s1, p2, R2, s2, best_a, n, k)
            put(w, s, j + k, d, nk, p)

    @stored
    @wp.func
    def mesh_of(w: int, s: S, j: int, tree: Tree, g: int, mp: V3, mR: M33, c: V3, r: T, flip: int,
                planes: wp.array(dtype=V4)):
        """Point j: a sphere of radius r at c (r = 0: a point) against mesh geom g; flip = 1 when
        the mesh is the pair's second geom (normal reversed)."""
        d, n, p = mesh_point(planes, tree.geom_hull_padr[g], tree.geom_hull_pnum[g], mp, mR, c, r)
        put(w, s, j, d, n * wp.where(flip == 1, T(-1.0), T(1.0)), p)

    @wp.func
    def hull_vertex(tree: Tree, g: int, k: int, p: V3, R: M33, verts: wp.array(dtype=V3)):
        return p + R * verts[tree.geom_hull_vadr[g] + k]

    @stored
    @wp.func
    def plane_mesh(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                   p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                   planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        for k in range(tree.geom_hull_vnum[g2]):
            d, n, p = plane_point(p1, axis(R1), hull_vertex(tree, g2, k, p2, R2, verts), T(0.0))
            put(w, s, j + k, d, n, p)

    @stored
    @wp.func
    def sphere_mesh(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                    p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                    planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        mesh_of(w, s, j, tree, g2, p2, R2, p1, s1[0], 1, planes)

    @stored
    @wp.func
    def capsule_mesh(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                     p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                     planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        a0 = seg0(p1, R1, s1)
        a1 = seg1(p1, R1, s1)
        mesh_of(w, s, j, tree, g2, p2, R2, a0, s1[0], 1, planes)
        mesh_of(w, s, j + 1, tree, g2, p2, R2, a1, s1[0], 1, planes)
        mesh_of(w, s, j + 2, tree, g2, p2, R2, p1, s1[0], 1, planes)
        for k in range(tree.geom_hull_vnum[g2]):
            v = hull_vertex(tree, g2, k, p2, R2, verts)
            d, n, p = sphere_sphere(segment_point(a0, a1, v), s1[0], v, T(0.0))
            put(w, s, j + 3 + k, d, n, p)

    @stored
    @wp.func
    def box_mesh(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                 p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                 planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        for k in range(tree.pair_pnum[i] - tree.geom_hull_vnum[g2]):  # 8
            mesh_of(w, s, j + k, tree, g2, p2, R2, box_corner(p1, R1, s1, k), T(0.0), 1, planes)
        for k in range(tree.geom_hull_vnum[g2]):
            d, n, p = box_point(p1, R1, s1, hull_vertex(tree, g2, k, p2, R2, verts), T(0.0))
            put(w, s, j + 8 + k, d, n, p)

    @stored
    @wp.func
    def mesh_mesh(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                  p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                  planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        n1 = tree.geom_hull_vnum[g1]
        for k in range(n1):
            mesh_of(w, s, j + k, tree, g2, p2, R2, hull_vertex(tree, g1, k, p1, R1, verts), T(0.0), 1, planes)
        for k in range(tree.geom_hull_vnum[g2]):
            mesh_of(w, s, j + n1 + k, tree, g1, p1, R1, hull_vertex(tree, g2, k, p2, R2, verts), T(0.0), 0, planes)

    @stored
    @wp.func
    def plane_cylinder(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                       p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                       planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        n = axis(R1)
        for k in range(tree.pair_pnum[i]):  # 6: three rim points per cap
            d, nk, p = plane_point(p1, n, cylinder_rim_point(p2, R2, s2, -n, k), T(0.0))
            put(w, s, j + k, d, nk, p)

    @stored
    @wp.func
    def sphere_cylinder(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                        p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                        planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        d, n, p = cylinder_point(p2, R2, s2, p1, s1[0])
        put(w, s, j, d, -n, p)  # cylinder_point's normal points from the cylinder (second)

    @wp.func
    def axis_stretch(p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3):
        """The first geom's axis (a0, a0 + ab: a capsule's segment, a cylinder's axis) against a
        cylinder (the second): its point pa closest to the cylinder's axis, that point's parameter
        tc and the stretch (t0, t1) over the cap or side it meets (capsule_cylinder_params)."""
        a0 = seg0(p1, R1, s1)
        ab = seg1(p1, R1, s1) - a0
        pa, pb = segment_segment(a0, a0 + ab, seg0(p2, R2, s2), seg1(p2, R2, s2))
        den = wp.dot(ab, ab)
        tc = T(0.0)
        if den > T(1.0e-20):
            tc = wp.dot(pa - a0, ab) / den
        t0, t1 = capsule_cylinder_params(a0, a0 + ab, s1[0], p2, R2, s2, tc)
        return a0, ab, pa, tc, t0, t1

    @stored
    @wp.func
    def capsule_cylinder(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                         p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                         planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        # spheres at the ends of the capsule's contact stretch (axis_stretch) and at its point
        # closest to the cylinder's axis
        a0, ab, pa, tc, t0, t1 = axis_stretch(p1, R1, s1, p2, R2, s2)
        d, n, p = cylinder_point(p2, R2, s2, a0 + ab * t0, s1[0])
        put(w, s, j, d, -n, p)
        d1, n1, q1 = cylinder_point(p2, R2, s2, a0 + ab * t1, s1[0])
        put(w, s, j + 1, d1, -n1, q1)
        d2, n2, q2 = cylinder_point(p2, R2, s2, pa, s1[0])
        put(w, s, j + 2, d2, -n2, q2)

    @wp.func
    def side_only(d: T, n: V3, p: V3, c: V3, r: T, t: T, cp: V3, cR: M33, size: V3):
        """The depth of a sphere (radius r, centre c at parameter t of a cylinder's axis: cylinder
        cp, cR, size) against another geom, whose narrow phase gave (d, n from the other geom, p
        the midpoint), as a contact of the cylinder's side: none (-1) at or beyond its caps or where
        n is within 45 degrees of the axis (the cap's rim points cover that), and at most the depth
        of the other geom's surface point inside the cylinder (the sphere's part beyond the flat
        caps is no contact)."""
        ps = p * T(2.0) - (c - n * r)
        di, ni, pi = cylinder_point(cp, cR, size, ps, T(0.0))
        off = t <= T(0.0) or t >= T(1.0) or wp.abs(wp.dot(n, axis(cR))) > T(0.7071067811865476)
        return wp.where(off, wp.min(d, T(-1.0)), wp.min(d, di))

    @wp.func
    def box_edge(p: V3, R: M33, half: V3, e: int):
        """Edge e (0..11) of a box: its two end corners (edge e runs along axis e // 4)."""
        a = e // 4
        m = e % 4
        b0 = wp.where(a == 0, 1, 0)  # the two other axes, b0 < b1
        b1 = wp.where(a == 2, 1, 2)
        c0 = ((m & 1) << b0) | (((m >> 1) & 1) << b1)
        return box_corner(p, R, half, c0), box_corner(p, R, half, c0 | (1 << a))

    @stored
    @wp.func
    def cylinder_box(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                     p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                     planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        # points 0-5: the cylinder's rim points (as against a plane, towards the box: minus the
        # normal of the box face nearest the cylinder's centre) against the box; 6-8: spheres of
        # the cylinder's radius on its axis over the box face it meets (capsule_box_params: a
        # cylinder lying on a box touches along a line); 9-16: the box's corners and 17-28 the
        # points of its edges closest to the axis, against the cylinder (a can overhanging a
        # crate's edge rests on it; a crate on a log)
        d0, nb, q0 = box_point(p2, R2, s2, p1, T(0.0))
        for k in range(tree.pair_pnum[i] - 23):  # 6
            d, n, p = box_point(p2, R2, s2, cylinder_rim_point(p1, R1, s1, -nb, k), T(0.0))
            put(w, s, j + k, d, -n, p)  # box_point's normal points from the box (second)
        a0 = seg0(p1, R1, s1)
        ab = seg1(p1, R1, s1) - a0
        t0, t1 = capsule_box_params(a0, a0 + ab, s1[0], p2, R2, s2)
        for k in range(3):
            t = wp.where(k == 0, t0, wp.where(k == 1, t1, (t0 + t1) * T(0.5)))
            c = a0 + ab * t
            d, n, p = box_point(p2, R2, s2, c, s1[0])
            put(w, s, j + 6 + k, side_only(d, n, p, c, s1[0], t, p1, R1, s1), -n, p)
        for k in range(tree.pair_pnum[i] - 21):  # 8, dynamic loops: one copy of their code
            d, n, p = cylinder_point(p1, R1, s1, box_corner(p2, R2, s2, k), T(0.0))
            put(w, s, j + 9 + k, d, n, p)
        for k in range(tree.pair_pnum[i] - 17):  # 12
            e0, e1 = box_edge(p2, R2, s2, k)
            pe, pa = segment_segment(e0, e1, a0, a0 + ab)
            d, n, p = cylinder_point(p1, R1, s1, pe, T(0.0))
            put(w, s, j + 17 + k, d, n, p)

    @stored
    @wp.func
    def cylinder_cylinder(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                          p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                          planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        # points 0-5: the first cylinder's rim points towards the second (as against a plane whose
        # normal is the direction between their centres) against the second; 6-11 the second's
        # against the first (cans stacked cap on cap rest on a triangle); 12-14: spheres of the
        # first's radius on its axis over the second (axis_stretch: cylinders lying
        # side by side or across each other touch along or at their closest lines)
        u, l = safe_normalize(p2 - p1, axis(R1))
        for k in range(tree.pair_pnum[i] - 9):  # 6, dynamic loops: one copy of their code
            d, n, p = cylinder_point(p2, R2, s2, cylinder_rim_point(p1, R1, s1, u, k), T(0.0))
            put(w, s, j + k, d, -n, p)  # cylinder_point's normal points from the second
        for k in range(tree.pair_pnum[i] - 9):  # 6
            d, n, p = cylinder_point(p1, R1, s1, cylinder_rim_point(p2, R2, s2, -u, k), T(0.0))
            put(w, s, j + 6 + k, d, n, p)
        a0, ab, pa, tc, t0, t1 = axis_stretch(p1, R1, s1, p2, R2, s2)
        for k in range(3):
            t = wp.where(k == 0, t0, wp.where(k == 1, t1, tc))
            c = a0 + ab * t
            d, n, p = cylinder_point(p2, R2, s2, c, s1[0])
            put(w, s, j + 12 + k, side_only(d, n, p, c, s1[0], t, p1, R1, s1), -n, p)

    @stored
    @wp.func
    def plane_ellipsoid(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                        p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                        planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        n = axis(R1)
        d, nk, p = plane_point(p1, n, ellipsoid_support(p2, R2, s2, -n), T(0.0))
        put(w, s, j, d, nk, p)

    # ---- height fields: the grid's vertices (geom frame, row-major, MuJoCo's rows along y) are the
    # geom's hull vertices (verts from geom_hull_vadr); each cell (r, c) is the two triangles
    # MuJoCo's mjc_ConvexHField sweeps, split along the diagonal from (r + 1, c) to (r, c + 1)
    @wp.func
    def hf_vert(verts: wp.array(dtype=V3), tree: Tree, g: int, r: int, c: int):
        return verts[tree.geom_hull_vadr[g] + r * tree.geom_hf_ncol[g] + c]

    @wp.func
    def hf_grid(verts: wp.array(dtype=V3), tree: Tree, g: int):
        """Height field g's grid: its first vertex (the origin of rows and columns) and spacings
        along x (columns) and y (rows)."""
        nrow = tree.geom_hf_nrow[g]
        ncol = tree.geom_hf_ncol[g]
        o = hf_vert(verts, tree, g, 0, 0)
        dx = (hf_vert(verts, tree, g, 0, ncol - 1)[0] - o[0]) / T(float(ncol - 1))
        dy = (hf_vert(verts, tree, g, nrow - 1, 0)[1] - o[1]) / T(float(nrow - 1))
        return o, dx, dy

    @wp.func
    def hf_triangle(verts: wp.array(dtype=V3), tree: Tree, g: int, rr: int, cc: int, k: int):
        """Triangle k (0: the one at (rr, cc), 1: the one at (rr + 1, cc + 1)) of cell (rr, cc):
        its vertices t0, the shared (rr, cc + 1), t2."""
        vc = hf_vert(verts, tree, g, rr, cc + 1)
        t0 = hf_vert(verts, tree, g, rr, cc)
        t2 = hf_vert(verts, tree, g, rr + 1, cc)
        if k == 1:
            t0 = t2
            t2 = hf_vert(verts, tree, g, rr + 1, cc + 1)
        return t0, vc, t2

    @wp.func
    def hf_triangle_point(verts: wp.array(dtype=V3), tree: Tree, g: int, rr: int, cc: int, k: int, c: V3):
        """The point of triangle k (0: the one at (rr, cc), 1: the one at (rr + 1, cc + 1)) of
        cell (rr, cc) closest to c."""
        t0, vc, t2 = hf_triangle(verts, tree, g, rr, cc, k)
        return triangle_closest(c, t0, vc, t2)

    @wp.func
    def hf_closest_triangle(verts: wp.array(dtype=V3), tree: Tree, g: int, c: V3, rad: T, o: V3, dx: T, dy: T):
        """The index (2 (row ncol + col) + k) of the triangle of height field g closest to c among
        the cells under the sphere of radius ``rad`` there. A function of its own: where the
        search ran inside hfield_point, Warp's adjoint replay of it left the loop's result at its
        initial value (the terrain's gradient came out wrong; measured against central
        differences); called, it is replayed whole."""
        nrow = tree.geom_hf_nrow[g]
        ncol = tree.geom_hf_ncol[g]
        c0 = wp.clamp(int(wp.floor((c[0] - rad - o[0]) / dx)), 0, ncol - 2)
        c1 = wp.clamp(int(wp.floor((c[0] + rad - o[0]) / dx)), 0, ncol - 2)
        r0 = wp.clamp(int(wp.floor((c[1] - rad - o[1]) / dy)), 0, nrow - 2)
        r1 = wp.clamp(int(wp.floor((c[1] + rad - o[1]) / dy)), 0, nrow - 2)
        best = T(1.0e30)
        bi = int(0)  # noqa: UP018 - a variable, not a constant, for Warp's dynamic loop
        for rr in range(r0, r1 + 1):
            for cc in range(c0, c1 + 1):
                for k in range(2):
                    qk = hf_triangle_point(verts, tree, g, rr, cc, k, c)
                    d2 = wp.length_sq(c - qk)
                    if d2 < best:
                        best = d2
                        bi = (rr * ncol + cc) * 2 + k
        return bi

    @wp.func
    def hfield_point(tree: Tree, g: int, verts: wp.array(dtype=V3), c: V3, rad: T):
        """A sphere of radius ``rad`` (0: a point) at ``c`` (the field's frame) against height
        field g's surface: (depth, normal from the field to the sphere, point), in the field's
        frame, from the surface point closest to c over the triangles of the cells under the
        sphere; c below the surface (its height at c's x, y) counts the distance as negative,
        the normal then that triangle's. Outside the grid: depth -1."""
        nrow = tree.geom_hf_nrow[g]
        ncol = tree.geom_hf_ncol[g]
        o, dx, dy = hf_grid(verts, tree, g)
        bi = hf_closest_triangle(verts, tree, g, c, rad, o, dx, dy)
        q = hf_triangle_point(verts, tree, g, bi // (2 * ncol), (bi // 2) % ncol, bi % 2, c)
        # the triangle under c: its height there says whether c is below the surface
        u = (c[0] - o[0]) / dx
        v = (c[1] - o[1]) / dy
        inside = u >= T(0.0) and v >= T(0.0) and u <= T(float(ncol - 1)) and v <= T(float(nrow - 1))
        cu = wp.clamp(int(wp.floor(u)), 0, ncol - 2)
        rv = wp.clamp(int(wp.floor(v)), 0, nrow - 2)
        fu = u - T(float(cu))
        fv = v - T(float(rv))
        t0, vc, t2 = hf_triangle(verts, tree, g, rv, cu, wp.where(fu + fv <= T(1.0), 0, 1))
        tn, tl = safe_normalize(wp.cross(vc - t0, t2 - t0), V3(T(0.0), T(0.0), T(1.0)))
        below = wp.dot(c - t0, tn) < T(0.0)
        n, dist = safe_normalize(c - q, tn)
        if below:
            dist = -dist
            n = tn
        depth = rad - dist
        p = q - n * (depth * T(0.5))  # the midpoint between the surface and the sphere's deepest point
        if not inside:
            depth = T(-1.0)
        return depth, n, p

    @wp.func
    def vertex_contact(v: V3, p2: V3, R2: M33, s2: V3, capsule: int):
        """A terrain vertex v as a point against the box (capsule 0) or capsule (1) at p2, R2 of
        size s2: (depth, normal from the field to the geom, point)."""
        d, n, p = box_point(p2, R2, s2, v, T(0.0))
        n = -n  # box_point's normal points from the box to the vertex
        if capsule != 0:  # the vertex against the capsule's sphere at its closest axis point
            d, n, p = sphere_sphere(v, T(0.0), segment_point(seg0(p2, R2, s2), seg1(p2, R2, s2), v), s2[0])
        return d, n, p

    @wp.func
    def hf_deepest_vertex(tree: Tree, g: int, verts: wp.array(dtype=V3), p1: V3, R1: M33, c: V3, rb: T, p2: V3,
                          R2: M33, s2: V3, capsule: int, o: V3, dx: T, dy: T):
        """The index (row ncol + col) of deepest_vertex's vertex, -1 for none (a function of its
        own for Warp's adjoint replay, as hf_closest_triangle)."""
        nrow = tree.geom_hf_nrow[g]
        ncol = tree.geom_hf_ncol[g]
        cl = wp.transpose(R1) * (c - p1)
        best = T(-1.0)
        bi = int(-1)  # noqa: UP018 - as above
        for rr in range(wp.clamp(int(wp.ceil((cl[1] - rb - o[1]) / dy)), 0, nrow - 1),
                        wp.clamp(int(wp.floor((cl[1] + rb - o[1]) / dy)), -1, nrow - 1) + 1):
            for cc in range(wp.clamp(int(wp.ceil((cl[0] - rb - o[0]) / dx)), 0, ncol - 1),
                            wp.clamp(int(wp.floor((cl[0] + rb - o[0]) / dx)), -1, ncol - 1) + 1):
                d, n, p = vertex_contact(p1 + R1 * hf_vert(verts, tree, g, rr, cc), p2, R2, s2, capsule)
                if d > best:
                    best = d
                    bi = rr * ncol + cc
        return bi

    @wp.func
    def deepest_vertex(tree: Tree, g: int, verts: wp.array(dtype=V3), p1: V3, R1: M33, c: V3, rb: T, p2: V3,
                       R2: M33, s2: V3, capsule: int):
        """The vertex of height field g (at p1, R1) within ``rb`` of ``c`` in x and y that lies
        deepest in the box (capsule 0) or capsule (1) at p2, R2 of size s2: (depth, normal from
        the field to the geom, point); depth -1 when none is inside."""
        ncol = tree.geom_hf_ncol[g]
        o, dx, dy = hf_grid(verts, tree, g)
        bi = hf_deepest_vertex(tree, g, verts, p1, R1, c, rb, p2, R2, s2, capsule, o, dx, dy)
        d = T(-1.0)
        n = V3(T(0.0), T(0.0), T(1.0))
        p = c
        if bi >= 0:
            d, n, p = vertex_contact(p1 + R1 * hf_vert(verts, tree, g, bi // ncol, bi % ncol), p2, R2, s2, capsule)
        return d, n, p

    @stored
    @wp.func
    def hfield_sphere(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                      p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                      planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        d, n, p = hfield_point(tree, g1, verts, wp.transpose(R1) * (p2 - p1), s2[0])
        put(w, s, j, d, R1 * n, p1 + R1 * p)

    @stored
    @wp.func
    def hfield_capsule(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                       p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                       planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        for k in range(2):  # the end spheres, as plane_capsule's
            e = wp.where(k == 0, seg0(p2, R2, s2), seg1(p2, R2, s2))
            d, n, p = hfield_point(tree, g1, verts, wp.transpose(R1) * (e - p1), s2[0])
            put(w, s, j + k, d, R1 * n, p1 + R1 * p)
        # and the grid's vertex deepest in the capsule (a bump under its middle)
        best, bn, bp = deepest_vertex(tree, g1, verts, p1, R1, p2, wp.length(s2 + V3(s2[0], T(0.0), T(0.0))), p2, R2,
                                      s2, 1)
        put(w, s, j + 2, best, bn, bp)

    @stored
    @wp.func
    def hfield_box(w: int, s: S, i: int, j: int, tree: Tree, g1: int, g2: int,
                   p1: V3, R1: M33, s1: V3, p2: V3, R2: M33, s2: V3,
                   planes: wp.array(dtype=V4), verts: wp.array(dtype=V3)):
        for k in range(8):  # the corners, as plane_box's
            d, n, p = hfield_point(tree, g1, verts, wp.transpose(R1) * (box_corner(p2, R2, s2, k) - p1), T(0.0))
            put(w, s, j + k, d, R1 * n, p1 + R1 * p)
        # and the grid's vertex deepest inside the box (a bump under the box's face)
        best, bn, bp = deepest_vertex(tree, g1, verts, p1, R1, p2, wp.length(s2), p2, R2, s2, 0)
        put(w, s, j + 8, best, bn, bp)

    #: per kind of types.PAIR_KINDS: its narrow phase
    narrow = {(PLANE, SPHERE): plane_sphere, (PLANE, CAPSULE): plane_capsule, (PLANE, BOX): plane_box,
              (SPHERE, SPHERE): sphere_sphere_, (SPHERE, CAPSULE): sphere_capsule, (SPHERE, BOX): sphere_box,
              (CAPSULE, CAPSULE): capsule_capsule, (CAPSULE, BOX): capsule_box, (BOX, BOX): box_box,
              (PLANE, MESH): plane_mesh, (SPHERE, MESH): sphere_mesh, (CAPSULE, MESH): capsule_mesh,
              (BOX, MESH): box_mesh, (MESH, MESH): mesh_mesh, (PLANE, CYLINDER): plane_cylinder,
              (SPHERE, CYLINDER): sphere_cylinder, (CAPSULE, CYLINDER): capsule_cylinder,
              (PLANE, ELLIPSOID): plane_ellipsoid, (CYLINDER, BOX): cylinder_box,
              (CYLINDER, CYLINDER): cylinder_cylinder, (HFIELD, SPHERE): hfield_sphere,
              (HFIELD, CAPSULE): hfield_capsule, (HFIELD, BOX): hfield_box}
    assert set(narrow) == set(PAIR_KINDS)
    present = list(features.kinds)
    funcs = [narrow[PAIR_KINDS[k]] for k in present]
    CONTACT = bool(present)
    IMPLICIT = features.implicit
    FRICTION = features.friction
    NSOLVE = features.nsolve
    MJC = features.mjlimits
    row_force, equality_force = _limits.make(T)["row_force"], _limits.make(T)["equality_force"]

    @stored
    @wp.func
    def geom_poses(w: int, tree: Tree, s: S, geom_pos: wp.array(dtype=V3), geom_quat: wp.array(dtype=a["Q"])):
        for g in range(tree.ngeom):
            b = tree.geom_body[g]
            xq = s.xq[w, b]
            s.gp[w, g] = s.xp[w, b] + wp.quat_rotate(xq, geom_pos[g])
            s.gR[w, g] = wp.quat_to_matrix(xq * geom_quat[g])

    @stored
    @wp.func
    def predicted_velocities(w: int, qvel: A3, qacc_extra: A3, t: int, tree: Tree, s0: S, s: S, h: T):
        """qdp = qd + h (qacc + qacc_extra) of the first solve and the body velocities it gives,
        about each body's origin (as com_vel's, from the same cdof)."""
        z = V3(T(0.0), T(0.0), T(0.0))
        for d in range(tree.nv):
            s.qdp[w, d] = qvel[w, t, d] + h * (s0.qacc[w, d] + qacc_extra[w, t, d])
        s.pvw[w, 0] = z
        s.pvv[w, 0] = z
        for b in range(1, tree.nbody):
            p = tree.body_parent[b]
            pw = s.pvw[w, p]
            s.pvw[w, b] = pw
            s.pvv[w, b] = shift_motion_v(pw, s.pvv[w, p], -s.xd[w, b])
            adr = tree.body_dofadr[b]
            for k in range(tree.body_dofnum[b]):
                d = adr + k
                wp.atomic_add(s.pvw, w, b, s.cdw[w, d] * s.qdp[w, d])
                wp.atomic_add(s.pvv, w, b, s.cdv[w, d] * s.qdp[w, d])

    @stored
    @wp.func
    def narrow_phase(w: int, tree: Tree, p: P, s: S):
        """Each candidate pair's contact points (once per step: they depend on positions only):
        a bounding-sphere (plane: half-space) test, then the narrow phase of the pair's kind;
        the points of pairs too far apart get depth -1 (no force)."""
        margin = p.contact_tau[0] * T(2.0)
        digest = wp.static(TABLE_DIGEST)  # noqa: F841 - in the module hash only (see TABLE_DIGEST)
        for i in range(tree.npair):
            g1 = tree.pair_geom1[i]
            g2 = tree.pair_geom2[i]
            kind = tree.pair_kind[i]
            p1 = s.gp[w, g1]
            p2 = s.gp[w, g2]
            R1 = s.gR[w, g1]
            R2 = s.gR[w, g2]
            j = tree.pair_padr[i]
            near = 0
            if tree.geom_type[g1] == _PLANE:
                if wp.dot(p2 - p1, axis(R1)) < p.geom_rbound[g2] + margin:
                    near = 1
            elif wp.length_sq(p2 - p1) < wp.pow(p.geom_rbound[g1] + p.geom_rbound[g2] + margin, T(2.0)):
                near = 1
            if near != 0:
                for q in range(wp.static(len(funcs))):
                    if kind == wp.static(present[q]):
                        wp.static(funcs[q])(w, s, i, j, tree, g1, g2, p1, R1, p.geom_size[g1], p2, R2, p.geom_size[g2],
                                            p.hull_planes, p.hull_verts)
            else:
                for k in range(tree.pair_pnum[i]):
                    put(w, s, j + k, T(-1.0), V3(T(0.0), T(0.0), T(1.0)), p2)

    @wp.func
    def point_velocity(w: int, tree: Tree, s: S, b: int, x: V3, second: int):
        """Velocity of body b's point at x: at the start of the step, and the first solve's
        prediction (``second``; else the start velocity again)."""
        r = x - s.xp[w, b]
        v = s.cvv[w, b] + wp.cross(s.cvw[w, b], r)
        vp = v
        if second != 0:
            vp = s.pvv[w, b] + wp.cross(s.pvw[w, b], r)
        return v, vp

    @stored
    @wp.func
    def point_law(w: int, j: int, slot: int, tree: Tree, p: P, s: S, s0: S, tau: T, eps: T, h: T):
        """The contact law at point j (depth > 0), added into its pair's sums. A function of its
        own: the adjoint's zeroed variables of a loop body are zeroed at every turn of the loop,
        called or not, so the point loop's body stays small."""
        z = V3(T(0.0), T(0.0), T(0.0))
        i = tree.point_pair[j]
        g1 = tree.pair_geom1[i]
        g2 = tree.pair_geom2[i]
        x = s.cpoint[w, j]
        second = 0
        Fp = z
        if slot == 1 and tree.pair_implicit[i] != 0:
            second = 1
            Fp = s0.pF[w, i]
        v1, vp1 = point_velocity(w, tree, s, tree.geom_body[g1], x, second)
        v2, vp2 = point_velocity(w, tree, s, tree.geom_body[g2], x, second)
        f, K = contact_force(s.cdepth[w, j], s.cnormal[w, j], x, v2 - v1, vp2 - vp1, p.pair_meff[i],
                             p.pair_stiffness[i], p.pair_damping[i],
                             p.pair_friction[i][0], tau, eps, h, Fp)
        d = x - s.gp[w, g2]
        X = skew(d)
        tq = z
        Ka = wp.outer(z, z)
        mus = p.pair_friction[i][1]
        mur = p.pair_friction[i][2]
        if mus > T(0.0) or mur > T(0.0):
            # torsional / rolling friction (condim 4 / 6), its angular slip scale eps over the
            # length of the smaller geom (the second's against a plane)
            n = s.cnormal[w, j]
            size = p.geom_rbound[g2]
            if tree.geom_type[g1] != _PLANE:
                size = wp.min(size, p.geom_rbound[g1])
            wrel = s.cvw[w, tree.geom_body[g2]] - s.cvw[w, tree.geom_body[g1]]
            tq, Ka = spin_roll_torque(n, wrel, wp.dot(f, n), mus, mur, eps / wp.max(size, T(1.0e-6)), h)
        wp.atomic_add(s.pN, w, i, wp.cross(d, f) + tq)
        wp.atomic_add(s.pF, w, i, f)
        wp.atomic_add(s.pA, w, i, Ka - (X * K * X))
        wp.atomic_add(s.pB, w, i, X * K)
        wp.atomic_add(s.pC, w, i, K)

    @stored
    @wp.func
    def contact_law(w: int, slot: int, tree: Tree, p: P, s: S, s0: S, h: T):
        """The contact law at every point with depth > 0, summed per pair about its reference
        point rc (the second geom's centre) into s.pN, pF and the implicit stiffness pA, pB, pC."""
        z = V3(T(0.0), T(0.0), T(0.0))
        zm = wp.outer(z, z)
        for i in range(tree.npair):
            s.pN[w, i] = z
            s.pF[w, i] = z
            s.pA[w, i] = zm
            s.pB[w, i] = zm
            s.pC[w, i] = zm
        tau = p.contact_tau[0]
        eps = p.contact_eps[0]
        for j in range(tree.npoint):
            if s.cdepth[w, j] > T(0.0):
                point_law(w, j, slot, tree, p, s, s0, tau, eps, h)

    @stored
    @wp.func
    def limited(w: int, tree: Tree, s: S, s0: S):
        """s.lim: > 0 where the second solve's friction limit changed a viscosity (an implicit
        pair's stiffness trace or a dof's dry-friction coefficient); 0 there, the first solve stands."""
        s.lim[w, 0] = T(0.0)
        for i in range(tree.npair):
            if tree.pair_implicit[i] != 0:
                wp.atomic_add(s.lim, w, 0, wp.abs(wp.trace(s.pC[w, i]) - wp.trace(s0.pC[w, i])))
        if wp.static(FRICTION):
            for d in range(tree.nv):
                if tree.dof_frictionloss[d] != 0:
                    wp.atomic_add(s.lim, w, 0, wp.abs(s.ja[w, d] - s0.ja[w, d]))
        if wp.static(MJC):
            # the constraint solver's acceleration stands unless the step integrates something
            # implicitly (h damping; implicitfast's actuator terms) while some row is instantiated
            if s0.lim[w, 0] > T(0.0):  # slot 0's lim: the number of instantiated rows (solve.solve_rows)
                for d in range(tree.nv):
                    wp.atomic_add(s.lim, w, 0, wp.abs(s.idg[w, d]))

    @stored
    @wp.func
    def body_actions(w: int, tree: Tree, p: P, s: S):
        """Each pair's action on its two bodies, about their origins, summed over subtrees into
        s.xn, xf, and for implicit pairs its stiffness into each body's own oA, oB, oC (the solve
        adds them to the bodies' inertias)."""
        z = V3(T(0.0), T(0.0), T(0.0))
        zm = wp.outer(z, z)
        for b in range(tree.nbody):
            s.xn[w, b] = z
            s.xf[w, b] = z
            if wp.static(IMPLICIT):
                s.oA[w, b] = zm
                s.oB[w, b] = zm
                s.oC[w, b] = zm
        for i in range(tree.npair):
            N = s.pN[w, i]
            F = s.pF[w, i]
            rc = s.gp[w, tree.pair_geom2[i]]
            for e in range(2):
                g = tree.pair_geom1[i]
                sign = T(-1.0)
                if e == 1:
                    g = tree.pair_geom2[i]
                    sign = T(1.0)
                b = tree.geom_body[g]
                if tree.body_moving[b] != 0:
                    d = rc - s.xp[w, b]
                    wp.atomic_add(s.xn, w, b, sign * shift_moment(N, F, d))
                    wp.atomic_add(s.xf, w, b, sign * F)
                    if wp.static(IMPLICIT):
                        if tree.pair_implicit[i] != 0:
                            C = s.pC[w, i]
                            A_, B_ = shift_stiffness(s.pA[w, i], s.pB[w, i], C, d)
                            sc = p.pair_iscale[i][e]
                            wp.atomic_add(s.oA, w, b, A_ * sc)
                            wp.atomic_add(s.oB, w, b, B_ * sc)
                            wp.atomic_add(s.oC, w, b, C * sc)
        for kk in range(tree.nbody - 1):
            b = tree.nbody - 1 - kk
            pb = tree.body_parent[b]
            if tree.body_moving[b] != 0 and tree.body_moving[pb] != 0:
                F = s.xf[w, b]
                wp.atomic_add(s.xn, w, pb, shift_moment(s.xn[w, b], F, s.xd[w, b]))
                wp.atomic_add(s.xf, w, pb, F)

    @stored
    @wp.func
    def solve_inputs(w: int, slot: int, qvel: A3, t: int, tree: Tree, p: P, s: S, s0: S, h: T):
        """qts and dg of the slot's solve from the contact sums and dry friction."""
        for i in range(tree.nv):
            b = tree.dof_body[i]
            fc = T(0.0)
            if wp.static(CONTACT):
                fc = wp.dot(s.cdw[w, i], s.xn[w, b]) + wp.dot(s.cdv[w, i], s.xf[w, b])
            jf = T(0.0)
            ja = T(0.0)
            if wp.static(FRICTION):
                if tree.dof_frictionloss[i] != 0:
                    v = qvel[w, t, i]
                    vp = v
                    if slot == 1:
                        vp = s.qdp[w, i]
                    jf, ja = joint_friction(v, vp, p.dof_frictionloss[i], p.dof_meff[i], p.contact_eps[0], h)
            if wp.static(MJC):
                if slot == 1:  # the soft constraints' force from the constraint solver (kernels/limits.py)
                    jf = row_force(s, w, i, s0.qacc[w, i]) + s.efq[w, i]
                    s.qfrc_constraint[w, i] = jf
            s.ja[w, i] = ja
            s.qts[w, i] = s.qt[w, i] + fc + jf
            s.dg[w, i] = s.diag[w, i] + ja

    @stored
    @wp.func
    def assemble(w: int, slot: int, qvel: A3, qacc_extra: A3, t: int, tree: Tree, p: P, s: S, s0: S):
        """The inputs of solve ``slot`` (0, or 1 for the second solve) into the slot's scratch ``s``
        (``s0``: slot 0's, which the second solve reads)."""
        h = p.timestep[0]
        if slot == 1:
            predicted_velocities(w, qvel, qacc_extra, t, tree, s0, s, h)
        if wp.static(CONTACT):
            contact_law(w, slot, tree, p, s, s0, h)
            body_actions(w, tree, p, s)
        if wp.static(MJC):
            if slot == 1:
                equality_force(w, tree, s, s0)
        solve_inputs(w, slot, qvel, t, tree, p, s, s0, h)
        if wp.static(NSOLVE == 2):
            if slot == 1:
                limited(w, tree, s, s0)

    return dict(geom_poses=geom_poses, narrow_phase=narrow_phase, assemble=assemble)
