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

A sphere or cylinder geom between two sites (MuJoCo's mju_wrap) bends the segment around it where
the straight segment would pass through it (or, with a side site, where the path must pass on
the side site's side): in the plane of the two sites and the sphere's centre (a cylinder: the
plane across its axis) the path runs from the first site along a tangent to the circle, along
its arc and along the other tangent to the second site; on a cylinder the heights of the two
tangent points divide the height difference of the sites in proportion to the path's length
(a helix). A side site inside the geom makes the path touch the circle at one point, where the
two straight pieces make equal angles with it (Newton's method on MuJoCo's equation; the point's
derivatives by the implicit function theorem: one differentiable Newton step from the solution).
The tangent points count as points of the geom's body in the Jacobian: the path's length is
stationary in them (the arc's length is that of a rigid arc), so J is the exact derivative.

Writes ten_len, ten_J (zeroed, then added into: each dof's entry sums its segments'), ten_vel.
"""
import warp as wp

from ..types import WRAP_CYLINDER, WRAP_JOINT, WRAP_SITE, WRAP_SPHERE
from .tree import Tree, aliases, per_dtype, stored

_JOINT, _SITE = wp.constant(WRAP_JOINT), wp.constant(WRAP_SITE)
_SPHERE, _CYLINDER = wp.constant(WRAP_SPHERE), wp.constant(WRAP_CYLINDER)


@per_dtype
def make(T):
    a = aliases(T)
    S, A3, AT, V2, V3, Q, M33 = a["S"], a["A3"], a["AT"], a["V2"], a["V3"], a["Q"], a["M33"]
    PI = T(3.141592653589793)

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

    @wp.func
    def winding(p: V2, q: V2):
        """The signed angle from p to q about the origin, in (-pi, pi]."""
        return wp.atan2(p[0] * q[1] - p[1] * q[0], wp.dot(p, q))

    @wp.func
    def crosses(p1: V2, p2: V2, p3: V2, p4: V2):
        """1 where segment p1-p2 crosses segment p3-p4 (MuJoCo's half-open parameter test)."""
        u = p2 - p1
        v = p4 - p3
        det = v[1] * u[0] - v[0] * u[1]
        out = int(0)  # noqa: UP018 (Warp: a literal is a constant)
        if wp.abs(det) >= T(1e-15):
            sg = wp.where(det > T(0.0), T(1.0), T(-1.0))
            c = p1 - p3
            e = p2 - p4
            a0 = (v[0] * c[1] - v[1] * c[0]) * sg
            a1 = (v[0] * e[1] - v[1] * e[0]) * sg
            b0 = (u[0] * c[1] - u[1] * c[0]) * sg
            b1 = (u[0] * e[1] - u[1] * e[0]) * sg
            if a0 >= T(0.0) and a1 < T(0.0) and b0 >= T(0.0) and b1 < T(0.0):
                out = 1
        return out

    @wp.func
    def tangent_point(e: V2, sq: T, rr: T, r: T, sg: T):
        """The point where a tangent from e (|e|^2 = sq > r^2) touches the circle of radius r about
        the origin, on the side sg (+1: clockwise of e seen from the origin, -1: the other)."""
        q = wp.sqrt(wp.max(sq - rr, T(1e-30)))
        return V2(e[0] * rr + sg * r * e[1] * q, e[1] * rr - sg * r * e[0] * q) / sq

    @wp.func
    def circle_wrap(e0: V2, e1: V2, side: V2, has_side: int, r: T):
        """MuJoCo's 2D circle wrap of the segment e0-e1 around the circle of radius r about the
        origin (side: the side site's direction scaled to r, has_side 0: none): the arc's length
        (-1: no wrap) and the two tangent points."""
        s0 = wp.dot(e0, e0)
        s1 = wp.dot(e1, e1)
        rr = r * r
        dif = e1 - e0
        dd = wp.dot(dif, dif)
        if s0 < rr or s1 < rr or r < T(1e-15) or dd < T(1e-15):
            return T(-1.0), e0, e1
        a = wp.clamp(-wp.dot(dif, e0) / dd, T(0.0), T(1.0))
        near = e0 + a * dif
        clear = wp.dot(near, near) > rr
        ws = T(0.0)
        if has_side != 0:
            # the path winds around the centre as the polyline e0 -> side -> e1: no wrap where the
            # straight segment is clear of the circle and winds alike
            ws = winding(e0, side) + winding(side, e1)
            if clear and wp.abs(ws - winding(e0, e1)) < PI:
                return T(-1.0), e0, e1
        elif clear:
            return T(-1.0), e0, e1
        a0 = tangent_point(e0, s0, rr, r, T(1.0))
        a1 = tangent_point(e1, s1, rr, r, T(-1.0))
        b0 = tangent_point(e0, s0, rr, r, T(-1.0))
        b1 = tangent_point(e1, s1, rr, r, T(1.0))
        x0 = crosses(e0, a0, e1, a1)
        x1 = crosses(e0, b0, e1, b1)
        g0 = wp.where(x0 != 0, T(-1e4), -wp.dot(a0 - a1, a0 - a1))
        g1 = wp.where(x1 != 0, T(-1e4), -wp.dot(b0 - b1, b0 - b1))
        ind = wp.where(g0 > g1, 0, 1)
        if has_side != 0:
            ind = wp.where(ws > T(0.0), 1, 0)
        p0 = wp.where(ind == 0, a0, b0)
        p1 = wp.where(ind == 0, a1, b1)
        if wp.where(ind == 0, x0, x1) != 0:
            return T(-1.0), e0, e1
        if has_side != 0:
            return r * wp.abs(ws - winding(e0, p0) - winding(p1, e1)), p0, p1
        cr = p0[1] * p1[0] - p0[0] * p1[1]
        ang = wp.atan2(wp.abs(cr), wp.dot(p0, p1))
        if ang > T(1e-6) and ((cr > T(0.0) and ind != 0) or (cr < T(0.0) and ind == 0)):
            ang = T(2.0) * PI - ang
        return r * ang, p0, p1

    @wp.func
    def inside_phi(A: T, B: T, G: T):
        """Newton's method on MuJoCo's equation asin(A z) + asin(B z) - 2 asin(z) + G = 0 in
        phi = asin(z), from phi = pi / 2: phi, or -1 where MuJoCo takes its fallback point (no
        convergence in 20 iterations, a wrong-signed step). No gradient flows through the
        iterations (``inside_phi_grad``): inside_wrap takes one differentiable step from phi."""
        phi = T(0.5) * PI
        z = T(1.0)
        f = wp.asin(A) + wp.asin(B) - PI + G
        if f > T(0.0):
            return T(-1.0)
        it = int(0)  # noqa: UP018 (Warp: a literal is a constant, which a dynamic loop may not change)
        while it < 20 and wp.abs(f) > T(1e-6):
            df = wp.cos(phi) * (A / wp.max(T(1e-15), wp.sqrt(T(1.0) - z * z * A * A))
                                + B / wp.max(T(1e-15), wp.sqrt(T(1.0) - z * z * B * B))) - T(2.0)
            if df > T(-1e-15):
                return T(-1.0)
            phi1 = phi - f / df
            if phi1 > phi:
                return T(-1.0)
            phi = phi1
            z = wp.sin(phi)
            f = wp.asin(A * z) + wp.asin(B * z) - T(2.0) * phi + G
            if f > T(1e-6):
                return T(-1.0)
            it += 1
        if it >= 20:
            return T(-1.0)
        return phi

    @wp.func_grad(inside_phi)
    def inside_phi_grad(A: T, B: T, G: T, adj_ret: T):
        pass

    @wp.func
    def held(x: T):
        """x, through which no gradient flows."""
        return x

    @wp.func_grad(held)
    def held_grad(x: T, adj_ret: T):
        pass

    @wp.func
    def inside_wrap(e0: V2, e1: V2, r: T):
        """MuJoCo's 2D inside wrap (a side site inside the geom): 0 and the point on the circle
        where the path e0 -> point -> e1 touches it, or -1 (no wrap: an end inside the circle,
        or the segment through it)."""
        l0 = wp.length(e0)
        l1 = wp.length(e1)
        dif = e1 - e0
        dd = wp.dot(dif, dif)
        if l0 <= r or l1 <= r or r < T(1e-15) or l0 < T(1e-15) or l1 < T(1e-15):
            return T(-1.0), e0
        if dd > T(1e-15):
            a = -wp.dot(dif, e0) / dd
            if a > T(0.0) and a < T(1.0):
                if wp.length(e0 + a * dif) <= r:
                    return T(-1.0), e0
        mid = T(0.5) * (e0 + e1)
        fallback = mid * (r / wp.max(wp.length(mid), T(1e-15)))
        A = r / l0
        B = r / l1
        cg = (l0 * l0 + l1 * l1 - dd) / (T(2.0) * l0 * l1)
        if cg < T(-1.0) + T(1e-15):
            return T(-1.0), fallback
        if cg > T(1.0) - T(1e-15):
            return T(0.0), fallback
        G = wp.acos(cg)
        phi = inside_phi(A, B, G)
        if phi < T(0.0):
            return T(0.0), fallback
        z = wp.sin(phi)
        f = wp.asin(A * z) + wp.asin(B * z) - T(2.0) * phi + G
        df = wp.cos(phi) * (A / wp.sqrt(T(1.0) - z * z * A * A) + B / wp.sqrt(T(1.0) - z * z * B * B)) - T(2.0)
        # a Newton step of zero length (MuJoCo's phi, converged to its tolerance, unchanged) that
        # carries the solution's derivatives: -(d f / d inputs) / (d f / d phi)
        phi = phi - (f - held(f)) / df
        v = e1
        ang = phi - wp.asin(B * wp.sin(phi))
        if e0[0] * e1[1] - e0[1] * e1[0] > T(0.0):
            v = e0
            ang = phi - wp.asin(A * wp.sin(phi))
        v = v / wp.length(v)
        c = wp.cos(ang)
        sn = wp.sin(ang)
        return T(0.0), V2(r * (c * v[0] - sn * v[1]), r * (sn * v[0] + c * v[1]))

    @wp.func
    def wrap(x0: V3, x1: V3, gp: V3, R: M33, r: T, cyl: int, side: V3, has_side: int):
        """MuJoCo's mju_wrap: the path from x0 to x1 around a sphere (cyl 0) or an infinite
        cylinder (cyl 1, along its z axis) of radius r at gp, R (world from geom): the length of
        its part on the geom (-1: it does not wrap) and the two points where it meets the geom."""
        Rt = wp.transpose(R)
        p0 = Rt * (x0 - gp)
        p1 = Rt * (x1 - gp)
        if wp.length(p0) < T(1e-15) or wp.length(p1) < T(1e-15):
            return T(-1.0), x0, x1
        ax0 = V3(T(1.0), T(0.0), T(0.0))
        ax1 = V3(T(0.0), T(1.0), T(0.0))
        if cyl == 0:
            # the plane of the centre and the two sites (sites in line with the centre: a plane
            # through the axis of p0's largest component's neighbours)
            ax0 = wp.normalize(p0)
            n = wp.cross(p0, p1)
            if wp.length(n) < T(1e-15):
                m = wp.abs(ax0)
                t = V3(T(0.0), T(1.0), T(1.0))
                if m[1] > m[0] and m[1] > m[2]:
                    t = V3(T(1.0), T(0.0), T(1.0))
                if m[2] > m[0] and m[2] > m[1]:
                    t = V3(T(1.0), T(1.0), T(0.0))
                n = wp.cross(ax0, t)
            n = wp.normalize(n)
            ax1 = wp.normalize(wp.cross(n, ax0))
        e0 = V2(wp.dot(p0, ax0), wp.dot(p0, ax1))
        e1 = V2(wp.dot(p1, ax0), wp.dot(p1, ax1))
        wl = T(-1.0)
        q0 = e0
        q1 = e1
        if has_side != 0:
            sl = Rt * (side - gp)
            sp = V2(wp.dot(sl, ax0), wp.dot(sl, ax1))
            ns = wp.length(sp)
            sp = wp.where(ns < T(1e-15), V2(r, T(0.0)), sp * (r / wp.max(ns, T(1e-15))))
            if wp.length(sl) < r:
                wl, q0 = inside_wrap(e0, e1, r)
                q1 = q0
            else:
                wl, q0, q1 = circle_wrap(e0, e1, sp, 1, r)
        else:
            wl, q0, q1 = circle_wrap(e0, e1, e0, 0, r)
        if wl < T(0.0):
            return T(-1.0), x0, x1
        r0 = ax0 * q0[0] + ax1 * q0[1]
        r1 = ax0 * q1[0] + ax1 * q1[1]
        if cyl != 0:
            d0 = V2(p0[0] - r0[0], p0[1] - r0[1])
            d1 = V2(p1[0] - r1[0], p1[1] - r1[1])
            L0 = wp.sqrt(wp.max(wp.dot(d0, d0), T(1e-30)))
            L1 = wp.sqrt(wp.max(wp.dot(d1, d1), T(1e-30)))
            L = wp.max(L0 + wl + L1, T(1e-15))
            h = p1[2] - p0[2]
            r0 = V3(r0[0], r0[1], p0[2] + h * L0 / L)
            r1 = V3(r1[0], r1[1], p0[2] + h * (L0 + wl) / L)
            dz = r1[2] - r0[2]
            wl = wp.sqrt(wl * wl + dz * dz)
        return wl, R * r0 + gp, R * r1 + gp

    @wp.func
    def straight(w: int, tree: Tree, s: S, base: int, ba: int, pa: V3, bb: int, pb: V3, divisor: T):
        """A straight piece from pa (a point of body ba) to pb (of body bb): its length / divisor,
        its Jacobian added into s.ten_J from base."""
        seg = pb - pa
        n = wp.length(seg)
        if n > T(1e-15):  # coincident points: no direction (MuJoCo's mjMINVAL)
            u = seg / (n * divisor)
            z = V3(T(0.0), T(0.0), T(0.0))
            add_point_force(w, tree, s, s.ten_J, base, bb, pb, u, z)
            add_point_force(w, tree, s, s.ten_J, base, ba, pa, -u, z)
        return n / divisor

    def segment_of(WRAP):
        @wp.func
        def segment(w: int, tree: Tree, s: S, base: int, e: int, sa: int, sb: int, divisor: T,
                    site_pos: wp.array(dtype=V3), geom_pos: wp.array(dtype=V3), geom_quat: wp.array(dtype=Q),
                    geom_size: wp.array(dtype=V3)):
            """The path's piece from site sa to site sb (path element e): straight, or (with
            ``WRAP``: a model with geoms in its tendons' paths) around the sphere / cylinder of
            element e - 1 where it wraps (``wrap``); its length / divisor, its Jacobian added into
            s.ten_J."""
            pa = site_point(w, tree, s, site_pos, sa)
            pb = site_point(w, tree, s, site_pos, sb)
            ba = tree.site_body[sa]
            bb = tree.site_body[sb]
            if wp.static(WRAP):  # compiled only for models whose tendons wrap geoms
                kind = tree.wrap_type[e - 1]
                if kind == _SPHERE or kind == _CYLINDER:
                    g = tree.wrap_obj[e - 1]
                    side = tree.wrap_prev[e - 1]
                    gb = tree.geom_body[g]
                    gp = s.xp[w, gb] + wp.quat_rotate(s.xq[w, gb], geom_pos[g])
                    R = wp.quat_to_matrix(s.xq[w, gb] * geom_quat[g])
                    sp = pa
                    if side >= 0:
                        sp = site_point(w, tree, s, site_pos, side)
                    wl, t0, t1 = wrap(pa, pb, gp, R, geom_size[g][0], wp.where(kind == _CYLINDER, 1, 0), sp,
                                      wp.where(side >= 0, 1, 0))
                    if wl >= T(0.0):
                        return (straight(w, tree, s, base, ba, pa, gb, t0, divisor) + wl / divisor
                                + straight(w, tree, s, base, gb, t1, bb, pb, divisor))
            return straight(w, tree, s, base, ba, pa, bb, pb, divisor)
        return segment

    def tendon_of(WRAP):
        segment = segment_of(WRAP)

        @stored
        @wp.func
        def tendon(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, site_pos: wp.array(dtype=V3), wrap_prm: AT,
                   geom_pos: wp.array(dtype=V3), geom_quat: wp.array(dtype=Q), geom_size: wp.array(dtype=V3)):
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
                        length += segment(w, tree, s, k * nv, adr + i, prev, obj, divisor, site_pos, geom_pos,
                                          geom_quat, geom_size)
                s.ten_len[w, k] = length
            for k in range(tree.ntendon):
                vel = T(0.0)
                for d in range(nv):
                    vel += s.ten_J[w, k * nv + d] * qvel[w, t, d]
                s.ten_vel[w, k] = vel
        return tendon

    tendon, tendon_wrap = tendon_of(False), tendon_of(True)

    @wp.func
    def tendon_force(w: int, d: int, tree: Tree, s: S, f: wp.array2d(dtype=T)):
        """sum_k ten_J[k, d] f[w, k]: the generalized force at dof d of forces f along the tendons."""
        out = T(0.0)
        for k in range(tree.ntendon):
            out += s.ten_J[w, k * tree.nv + d] * f[w, k]
        return out

    return dict(tendon=tendon, tendon_wrap=tendon_wrap, tendon_force=tendon_force, add_point_force=add_point_force,
                site_point=site_point)
