"""Smooth dynamics of a kinematic tree, as MuJoCo's smooth.c, looped over tree-order arrays.

Stages (one world ``w`` at a time, state read from ``qpos[w, t]`` / ``qvel[w, t]``):
``kinematics`` (mj_kinematics: body and joint frames), ``com_vel`` (mj_comVel: motion subspace
cdof, body velocities and velocity-product accelerations),
``rne_crb`` (each body's own RNE wrench, spatial inertia and gravity-compensation wrench, then
subtree sums: mj_rne's backward pass and mj_crb's composite inertias) and ``bias_and_mass``
(qfrc_bias, and the mass matrix M with armature on its diagonal: mj_crb / mj_makeM).

Spatial vectors are world-aligned and taken about each body's own origin ``xp[b]`` (its
reference point): a motion (w, v) is the angular velocity and the velocity of the body point at
the reference, a wrench (n, f) the torque about it and the force; a spatial inertia is (m, h, J):
mass, first moment and rotational inertia about the reference. A parent's quantities reach a
child, and a child's subtree sums its parent, through the shifts of kernels/dynamics.py by the
link offset ``xp[child] - xp[parent]``. A shared reference per tree (as MuJoCo's subtree centre
of mass) would make a long chain's entries differences of terms that grow with the square of the
distance from the root, which float32 cannot afford; about each body's origin no term is larger
than the quantity it adds to.

Joint kinds: one function per kind and concern (pose, motion subspace), selected by ``jnt_type``.
"""
import warp as wp

from ..types import BALL, FREE, HINGE, SLIDE
from .contact import shift_moment
from .dynamics import (
    cross_force_f,
    cross_force_n,
    cross_motion_v,
    cross_motion_w,
    inertia_about_origin,
    inertia_apply_f,
    inertia_apply_n,
    shift_inertia_J,
    shift_motion_v,
)
from .kinematics import hinge_quat, motion_dof, quat_from_wxyz
from .tree import Tree, aliases, per_dtype, stored

_FREE, _BALL, _SLIDE, _HINGE = wp.constant(FREE), wp.constant(BALL), wp.constant(SLIDE), wp.constant(HINGE)

@per_dtype
def make(T, fluid=False):
    """The stage functions for scalar type ``T`` (wp.float32 or wp.float64), as a dict; with
    ``fluid`` (kernels.tree.Features.fluid) rne_crb also sums the fluid wrench."""
    a = aliases(T)
    V3, Q, S, A3, M33, P = a["V3"], a["Q"], a["S"], a["A3"], a["M33"], a["P"]

    @wp.func
    def renormalize(q: Q):
        """A product of unit quaternions brought back to unit length: for |q|^2 = 1 + e, q (3 -
        |q|^2) / 2 has length 1 + O(e^2) (one Newton step of 1 / sqrt; e is float rounding, so
        this equals q / |q| to the type's precision, without a square root and a division)."""
        return q * (T(1.5) - T(0.5) * wp.dot(q, q))

    @wp.func
    def joint_pose(typ: int, q: A3, w: int, t: int, pa: int, q0: T, cq: Q, cp: V3, jpos: V3, jaxis: V3, base: V3):
        """Frame after a joint from the frame before it (cq, cp): (quat, pos, axis, anchor), the
        positions relative to ``base`` (the parent body's origin). Each rotation product is
        renormalised (:func:`renormalize`), as MuJoCo's kinematics does: in float32 the drift of
        a chain of products otherwise dominates a long chain's error (16 links: about half the
        one-step error)."""
        ax = wp.quat_rotate(cq, jaxis)
        an = wp.quat_rotate(cq, jpos) + cp
        nq = cq
        np_ = cp
        if typ == _FREE:
            np_ = V3(q[w, t, pa], q[w, t, pa + 1], q[w, t, pa + 2]) - base
            nq = quat_from_wxyz(q[w, t, pa + 3], q[w, t, pa + 4], q[w, t, pa + 5], q[w, t, pa + 6])
            an = np_
        elif typ == _SLIDE:
            np_ = cp + ax * (q[w, t, pa] - q0)
        elif typ == _HINGE:
            nq = renormalize(cq * hinge_quat(jaxis, q[w, t, pa] - q0))
            np_ = an - wp.quat_rotate(nq, jpos)
        else:  # ball
            nq = renormalize(cq * quat_from_wxyz(q[w, t, pa], q[w, t, pa + 1], q[w, t, pa + 2], q[w, t, pa + 3]))
            np_ = an - wp.quat_rotate(nq, jpos)
        return nq, np_, ax, an

    @stored
    @wp.func
    def kinematics(w: int, qpos: A3, t: int, tree: Tree, s: S, body_pos: wp.array(dtype=V3),
                   body_quat: wp.array(dtype=Q), jnt_pos: wp.array(dtype=V3), jnt_axis: wp.array(dtype=V3),
                   qpos0: wp.array(dtype=T)):
        s.xp[w, 0] = V3(T(0.0), T(0.0), T(0.0))
        s.xq[w, 0] = Q(T(0.0), T(0.0), T(0.0), T(1.0))
        for b in range(1, tree.nbody):
            p = tree.body_parent[b]
            pq = s.xq[w, p]
            base = s.xp[w, p]
            # positions relative to the parent's origin first (s.xd, s.jp, s.janchor): the link
            # offsets the dynamics shifts by, without the rounding of world positions
            d0 = wp.quat_rotate(pq, body_pos[b])
            s.xq0[w, b] = renormalize(pq * body_quat[b])
            s.xp0[w, b] = base + d0
            adr = tree.body_jntadr[b]
            n = tree.body_jntnum[b]
            for k in range(n):
                j = adr + k
                cq = s.xq0[w, b]
                cp = d0
                if k > 0:
                    cq = s.jq[w, j - 1]
                    cp = s.jp[w, j - 1]
                pa = tree.jnt_qposadr[j]
                nq, np_, ax, an = joint_pose(tree.jnt_type[j], qpos, w, t, pa, qpos0[pa], cq, cp, jnt_pos[j],
                                             jnt_axis[j], base)
                s.jq[w, j] = nq
                s.jp[w, j] = np_
                s.jaxis[w, j] = ax
                s.janchor[w, j] = an
            if n > 0:
                d = s.jp[w, adr + n - 1]
                s.xq[w, b] = s.jq[w, adr + n - 1]
                s.xd[w, b] = d
                s.xp[w, b] = base + d
            else:
                s.xq[w, b] = s.xq0[w, b]
                s.xd[w, b] = d0
                s.xp[w, b] = s.xp0[w, b]

    @wp.func
    def rot_dofs(w: int, s: S, b: int, da: int, an: V3, qvel: A3, t: int, bw: V3, bv: V3, baw: V3, bav: V3):
        """Three rotational dofs (ball, or a free joint's last three) about the body's own axes:
        store their cdof; return velocity and velocity-product acceleration after them."""
        rm = wp.quat_to_matrix(s.xq[w, b])
        vw = bw
        vv = bv
        aw = baw
        av = bav
        for i in range(3):
            sw = V3(rm[0, i], rm[1, i], rm[2, i])
            sv = motion_dof(sw, an)
            s.cdw[w, da + i] = sw
            s.cdv[w, da + i] = sv
            qd = qvel[w, t, da + i]
            aw = aw + cross_motion_w(bw, bv, sw, sv) * qd
            av = av + cross_motion_v(bw, bv, sw, sv) * qd
            vw = vw + sw * qd
            vv = vv + sv * qd
        return vw, vv, aw, av

    @stored
    @wp.func
    def com_vel(w: int, qvel: A3, t: int, tree: Tree, s: S):
        """Body velocities (cvw, cvv), each joint's motion subspace (cdw, cdv) and the bodies'
        velocity-product accelerations (caw, cav: the acceleration at qacc = 0, gravity left out;
        rne_crb adds it), all about each body's origin."""
        z = V3(T(0.0), T(0.0), T(0.0))
        s.cvw[w, 0] = z
        s.cvv[w, 0] = z
        s.caw[w, 0] = z
        s.cav[w, 0] = z
        for b in range(1, tree.nbody):
            p = tree.body_parent[b]
            r = s.xd[w, b]
            # the parent's velocity and acceleration about this body's origin
            dp = -r
            pw = s.cvw[w, p]
            pv = shift_motion_v(pw, s.cvv[w, p], dp)
            paw = s.caw[w, p]
            pav = shift_motion_v(paw, s.cav[w, p], dp)
            adr = tree.body_jntadr[b]
            n = tree.body_jntnum[b]
            for k in range(n):
                j = adr + k
                bw = pw
                bv = pv
                baw = paw
                bav = pav
                if k > 0:
                    bw = s.jvw[w, j - 1]
                    bv = s.jvv[w, j - 1]
                    baw = s.jaw[w, j - 1]
                    bav = s.jav[w, j - 1]
                typ = tree.jnt_type[j]
                da = tree.jnt_dofadr[j]
                ax = s.jaxis[w, j]
                an = s.janchor[w, j] - r  # the anchor relative to the body's origin
                vw = bw
                vv = bv
                aw = baw
                av = bav
                if typ == _HINGE or typ == _SLIDE:
                    sw = ax
                    sv = motion_dof(ax, an)
                    if typ == _SLIDE:
                        sw = z
                        sv = ax
                    s.cdw[w, da] = sw
                    s.cdv[w, da] = sv
                    qd = qvel[w, t, da]
                    aw = baw + cross_motion_w(bw, bv, sw, sv) * qd
                    av = bav + cross_motion_v(bw, bv, sw, sv) * qd
                    vw = bw + sw * qd
                    vv = bv + sv * qd
                elif typ == _FREE:
                    # translations along the world axes: constant, no velocity-product term
                    s.cdw[w, da] = z
                    s.cdw[w, da + 1] = z
                    s.cdw[w, da + 2] = z
                    s.cdv[w, da] = V3(T(1.0), T(0.0), T(0.0))
                    s.cdv[w, da + 1] = V3(T(0.0), T(1.0), T(0.0))
                    s.cdv[w, da + 2] = V3(T(0.0), T(0.0), T(1.0))
                    vm = bv + V3(qvel[w, t, da], qvel[w, t, da + 1], qvel[w, t, da + 2])
                    vw, vv, aw, av = rot_dofs(w, s, b, da + 3, an, qvel, t, bw, vm, baw, bav)
                else:
                    vw, vv, aw, av = rot_dofs(w, s, b, da, an, qvel, t, bw, bv, baw, bav)
                s.jvw[w, j] = vw
                s.jvv[w, j] = vv
                s.jaw[w, j] = aw
                s.jav[w, j] = av
            if n > 0:
                s.cvw[w, b] = s.jvw[w, adr + n - 1]
                s.cvv[w, b] = s.jvv[w, adr + n - 1]
                s.caw[w, b] = s.jaw[w, adr + n - 1]
                s.cav[w, b] = s.jav[w, adr + n - 1]
            else:
                s.cvw[w, b] = pw
                s.cvv[w, b] = pv
                s.caw[w, b] = paw
                s.cav[w, b] = pav

    PI = T(3.141592653589793)

    @wp.func
    def fluid_wrench(R: M33, com: V3, m: T, I: V3, w: V3, v: V3, rho: T, mu: T, wind: V3):
        """MuJoCo's inertia-box fluid force on a body (mj_inertiaBoxFluidModel) as a wrench about
        its origin (world-aligned): the box of the body's mass and principal inertia I, in its
        inertia frame R (world from local), moving at angular velocity w and at the centre of mass
        com (from the origin) with velocity v, relative to the medium (wind); viscous (Stokes,
        the box's mean side as diameter) and quadratic drag."""
        eps = T(1e-15)
        b0 = wp.sqrt(wp.max(eps, I[1] + I[2] - I[0]) / m * T(6.0))
        b1 = wp.sqrt(wp.max(eps, I[0] + I[2] - I[1]) / m * T(6.0))
        b2 = wp.sqrt(wp.max(eps, I[0] + I[1] - I[2]) / m * T(6.0))
        lw = wp.transpose(R) * w
        lv = wp.transpose(R) * (v - wind)
        diam = (b0 + b1 + b2) / T(3.0)
        ln = -PI * diam * diam * diam * mu * lw
        lf = -T(3.0) * PI * diam * mu * lv
        half = T(0.5) * rho
        lf = lf - V3(half * b1 * b2 * wp.abs(lv[0]) * lv[0], half * b0 * b2 * wp.abs(lv[1]) * lv[1],
                     half * b0 * b1 * wp.abs(lv[2]) * lv[2])
        q0 = b0 * b0 * b0 * b0
        q1 = b1 * b1 * b1 * b1
        q2 = b2 * b2 * b2 * b2
        r = rho / T(64.0)
        ln = ln - V3(r * b0 * (q1 + q2) * wp.abs(lw[0]) * lw[0], r * b1 * (q0 + q2) * wp.abs(lw[1]) * lw[1],
                     r * b2 * (q0 + q1) * wp.abs(lw[2]) * lw[2])
        f = R * lf
        return R * ln + wp.cross(com, f), f

    def rne_crb_of(FULL):
        @stored
        @wp.func
        def rne_crb(w: int, tree: Tree, s: S, body_ipos: wp.array(dtype=V3), body_iquat: wp.array(dtype=Q),
                    body_mass: wp.array(dtype=T), body_inertia: wp.array(dtype=V3), body_gravcomp: wp.array(dtype=T),
                    gravity: wp.array(dtype=V3), fluid_density: wp.array(dtype=T),
                    fluid_viscosity: wp.array(dtype=T), wind: wp.array(dtype=V3)):
            """Each moving body's RNE wrench I a + v x* I v (ofn, off without gravity, cfn, cff with it),
            spatial inertia (om, oh, oJ; cm, ch, cJ) and gravity-compensation wrench (MuJoCo's
            gravcomp: the force -m g gravcomp at its centre of mass), then the sums over subtrees
            of cfn, cff, cm, ch, cJ and the gravity-compensation wrench (children have higher
            indices: a descending sweep adds each finished subtree into its parent). Without
            ``FULL`` (``rne_crb_fwd``) only the gravity-compensation wrench (and the fluid
            wrench, :func:`fluid_wrench`, with ``fluid``) is summed: the
            step needs no composite quantities (the solve and its adjoint read each body's own);
            only the stage API's M and qfrc_bias do."""
            for b in range(1, tree.nbody):
                if tree.body_moving[b] == 0:
                    continue
                xq = s.xq[w, b]
                com = wp.quat_rotate(xq, body_ipos[b])
                m = body_mass[b]
                R = wp.quat_to_matrix(xq * body_iquat[b])  # the principal inertia frame
                h, J = inertia_about_origin(m, com, R, body_inertia[b])
                vw = s.cvw[w, b]
                vv = s.cvv[w, b]
                aw = s.caw[w, b]
                av = s.cav[w, b]
                pn = inertia_apply_n(h, J, vw, vv)
                pf = inertia_apply_f(m, h, vw, vv)
                on = inertia_apply_n(h, J, aw, av) + cross_force_n(vw, vv, pn, pf)
                of = inertia_apply_f(m, h, aw, av) + cross_force_f(vw, vv, pn, pf)
                s.ofn[w, b] = on
                s.off[w, b] = of
                # gravity as the world's upward acceleration -g (the same for every body about any point)
                if wp.static(FULL):
                    G = -gravity[0]
                    s.cfn[w, b] = on + wp.cross(h, G)
                    s.cff[w, b] = of + m * G
                    s.cm[w, b] = m
                    s.ch[w, b] = h
                    s.cJ[w, b] = J
                s.om[w, b] = m
                s.oh[w, b] = h
                s.oJ[w, b] = J
                gf = V3(T(0.0), T(0.0), T(0.0))
                if tree.body_gravcomp[b] != 0:
                    gf = -gravity[0] * (m * body_gravcomp[b])
                s.cgn[w, b] = wp.cross(com, gf)
                s.cgf[w, b] = gf
                if wp.static(fluid):
                    fn = V3(T(0.0), T(0.0), T(0.0))
                    ff = fn
                    if m >= T(1e-15):  # MuJoCo skips massless bodies
                        fn, ff = fluid_wrench(R, com, m, body_inertia[b], vw,
                                              vv + wp.cross(vw, com), fluid_density[0], fluid_viscosity[0], wind[0])
                    s.cwn[w, b] = fn
                    s.cwf[w, b] = ff
            for kk in range(tree.nbody - 1):
                b = tree.nbody - 1 - kk
                p = tree.body_parent[b]
                if tree.body_moving[b] != 0 and tree.body_moving[p] != 0:
                    d = s.xd[w, b]
                    if wp.static(FULL):
                        m = s.cm[w, b]
                        h = s.ch[w, b]
                        f = s.cff[w, b]
                        wp.atomic_add(s.cfn, w, p, shift_moment(s.cfn[w, b], f, d))
                        wp.atomic_add(s.cff, w, p, f)
                        wp.atomic_add(s.cm, w, p, m)
                        wp.atomic_add(s.ch, w, p, h + m * d)
                        wp.atomic_add(s.cJ, w, p, shift_inertia_J(m, h, s.cJ[w, b], d))
                    g = s.cgf[w, b]
                    wp.atomic_add(s.cgn, w, p, shift_moment(s.cgn[w, b], g, d))
                    wp.atomic_add(s.cgf, w, p, g)
                    if wp.static(fluid):
                        g = s.cwf[w, b]
                        wp.atomic_add(s.cwn, w, p, shift_moment(s.cwn[w, b], g, d))
                        wp.atomic_add(s.cwf, w, p, g)
        return rne_crb

    rne_crb, rne_crb_fwd = rne_crb_of(True), rne_crb_of(False)

    @stored
    @wp.func
    def bias_and_mass(w: int, tree: Tree, s: S, dof_armature: wp.array(dtype=T)):
        """qfrc_bias = cdof . (subtree RNE wrench); M[i, j] = cdof_j . (I_c(body of i) cdof_i) for j
        an ancestor dof of i (row-major lower triangle, tree zeros left unwritten), armature on the
        diagonal: MuJoCo's qM."""
        nv = tree.nv
        for i in range(nv):
            b = tree.dof_body[i]
            sw = s.cdw[w, i]
            sv = s.cdv[w, i]
            s.qfrc_bias[w, i] = wp.dot(sw, s.cfn[w, b]) + wp.dot(sv, s.cff[w, b])
            fn = inertia_apply_n(s.ch[w, b], s.cJ[w, b], sw, sv)
            ff = inertia_apply_f(s.cm[w, b], s.ch[w, b], sw, sv)
            adr = tree.anc_adr[i]
            r = s.xp[w, b]
            for k in range(tree.anc_num[i]):
                j = tree.anc[adr + k]
                # the wrench I_c cdof_i about the origin of dof j's body, where cdof_j is taken
                nj = shift_moment(fn, ff, r - s.xp[w, tree.dof_body[j]])
                mij = wp.dot(s.cdw[w, j], nj) + wp.dot(s.cdv[w, j], ff)
                if k == 0:
                    mij = mij + dof_armature[i]
                s.M[w, i * nv + j] = mij


    # ---- hand-written adjoint of kinematics -> com_vel -> rne_crb_fwd (the step's backward pass).
    # Warp's reverse mode of these loops spends most of a step's adjoint on bookkeeping (per
    # iteration it zeroes and copies the adjoint of every array it touches); this is the same
    # derivative written out, one sweep down the tree. Every formula's adjoint is exact for its
    # inputs as given (quaternions need not be unit): it equals Warp's to rounding.
    # ``sa``: the scratch adjoints (what the later stages' adjoints left there, accumulated into
    # in place: the whole adjoint scratch is zeroed per step); an orientation's adjoint is that
    # of its quaternion, as Warp's.
    two = T(2.0)

    @wp.func
    def rotate_adj_q(q: Q, x: V3, g: V3):
        """d(g . wp.quat_rotate(q, x)) / dq: y = (2 w^2 - 1) x + 2 u (u . x) + 2 w u x x, u = q's
        vector part."""
        u = V3(q[0], q[1], q[2])
        gu = two * q[3] * wp.cross(x, g) + two * wp.dot(u, x) * g + two * wp.dot(u, g) * x
        return Q(gu[0], gu[1], gu[2], wp.dot(g, T(4.0) * q[3] * x + two * wp.cross(u, x)))

    @wp.func
    def matrix_adj_q(q: Q, a: M33):
        """d(sum(a * wp.quat_to_matrix(q))) / dq (the matrix's columns are q rotating the axes)."""
        u = V3(q[0], q[1], q[2])
        k = V3(a[2, 1] - a[1, 2], a[0, 2] - a[2, 0], a[1, 0] - a[0, 1])
        gu = two * q[3] * k + two * (a * u) + two * (wp.transpose(a) * u)
        return Q(gu[0], gu[1], gu[2], T(4.0) * q[3] * wp.trace(a) + two * wp.dot(u, k))

    @wp.func
    def renormalize_adj(q: Q, g: Q):
        """The adjoint of :func:`renormalize` at q."""
        return g * (T(1.5) - T(0.5) * wp.dot(q, q)) - q * wp.dot(q, g)

    @wp.func
    def normalize_adj(q: Q, g: Q):
        """The adjoint of wp.normalize at q (zero below its cut-off, where it returns a constant)."""
        n = wp.length(q)
        out = Q(T(0.0), T(0.0), T(0.0), T(0.0))
        if n > T(1e-6):
            e = q / n
            out = (g - e * wp.dot(e, g)) / n
        return out

    @wp.func
    def cross_adj(a: V3, b: V3, g: V3):
        """The adjoints (of a, of b) of wp.cross(a, b) for g the result's."""
        return wp.cross(b, g), wp.cross(g, a)

    @wp.func
    def qpos_quat(q: A3, w: int, t: int, i: int):
        """MuJoCo's (w, x, y, z) at qpos[w, t, i:i + 4] as a Warp quaternion, not normalised."""
        return Q(q[w, t, i + 1], q[w, t, i + 2], q[w, t, i + 3], q[w, t, i])

    @wp.func
    def add_qpos_quat(aq: A3, w: int, t: int, i: int, g: Q):
        aq[w, t, i] = aq[w, t, i] + g[3]
        aq[w, t, i + 1] = aq[w, t, i + 1] + g[0]
        aq[w, t, i + 2] = aq[w, t, i + 2] + g[1]
        aq[w, t, i + 3] = aq[w, t, i + 3] + g[2]

    @wp.func
    def subtree_sums_adjoint(w: int, tree: Tree, s: S, sa: S):
        """The gravity-compensation wrench's subtree sums (rne_crb_fwd's descending sweep) in
        reverse: ascending, each parent's adjoint complete before it reaches its children."""
        for b in range(1, tree.nbody):
            p = tree.body_parent[b]
            if tree.body_moving[b] != 0 and tree.body_moving[p] != 0:
                gn = sa.cgn[w, p]
                gd, gf = cross_adj(s.xd[w, b], s.cgf[w, b], gn)
                sa.cgn[w, b] = sa.cgn[w, b] + gn
                sa.cgf[w, b] = sa.cgf[w, b] + sa.cgf[w, p] + gf
                sa.xd[w, b] = sa.xd[w, b] + gd

    @wp.func
    def rne_body_adjoint(w: int, b: int, tree: Tree, s: S, sa: S, p: P, pg: P, gp: int):
        """Body b's own terms of rne_crb_fwd in reverse: into the adjoints of its velocity and
        velocity-product acceleration, of its orientation and (``gp``) of the parameters."""
        xq = s.xq[w, b]
        ipos = p.body_ipos[b]
        com = wp.quat_rotate(xq, ipos)
        m = p.body_mass[b]
        iq = p.body_iquat[b]
        q2 = xq * iq
        R = wp.quat_to_matrix(q2)
        I = p.body_inertia[b]
        h = com * m
        J = s.oJ[w, b]
        vw = s.cvw[w, b]
        vv = s.cvv[w, b]
        aw = s.caw[w, b]
        av = s.cav[w, b]
        pn = J * vw + wp.cross(h, vv)
        pf = m * vv - wp.cross(h, vw)
        gon = sa.ofn[w, b]
        gof = sa.off[w, b]
        gm = sa.om[w, b]
        gh = sa.oh[w, b]
        gJ = sa.oJ[w, b]
        # of = m av - h x aw + vw x pf
        gm += wp.dot(gof, av)
        gav = m * gof
        x1, x2 = cross_adj(h, aw, gof)
        gh -= x1
        gaw = -x2
        gvw, gpf = cross_adj(vw, pf, gof)
        # on = J aw + h x av + vw x pn + vv x pf
        gJ += wp.outer(gon, aw)
        gaw += wp.transpose(J) * gon
        x1, x2 = cross_adj(h, av, gon)
        gh += x1
        gav += x2
        x1, gpn = cross_adj(vw, pn, gon)
        gvw += x1
        gvv, x2 = cross_adj(vv, pf, gon)
        gpf += x2
        # pf = m vv - h x vw, pn = J vw + h x vv
        gm += wp.dot(gpf, vv)
        gvv += m * gpf
        x1, x2 = cross_adj(h, vw, gpf)
        gh -= x1
        gvw -= x2
        gJ += wp.outer(gpn, vw)
        gvw += wp.transpose(J) * gpn
        x1, x2 = cross_adj(h, vv, gpn)
        gh += x1
        gvv += x2
        sa.cvw[w, b] = sa.cvw[w, b] + gvw
        sa.cvv[w, b] = sa.cvv[w, b] + gvv
        sa.caw[w, b] = sa.caw[w, b] + gaw
        sa.cav[w, b] = sa.cav[w, b] + gav
        # the gravity-compensation wrench (com x gf, gf) of gf = -g m gravcomp
        gcom = V3(T(0.0), T(0.0), T(0.0))
        if tree.body_gravcomp[b] != 0:
            gf = -p.gravity[0] * (m * p.body_gravcomp[b])
            x1, x2 = cross_adj(com, gf, sa.cgn[w, b])
            gcom += x1
            ggf = x2 + sa.cgf[w, b]
            gm -= p.body_gravcomp[b] * wp.dot(p.gravity[0], ggf)
            if gp != 0:
                wp.atomic_add(pg.gravity, 0, -(m * p.body_gravcomp[b]) * ggf)
                wp.atomic_add(pg.body_gravcomp, b, -m * wp.dot(p.gravity[0], ggf))
        # J = R diag(I) R^T + m (|com|^2 1 - com com^T), h = m com
        gS = gJ + wp.transpose(gJ)
        tr = wp.trace(gJ)
        gm += wp.dot(com, com) * tr - wp.dot(com, gJ * com) + wp.dot(gh, com)
        gcom += m * (two * tr * com - gS * com) + m * gh
        gR = gS * R * wp.diag(I)
        gq2 = matrix_adj_q(q2, gR)
        sa.xq[w, b] = sa.xq[w, b] + rotate_adj_q(xq, ipos, gcom) + gq2 * wp.quat_inverse(iq)
        if gp != 0:
            wp.atomic_add(pg.body_mass, b, gm)
            wp.atomic_add(pg.body_ipos, b, wp.quat_rotate_inv(xq, gcom))
            wp.atomic_add(pg.body_iquat, b, wp.quat_inverse(xq) * gq2)
            rgr = wp.transpose(R) * gJ * R
            wp.atomic_add(pg.body_inertia, b, V3(rgr[0, 0], rgr[1, 1], rgr[2, 2]))

    @wp.func
    def dof_adjoint(w: int, da: int, sw: V3, sv: V3, bw: V3, bv: V3, gvw: V3, gvv: V3, gaw: V3, gav: V3,
                    qvel: A3, t: int, adj_qvel: A3, sa: S):
        """One dof of com_vel in reverse (v += s qd, a += (b x s) qd for the velocity b before the
        joint): returns the adjoints of sw, sv, bw and bv it adds (the velocity and acceleration
        adjoints pass through unchanged); the dof's own adjoints (cdof from the later stages)
        are included, qd's goes into adj_qvel."""
        qd = qvel[w, t, da]
        cw = wp.cross(bw, sw)
        cv = wp.cross(bw, sv) + wp.cross(bv, sw)
        adj_qvel[w, t, da] = adj_qvel[w, t, da] + wp.dot(gvw, sw) + wp.dot(gvv, sv) + wp.dot(gaw, cw) + wp.dot(gav, cv)
        gsw = gvw * qd + sa.cdw[w, da]
        gsv = gvv * qd + sa.cdv[w, da]
        x1, x2 = cross_adj(bw, sw, gaw * qd)
        gbw = x1
        gsw += x2
        x1, x2 = cross_adj(bw, sv, gav * qd)
        gbw += x1
        gsv += x2
        x1, x2 = cross_adj(bv, sw, gav * qd)
        gbv = x1
        gsw += x2
        return gsw, gsv, gbw, gbv

    @wp.func
    def com_vel_body_adjoint(w: int, b: int, qvel: A3, t: int, adj_qvel: A3, tree: Tree, s: S, sa: S):
        """Body b's part of com_vel in reverse (its velocity's and acceleration's adjoints
        complete: its children and its own later terms added theirs): into the adjoints of its
        joints' axes and anchors (sa.jaxis, sa.janchor), its link offset, its orientation (ball
        and free joints' subspace), qvel, and its parent's velocity and acceleration."""
        z = V3(T(0.0), T(0.0), T(0.0))
        p = tree.body_parent[b]
        r = s.xd[w, b]
        pw = s.cvw[w, p]
        pv = s.cvv[w, p] - wp.cross(r, pw)
        gvw = sa.cvw[w, b]
        gvv = sa.cvv[w, b]
        gaw = sa.caw[w, b]
        gav = sa.cav[w, b]
        gr = z
        adr = tree.body_jntadr[b]
        n = tree.body_jntnum[b]
        for kk in range(n):
            k = n - 1 - kk
            j = adr + k
            bw = pw
            bv = pv
            if k > 0:
                bw = s.jvw[w, j - 1]
                bv = s.jvv[w, j - 1]
            typ = tree.jnt_type[j]
            da = tree.jnt_dofadr[j]
            ax = s.jaxis[w, j]
            an = s.janchor[w, j] - r
            gbw = gvw
            gbv = gvv
            gan = z
            gax = z
            if typ == _HINGE or typ == _SLIDE:
                sw = ax
                sv = motion_dof(ax, an)
                if typ == _SLIDE:
                    sw = z
                    sv = ax
                gsw, gsv, x1, x2 = dof_adjoint(w, da, sw, sv, bw, bv, gvw, gvv, gaw, gav, qvel, t, adj_qvel, sa)
                gbw += x1
                gbv += x2
                if typ == _SLIDE:
                    gax = gsv
                else:
                    y1, y2 = cross_adj(an, ax, gsv)  # sv = an x ax
                    gan = y1
                    gax = gsw + y2
            else:
                ra = da
                if typ == _FREE:
                    ra = da + 3
                    bv = bv + V3(qvel[w, t, da], qvel[w, t, da + 1], qvel[w, t, da + 2])
                rm = wp.quat_to_matrix(s.xq[w, b])
                grm = M33()
                gbv_rot = z
                for i in range(3):
                    sw = V3(rm[0, i], rm[1, i], rm[2, i])
                    sv = motion_dof(sw, an)
                    gsw, gsv, x1, x2 = dof_adjoint(w, ra + i, sw, sv, bw, bv, gvw, gvv, gaw, gav, qvel, t, adj_qvel,
                                                   sa)
                    gbw += x1
                    gbv_rot += x2
                    y1, y2 = cross_adj(an, sw, gsv)
                    gan += y1
                    gsw += y2
                    grm[0, i] = gsw[0]
                    grm[1, i] = gsw[1]
                    grm[2, i] = gsw[2]
                gbv += gbv_rot
                if typ == _FREE:
                    for i in range(3):
                        adj_qvel[w, t, da + i] = adj_qvel[w, t, da + i] + gbv[i]
                sa.xq[w, b] = sa.xq[w, b] + matrix_adj_q(s.xq[w, b], grm)
            sa.jaxis[w, j] = sa.jaxis[w, j] + gax
            sa.janchor[w, j] = sa.janchor[w, j] + gan
            gr -= gan
            gvw = gbw
            gvv = gbv
        # (pw, pv) = the parent's velocity about this body's origin, the same for accelerations
        x1, x2 = cross_adj(r, pw, gvv)
        sa.cvw[w, p] = sa.cvw[w, p] + gvw - x2
        sa.cvv[w, p] = sa.cvv[w, p] + gvv
        paw = s.caw[w, p]
        y1, y2 = cross_adj(r, paw, gav)
        sa.caw[w, p] = sa.caw[w, p] + gaw - y2
        sa.cav[w, p] = sa.cav[w, p] + gav
        sa.xd[w, b] = sa.xd[w, b] + gr - x1 - y1

    @wp.func
    def kinematics_body_adjoint(w: int, b: int, qpos: A3, t: int, adj_qpos: A3, tree: Tree, s: S, sa: S, p: P,
                                pg: P, gp: int):
        """Body b's part of kinematics in reverse (the adjoints of its pose, link offset and joint
        frames complete): into qpos's, the parameters' (``gp``) and its parent's pose's."""
        z = V3(T(0.0), T(0.0), T(0.0))
        pb = tree.body_parent[b]
        pq = s.xq[w, pb]
        gp_pos = sa.xp[w, b]
        gbase = gp_pos
        gnq = sa.xq[w, b]
        gnp = gp_pos + sa.xd[w, b]
        adr = tree.body_jntadr[b]
        n = tree.body_jntnum[b]
        for kk in range(n):
            k = n - 1 - kk
            j = adr + k
            cq = s.xq0[w, b]  # the orientation before the joint (positions enter linearly)
            if k > 0:
                cq = s.jq[w, j - 1]
            typ = tree.jnt_type[j]
            pa = tree.jnt_qposadr[j]
            jpos = p.jnt_pos[j]
            jaxis = p.jnt_axis[j]
            gax = sa.jaxis[w, j]
            gan = sa.janchor[w, j]
            gcq = Q(T(0.0), T(0.0), T(0.0), T(0.0))
            gcp = z
            gjpos = z
            gjaxis = z
            if typ == _FREE:
                g = gnp + gan  # the anchor is the position
                for i in range(3):
                    adj_qpos[w, t, pa + i] = adj_qpos[w, t, pa + i] + g[i]
                gbase -= g
                add_qpos_quat(adj_qpos, w, t, pa + 3, normalize_adj(qpos_quat(qpos, w, t, pa + 3), gnq))
            else:
                if typ == _SLIDE:
                    gcq = gnq
                    gcp = gnp
                    x = qpos[w, t, pa] - p.qpos0[pa]
                    gax += gnp * x
                    ga = wp.dot(gnp, s.jaxis[w, j])
                    adj_qpos[w, t, pa] = adj_qpos[w, t, pa] + ga
                    if gp != 0:
                        wp.atomic_add(pg.qpos0, pa, -ga)
                else:
                    # np = an - R(nq) jpos, nq = renormalize(cq * local)
                    nq = s.jq[w, j]
                    gan += gnp
                    gnq += rotate_adj_q(nq, jpos, -gnp)
                    if gp != 0:
                        gjpos -= wp.quat_rotate_inv(nq, gnp)
                    if typ == _HINGE:
                        ang = qpos[w, t, pa] - p.qpos0[pa]
                        loc = hinge_quat(jaxis, ang)
                        gm = renormalize_adj(cq * loc, gnq)
                        gcq = gm * wp.quat_inverse(loc)
                        gl = wp.quat_inverse(cq) * gm
                        sn = wp.sin(T(0.5) * ang)
                        cs = wp.cos(T(0.5) * ang)
                        glv = V3(gl[0], gl[1], gl[2])
                        if gp != 0:
                            gjaxis += glv * sn
                        ga = T(0.5) * (wp.dot(glv, jaxis) * cs - gl[3] * sn)
                        adj_qpos[w, t, pa] = adj_qpos[w, t, pa] + ga
                        if gp != 0:
                            wp.atomic_add(pg.qpos0, pa, -ga)
                    else:  # ball
                        raw = qpos_quat(qpos, w, t, pa)
                        loc = wp.normalize(raw)
                        gm = renormalize_adj(cq * loc, gnq)
                        gcq = gm * wp.quat_inverse(loc)
                        add_qpos_quat(adj_qpos, w, t, pa, normalize_adj(raw, wp.quat_inverse(cq) * gm))
                # an = R(cq) jpos + cp
                gcq += rotate_adj_q(cq, jpos, gan)
                gcp += gan
                if gp != 0:
                    gjpos += wp.quat_rotate_inv(cq, gan)
            # ax = R(cq) jaxis
            gcq += rotate_adj_q(cq, jaxis, gax)
            if gp != 0:
                wp.atomic_add(pg.jnt_pos, j, gjpos)
                wp.atomic_add(pg.jnt_axis, j, gjaxis + wp.quat_rotate_inv(cq, gax))
            gnq = gcq
            gnp = gcp
        # xq0 = renormalize(pq * body_quat), d0 = R(pq) body_pos
        bq = p.body_quat[b]
        gm0 = renormalize_adj(pq * bq, gnq)
        gpq = gm0 * wp.quat_inverse(bq) + rotate_adj_q(pq, p.body_pos[b], gnp)
        if gp != 0:
            wp.atomic_add(pg.body_quat, b, wp.quat_inverse(pq) * gm0)
            wp.atomic_add(pg.body_pos, b, wp.quat_rotate_inv(pq, gnp))
        sa.xq[w, pb] = sa.xq[w, pb] + gpq
        sa.xp[w, pb] = sa.xp[w, pb] + gbase

    @wp.func
    def smooth_adjoint(w: int, qpos: A3, qvel: A3, adj_qpos: A3, adj_qvel: A3, t: int, tree: Tree, s: S, sa: S,
                       p: P, pg: P, gp: int):
        """The adjoint of kinematics -> com_vel -> rne_crb_fwd (without fluid forces) for the
        adjoints the later stages left in ``sa``: into adj_qpos, adj_qvel at step t and, with
        ``gp`` != 0, the parameters' adjoints ``pg`` (a Params struct over them). One sweep down
        the tree after the subtree sums' reverse: per body from the last its own RNE terms, its
        com_vel and its kinematics, each adding into its parent's adjoints before the parent's
        turn."""
        subtree_sums_adjoint(w, tree, s, sa)
        for kk in range(tree.nbody - 1):
            b = tree.nbody - 1 - kk
            if tree.body_moving[b] != 0:
                rne_body_adjoint(w, b, tree, s, sa, p, pg, gp)
            com_vel_body_adjoint(w, b, qvel, t, adj_qvel, tree, s, sa)
            kinematics_body_adjoint(w, b, qpos, t, adj_qpos, tree, s, sa, p, pg, gp)

    out = dict(joint_pose=joint_pose, kinematics=kinematics, com_vel=com_vel, rne_crb=rne_crb,
               rne_crb_fwd=rne_crb_fwd, bias_and_mass=bias_and_mass,
               smooth_adjoint=smooth_adjoint)
    return out
