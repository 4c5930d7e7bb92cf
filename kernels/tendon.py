"""Tendon lengths, velocities and Jacobians (MuJoCo's mj_tendon), looped over tendons.

A fixed tendon is a linear combination of hinge / slide coordinates: length sum_i c_i q_i,
Jacobian row c_i at each joint's dof. A spatial tendon is a path through sites; a pulley starts a
new branch whose length counts divided by the pulley's divisor (MuJoCo's wrap_prm). Each
segment between consecutive sites of a branch adds its length |p_b - p_a| / divisor and, along
its direction u, the difference of the two sites' point Jacobians: J[d] += u . (jac_b[d] -
jac_a[d]) / divisor, where a site's point Jacobian for an ancestor dof d of its body is
cdof_v[d] + cdof_w[d] x (p - xp[dof_body[d]]) (kernels/smooth.py's motion subspace, about its
body's origin). The velocity is J qvel. Forces along a tendon act on the dofs through J^T
(kernels/passive.py: stiffness and damping; kernels/actuation.py: tendon actuators).

Writes ten_len, ten_J (zeroed, then added into: each dof's entry sums its segments'), ten_vel.
Wrapping around sphere and cylinder geoms is refused by the loader (types.TENDON_WRAPS).
"""
import warp as wp

from ..types import WRAP_JOINT, WRAP_SITE
from .tree import Tree, aliases, per_dtype, stored

_JOINT, _SITE = wp.constant(WRAP_JOINT), wp.constant(WRAP_SITE)


@per_dtype
def make(T):
    a = aliases(T)
    S, A3, AT, V3 = a["S"], a["A3"], a["AT"], a["V3"]

    @wp.func
    def site_point(w: int, tree: Tree, s: S, site_pos: wp.array(dtype=V3), i: int):
        """World position of site i (its body's pose applied to site_pos)."""
        b = tree.site_body[i]
        return s.xp[w, b] + wp.quat_rotate(s.xq[w, b], site_pos[i])

    @stored
    @wp.func
    def add_point_force(w: int, tree: Tree, s: S, out: wp.array2d(dtype=T), base: int, b: int, p: V3, F: V3,
                        N: V3):
        """out[w, base + e] += the generalized force at each dof e of body b's path to the world of
        the wrench (torque N, force F at p) on body b: F . (cdof_v + cdof_w x (p - xp[dof_body])) +
        N . cdof_w (with N = 0 and F a unit direction: a row of the point's Jacobian)."""
        d = tree.body_lastdof[b]
        if d >= 0:
            adr = tree.anc_adr[d]
            for i in range(tree.anc_num[d]):
                e = tree.anc[adr + i]
                r = p - s.xp[w, tree.dof_body[e]]
                f = wp.dot(F, s.cdv[w, e] + wp.cross(s.cdw[w, e], r)) + wp.dot(N, s.cdw[w, e])
                wp.atomic_add(out, w, base + e, f)

    @stored
    @wp.func
    def tendon(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, site_pos: wp.array(dtype=V3), wrap_prm: AT):
        """Length, Jacobian and velocity of every tendon at step t."""
        nv = tree.nv
        for k in range(tree.ntendon):
            for d in range(nv):
                s.ten_J[w, k * nv + d] = T(0.0)
        for k in range(tree.ntendon):
            # no state carried between path elements but the sum (Warp's reverse mode replays a
            # loop's iterations with the loop's final values of its other variables): each site's
            # branch predecessor and pulley come from the tree
            length = T(0.0)
            adr = tree.ten_wrapadr[k]
            for i in range(tree.ten_wrapnum[k]):
                typ = tree.wrap_type[adr + i]
                obj = tree.wrap_obj[adr + i]
                prev = tree.wrap_prev[adr + i]
                if typ == _JOINT:
                    c = wrap_prm[adr + i]
                    length += c * qpos[w, t, tree.jnt_qposadr[obj]]
                    wp.atomic_add(s.ten_J, w, k * nv + tree.jnt_dofadr[obj], c)
                elif typ == _SITE and prev >= 0:
                    divisor = T(1.0)
                    if tree.wrap_pulley[adr + i] >= 0:
                        divisor = wrap_prm[tree.wrap_pulley[adr + i]]
                    pa = site_point(w, tree, s, site_pos, prev)
                    pb = site_point(w, tree, s, site_pos, obj)
                    seg = pb - pa
                    n = wp.length(seg)
                    length += n / divisor
                    if n > T(1e-15):  # coincident sites: no direction (MuJoCo's mjMINVAL)
                        u = seg / (n * divisor)
                        z = V3(T(0.0), T(0.0), T(0.0))
                        add_point_force(w, tree, s, s.ten_J, k * nv, tree.site_body[obj], pb, u, z)
                        add_point_force(w, tree, s, s.ten_J, k * nv, tree.site_body[prev], pa, -u, z)
            s.ten_len[w, k] = length
        for k in range(tree.ntendon):
            vel = T(0.0)
            for d in range(nv):
                vel += s.ten_J[w, k * nv + d] * qvel[w, t, d]
            s.ten_vel[w, k] = vel

    @wp.func
    def tendon_force(w: int, d: int, tree: Tree, s: S, f: wp.array2d(dtype=T)):
        """sum_k ten_J[k, d] f[w, k]: the generalized force at dof d of forces f along the tendons."""
        out = T(0.0)
        for k in range(tree.ntendon):
            out += s.ten_J[w, k * tree.nv + d] * f[w, k]
        return out

    return dict(tendon=tendon, tendon_force=tendon_force, add_point_force=add_point_force, site_point=site_point)
