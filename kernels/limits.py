"""Joint range limits and dry friction, looped over joints and dofs (the role of MuJoCo's
mj_instantiateLimit / mj_instantiateFriction and mj_makeImpedance), in one of two laws
(Structure.limit_law):

- "compliant" (``joint_limits``): each end of the range is the contact law's normal part in
  joint space (kernels/contact.limit_force), active within jnt_margin of it and zero elsewhere;
  its implicit coefficient goes to the solve's diagonal (dry friction: kernels/contact.joint_friction,
  in the collision stage). Not MuJoCo's soft-constraint solver: inside the range both give no force;
  at and beyond a limit they differ (see the README's table).
- "mujoco" (``constraint_rows``, ``row_force``): MuJoCo's soft constraints. Per dof up to three
  rows with Jacobian +-e_dof: the lower and upper limit of a hinge / slide joint (instantiated
  where the distance to its end is below jnt_margin) and dry friction (where frictionloss > 0).
  Each row has MuJoCo's impedance d (solimp, of the distance beyond the margin), its regulariser
  R = (1 - d) / d dof_invweight0, and reference acceleration aref = -b J qvel - k d (dist -
  margin) (solref; dry friction: -b qvel). The constraint solver's acceleration minimises
  1/2 (a - a_smooth)^T M (a - a_smooth) + sum of the rows' costs, the limits' 1/2 D jar^2 where
  jar = J a - aref < 0 and friction's Huber cost (quadratic within |jar| < R frictionloss, linear
  beyond), D = 1/R: kernels/solve.py solves it by the rows' states (Newton's method on the
  piecewise quadratic, as MuJoCo's Newton solver does, exact once the states repeat), then the
  step's implicit terms (h damping; implicitfast's actuator terms) act in a second solve with the
  rows' forces, as mj_Euler / mj_implicit add qfrc_constraint to qfrc_smooth. Piecewise like
  MuJoCo's: the gradient is exact at fixed row states; where a row switches state the force is
  continuous in the state except at a limit's instantiation with the joint moving into it
  (MuJoCo's damping term -b J qvel appears at once, there as in MuJoCo).

  Rows whose Jacobian spans many dofs are dense rows (``equality_rows``: s.eJ, eD, eA, eF, their
  kinds in tree.erow_kind): the equality constraints' (always quadratic), then per limited
  tendon its lower and upper end and per tendon with frictionloss its dry friction
  (``tendon_rows``), with the same impedance, regulariser (from tendon_invweight0) and reference
  acceleration as a dof's rows and the same states (s.estate); the solve carries the quadratic
  ones by Woodbury's identity on its tree factor and those at a friction bound as a force. A
  limited ball joint's cone limit is one more such row (``ball_row``): its rotation angle theta
  (MuJoCo's mju_quat2Vel of the joint's quaternion: the rotation vector theta u) below the range's
  larger end, Jacobian -u on the joint's three dofs (d theta / dt = u . omega), the joint's solref
  / solimp / margin and its first dof's invweight0, as MuJoCo's mj_instantiateLimit.
"""
import warp as wp

from ..types import (
    EQ_JOINT,
    EQ_TENDON,
    EQ_WELD,
    HINGE,
    ROW_BALL_LIMIT,
    ROW_EQUALITY,
    ROW_TENDON_FRICTION,
    ROW_TENDON_UPPER,
    SLIDE,
)
from .contact import limit_force, safe_normalize
from .integration import quat_to_rotvec
from .tree import Tree, aliases, per_dtype, stored

_HINGE, _SLIDE = wp.constant(HINGE), wp.constant(SLIDE)
_EQ_JOINT, _EQ_WELD, _EQ_TENDON = wp.constant(EQ_JOINT), wp.constant(EQ_WELD), wp.constant(EQ_TENDON)
_ROW_EQ, _ROW_UPPER, _ROW_FRICTION = wp.constant(ROW_EQUALITY), wp.constant(ROW_TENDON_UPPER), wp.constant(
    ROW_TENDON_FRICTION)
_ROW_BALL = wp.constant(ROW_BALL_LIMIT)
#: MuJoCo's bounds of the impedance and its smallest value (mjMINIMP, mjMAXIMP, mjMINVAL)
MINIMP, MAXIMP, MINVAL = 1.0e-4, 0.9999, 1.0e-15
#: row states (Scratch rowZ): inactive, quadratic, at +bound, at -bound (dry friction's linear zones)
INACTIVE, QUADRATIC, PLUS, MINUS = 0.0, 1.0, 2.0, 3.0


@per_dtype
def make(T):
    a = aliases(T)
    S, A3, AT, V2 = a["S"], a["A3"], a["AT"], a["V2"]
    V3, V5, Q = a["V3"], a["V5"], a["Q"]
    V2A, V3A, V5A, QA = wp.array(dtype=V2), wp.array(dtype=V3), wp.array(dtype=V5), wp.array(dtype=Q)
    lo, hi, eps = T(MINIMP), T(MAXIMP), T(MINVAL)

    @stored
    @wp.func
    def joint_limits(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, jnt_range: V2A,
                     jnt_margin: AT, dof_meff: AT, jnt_limit_stiffness: AT, jnt_limit_damping: AT, tau: T, h: T):
        for d in range(tree.nv):
            s.qfrc_constraint[w, d] = T(0.0)
        for j in range(tree.njnt):
            if tree.jnt_limited[j] != 0:
                da = tree.jnt_dofadr[j]
                f, a = limit_force(qpos[w, t, tree.jnt_qposadr[j]], qvel[w, t, da], jnt_range[j], jnt_margin[j],
                                   dof_meff[da], jnt_limit_stiffness[j], jnt_limit_damping[j], tau, h)
                wp.atomic_add(s.qfrc_constraint, w, da, f)
                wp.atomic_add(s.diag, w, da, a)

    @wp.func
    def impedance(si: V5, x: T):
        """MuJoCo's impedance d of a row whose distance beyond its margin is ``x`` (solimp: dmin,
        dmax, width, midpoint, power; clamped as MuJoCo clamps them)."""
        d0 = wp.clamp(si[0], lo, hi)
        d1 = wp.clamp(si[1], lo, hi)
        width = wp.max(si[2], eps)
        mid = wp.clamp(si[3], lo, hi)
        pw = wp.max(si[4], T(1.0))
        imp = T(0.5) * (d0 + d1)
        if d0 != d1 and si[2] > eps:
            r = wp.abs(x) / width
            imp = d0
            if r >= T(1.0):
                imp = d1
            elif r > T(0.0):
                y = r
                if pw != T(1.0):
                    if r <= mid:
                        y = wp.pow(r, pw) / wp.pow(mid, pw - T(1.0))
                    else:
                        y = T(1.0) - wp.pow(T(1.0) - r, pw) / wp.pow(T(1.0) - mid, pw - T(1.0))
                imp = d0 + y * (d1 - d0)
        return wp.clamp(imp, lo, hi)

    @wp.func
    def ref_coefficients(sr: V2, si: V5, h: T, refsafe: int):
        """MuJoCo's (k, b) of a row from solref: (time constant, damping ratio), the time constant
        at least 2 h with refsafe; or (-stiffness, -damping) where solref[0] <= 0."""
        dmax = wp.clamp(si[1], lo, hi)
        k = -sr[0] / (dmax * dmax)
        b = -sr[1] / dmax
        if sr[0] > T(0.0):
            tc = sr[0]
            if refsafe != 0:
                tc = wp.max(tc, T(2.0) * h)
            k = T(1.0) / (dmax * dmax * tc * tc * sr[1] * sr[1])
            b = T(2.0) / (dmax * tc)
        return k, b

    @stored
    @wp.func
    def constraint_rows(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, jnt_range: V2A, jnt_margin: AT,
                        jnt_solref: V2A, jnt_solimp: V5A, dof_frictionloss: AT, dof_solref: V2A, dof_solimp: V5A,
                        dof_invweight0: AT, h: T):
        """Per dof its three rows (lower limit, upper limit, dry friction) into s.rowD (1/R, 0 where
        the row is not instantiated), s.rowA (aref) and s.rowF (dry friction's bound), each
        entry written once."""
        for d in range(tree.nv):
            j = tree.dof_jnt[d]
            iw = dof_invweight0[d]
            v = qvel[w, t, d]
            for side in range(2):
                dd = T(0.0)
                aref = T(0.0)
                typ = tree.jnt_type[j]
                if tree.jnt_limited[j] != 0 and (typ == _HINGE or typ == _SLIDE):
                    q = qpos[w, t, tree.jnt_qposadr[j]]
                    sg = T(1.0)  # the row's Jacobian: +1 for the lower end, -1 for the upper
                    dist = q - jnt_range[j][0]
                    if side == 1:
                        sg = T(-1.0)
                        dist = jnt_range[j][1] - q
                    x = dist - jnt_margin[j]
                    if x < T(0.0):
                        imp = impedance(jnt_solimp[j], x)
                        k, b = ref_coefficients(jnt_solref[j], jnt_solimp[j], h, tree.refsafe)
                        dd = T(1.0) / wp.max((T(1.0) - imp) / imp * iw, eps)
                        aref = -b * sg * v - k * imp * x
                s.rowD[w, 3 * d + side] = dd
                s.rowA[w, 3 * d + side] = aref
                s.rowF[w, 3 * d + side] = T(0.0)
            dd = T(0.0)
            aref = T(0.0)
            fl = T(0.0)
            if tree.dof_frictionloss[d] != 0:
                imp = impedance(dof_solimp[d], T(0.0))
                k, b = ref_coefficients(dof_solref[d], dof_solimp[d], h, tree.refsafe)
                dd = T(1.0) / wp.max((T(1.0) - imp) / imp * iw, eps)
                aref = -b * v
                fl = dof_frictionloss[d]
            s.rowD[w, 3 * d + 2] = dd
            s.rowA[w, 3 * d + 2] = aref
            s.rowF[w, 3 * d + 2] = fl

    @wp.func
    def point_bias(w: int, s: S, b: int, pt: V3):
        """The acceleration of body b's point at ``pt`` at zero qacc, without gravity (the
        velocity-product term MuJoCo's mj_Jdotv subtracts from a connect's aref): the body's
        spatial bias acceleration (caw, cav) at the point plus omega x its velocity there."""
        r = pt - s.xp[w, b]
        om = s.cvw[w, b]
        return s.cav[w, b] + wp.cross(s.caw[w, b], r) + wp.cross(om, s.cvv[w, b] + wp.cross(om, r))

    @wp.func
    def add_point_jacobian(w: int, tree: Tree, s: S, b: int, pt: V3, row: int, sign: T):
        """sign times the Jacobian of body b's point at ``pt`` (3 rows from ``row``) added into s.eJ."""
        d = tree.body_lastdof[b]
        if d >= 0:
            for k in range(tree.anc_num[d]):
                i = tree.anc[tree.anc_adr[d] + k]
                col = s.cdv[w, i] + wp.cross(s.cdw[w, i], pt - s.xp[w, tree.dof_body[i]])
                for e in range(3):
                    wp.atomic_add(s.eJ, w, (row + e) * tree.nv + i, sign * col[e])

    @wp.func
    def coupling(c: V5, x: T):
        """A joint or tendon equality's polynomial of the second object's offset x from its
        reference, without the constant term: c1 x + c2 x^2 + c3 x^3 + c4 x^4, and its derivative."""
        f = x * (c[1] + x * (c[2] + x * (c[3] + x * c[4])))
        der = c[1] + x * (T(2.0) * c[2] + x * (T(3.0) * c[3] + x * T(4.0) * c[4]))
        return f, der

    @wp.func
    def scalar_row(w: int, s: S, ra: int, solimp: V5, pos: T, vel: T, da: T, k: T, b: T):
        """A one-row equality's 1/R (R from its diagonal approximation ``da``) and aref."""
        imp = impedance(solimp, pos)
        s.eD[w, ra] = T(1.0) / wp.max((T(1.0) - imp) / imp * da, eps)
        s.eA[w, ra] = -b * vel - k * imp * pos

    @wp.func
    def weld_rotation(qn: Q, qa: Q, a: V3, scale: T):
        """A weld's rotational map: scale / 2 times the vector part of qn (0, a) qa, the rotation
        error's rate for a relative angular velocity ``a`` (MuJoCo's rotational weld Jacobian, with
        qn the conjugate of body2's orientation and qa body1's times relpose)."""
        r = qn * Q(a[0], a[1], a[2], T(0.0)) * qa
        return V3(r[0], r[1], r[2]) * (T(0.5) * scale)

    @wp.func
    def weld_rotation_bias(w: int, s: S, b1: int, b2: int, qn: Q, qa: Q, scale: T):
        """The rotational rows' velocity-product acceleration (MuJoCo 4's mj_Jdotv, which the rows'
        aref leaves out): the error's second derivative at zero qacc, scale / 2 times the vector
        part of qn X qa with X = (alpha1 - alpha2) + (Omega w1 - w2 Omega) / 2, Omega = w1 - w2, the
        bodies' angular velocities w and bias accelerations alpha as pure quaternions (qa' = w1 qa
        / 2, qn' = -qn w2 / 2)."""
        z = T(0.0)
        w1 = s.cvw[w, b1]
        w2 = s.cvw[w, b2]
        om = w1 - w2
        al = s.caw[w, b1] - s.caw[w, b2]
        qo = Q(om[0], om[1], om[2], z)
        x = Q(al[0], al[1], al[2], z) + (qo * Q(w1[0], w1[1], w1[2], z) - Q(w2[0], w2[1], w2[2], z) * qo) * T(0.5)
        r = qn * x * qa
        return V3(r[0], r[1], r[2]) * (T(0.5) * scale)

    @wp.func
    def add_weld_rotation(w: int, tree: Tree, s: S, b: int, row: int, sign: T, qn: Q, qa: Q, scale: T):
        """sign times the weld's rotational rows (3 from ``row``) of body b's angular Jacobian."""
        d = tree.body_lastdof[b]
        if d >= 0:
            for k in range(tree.anc_num[d]):
                i = tree.anc[tree.anc_adr[d] + k]
                col = weld_rotation(qn, qa, s.cdw[w, i], scale)
                for e in range(3):
                    wp.atomic_add(s.eJ, w, (row + e) * tree.nv + i, sign * col[e])

    @wp.func
    def ball_row(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, r: int, j: int, jnt_range: V2A,
                 jnt_margin: AT, jnt_solref: V2A, jnt_solimp: V5A, dof_invweight0: AT, h: T):
        """Dense row r: ball joint j's cone limit (see the module docstring)."""
        pa = tree.jnt_qposadr[j]
        da = tree.jnt_dofadr[j]
        q = Q(qpos[w, t, pa + 1], qpos[w, t, pa + 2], qpos[w, t, pa + 3], qpos[w, t, pa])
        # the rotation's axis and angle in [0, pi] (mju_quat2Vel; a zero rotation's axis x, as
        # MuJoCo's mju_normalize3 of a zero vector)
        u, theta = safe_normalize(quat_to_rotvec(q), V3(T(1.0), T(0.0), T(0.0)))
        x = wp.max(jnt_range[j][0], jnt_range[j][1]) - theta - jnt_margin[j]
        dd = T(0.0)
        aref = T(0.0)
        if x < T(0.0):
            imp = impedance(jnt_solimp[j], x)
            k, b = ref_coefficients(jnt_solref[j], jnt_solimp[j], h, tree.refsafe)
            dd = T(1.0) / wp.max((T(1.0) - imp) / imp * dof_invweight0[da], eps)
            vel = u[0] * qvel[w, t, da] + u[1] * qvel[w, t, da + 1] + u[2] * qvel[w, t, da + 2]
            aref = b * vel - k * imp * x
            for e in range(3):
                s.eJ[w, r * tree.nv + da + e] = -u[e]
        s.eD[w, r] = dd
        s.eA[w, r] = aref

    @wp.func
    def tendon_row(w: int, tree: Tree, s: S, r: int, kind: int, i: int, tendon_range: V2A, tendon_margin: AT,
                   tendon_solref_lim: V2A, tendon_solimp_lim: V5A, tendon_frictionloss: AT, tendon_solref_fri: V2A,
                   tendon_solimp_fri: V5A, tendon_invweight0: AT, h: T):
        """Dense row r: tendon i's limit (lower or upper end) or dry friction row (``kind``)."""
        iw = tendon_invweight0[i]
        v = s.ten_vel[w, i]
        dd = T(0.0)
        aref = T(0.0)
        sg = T(1.0)
        if kind == _ROW_FRICTION:
            imp = impedance(tendon_solimp_fri[i], T(0.0))
            k, b = ref_coefficients(tendon_solref_fri[i], tendon_solimp_fri[i], h, tree.refsafe)
            dd = T(1.0) / wp.max((T(1.0) - imp) / imp * iw, eps)
            aref = -b * v
            s.eF[w, r] = tendon_frictionloss[i]
        else:
            dist = s.ten_len[w, i] - tendon_range[i][0]
            if kind == _ROW_UPPER:
                sg = T(-1.0)
                dist = tendon_range[i][1] - s.ten_len[w, i]
            x = dist - tendon_margin[i]
            if x < T(0.0):
                imp = impedance(tendon_solimp_lim[i], x)
                k, b = ref_coefficients(tendon_solref_lim[i], tendon_solimp_lim[i], h, tree.refsafe)
                dd = T(1.0) / wp.max((T(1.0) - imp) / imp * iw, eps)
                aref = -b * sg * v - k * imp * x
        s.eD[w, r] = dd
        s.eA[w, r] = aref
        if dd > T(0.0):
            for q in range(tree.nv):
                s.eJ[w, r * tree.nv + q] = sg * s.ten_J[w, i * tree.nv + q]

    @wp.func
    def tendon_rows(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, tendon_range: V2A, tendon_margin: AT,
                    tendon_solref_lim: V2A, tendon_solimp_lim: V5A, tendon_frictionloss: AT, tendon_solref_fri: V2A,
                    tendon_solimp_fri: V5A, tendon_invweight0: AT, jnt_range: V2A, jnt_margin: AT,
                    jnt_solref: V2A, jnt_solimp: V5A, dof_invweight0: AT, h: T):
        """The tendons' dense rows (MuJoCo's mj_instantiateLimit and mj_instantiateFriction for
        tendons), after the equalities': a limited tendon's lower and upper end as a joint's
        (Jacobian +-ten_J, instantiated where the distance to the end is below tendon_margin:
        1/R from the impedance beyond the margin and tendon_invweight0, aref = -b J qvel - k d
        (dist - margin)), a tendon's dry friction (Jacobian ten_J, bound tendon_frictionloss,
        aref = -b ten_vel); rows not instantiated get 1/R = 0. Then the ball joints' cone limits
        (:func:`ball_row`; erow_ten holds their joint)."""
        for r in range(tree.nerow):
            kind = tree.erow_kind[r]
            if kind == _ROW_EQ:
                continue
            i = tree.erow_ten[r]
            # if / else, not a ``continue`` after the call: Warp's reverse mode then dropped the
            # call's adjoint (the cone limit's gradient was missing; measured against central
            # differences)
            if kind == _ROW_BALL:
                ball_row(w, qpos, qvel, t, tree, s, r, i, jnt_range, jnt_margin, jnt_solref, jnt_solimp,
                         dof_invweight0, h)
            else:
                tendon_row(w, tree, s, r, kind, i, tendon_range, tendon_margin, tendon_solref_lim, tendon_solimp_lim,
                           tendon_frictionloss, tendon_solref_fri, tendon_solimp_fri, tendon_invweight0, h)

    @wp.func
    def zone_state(jar: T, dd: T, fl: T, friction: int, always: int):
        """A row's state (rowZ's) at its jar = J a - aref, its 1/R ``dd`` (0: not instantiated):
        a dry friction row (``friction``; bound ``fl``) quadratic within |dd jar| < fl, else at
        its bound; an equality's (``always``) quadratic; a limit's quadratic where jar < 0."""
        z = T(INACTIVE)
        if dd > T(0.0):
            if friction != 0:
                z = T(QUADRATIC)
                if jar * dd <= -fl:
                    z = T(PLUS)
                elif jar * dd >= fl:
                    z = T(MINUS)
            elif always != 0 or jar < T(0.0):
                z = T(QUADRATIC)
        return z

    @wp.func
    def zone_force(jar: T, dd: T, fl: T, friction: int, always: int):
        """A row's force at its jar (MuJoCo's efc_force) and its derivative's magnitude (dd where
        quadratic), the row as in :func:`zone_state`."""
        f = T(0.0)
        c = T(0.0)
        if dd > T(0.0):
            if friction != 0:
                f = wp.clamp(-dd * jar, -fl, fl)
                if wp.abs(dd * jar) < fl:
                    c = dd
            elif always != 0 or jar < T(0.0):
                f = -dd * jar
                c = dd
        return f, c

    @wp.func
    def dense_state(tree: Tree, s: S, w: int, r: int, jar: T):
        """The state of dense row r at its jar (an equality's row is always quadratic, a tendon
        limit's where jar < 0, a tendon friction's as a dof's)."""
        kind = tree.erow_kind[r]
        return zone_state(jar, s.eD[w, r], s.eF[w, r], wp.where(kind == _ROW_FRICTION, 1, 0),
                          wp.where(kind == _ROW_EQ, 1, 0))

    @wp.func
    def dense_force_at(tree: Tree, s: S, w: int, r: int, jar: T):
        """Dense row r's force at its jar and its derivative's magnitude (D where quadratic)."""
        kind = tree.erow_kind[r]
        return zone_force(jar, s.eD[w, r], s.eF[w, r], wp.where(kind == _ROW_FRICTION, 1, 0),
                          wp.where(kind == _ROW_EQ, 1, 0))

    @stored
    @wp.func
    def equality_rows(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, qpos0: AT, dof_invweight0: AT,
                      body_invweight0: AT, body_invweight0r: AT, eq_solref: V2A, eq_solimp: V5A,
                      eq_polycoef: V5A, eq_anchor1: V3A, eq_anchor2: V3A, eq_relpose: QA, eq_torquescale: AT,
                      tendon_length0: AT, tendon_invweight0: AT, site_pos: V3A, site_quat: QA,
                      tendon_range: V2A, tendon_margin: AT, tendon_solref_lim: V2A, tendon_solimp_lim: V5A,
                      tendon_frictionloss: AT, tendon_solref_fri: V2A, tendon_solimp_fri: V5A, jnt_range: V2A,
                      jnt_margin: AT, jnt_solref: V2A, jnt_solimp: V5A, h: T):
        """The equality constraints' rows (MuJoCo's mj_instantiateEquality): a joint's coordinate
        a polynomial of another's (1 row: pos = q1 - ref1 - poly(q2 - ref2), J = e1 - poly' e2),
        a tendon's length a polynomial of another's alike (J from the tendons' Jacobians, the
        references their lengths at qpos0),
        a connect's two body points together (3 rows: pos = p1 - p2, J the points' Jacobians'
        difference, the impedance of |pos|, aref less the points' relative velocity-product
        acceleration), a weld's the same 3 (body1's point at relpose's position, body2's at its
        anchor) and 3 rotational (torquescale times the vector part of q2^-1 q1 relpose, their
        Jacobian ``weld_rotation`` of the bodies' angular Jacobians' difference; the impedance of
        all 6 rows' norm, the rotational rows' R from the bodies' rotational invweight0); between
        sites, the sites' positions and frames in place of the anchors and relpose: into
        s.eJ, s.eD (1/R, R from the dofs' or bodies' invweight0) and s.eA. Then the tendons' rows
        (:func:`tendon_rows`)."""
        for r in range(tree.nerow * tree.nv):
            s.eJ[w, r] = T(0.0)
        for r in range(tree.nerow):
            s.eF[w, r] = T(0.0)
        for e in range(tree.neq):
            ra = tree.eq_rowadr[e]
            ie = tree.eq_id[e]
            k, b = ref_coefficients(eq_solref[ie], eq_solimp[ie], h, tree.refsafe)
            if tree.eq_type[e] == _EQ_JOINT:
                j1 = tree.eq_obj1[e]
                j2 = tree.eq_obj2[e]
                d1 = tree.jnt_dofadr[j1]
                a1 = tree.jnt_qposadr[j1]
                c = eq_polycoef[ie]
                pos = qpos[w, t, a1] - qpos0[a1] - c[0]
                vel = qvel[w, t, d1]
                da = dof_invweight0[d1]
                wp.atomic_add(s.eJ, w, ra * tree.nv + d1, T(1.0))
                if j2 >= 0:
                    d2 = tree.jnt_dofadr[j2]
                    a2 = tree.jnt_qposadr[j2]
                    f, der = coupling(c, qpos[w, t, a2] - qpos0[a2])
                    pos = pos - f
                    wp.atomic_add(s.eJ, w, ra * tree.nv + d2, -der)
                    vel = vel - der * qvel[w, t, d2]
                    da = da + dof_invweight0[d2]
                scalar_row(w, s, ra, eq_solimp[ie], pos, vel, da, k, b)
            elif tree.eq_type[e] == _EQ_TENDON:
                t1 = tree.eq_obj1[e]
                t2 = tree.eq_obj2[e]
                c = eq_polycoef[ie]
                pos = s.ten_len[w, t1] - tendon_length0[t1] - c[0]
                vel = s.ten_vel[w, t1]
                da = tendon_invweight0[t1]
                der = T(0.0)
                if t2 >= 0:
                    f, der = coupling(c, s.ten_len[w, t2] - tendon_length0[t2])
                    pos = pos - f
                    vel = vel - der * s.ten_vel[w, t2]
                    da = da + tendon_invweight0[t2]
                for i in range(tree.nv):
                    jv = s.ten_J[w, t1 * tree.nv + i]
                    if t2 >= 0:
                        jv = jv - der * s.ten_J[w, t2 * tree.nv + i]
                    wp.atomic_add(s.eJ, w, ra * tree.nv + i, jv)
                scalar_row(w, s, ra, eq_solimp[ie], pos, vel, da, k, b)
            else:
                b1 = tree.eq_obj1[e]
                b2 = tree.eq_obj2[e]
                weld = tree.eq_type[e] == _EQ_WELD
                # a connect's anchors: body1's then body2's; a weld's: body2's then body1's; the
                # rotations that follow each body's (a weld's relpose after body1's); between
                # sites: the sites' positions and rotations in their bodies
                an1 = eq_anchor1[ie]
                an2 = eq_anchor2[ie]
                r1 = eq_relpose[ie]
                r2 = wp.quat_identity(dtype=T)
                if weld:
                    an1 = eq_anchor2[ie]
                    an2 = eq_anchor1[ie]
                if tree.eq_site[e] != 0:
                    s1 = b1
                    s2 = b2
                    b1 = tree.site_body[s1]
                    b2 = tree.site_body[s2]
                    an1 = site_pos[s1]
                    an2 = site_pos[s2]
                    r1 = site_quat[s1]
                    r2 = site_quat[s2]
                p1 = s.xp[w, b1] + wp.quat_rotate(s.xq[w, b1], an1)
                p2 = s.xp[w, b2] + wp.quat_rotate(s.xq[w, b2], an2)
                pv = p1 - p2
                vv = (s.cvv[w, b1] + wp.cross(s.cvw[w, b1], p1 - s.xp[w, b1])
                      - s.cvv[w, b2] - wp.cross(s.cvw[w, b2], p2 - s.xp[w, b2]))
                jdv = point_bias(w, s, b1, p1) - point_bias(w, s, b2, p2)
                add_point_jacobian(w, tree, s, b1, p1, ra, T(1.0))
                add_point_jacobian(w, tree, s, b2, p2, ra, T(-1.0))
                dist2 = wp.dot(pv, pv)
                rv = V3(T(0.0), T(0.0), T(0.0))
                rw = rv
                rjdv = rv
                if weld:
                    ts = eq_torquescale[ie]
                    qa = s.xq[w, b1] * r1
                    qn = wp.quat_inverse(s.xq[w, b2] * r2)
                    qe = qn * qa
                    rv = V3(qe[0], qe[1], qe[2]) * ts
                    rw = weld_rotation(qn, qa, s.cvw[w, b1] - s.cvw[w, b2], ts)
                    rjdv = weld_rotation_bias(w, s, b1, b2, qn, qa, ts)
                    add_weld_rotation(w, tree, s, b1, ra + 3, T(1.0), qn, qa, ts)
                    add_weld_rotation(w, tree, s, b2, ra + 3, T(-1.0), qn, qa, ts)
                    dist2 = dist2 + wp.dot(rv, rv)
                imp = impedance(eq_solimp[ie], wp.sqrt(dist2))
                dd = T(1.0) / wp.max((T(1.0) - imp) / imp * (body_invweight0[b1] + body_invweight0[b2]), eps)
                for q in range(3):
                    s.eD[w, ra + q] = dd
                    s.eA[w, ra + q] = -b * vv[q] - k * imp * pv[q] - jdv[q]
                if weld:
                    dr = T(1.0) / wp.max((T(1.0) - imp) / imp * (body_invweight0r[b1] + body_invweight0r[b2]), eps)
                    for q in range(3):
                        s.eD[w, ra + 3 + q] = dr
                        s.eA[w, ra + 3 + q] = -b * rw[q] - k * imp * rv[q] - rjdv[q]
        tendon_rows(w, qpos, qvel, t, tree, s, tendon_range, tendon_margin, tendon_solref_lim, tendon_solimp_lim,
                    tendon_frictionloss, tendon_solref_fri, tendon_solimp_fri, tendon_invweight0, jnt_range, jnt_margin,
                    jnt_solref, jnt_solimp, dof_invweight0, h)

    @stored
    @wp.func
    def equality_force(w: int, tree: Tree, s: S, s0: S):
        """The dense rows' generalized force at the constraint solver's acceleration s0.qacc, in
        their states (s.estate), into s.efq, through the rows' J qacc in s.ejar (atomic sums,
        read after their last add: Warp's reverse mode follows them, not loop-carried locals)."""
        nv = tree.nv
        for r in range(tree.nerow):
            s.ejar[w, r] = T(0.0)
        for i in range(nv):
            s.efq[w, i] = T(0.0)
        for r in range(tree.nerow):
            for q in range(nv):
                wp.atomic_add(s.ejar, w, r, s.eJ[w, r * nv + q] * s0.qacc[w, q])
        for r in range(tree.nerow):
            z = s.estate[w, r]
            fr = T(0.0)
            if z == T(QUADRATIC):
                fr = s.eD[w, r] * (s.eA[w, r] - s.ejar[w, r])
            elif z == T(PLUS):
                fr = s.eF[w, r]
            elif z == T(MINUS):
                fr = -s.eF[w, r]
            for i in range(nv):
                wp.atomic_add(s.efq, w, i, s.eJ[w, r * nv + i] * fr)

    @wp.func
    def row_sign(r: int):
        """The Jacobian entry of row r (+1, or -1 for an upper limit)."""
        return wp.where(r % 3 == 1, T(-1.0), T(1.0))

    @wp.func
    def row_state(s: S, w: int, r: int, a: T):
        """The state of row r at the acceleration ``a`` of its dof (kernels/tree: rowZ)."""
        return zone_state(row_sign(r) * a - s.rowA[w, r], s.rowD[w, r], s.rowF[w, r], wp.where(r % 3 == 2, 1, 0), 0)

    @wp.func
    def row_force(s: S, w: int, d: int, a: T):
        """The rows' generalized force on dof d (MuJoCo's qfrc_constraint) at its acceleration
        ``a``, in the rows' stored states."""
        f = T(0.0)
        for k in range(3):
            r = 3 * d + k
            z = s.rowZ[w, r]
            sg = row_sign(r)
            if z == T(QUADRATIC):
                f = f + sg * s.rowD[w, r] * (s.rowA[w, r] - sg * a)
            elif z == T(PLUS):
                f = f + sg * s.rowF[w, r]
            elif z == T(MINUS):
                f = f - sg * s.rowF[w, r]
        return f

    out = dict(joint_limits=joint_limits, constraint_rows=constraint_rows, row_state=row_state, row_force=row_force,
               row_sign=row_sign, equality_rows=equality_rows, equality_force=equality_force, dense_state=dense_state,
               dense_force_at=dense_force_at, zone_force=zone_force)
    return out
