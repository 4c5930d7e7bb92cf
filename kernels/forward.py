"""The looped step (MuJoCo's mj_step with the Euler or implicitfast integrator, or with RK4 four
evaluations of the dynamics combined as mj_RungeKutta does), composed from the stage files.

kinematics -> com_vel -> rne_crb (kernels/smooth.py: the bodies' own inertias and RNE wrenches)
-> tendon lengths and Jacobians where tendons act (kernels/tendon.py)
-> passive (kernels/passive.py) -> actuation (kernels/actuation.py) -> joint limits
(kernels/limits.py) -> qt = passive + actuator + limits + extra; with contacts the geom poses and
the narrow phase (kernels/collision.py) -> per solve: the contact law and dry friction into the
solve's inputs (collision.assemble) -> solve (kernels/solve.py, on the bodies: the bias force
enters as their wrenches) -> qacc += qacc_extra -> semi-implicit Euler on the joint manifolds.
MuJoCo's joint-space terms (M, qfrc_bias: bias_and_mass) are computed only for the stage API.

The same code serves every model with the same features (kernels.tree.Features): sizes, the tree
and the candidate pairs come in ``Tree`` arrays, numbers in the ``Params`` struct (PARAM_SPEC
order, differentiable), intermediates in ``Scratch`` structs (one per solve). Kernels, per
scalar type and features (``build(T, features)``):

- ``rollout_kernel``: steps t .. t + nstep - 1 per world in one launch, forward only.
- the step at index ``t`` of the trajectory arrays in parts, for the backward pass and the
  stage API: ``stage_a_kernel`` (up to qt, and the contact points), per solve
  ``assemble_kernel`` (with contacts or dry friction) and ``solve_kernel``, then
  ``stage_b_kernel`` (Euler). For t = T-1 .. 0 the backward pass runs the rollout kernel for
  step t alone (its intermediates into the scratch), then stage_b in Warp's adjoint mode, per
  solve from the last ``solve_adjoint_kernel`` (hand-written) and assemble in adjoint mode,
  then stage_a in adjoint mode, with the scratch adjoints zeroed per step: the trajectory stays
  O(T (nq + nv)) per world and the scratch is one step's.
- ``stage_full_kernel``: stage_a with M and qfrc_bias, for the stage API (Physics.mass_matrix,
  forward); compiled on its first use.
- with RK4 (``features.rk4``) each step is four evaluations of the stages in the RK arrays
  (kernels.tree.RK_FIELDS: each stage's state, position rate, inputs and acceleration) and their
  combination; the backward pass runs the combination's adjoint (``rk_final_kernel``), then per
  stage from the last its evaluation again (``rk_eval_kernel``), the kernels above in adjoint
  mode on the RK arrays and the adjoint of the stage's state (``rk_prep_kernel``).
- with a residual (``features.residual``, the hybrid model: kernels/residual.py), the rollout
  kernel evaluates it first in every step (its output into qt or the acceleration), and the
  backward pass runs ``residual_adjoint_kernel`` (hand-written) after stage_a's adjoint.
"""
import warp as wp

from ..types import BALL, FREE
from . import actuation as _actuation
from . import collision as _collision
from . import limits as _limits
from . import passive as _passive
from . import residual as _residual
from . import smooth as _smooth
from . import solve as _solve
from . import tendon as _tendon
from .dynamics import shift_inertia_J
from .integration import quat_integrate
from .tree import NO_FEATURES, Tree, aliases, params_type, per_dtype, stored

_FREE, _BALL = wp.constant(FREE), wp.constant(BALL)


@per_dtype
def build(T, features=NO_FEATURES, group=1):
    """The kernels (rollout_kernel, stage_a_kernel, stage_full_kernel, assemble_kernel, solve_kernel,
    stage_b_kernel, solve_adjoint_kernel) and structs (Params, Scratch) for scalar type ``T`` and the model
    ``features`` (kernels.tree.Features: the pair kinds present, implicit contacts, dry friction;
    a contact-free, frictionless model needs none of the collision stage), as a dict.

    Every kernel takes two Scratch structs, one per solve (kernels.tree.SLOT); with one solve
    they are the same struct. ``slot`` selects the solve of assemble_kernel, solve_kernel and
    solve_adjoint_kernel. ``group``: worlds per thread of residual_adjoint_kernel
    (kernels/residual.GROUP on the CPU, 1 on a GPU)."""
    a = aliases(T)
    V3, Q, A3, S, R = a["V3"], a["Q"], a["A3"], a["S"], a["R"]
    P = params_type(T)
    sm = _smooth.make(T, features.fluid)
    kinematics, com_vel, bias_and_mass = sm["kinematics"], sm["com_vel"], sm["bias_and_mass"]
    smooth_adjoint = sm["smooth_adjoint"]
    MJC = features.mjlimits
    passive = _passive.make(T, features.fluid, features.tendon, MJC)["passive"]
    ACT = features.act
    act_mod = _actuation.make(T, features.tendon, features.site, MJC, ACT)
    actuation, next_act = act_mod["actuation"], act_mod["next_act"]
    tendon = _tendon.make(T)["tendon_wrap" if features.tendon == 2 else "tendon"]
    TENDON = features.tendon
    sv = _solve.make(T, features)
    solve, solve_adjoint = sv["solve"], sv["solve_adjoint"]
    # the first solve: with MuJoCo's soft constraints the constraint solver's (kernels/limits.py)
    solve0, solve0_adjoint = sv.get("solve_rows", solve), sv.get("solve_rows_adjoint", solve_adjoint)
    lim = _limits.make(T)
    joint_limits, constraint_rows, equality_rows = lim["joint_limits"], lim["constraint_rows"], lim["equality_rows"]
    col = _collision.make(T, features)
    geom_poses, narrow_phase, assemble = col["geom_poses"], col["narrow_phase"], col["assemble"]
    N = _residual.net_type(T)
    G = group
    residual = _residual.make(T)["residual"]
    residual_adjoint = _residual.make(T, G)["residual_adjoint"]
    RES = features.residual
    CONTACT = bool(features.kinds)
    ASSEMBLE = features.assemble
    TWO = features.nsolve == 2
    RK4 = features.rk4
    GYRO = features.gyro

    @wp.func
    def solved(w: int, d: int, s: S, s1: S):
        """The solve's acceleration of dof d (the second solve's where it ran, s1.lim > 0) and the
        diagonal that solve added to M."""
        acc = s.qacc[w, d]
        dg = s.diag[w, d]
        if wp.static(ASSEMBLE):
            dg = s.dg[w, d]
        if wp.static(TWO):
            two = s1.lim[w, 0] > T(0.0)
            acc = wp.where(two, s1.qacc[w, d], acc)
            dg = wp.where(two, s1.dg[w, d], dg)
        return acc, dg

    @wp.func
    def extra(w: int, d: int, qacc_extra: A3, t: int, s: S):
        """What the step adds to the solve's acceleration of dof d: qacc_extra (and the residual in
        acceleration mode)."""
        acc = qacc_extra[w, t, d]
        if wp.static(RES == "acceleration"):
            acc = acc + s.res[w, d]
        return acc

    @wp.func
    def accel(w: int, d: int, qacc_extra: A3, t: int, s: S, s1: S):
        """The acceleration of dof d the step integrates: the solve's plus ``extra``."""
        acc, dg = solved(w, d, s, s1)
        return acc + extra(w, d, qacc_extra, t, s)

    @wp.func
    def free_gyroscopic(w: int, j: int, b: int, qvel: A3, t: int, tree: Tree, s: S, s1: S, h: T):
        """MuJoCo 4's implicitfast for a free rigid subtree (its root's only joint free, no dofs
        below it; tree.jnt_gyro its number of bodies): the step's acceleration of the joint's 6
        dofs from (Mh + h B) x = Mh a, Mh the block of the matrix the solve factored (the
        subtree's composite inertia, plus the root's own implicit contact stiffness, in the joint's
        coordinates plus the solve's diagonal) and a the solve's acceleration, so that x = (M - h D
        + h B)^-1 qfrc as MuJoCo solves; B = d qfrc_bias / d qvel, the gyroscopic and centripetal
        terms' derivative, which the rest of implicitfast leaves out: with the world angular
        velocity om = R om_l, the centre of mass at c from the origin, I_c the inertia about it,
        d F / d om = m ((om . c) I + om c^T - 2 c om^T),
        d tau / d om = [om]x I_c - [I_c om]x + [c]x d F / d om, and the rows of the rotational dofs
        in the body's frame (R^T ... R). Returns the linear then rotational accelerations."""
        da = tree.jnt_dofadr[j]
        R = wp.quat_to_matrix(s.xq[w, b])
        Rt = wp.transpose(R)
        z = V3(T(0.0), T(0.0), T(0.0))
        s.gm[w, b] = T(0.0)
        s.gh[w, b] = z
        s.gJ[w, b] = wp.outer(z, z)
        for k in range(tree.jnt_gyro[j]):  # the subtree's inertias about the root's origin (atomics:
            bc = b + k                    # Warp's reverse mode does not follow loop-carried sums)
            d = s.xp[w, bc] - s.xp[w, b]
            mc = s.om[w, bc]
            wp.atomic_add(s.gm, w, b, mc)
            wp.atomic_add(s.gh, w, b, s.oh[w, bc] + mc * d)
            wp.atomic_add(s.gJ, w, b, shift_inertia_J(mc, s.oh[w, bc], s.oJ[w, bc], d))
        m = s.gm[w, b]
        hv = s.gh[w, b]
        eye = wp.identity(n=3, dtype=T)
        A = s.gJ[w, b]
        Bm = wp.skew(hv)
        C = m * eye
        if wp.static(features.implicit):
            ss = s
            if wp.static(TWO):
                if s1.lim[w, 0] > T(0.0):
                    ss = s1
            A = A + ss.oA[w, b]
            Bm = Bm + ss.oB[w, b]
            C = C + ss.oC[w, b]
        a1 = z  # the solve's accelerations and diagonal: linear, then rotational dofs
        d1 = z
        a2 = z
        d2 = z
        for k in range(3):
            ak, gk = solved(w, da + k, s, s1)
            a1[k] = ak
            d1[k] = gk
            ak, gk = solved(w, da + 3 + k, s, s1)
            a2[k] = ak
            d2[k] = gk
        m11 = C + wp.diag(d1)
        m12 = wp.transpose(Bm) * R
        m21 = Rt * Bm
        m22 = Rt * A * R + wp.diag(d2)
        b1 = m11 * a1 + m12 * a2
        b2 = m21 * a1 + m22 * a2
        om = R * V3(qvel[w, t, da + 3], qvel[w, t, da + 4], qvel[w, t, da + 5])
        c = hv / m
        Ic = s.gJ[w, b] - m * (wp.dot(c, c) * eye - wp.outer(c, c))
        dF = m * (wp.dot(om, c) * eye + wp.outer(om, c) - T(2.0) * wp.outer(c, om))
        dtau = wp.skew(om) * Ic - wp.skew(Ic * om) + wp.skew(c) * dF
        n12 = m12 + h * dF * R
        n22 = m22 + h * Rt * dtau * R
        i11 = wp.inverse(m11)
        sch = n22 - m21 * i11 * n12
        x2 = wp.inverse(sch) * (b2 - m21 * (i11 * b1))
        x1 = i11 * (b1 - n12 * x2)
        return x1, x2

    @stored
    @wp.func
    def integrate_pos(w: int, qin: A3, ti: int, vel: A3, tv: int, h: T, qout: A3, to: int, tree: Tree):
        """MuJoCo's mj_integratePos: qout[w, to] = qin[w, ti] advanced by the velocity vel[w, tv] over
        h, each joint's coordinates on their manifold (quaternions by quat_integrate)."""
        for j in range(tree.njnt):
            typ = tree.jnt_type[j]
            pa = tree.jnt_qposadr[j]
            da = tree.jnt_dofadr[j]
            if typ == _FREE or typ == _BALL:
                qa = pa
                va = da
                if typ == _FREE:
                    for i in range(3):
                        qout[w, to, pa + i] = qin[w, ti, pa + i] + h * vel[w, tv, da + i]
                    qa = pa + 3
                    va = da + 3
                nq = quat_integrate(Q(qin[w, ti, qa + 1], qin[w, ti, qa + 2], qin[w, ti, qa + 3], qin[w, ti, qa]),
                                    V3(vel[w, tv, va], vel[w, tv, va + 1], vel[w, tv, va + 2]), h)
                qout[w, to, qa] = nq[3]
                qout[w, to, qa + 1] = nq[0]
                qout[w, to, qa + 2] = nq[1]
                qout[w, to, qa + 3] = nq[2]
            else:
                qout[w, to, pa] = qin[w, ti, pa] + h * vel[w, tv, da]

    @wp.func
    def act_rates(w: int, qacc_out: A3, t: int, tree: Tree, s: S):
        """The activations' rates (kernels/actuation.py's s.actdot) after the accelerations,
        qacc_out[w, t, nv + k]: what the step integrates them by."""
        for a in range(tree.nu):
            k = tree.act_adr[a]
            if k >= 0:
                qacc_out[w, t, tree.nv + k] = s.actdot[w, a]

    @wp.func
    def act_advance(w: int, qin: A3, ti: int, rate: A3, tr: int, qout: A3, to: int, tree: Tree, p: P, h: T):
        """MuJoCo's mj_advance for the activations: qout[w, to, nq + k] = the activation of
        qin[w, ti] after h at the rate rate[w, tr, nv + k] (mj_nextActivation: filterexact
        exactly, clamped where actlimited)."""
        for a in range(tree.nu):
            k = tree.act_adr[a]
            if k >= 0:
                qout[w, to, tree.nq + k] = next_act(tree.act_dyn[a], tree.act_flags[a], qin[w, ti, tree.nq + k],
                                                    rate[w, tr, tree.nv + k], h, p.actuator_dynprm[a],
                                                    p.actuator_actrange[a])

    @wp.func
    def free_gyro_step(w: int, qvel: A3, qacc_extra: A3, qacc_out: A3, t: int, tree: Tree, s: S, s1: S, h: T):
        """The Euler step's velocities of the free rigid subtrees' dofs (``free_gyroscopic``)."""
        for j in range(tree.njnt):
            if tree.jnt_gyro[j] != 0:
                x1, x2 = free_gyroscopic(w, j, tree.dof_body[tree.jnt_dofadr[j]], qvel, t, tree, s, s1, h)
                for k in range(6):
                    d = tree.jnt_dofadr[j] + k
                    acc = wp.where(k < 3, x1[k % 3], x2[k % 3]) + extra(w, d, qacc_extra, t, s)
                    qacc_out[w, t, d] = acc
                    qvel[w, t + 1, d] = qvel[w, t, d] + h * acc

    @stored
    @wp.func
    def euler(w: int, qpos: A3, qvel: A3, qacc_extra: A3, qacc_out: A3, t: int, tree: Tree, p: P, s: S, s1: S,
              h: T):
        """qacc (+ extra) into the velocity first, then positions on their manifolds (MuJoCo's
        mj_Euler / mj_integratePos) and the activations; writes step t + 1 of qpos, qvel and
        step t of qacc_out."""
        for d in range(tree.nv):
            own = True  # the free rigid subtrees' dofs take free_gyro_step's acceleration instead
            if wp.static(GYRO):
                own = tree.jnt_gyro[tree.dof_jnt[d]] == 0
            if own:
                acc = accel(w, d, qacc_extra, t, s, s1)
                qacc_out[w, t, d] = acc
                qvel[w, t + 1, d] = qvel[w, t, d] + h * acc
        if wp.static(GYRO):
            free_gyro_step(w, qvel, qacc_extra, qacc_out, t, tree, s, s1, h)
        integrate_pos(w, qpos, t, qvel, t + 1, h, qpos, t + 1, tree)
        if wp.static(ACT):
            act_rates(w, qacc_out, t, tree, s)
            act_advance(w, qpos, t, qacc_out, t, qpos, t + 1, tree, p, h)

    # MuJoCo's RK4 (mj_RungeKutta): stage i's state X_i = X_0 + A_i h F_{i-1} (A = 1/2, 1/2, 1; F
    # = (position rate, acceleration)), the step X_0 + h sum_i B_i F_i (B = 1/6, 1/3, 1/3, 1/6);
    # rotations (ball, free) as Munthe-Kaas's RK on the group, as MuJoCo 4 does: q_i = q_0 exp(A_i h
    # k_{i-1}), their rate k_i = dexp^-1(A_i h k_{i-1}) w_i (found by comparing with mj_step: 4e-15
    # with it; the velocity as the rate is 1e-6 rad off per step at 2 rad/s, dexp^-1 to second
    # order 1e-10)
    RK_B0, RK_B1 = T(1.0 / 6.0), T(1.0 / 3.0)

    @wp.func
    def dexp_inv(th: V3, om: V3):
        """The rate of the exponential coordinates th of a rotation moving at body angular velocity
        om: dexp^-1(th) om = om + th x om / 2 + c(|th|) th x (th x om), c(x) = (1 - (x / 2)
        cot(x / 2)) / x^2 (its series below |th| = 0.1, where the closed form cancels)."""
        n2 = wp.dot(th, th)
        c = T(1.0) / T(12.0) + n2 * (T(1.0) / T(720.0) + n2 * (T(1.0) / T(30240.0) + n2 / T(1209600.0)))
        if n2 >= T(0.01):
            n = wp.sqrt(n2)
            c = (T(1.0) - T(0.5) * n * wp.cos(T(0.5) * n) / wp.sin(T(0.5) * n)) / n2
        x = wp.cross(th, om)
        return om + T(0.5) * x + c * wp.cross(th, x)

    @stored
    @wp.func
    def rk_rates(w: int, i: int, c: T, tree: Tree, rk: R):
        """Stage i's position rate rk.k[w, i] from its velocity and the previous stage's rate (the
        stage's exponential coordinates c k_{i-1}); i = 0: the velocity itself."""
        for j in range(tree.njnt):
            typ = tree.jnt_type[j]
            da = tree.jnt_dofadr[j]
            ra = da
            if typ == _FREE:
                for e in range(3):
                    rk.k[w, i, da + e] = rk.v[w, i, da + e]
                ra = da + 3
            if typ == _FREE or typ == _BALL:
                om = V3(rk.v[w, i, ra], rk.v[w, i, ra + 1], rk.v[w, i, ra + 2])
                kk = om
                if i > 0:
                    kk = dexp_inv(V3(rk.k[w, i - 1, ra], rk.k[w, i - 1, ra + 1], rk.k[w, i - 1, ra + 2]) * c, om)
                for e in range(3):
                    rk.k[w, i, ra + e] = kk[e]
            else:
                rk.k[w, i, da] = rk.v[w, i, da]

    @stored
    @wp.func
    def rk_prep(w: int, qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, t: int, i: int, tree: Tree,
                h: T, rk: R):
        """RK4 stage i's state and position rate into slot i of the rk arrays (step t's state for i
        = 0, else X_0 + A_i h F_{i-1}, positions on their manifolds) and step t's inputs beside it."""
        for a in range(tree.nu):
            rk.c[w, i, a] = ctrl[w, t, a]
        for d in range(tree.nv):
            rk.fe[w, i, d] = qfrc_extra[w, t, d]
            rk.ae[w, i, d] = qacc_extra[w, t, d]
        c = wp.where(i == 3, h, T(0.5) * h)
        if i == 0:
            for k in range(tree.nq + tree.na):
                rk.q[w, 0, k] = qpos[w, t, k]
            for d in range(tree.nv):
                rk.v[w, 0, d] = qvel[w, t, d]
        else:
            for d in range(tree.nv):
                rk.v[w, i, d] = qvel[w, t, d] + c * rk.a[w, i - 1, d]
            integrate_pos(w, qpos, t, rk.k, i - 1, c, rk.q, i, tree)
            for k in range(tree.na):  # the activations unclamped within the step, as MuJoCo's
                rk.q[w, i, tree.nq + k] = qpos[w, t, tree.nq + k] + c * rk.a[w, i - 1, tree.nv + k]
        rk_rates(w, i, c, tree, rk)

    @stored
    @wp.func
    def rk_final(w: int, qpos: A3, qvel: A3, qacc_out: A3, t: int, tree: Tree, p: P, h: T, rk: R):
        """Step t + 1 from the four stages: the velocity by the B-weighted acceleration (also step t
        of qacc_out: what the step integrated), the positions by the B-weighted rate (slot 4 of
        rk.k), as MuJoCo's mj_advance after mj_RungeKutta; the activations by their B-weighted rate
        (qacc_out[w, t, nv + k]) through mj_nextActivation."""
        for k in range(tree.na):
            qacc_out[w, t, tree.nv + k] = (RK_B0 * rk.a[w, 0, tree.nv + k] + RK_B1 * rk.a[w, 1, tree.nv + k]
                                           + RK_B1 * rk.a[w, 2, tree.nv + k] + RK_B0 * rk.a[w, 3, tree.nv + k])
        for d in range(tree.nv):
            acc = RK_B0 * rk.a[w, 0, d] + RK_B1 * rk.a[w, 1, d] + RK_B1 * rk.a[w, 2, d] + RK_B0 * rk.a[w, 3, d]
            qacc_out[w, t, d] = acc
            qvel[w, t + 1, d] = qvel[w, t, d] + h * acc
            rk.k[w, 4, d] = (RK_B0 * rk.k[w, 0, d] + RK_B1 * rk.k[w, 1, d] + RK_B1 * rk.k[w, 2, d]
                             + RK_B0 * rk.k[w, 3, d])
        integrate_pos(w, qpos, t, rk.k, 4, h, qpos, t + 1, tree)
        if wp.static(ACT):
            act_advance(w, qpos, t, qacc_out, t, qpos, t + 1, tree, p, h)

    def stage_smooth_of(FULL):
        rne = sm["rne_crb"] if FULL else sm["rne_crb_fwd"]  # a dict's item is no name Warp resolves

        @stored
        @wp.func
        def stage_smooth(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, p: P, s: S):
            """kinematics -> com_vel -> rne_crb (rne_crb_fwd without ``FULL``): the step's smooth
            dynamics up to the bodies' own terms; the hand-written smooth_adjoint reverses the
            step's (not ``FULL``)."""
            kinematics(w, qpos, t, tree, s, p.body_pos, p.body_quat, p.jnt_pos, p.jnt_axis, p.qpos0)
            com_vel(w, qvel, t, tree, s)
            rne(w, tree, s, p.body_ipos, p.body_iquat, p.body_mass, p.body_inertia, p.body_gravcomp, p.gravity,
                p.fluid_density, p.fluid_viscosity, p.wind)
        return stage_smooth

    def stage_a_of(FULL, SMOOTH=True):
        smooth = stage_smooth_of(FULL)

        @stored
        @wp.func
        def stage_a(w: int, qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                    tree: Tree, p: P, s: S, s1: S):
            """Everything before the collision stage and the solve: the bodies' own inertias and
            RNE wrenches, the solve's diagonal (armature and implicit terms) and the generalized
            force qt without the bias force, contacts and dry friction (and the geom poses), which
            is what the solve and its adjoint read. With ``FULL`` (``stage_full``, the stage API)
            also MuJoCo's joint-space terms: the composite inertias, M and qfrc_bias. Without
            ``SMOOTH`` (``stage_rest``) all but :func:`stage_smooth`, whose adjoint is
            hand-written (the backward pass runs stage_rest's adjoint, then smooth_adjoint)."""
            h = p.timestep[0]
            s.G[w, 0] = -p.gravity[0]
            if wp.static(SMOOTH):
                smooth(w, qpos, qvel, t, tree, p, s)
            if wp.static(TENDON):
                tendon(w, qpos, qvel, t, tree, s, p.site_pos, p.wrap_prm, p.geom_pos, p.geom_quat, p.geom_size)
            if wp.static(CONTACT):
                geom_poses(w, tree, s, p.geom_pos, p.geom_quat)
                narrow_phase(w, tree, p, s)
            if wp.static(FULL):
                bias_and_mass(w, tree, s, p.dof_armature)
            passive(w, qpos, qvel, t, tree, s, p.jnt_stiffness, p.qpos_spring, p.dof_damping, p.dof_coulomb,
                    p.dof_coulomb_vel, p.tendon_stiffness, p.tendon_lengthspring, p.tendon_damping, h)
            actuation(w, qpos, qvel, ctrl, t, tree, s, p.actuator_gain, p.actuator_bias, p.actuator_gear,
                      p.actuator_ctrlrange, p.actuator_forcerange, p.jnt_actfrcrange, p.tendon_actfrcrange, p.site_pos,
                      p.site_quat, p.actuator_gear_force, p.actuator_gear_torque, p.actuator_gain_affine,
                      p.actuator_dynprm, p.actuator_actrange, h)
            if wp.static(MJC):
                constraint_rows(w, qpos, qvel, t, tree, s, p.jnt_range, p.jnt_margin, p.jnt_solref, p.jnt_solimp,
                                p.dof_frictionloss, p.dof_solref, p.dof_solimp, p.dof_invweight0, h)
                equality_rows(w, qpos, qvel, t, tree, s, p.qpos0, p.dof_invweight0, p.body_invweight0,
                              p.body_invweight0r, p.eq_solref, p.eq_solimp, p.eq_polycoef, p.eq_anchor1, p.eq_anchor2,
                              p.eq_relpose, p.eq_torquescale, p.tendon_length0, p.tendon_invweight0,
                              p.site_pos, p.site_quat, p.tendon_range, p.tendon_margin, p.tendon_solref_lim,
                              p.tendon_solimp_lim, p.tendon_frictionloss, p.tendon_solref_fri, p.tendon_solimp_fri,
                              p.jnt_range, p.jnt_margin, p.jnt_solref, p.jnt_solimp, h)
            else:
                joint_limits(w, qpos, qvel, t, tree, s, p.jnt_range, p.jnt_margin, p.dof_meff, p.jnt_limit_stiffness,
                             p.jnt_limit_damping, p.contact_tau[0], h)
            for d in range(tree.nv):
                qt = s.qfrc_passive[w, d] + s.qfrc_actuator[w, d] + qfrc_extra[w, t, d]
                if wp.static(not MJC):
                    qt = qt + s.qfrc_constraint[w, d]
                if wp.static(RES == "force"):
                    qt = qt + s.res[w, d]
                s.qt[w, d] = qt
                wp.atomic_add(s.diag, w, d, p.dof_armature[d])
        return stage_a

    stage_a, stage_full, stage_rest = stage_a_of(False), stage_a_of(True), stage_a_of(False, False)

    @stored
    @wp.func
    def stage_b(w: int, qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                tree: Tree, p: P, s: S, s1: S):
        """Everything after the solve: the Euler step; with RK4 (the arrays then a stage's: rk_eval)
        only the stage's acceleration into qacc_out[w, t]."""
        if wp.static(RK4):
            for d in range(tree.nv):
                qacc_out[w, t, d] = accel(w, d, qacc_extra, t, s, s1)
            if wp.static(ACT):
                act_rates(w, qacc_out, t, tree, s)
        else:
            euler(w, qpos, qvel, qacc_extra, qacc_out, t, tree, p, s, s1, p.timestep[0])

    @wp.func(inline=True)
    def dynamics(w: int, qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                 tree: Tree, p: P, s: S, s1: S, net: N, deriv: int, res: int):
        """The step's stages at index t of the arrays (the residual where ``res``, stage_a, per solve
        the collision / dry-friction stage and the solve, stage_b) for RK4: an RK stage's
        acceleration (the arrays the rk arrays, t the stage; the residual is the first stage's in
        every stage, as a qfrc_extra of the step would be). The rollout kernel's Euler step runs
        the same sequence written out."""
        if wp.static(RES != ""):
            if res != 0:
                residual(w, qpos, qvel, ctrl, t, tree.nv, net, s, deriv)
        stage_a(w, qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s, s1)
        if wp.static(ASSEMBLE):
            assemble(w, 0, qvel, qacc_extra, t, tree, p, s, s)
        solve0(w, tree, p, s)
        if wp.static(TWO):
            assemble(w, 1, qvel, qacc_extra, t, tree, p, s1, s)
            if s1.lim[w, 0] > T(0.0):
                solve(w, tree, p, s1)
        stage_b(w, qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s, s1)

    @wp.kernel(enable_backward=False, module="unique")
    def rollout_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                       nstep: int, deriv: int, tree: Tree, p: P, s: S, s1: S, net: N, rk: R):
        """Steps t .. t + nstep - 1 (the rollout: from 0; the backward pass: one step at a time,
        leaving its intermediates in the scratch, with ``deriv`` = 1: the residual also keeps its
        activations' derivatives). With RK4 each step is four stage evaluations in the rk arrays
        (``rk``; the scratch is then the last stage's), then their combination."""
        w = wp.tid()
        for k in range(nstep):
            ts = t + k
            if wp.static(RK4):
                h = p.timestep[0]
                for i in range(tree.nstage):
                    rk_prep(w, qpos, qvel, ctrl, qfrc_extra, qacc_extra, ts, i, tree, h, rk)
                    first = wp.where(i == 0, 1, 0)  # the residual: once per step, at its state
                    dynamics(w, rk.q, rk.v, rk.c, rk.fe, rk.ae, rk.a, i, tree, p, s, s1, net, deriv, first)
                rk_final(w, qpos, qvel, qacc_out, ts, tree, p, h, rk)
            else:
                # dynamics' sequence written out: called (forced inline or not) it cost the
                # contact tree 2.4% and the hybrid rollout up to 22% of their throughput
                if wp.static(RES != ""):
                    residual(w, qpos, qvel, ctrl, ts, tree.nv, net, s, deriv)
                stage_a(w, qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, ts, tree, p, s, s1)
                if wp.static(ASSEMBLE):
                    assemble(w, 0, qvel, qacc_extra, ts, tree, p, s, s)
                solve0(w, tree, p, s)
                if wp.static(TWO):
                    assemble(w, 1, qvel, qacc_extra, ts, tree, p, s1, s)
                    if s1.lim[w, 0] > T(0.0):
                        solve(w, tree, p, s1)
                stage_b(w, qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, ts, tree, p, s, s1)

    # RK4's backward pass (kernels of their own: the rollout kernel's step t first fills the rk
    # arrays): the combination's adjoint, then per stage from the last its evaluation again
    # (rk_eval_kernel: its intermediates into the scratch; the residual's, the first stage's,
    # stay from the rollout kernel's), the stage's adjoint (the kernels below on the rk arrays, t
    # the stage; the residual's after the first stage's) and rk_prep's
    @wp.kernel(enable_backward=False, module="unique")
    def rk_eval_kernel(i: int, tree: Tree, p: P, s: S, s1: S, net: N, rk: R):
        w = wp.tid()
        dynamics(w, rk.q, rk.v, rk.c, rk.fe, rk.ae, rk.a, i, tree, p, s, s1, net, 1, 0)

    @wp.kernel(module="unique")
    def rk_prep_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, t: int, i: int, tree: Tree,
                       p: P, rk: R):
        rk_prep(wp.tid(), qpos, qvel, ctrl, qfrc_extra, qacc_extra, t, i, tree, p.timestep[0], rk)

    @wp.kernel(module="unique")
    def rk_final_kernel(qpos: A3, qvel: A3, qacc_out: A3, t: int, tree: Tree, p: P, rk: R):
        rk_final(wp.tid(), qpos, qvel, qacc_out, t, tree, p, p.timestep[0], rk)

    # one step in parts, for the backward pass: stage_a, assemble and stage_b forward and in Warp's
    # adjoint mode, the solves forward and through their hand-written adjoint in between
    @wp.kernel(module="unique")
    def stage_a_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                       tree: Tree, p: P, s: S, s1: S):
        stage_a(wp.tid(), qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s, s1)

    @wp.kernel(module="unique")
    def stage_rest_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                          tree: Tree, p: P, s: S, s1: S):
        stage_rest(wp.tid(), qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s, s1)

    @wp.kernel(enable_backward=False, module="unique")
    def smooth_adjoint_kernel(qpos: A3, qvel: A3, adj_qpos: A3, adj_qvel: A3, t: int, tree: Tree, p: P, pg: P,
                              gp: int, s: S, sa: S):
        """stage_smooth's hand-written adjoint at step t (after stage_rest's adjoint): pg, the
        parameters' adjoints, accumulated where gp != 0."""
        smooth_adjoint(wp.tid(), qpos, qvel, adj_qpos, adj_qvel, t, tree, s, sa, p, pg, gp)

    @wp.kernel(module="unique")
    def stage_full_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                          tree: Tree, p: P, s: S, s1: S):
        stage_full(wp.tid(), qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s, s1)

    @wp.kernel(module="unique")
    def stage_b_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                       tree: Tree, p: P, s: S, s1: S):
        stage_b(wp.tid(), qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s, s1)

    @wp.kernel(module="unique")
    def assemble_kernel(qvel: A3, qacc_extra: A3, t: int, slot: int, tree: Tree, p: P, s: S, s0: S):
        """The inputs of solve ``slot`` into ``s`` (that slot's struct; ``s0`` slot 0's)."""
        assemble(wp.tid(), slot, qvel, qacc_extra, t, tree, p, s, s0)

    @wp.kernel(enable_backward=False, module="unique")
    def solve_kernel(tree: Tree, p: P, s: S, slot: int):
        w = wp.tid()
        if slot == 0:
            solve0(w, tree, p, s)
        elif s.lim[w, 0] > T(0.0):
            solve(w, tree, p, s)

    @wp.kernel(enable_backward=False, module="unique")
    def solve_adjoint_kernel(tree: Tree, p: P, s: S, sa: S, slot: int):
        w = wp.tid()
        if slot == 0:
            solve0_adjoint(w, tree, p, s, sa)
        elif s.lim[w, 0] > T(0.0):
            solve_adjoint(w, tree, p, s, sa)

    @wp.kernel(enable_backward=False, module="unique")
    def residual_adjoint_kernel(qpos: A3, ctrl: A3, t: int, nworld: int, tree: Tree, net: N, gnet: N, s: S, sa: S,
                                adj_qpos: A3, adj_qvel: A3, adj_ctrl: A3):
        """The residual's adjoint at step t for worlds G tid .. G tid + G - 1 (below ``nworld``)."""
        w0 = wp.tid() * G
        residual_adjoint(w0, wp.min(G, nworld - w0), qpos, ctrl, t, tree.nv, net, gnet, s, sa, adj_qpos, adj_qvel,
                         adj_ctrl)

    out = dict(rollout_kernel=rollout_kernel, stage_a_kernel=stage_a_kernel, stage_full_kernel=stage_full_kernel,
               stage_b_kernel=stage_b_kernel,
               solve_kernel=solve_kernel, solve_adjoint_kernel=solve_adjoint_kernel, Params=P, Scratch=S, Net=N,
               RK=R)
    if not features.fluid:  # the fluid wrench has no hand-written adjoint: stage_a's adjoint is Warp's
        out.update(stage_rest_kernel=stage_rest_kernel, smooth_adjoint_kernel=smooth_adjoint_kernel)
    if RES:
        out["residual_adjoint_kernel"] = residual_adjoint_kernel
    if RK4:
        out.update(rk_eval_kernel=rk_eval_kernel, rk_prep_kernel=rk_prep_kernel, rk_final_kernel=rk_final_kernel)
    if ASSEMBLE:
        out["assemble_kernel"] = assemble_kernel
    return out


@per_dtype
def build_kinematics(T):
    """``kinematics_kernel(qpos [world, 1, nq], tree, p, s)``: the kinematics stage alone (the same
    ``smooth.kinematics`` every step runs), for body poses without the rest of the step (task costs,
    Physics.kinematics). It depends on the scalar type only, so one module serves every model."""
    a = aliases(T)
    A3, S = a["A3"], a["S"]
    P = params_type(T)
    kinematics = _smooth.make(T)["kinematics"]

    @wp.kernel(module="unique")
    def kinematics_kernel(qpos: A3, tree: Tree, p: P, s: S):
        kinematics(wp.tid(), qpos, 0, tree, s, p.body_pos, p.body_quat, p.jnt_pos, p.jnt_axis, p.qpos0)

    return {"kinematics_kernel": kinematics_kernel}
