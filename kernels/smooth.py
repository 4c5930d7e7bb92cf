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
    V3, Q, S, A3, M33 = a["V3"], a["Q"], a["S"], a["A3"], a["M33"]

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

    out = dict(joint_pose=joint_pose, kinematics=kinematics, com_vel=com_vel, rne_crb=rne_crb,
               rne_crb_fwd=rne_crb_fwd, bias_and_mass=bias_and_mass)
    return out
