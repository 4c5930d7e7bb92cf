"""The linear solve (M + diag) qacc = qf (MuJoCo's mj_factorM / mj_solveM), looped over the tree
in the articulated-body form, with a hand-written adjoint.

``diag`` holds M's armature and what the step integrates implicitly: h * damping (Euler with
eulerdamp) and the joint limits' implicit share (kernels/limits.py); with implicit contacts the
solve also adds each body's own contact stiffness (oA, oB, oC: the spatial matrices whose sum
J^T K J is the contact's share of the system).

M is never formed. M = sum_b J_b^T I_b J_b + diag(armature) is a sum of spatial
inertias I_b (kernels/smooth.py keeps each body's own, about its origin), and the same
factorization MuJoCo computes on M's entries can be computed on the bodies instead
(Featherstone's articulated-body recursion, with zero velocity and gravity): from the leaves to
the root, per dof i of body b (its dofs from the last to the first, each body's articulated
inertia I^A starting from its own inertia plus its children's projections shifted to its origin)

    U_i = I^A S_i,   D_i = S_i . U_i + diag_i,   I^A <- I^A - U_i U_i^T / D_i,

then for a right-hand side r: p^A (the bias wrench, from the leaves) u_i = r_i - S_i . p^A,
p^A <- p^A + U_i u_i / D_i; and from the root the acceleration a (the parent's shifted to the body's
origin) x_i = (u_i - U_i . a) / D_i, a <- a + S_i x_i. This is an LDL^T of M + diag in the tree's
order, O(nv) for a chain instead of O(nv^3), and it matters for precision: the pivots D_i of a long
chain are small articulated inertias, which a factorization of M's entries (large composite
inertias) obtains by cancellation, costing float32 a factor of the chain's condition number
(measured on a 16-link chain, one step from random states: 1.7e-4 relative in qvel with M
factored in float32; MuJoCo's own M rounded to float32 and solved exactly in float64 already
misses qacc by 2.6e-5 of its largest entry).

The forward code accumulates in registers and overwrites its work arrays, which Warp's reverse
mode cannot follow; the adjoint is written by hand instead (``solve_adjoint``), on the bodies as
well. The solve's result x satisfies R(x) = 0 with

    R_i = S_i . sum over the subtree of dof i's body of (I_b A_b + K_b X_b + f_b) + diag_i x_i - rhs_i,

X_b the motion of body b from x (its ancestors' dofs' S_j x_j shifted to its origin), A_b = X_b +
(0, -gravity), I_b its own inertia (om, oh, oJ), K_b its own contact stiffness (oA, oB, oC) and
f_b its own RNE wrench (ofn, off). With g = (M + diag)^-1 adj_x (the same factor: the system is
symmetric) the adjoint of any input theta is -d/dtheta of g . R(x) at fixed x and g, and
g . R = sum_b G_b . (I_b A_b + K_b X_b + f_b) + sum_i g_i (diag_i x_i - rhs_i) with G_b the motion
of body b from g, so every input's adjoint is a product of per-body motions and (subtree) wrenches:
O(nbody + nv), and M is never needed (see ``solve_adjoint`` for the terms).
"""
import warp as wp

from . import limits as _limits
from .contact import shift_moment, shift_stiffness, skew
from .dynamics import shift_motion_v
from .tree import NO_FEATURES, Tree, aliases, per_dtype


@per_dtype
def make(T, features=NO_FEATURES):
    """``solve`` and ``solve_adjoint`` for scalar ``T``. With a collision / dry-friction stage
    (``features.assemble``) the solve reads its slot's right-hand side ``qts`` and diagonal ``dg``
    instead of ``qt`` and ``diag``, and with implicit contacts adds its slot's own body
    stiffness (oA, oB, oC) to the bodies' inertias."""
    a = aliases(T)
    S, P, V3 = a["S"], a["P"], a["V3"]
    SLOTS = features.assemble
    DM = features.implicit

    MJC = features.mjlimits
    # the refinement's code (substitute's bias 2) only where some model needs it: present and
    # unused it cost the linkage model 13% of its throughput
    REFINE = features.refine
    #: float32 models with dense rows refine the constraint solve's optimum once
    #: (``refine_dense``: its own residual pass, not substitute's bias 2, whose presence slows every substitution)
    REFINE_DENSE = MJC and T == wp.float32
    lim = _limits.make(T)
    row_state, row_sign = lim["row_state"], lim["row_sign"]
    dense_state, dense_force_at, zone_force = lim["dense_state"], lim["dense_force_at"], lim["zone_force"]

    @wp.func
    def factor(w: int, tree: Tree, p: P, s: S, dga: wp.array2d(dtype=T)):
        """Per dof U_i (s.Un, s.Uf) and D_i (s.D) of M + dga, from the leaves up; s.iA, iB, iC:
        the articulated inertias, summed into each parent as its children finish."""
        z = V3(T(0.0), T(0.0), T(0.0))
        zm = wp.outer(z, z)
        eye = wp.identity(n=3, dtype=T)
        for b in range(tree.nbody):
            A = zm
            B = zm
            C = zm
            if tree.body_moving[b] != 0:
                A = s.oJ[w, b]
                B = skew(s.oh[w, b])
                C = s.om[w, b] * eye
                if wp.static(DM):
                    A = A + s.oA[w, b]
                    B = B + s.oB[w, b]
                    C = C + s.oC[w, b]
            s.iA[w, b] = A
            s.iB[w, b] = B
            s.iC[w, b] = C
        for kk in range(tree.nbody - 1):
            b = tree.nbody - 1 - kk
            if tree.body_moving[b] == 0:
                continue
            A = s.iA[w, b]
            B = s.iB[w, b]
            C = s.iC[w, b]
            adr = tree.body_dofadr[b]
            n = tree.body_dofnum[b]
            for q in range(n):
                i = adr + n - 1 - q
                sw = s.cdw[w, i]
                sv = s.cdv[w, i]
                un = A * sw + B * sv
                uf = wp.transpose(B) * sw + C * sv
                d = wp.dot(sw, un) + wp.dot(sv, uf) + dga[w, i]
                s.Un[w, i] = un
                s.Uf[w, i] = uf
                s.D[w, i] = d
                A = A - wp.outer(un, un) / d
                B = B - wp.outer(un, uf) / d
                C = C - wp.outer(uf, uf) / d
            pb = tree.body_parent[b]
            if tree.body_moving[pb] != 0:
                A2, B2 = shift_stiffness(A, B, C, s.xd[w, b])
                s.iA[w, pb] = s.iA[w, pb] + A2
                s.iB[w, pb] = s.iB[w, pb] + B2
                s.iC[w, pb] = s.iC[w, pb] + C

    @wp.func
    def body_wrench(w: int, b: int, s: S, xw: V3, xv: V3, Gg: V3):
        """Body b's own I_b A_b + K_b X_b + f_b for its motion X_b = (xw, xv), A_b = X_b + (0, Gg):
        the terms of R(x) (module docstring) that the body contributes to its subtree's sum."""
        m = s.om[w, b]
        h = s.oh[w, b]
        av = xv + Gg
        wn = s.oJ[w, b] * xw + wp.cross(h, av) + s.ofn[w, b]
        wf = m * av - wp.cross(h, xw) + s.off[w, b]
        if wp.static(DM):
            B = s.oB[w, b]
            wn = wn + s.oA[w, b] * xw + B * xv
            wf = wf + wp.transpose(B) * xw + s.oC[w, b] * xv
        return wn, wf

    @wp.func
    def substitute(w: int, tree: Tree, p: P, s: S, rhs: wp.array2d(dtype=T), out: wp.array2d(dtype=T),
                   bias: int):
        """out = (M + diag)^-1 (rhs - bias) with the factor: the bias wrenches from the leaves
        (s.ipn, ipf; u_i into s.uu), then the accelerations from the root (s.aw, av). With
        ``bias`` 1 the bias force comes as the bodies' own RNE wrenches (s.ofn, off) and gravity as
        the world's acceleration (with implicit contacts in the wrenches: the bodies' contact
        stiffness must not act on it), so the joint-space bias (large sums at the root) is never
        formed: ``rhs`` is then qf without it (qt, qts); with 0 the bias is zero.

        ``bias`` 2 refines ``out``, the solution a substitution with the bias just wrote (its
        bodies' accelerations still in s.aw, av: gravity included there unless the bodies carry
        contact stiffness), by one step of iterative refinement: the residual -R(x) of the
        equation (module docstring) formed on the bodies in the same pass from the leaves (each
        body's own I A + K X + f, summed over its subtree in s.swn, swf), then out += (M + diag)^-1
        (-R(x)). For float32 (``tree.refine``): on a long chain the factor's rounding leaves the
        solution several times further from the exact one than the forces' own rounding, and the
        residual, formed on the bodies, is as accurate as the forces (a 16-link chain, one step
        from random states: tests/test_looped.py's test_looped_float32_long_chains)."""
        z = V3(T(0.0), T(0.0), T(0.0))
        Gg = z
        if wp.static(DM):
            Gg = s.G[w, 0]
        for b in range(tree.nbody):
            s.ipn[w, b] = z
            s.ipf[w, b] = z
            if wp.static(REFINE):
                if bias == 2:
                    s.swn[w, b] = z
                    s.swf[w, b] = z
            if bias == 1 and tree.body_moving[b] != 0:
                s.ipn[w, b] = s.ofn[w, b]
                s.ipf[w, b] = s.off[w, b]
                if wp.static(DM):
                    # the bodies' contact stiffness must not act on gravity: it goes in the wrenches
                    s.ipn[w, b] = s.ofn[w, b] + wp.cross(s.oh[w, b], Gg)
                    s.ipf[w, b] = s.off[w, b] + s.om[w, b] * Gg
        for kk in range(tree.nbody - 1):
            b = tree.nbody - 1 - kk
            if tree.body_moving[b] == 0:
                continue
            pn = s.ipn[w, b]
            pf = s.ipf[w, b]
            wn = z
            wf = z
            if wp.static(REFINE):
                if bias == 2:
                    own_n, own_f = body_wrench(w, b, s, s.aw[w, b], s.av[w, b], Gg)
                    wn = s.swn[w, b] + own_n
                    wf = s.swf[w, b] + own_f
            adr = tree.body_dofadr[b]
            n = tree.body_dofnum[b]
            for q in range(n):
                i = adr + n - 1 - q
                r = rhs[w, i]
                if wp.static(REFINE):
                    if bias == 2:
                        dgi = s.diag[w, i]
                        if wp.static(SLOTS):
                            dgi = s.dg[w, i]
                        r = r - dgi * out[w, i] - wp.dot(s.cdw[w, i], wn) - wp.dot(s.cdv[w, i], wf)
                u = r - wp.dot(s.cdw[w, i], pn) - wp.dot(s.cdv[w, i], pf)
                s.uu[w, i] = u
                c = u / s.D[w, i]
                pn = pn + s.Un[w, i] * c
                pf = pf + s.Uf[w, i] * c
            pb = tree.body_parent[b]
            if tree.body_moving[pb] != 0:
                d = s.xd[w, b]
                s.ipn[w, pb] = s.ipn[w, pb] + shift_moment(pn, pf, d)
                s.ipf[w, pb] = s.ipf[w, pb] + pf
                if wp.static(REFINE):
                    if bias == 2:
                        s.swn[w, pb] = s.swn[w, pb] + shift_moment(wn, wf, d)
                        s.swf[w, pb] = s.swf[w, pb] + wf
        for b in range(1, tree.nbody):
            if tree.body_moving[b] == 0:
                continue
            pb = tree.body_parent[b]
            aw = z
            av = z
            if bias == 1 and not wp.static(DM):
                av = s.G[w, 0]
            if tree.body_moving[pb] != 0:
                aw = s.aw[w, pb]
                av = shift_motion_v(aw, s.av[w, pb], -s.xd[w, b])
            adr = tree.body_dofadr[b]
            for q in range(tree.body_dofnum[b]):
                i = adr + q
                x = (s.uu[w, i] - wp.dot(s.Un[w, i], aw) - wp.dot(s.Uf[w, i], av)) / s.D[w, i]
                y = x  # with bias 2 the correction x is added to the solution
                if wp.static(REFINE):
                    if bias == 2:
                        y = out[w, i] + x
                out[w, i] = y
                aw = aw + s.cdw[w, i] * x
                av = av + s.cdv[w, i] * x
            s.aw[w, b] = aw
            s.av[w, b] = av

    @wp.func
    def solve(w: int, tree: Tree, p: P, s: S):
        """s.qacc = (M + diag)^-1 (qt - qfrc_bias) (with a collision stage qts for qt), the factor
        in s; the bias force enters as the bodies' own wrenches and gravity (see ``substitute``);
        then one step of iterative refinement where ``tree.refine`` (``substitute`` with bias 2)."""
        if wp.static(SLOTS):
            factor(w, tree, p, s, s.dg)
            substitute(w, tree, p, s, s.qts, s.qacc, 1)
            if wp.static(REFINE):
                if tree.refine != 0:
                    substitute(w, tree, p, s, s.qts, s.qacc, 2)
        else:
            factor(w, tree, p, s, s.diag)
            substitute(w, tree, p, s, s.qt, s.qacc, 1)
            if wp.static(REFINE):
                if tree.refine != 0:
                    substitute(w, tree, p, s, s.qt, s.qacc, 2)

    @wp.func
    def row_count(w: int, tree: Tree, s: S):
        """The number of instantiated soft-constraint rows (kernels/limits.py)."""
        n = int(0)  # noqa: UP018 (Warp: a literal is a constant, which a dynamic loop may not change)
        for r in range(3 * tree.nv):
            if s.rowD[w, r] > T(0.0):
                n += 1
        for r in range(tree.nerow):
            if s.eD[w, r] > T(0.0):
                n += 1
        return n

    @wp.func
    def row_system(w: int, tree: Tree, s: S):
        """The constraint solver's system in the rows' states: s.cdg = dg without the step's
        implicit share (MuJoCo's constraint solver works with M) plus D of the quadratic rows,
        s.crhs = qts plus their D aref and the bounds of the rows at a bound."""
        for i in range(tree.nv):
            dg = s.dg[w, i] - s.idg[w, i]
            rhs = s.qts[w, i]
            for k in range(3):
                r = 3 * i + k
                z = s.rowZ[w, r]
                sg = row_sign(r)
                if z == T(1.0):
                    dg = dg + s.rowD[w, r]
                    rhs = rhs + sg * s.rowD[w, r] * s.rowA[w, r]
                elif z == T(2.0):
                    rhs = rhs + sg * s.rowF[w, r]
                elif z == T(3.0):
                    rhs = rhs - sg * s.rowF[w, r]
            s.cdg[w, i] = dg
            s.crhs[w, i] = rhs

    @wp.func
    def row_dot(s: S, w: int, r: int, nv: int, x: wp.array2d(dtype=T)):
        """Equality row r's Jacobian times x[w]."""
        v = T(0.0)
        for i in range(nv):
            v = v + s.eJ[w, r * nv + i] * x[w, i]
        return v

    @wp.func
    def dense_on(s: S, w: int, r: int):
        """1 for a dense row in its quadratic piece (the rows the Woodbury factors carry)."""
        return wp.where(s.estate[w, r] == T(1.0), 1, 0)

    @wp.func
    def schur_solve(w: int, tree: Tree, s: S):
        """s.elam = S^-1 s.ey with S's Cholesky factor in s.eS (lower triangle, row-major)."""
        ne = tree.nerow
        for r in range(ne):
            v = s.ey[w, r]
            for q in range(r):
                v = v - s.eS[w, r * ne + q] * s.elam[w, q]
            s.elam[w, r] = v / s.eS[w, r * ne + r]
        for rr in range(ne):
            r = ne - 1 - rr
            v = s.elam[w, r]
            for q in range(r + 1, ne):
                v = v - s.eS[w, q * ne + r] * s.elam[w, q]
            s.elam[w, r] = v / s.eS[w, r * ne + r]

    @wp.func
    def schur_factor(w: int, tree: Tree, p: P, s: S):
        """The dense rows' K^-1 J^T (s.eZ, K the factored system of the diagonal rows) and the
        Cholesky factor of S = 1/D + J K^-1 J^T (s.eS): (K + J^T D J)^-1 = K^-1 - Z^T S^-1 Z, over
        the rows in their quadratic piece (``dense_on``; the others' rows and columns of S are
        the identity's, their Z zero)."""
        ne = tree.nerow
        nv = tree.nv
        for r in range(ne):
            if dense_on(s, w, r) != 0:
                for i in range(nv):
                    s.ecol[w, i] = s.eJ[w, r * nv + i]
                substitute(w, tree, p, s, s.ecol, s.eout, 0)
                for i in range(nv):
                    s.eZ[w, r * nv + i] = s.eout[w, i]
            else:
                for i in range(nv):
                    s.eZ[w, r * nv + i] = T(0.0)
        for r in range(ne):
            on = dense_on(s, w, r)
            for q in range(r + 1):
                v = T(0.0)
                if on != 0:
                    for i in range(nv):
                        v = v + s.eJ[w, r * nv + i] * s.eZ[w, q * nv + i]
                if q == r:
                    v = v + wp.where(on != 0, T(1.0) / s.eD[w, r], T(1.0))
                for k in range(q):
                    v = v - s.eS[w, r * ne + k] * s.eS[w, q * ne + k]
                if q == r:
                    s.eS[w, r * ne + r] = wp.sqrt(v)
                else:
                    s.eS[w, r * ne + q] = v / s.eS[w, q * ne + q]

    @wp.func
    def woodbury(w: int, tree: Tree, p: P, s: S, rhs: wp.array2d(dtype=T), out: wp.array2d(dtype=T), bias: int):
        """out = (K + J^T D J)^-1 (rhs - bias) with the quadratic dense rows (after ``schur_factor``):
        lambda = S^-1 J K^-1 rhs, then one substitution of rhs - J^T lambda (so that the
        substitution's work arrays hold the bodies' motions of the result, as solve_adjoint reads)."""
        ne = tree.nerow
        nv = tree.nv
        substitute(w, tree, p, s, rhs, out, bias)
        if ne > 0:
            for r in range(ne):
                s.ey[w, r] = wp.where(dense_on(s, w, r) != 0, row_dot(s, w, r, nv, out), T(0.0))
            schur_solve(w, tree, s)
            for i in range(nv):
                v = rhs[w, i]
                for r in range(ne):
                    v = v - s.eJ[w, r * nv + i] * s.elam[w, r]
                s.ecol[w, i] = v
            substitute(w, tree, p, s, s.ecol, out, bias)

    @wp.func
    def refine_dense(w: int, tree: Tree, p: P, s: S):
        """One step of iterative refinement of s.ca, the Woodbury solution of (K + J^T D J) x =
        crhs - bias the last ``newton_system`` computed (K = M + cdg, the tree factor's system):
        the residual r = crhs - bias - (K + J^T D J) x formed on the bodies (each body's motion
        X_b of x root to leaves in s.qaw, qav, its own I A + K X + f with A = X + (0, -gravity)
        summed over its subtree leaves to root in s.swn, swf: the adjoint's work arrays, free in
        the forward), then x += (K + J^T D J)^-1 r by a substitution and the Woodbury correction.
        In float32 the Woodbury identity cancels for stiff rows (a large D makes K^-1 rhs and Z^T
        lambda nearly equal): unrefined, one step was 1e-3 relative off mj_step on
        tests/test_equality.py's model (refined: tests/test_tendon_constraints.py's float32 tests)."""
        z = V3(T(0.0), T(0.0), T(0.0))
        ne = tree.nerow
        nv = tree.nv
        Gg = s.G[w, 0]
        for b in range(tree.nbody):
            s.swn[w, b] = z
            s.swf[w, b] = z
        for b in range(1, tree.nbody):
            if tree.body_moving[b] == 0:
                continue
            pb = tree.body_parent[b]
            xw = z
            xv = z
            if tree.body_moving[pb] != 0:
                xw = s.qaw[w, pb]
                xv = shift_motion_v(xw, s.qav[w, pb], -s.xd[w, b])
            adr = tree.body_dofadr[b]
            for q in range(tree.body_dofnum[b]):
                xw = xw + s.cdw[w, adr + q] * s.ca[w, adr + q]
                xv = xv + s.cdv[w, adr + q] * s.ca[w, adr + q]
            s.qaw[w, b] = xw
            s.qav[w, b] = xv
        for r in range(ne):
            s.ey[w, r] = wp.where(dense_on(s, w, r) != 0, s.eD[w, r] * row_dot(s, w, r, nv, s.ca), T(0.0))
        for kk in range(tree.nbody - 1):
            b = tree.nbody - 1 - kk
            if tree.body_moving[b] == 0:
                continue
            own_n, own_f = body_wrench(w, b, s, s.qaw[w, b], s.qav[w, b], Gg)
            wn = s.swn[w, b] + own_n
            wf = s.swf[w, b] + own_f
            adr = tree.body_dofadr[b]
            for q in range(tree.body_dofnum[b]):
                i = adr + q
                v = s.crhs[w, i] - s.cdg[w, i] * s.ca[w, i] - wp.dot(s.cdw[w, i], wn) - wp.dot(s.cdv[w, i], wf)
                for r in range(ne):
                    v = v - s.eJ[w, r * nv + i] * s.ey[w, r]
                s.ecol[w, i] = v
            pb = tree.body_parent[b]
            if tree.body_moving[pb] != 0:
                s.swn[w, pb] = s.swn[w, pb] + shift_moment(wn, wf, s.xd[w, b])
                s.swf[w, pb] = s.swf[w, pb] + wf
        substitute(w, tree, p, s, s.ecol, s.eout, 0)
        for r in range(ne):
            s.ey[w, r] = wp.where(dense_on(s, w, r) != 0, row_dot(s, w, r, nv, s.eout), T(0.0))
        schur_solve(w, tree, s)
        for i in range(nv):
            v = s.ca[w, i] + s.eout[w, i]
            for r in range(ne):
                v = v - s.eZ[w, r * nv + i] * s.elam[w, r]
            s.ca[w, i] = v

    @wp.func
    def newton_system(w: int, tree: Tree, p: P, s: S):
        """The minimiser of the cost's quadratic piece of the rows' states s.rowZ into s.ca (its
        factor in s), and s.cuf = M s.ca - qfrc_smooth there (from the system: the rows' share of
        the right-hand side minus their D times the solution). Dense rows: the quadratic ones by
        Woodbury's identity on the factor (``schur_factor``), those at a bound by their force in
        the right-hand side."""
        row_system(w, tree, s)
        ne = tree.nerow
        nv = tree.nv
        for r in range(ne):
            z = s.estate[w, r]
            c = T(0.0)
            if z == T(1.0):
                c = s.eD[w, r] * s.eA[w, r]
            elif z == T(2.0):
                c = s.eF[w, r]
            elif z == T(3.0):
                c = -s.eF[w, r]
            for i in range(nv):
                s.crhs[w, i] = s.crhs[w, i] + s.eJ[w, r * nv + i] * c
        factor(w, tree, p, s, s.cdg)
        if ne > 0:
            schur_factor(w, tree, p, s)
        woodbury(w, tree, p, s, s.crhs, s.ca, 1)
        for i in range(nv):
            s.cuf[w, i] = (s.crhs[w, i] - s.qts[w, i]) - (s.cdg[w, i] - s.dg[w, i] + s.idg[w, i]) * s.ca[w, i]
        for r in range(ne):
            if dense_on(s, w, r) != 0:
                f = s.eD[w, r] * row_dot(s, w, r, nv, s.ca)
                for i in range(nv):
                    s.cuf[w, i] = s.cuf[w, i] - s.eJ[w, r * nv + i] * f

    @wp.func
    def row_force_at(s: S, w: int, r: int, jar: T):
        """Row r's force at its jar (MuJoCo's efc_force) and its derivative's magnitude (D where quadratic)."""
        return zone_force(jar, s.rowD[w, r], s.rowF[w, r], wp.where(r % 3 == 2, 1, 0), 0)

    @wp.func
    def line_slope(w: int, tree: Tree, s: S, al: T, pmp: T, pu: T):
        """The cost's first and second derivative at s.qacc + al (s.ca - s.qacc) along that line
        (dense rows: jar and its rate along the line in s.ey, s.elam, from ``line_search``)."""
        d1 = al * pmp + pu
        d2 = pmp
        for r in range(tree.nerow_eq):  # always quadratic
            dj = s.elam[w, r]
            d1 = d1 + dj * s.eD[w, r] * (s.ey[w, r] + al * dj)
            d2 = d2 + s.eD[w, r] * dj * dj
        for r in range(tree.nerow_eq, tree.nerow):
            dj = s.elam[w, r]
            f, c = dense_force_at(tree, s, w, r, s.ey[w, r] + al * dj)
            d1 = d1 - dj * f
            d2 = d2 + c * dj * dj
        for r in range(3 * tree.nv):
            if s.rowD[w, r] > T(0.0):
                i = r // 3
                sg = row_sign(r)
                dj = sg * (s.ca[w, i] - s.qacc[w, i])
                f, c = row_force_at(s, w, r, sg * s.qacc[w, i] - s.rowA[w, r] + al * dj)
                d1 = d1 - dj * f
                d2 = d2 + c * dj * dj
        return d1, d2

    @wp.func
    def same_piece(w: int, tree: Tree, s: S, a0: T, a1: T):
        """1 when every row has the same state at both points of the line (s.qacc + a (s.ca - s.qacc))."""
        same = int(1)  # noqa: UP018 (a variable for Warp, see row_count)
        for r in range(3 * tree.nv):
            if s.rowD[w, r] > T(0.0):
                i = r // 3
                x0 = s.qacc[w, i] + a0 * (s.ca[w, i] - s.qacc[w, i])
                x1 = s.qacc[w, i] + a1 * (s.ca[w, i] - s.qacc[w, i])
                if row_state(s, w, r, x0) != row_state(s, w, r, x1):
                    same = 0
        for r in range(tree.nerow_eq, tree.nerow):  # the equalities' rows: always quadratic
            if dense_state(tree, s, w, r, s.ey[w, r] + a0 * s.elam[w, r]) != dense_state(
                    tree, s, w, r, s.ey[w, r] + a1 * s.elam[w, r]):
                same = 0
        return same

    @wp.func
    def line_search(w: int, tree: Tree, s: S):
        """MuJoCo's exact line search: the minimiser of the cost along s.qacc -> s.ca (a convex
        piecewise quadratic of the step length), by Newton's method in the step length kept
        inside the bracket of the derivative's sign change (a Newton step that stays in its piece
        is exact); s.qacc and s.cu move there."""
        pmp = T(0.0)
        pu = T(0.0)
        for i in range(tree.nv):
            pv = s.ca[w, i] - s.qacc[w, i]
            pmp = pmp + pv * (s.cuf[w, i] - s.cu[w, i])
            pu = pu + pv * s.cu[w, i]
        for r in range(tree.nerow):  # the dense rows' jar at the line's start and its rate along it
            s.ey[w, r] = row_dot(s, w, r, tree.nv, s.qacc) - s.eA[w, r]
            s.elam[w, r] = row_dot(s, w, r, tree.nv, s.ca) - row_dot(s, w, r, tree.nv, s.qacc)
        lo = T(0.0)
        hi = T(1.0e30)
        al = T(1.0)
        for _k in range(60):  # the bracket halves at worst: 60 steps reach rounding
            d1, d2 = line_slope(w, tree, s, al, pmp, pu)
            if d1 > T(0.0):
                hi = al
            else:
                lo = al
            an = al
            if d2 > T(0.0):
                an = al - d1 / d2
            if an == al:
                break
            if an <= lo or an >= hi:
                an = wp.where(hi < T(1.0e30), T(0.5) * (lo + hi), T(2.0) * al)
            elif same_piece(w, tree, s, al, an) != 0:
                al = an
                break
            al = an
        for i in range(tree.nv):
            s.qacc[w, i] = s.qacc[w, i] + al * (s.ca[w, i] - s.qacc[w, i])
            s.cu[w, i] = s.cu[w, i] + al * (s.cuf[w, i] - s.cu[w, i])

    @wp.func
    def solve_rows(w: int, tree: Tree, p: P, s: S):
        """The first solve with MuJoCo's soft constraints (kernels/limits.py): without instantiated
        rows the step's own solve; else the constraint solver's acceleration by MuJoCo's method,
        Newton's on the convex, piecewise quadratic cost with an exact line search (each Newton
        point the minimiser of the cost's piece of the current rows' states, s.ca; the states
        from those at zero acceleration; the first step taken whole). It ends when the
        minimiser's states are those it was solved in: that minimiser is the optimum, exact,
        its factor, solution (s.qacc) and states (s.rowZ) left in s."""
        n = row_count(w, tree, s)
        s.lim[w, 0] = T(n)  # slot 0's lim: the rows instantiated (read by the second solve's inputs)
        if n == 0:
            for r in range(3 * tree.nv):
                s.rowZ[w, r] = T(0.0)
            for r in range(tree.nerow):
                s.estate[w, r] = T(0.0)
            solve(w, tree, p, s)
        else:
            for r in range(3 * tree.nv):
                s.rowZ[w, r] = row_state(s, w, r, T(0.0))
            for r in range(tree.nerow):  # an equality's row: quadratic (its state never changes)
                s.estate[w, r] = dense_state(tree, s, w, r, -s.eA[w, r])
            nit = 4 * n + 8
            for it in range(nit):
                newton_system(w, tree, p, s)
                same = int(1)  # noqa: UP018 (a variable for Warp, see row_count)
                for r in range(3 * tree.nv):
                    if row_state(s, w, r, s.ca[w, r // 3]) != s.rowZ[w, r]:
                        same = 0
                for r in range(tree.nerow_eq, tree.nerow):
                    if dense_state(tree, s, w, r, row_dot(s, w, r, tree.nv, s.ca) - s.eA[w, r]) != s.estate[w, r]:
                        same = 0
                if same != 0 or it == nit - 1:
                    break
                if it == 0:
                    for i in range(tree.nv):
                        s.qacc[w, i] = s.ca[w, i]
                        s.cu[w, i] = s.cuf[w, i]
                else:
                    line_search(w, tree, s)
                for r in range(3 * tree.nv):
                    s.rowZ[w, r] = row_state(s, w, r, s.qacc[w, r // 3])
                for r in range(tree.nerow_eq, tree.nerow):
                    s.estate[w, r] = dense_state(tree, s, w, r, row_dot(s, w, r, tree.nv, s.qacc) - s.eA[w, r])
            if wp.static(REFINE_DENSE):  # the optimum, refined once (its states are the last system's)
                if tree.nerow > 0:
                    refine_dense(w, tree, p, s)
            for i in range(tree.nv):
                s.qacc[w, i] = s.ca[w, i]

    @wp.func
    def solve_adjoint_terms(w: int, tree: Tree, p: P, s: S, sa: S):
        """``solve_adjoint``'s terms from g = (M + diag)^-1 adj_x in s.R2 and the bodies' motions
        of g in s.aw, av (the substitution's work arrays, as the substitution that gave g left them)."""
        z = V3(T(0.0), T(0.0), T(0.0))
        Gg = s.G[w, 0]
        adjG = z
        # root to leaves: X_b, each body's own wrench and momentum, the adjoints of its own terms
        for b in range(1, tree.nbody):
            if tree.body_moving[b] == 0:
                continue
            pb = tree.body_parent[b]
            xw = z
            xv = z
            if tree.body_moving[pb] != 0:
                xw = s.qaw[w, pb]
                xv = shift_motion_v(xw, s.qav[w, pb], -s.xd[w, b])
            adr = tree.body_dofadr[b]
            for q in range(tree.body_dofnum[b]):
                i = adr + q
                x = s.qacc[w, i]
                xw = xw + s.cdw[w, i] * x
                xv = xv + s.cdv[w, i] * x
            s.qaw[w, b] = xw
            s.qav[w, b] = xv
            gw = s.aw[w, b]
            gv = s.av[w, b]
            m = s.om[w, b]
            h = s.oh[w, b]
            J = s.oJ[w, b]
            av = xv + Gg  # A_b = X_b + (0, -gravity)
            wn, wf = body_wrench(w, b, s, xw, xv, Gg)
            pn = J * gw + wp.cross(h, gv)
            pf = m * gv - wp.cross(h, gw)
            sa.om[w, b] = sa.om[w, b] - wp.dot(gv, av)
            sa.oh[w, b] = sa.oh[w, b] - (wp.cross(av, gw) - wp.cross(xw, gv))
            sa.oJ[w, b] = sa.oJ[w, b] - wp.outer(gw, xw)
            sa.ofn[w, b] = sa.ofn[w, b] - gw
            sa.off[w, b] = sa.off[w, b] - gv
            adjG = adjG - pf
            if wp.static(DM):
                A = s.oA[w, b]
                B = s.oB[w, b]
                C = s.oC[w, b]
                pn = pn + A * gw + B * gv
                pf = pf + wp.transpose(B) * gw + C * gv
                sa.oA[w, b] = sa.oA[w, b] - wp.outer(gw, xw)
                sa.oB[w, b] = sa.oB[w, b] - (wp.outer(gw, xv) + wp.outer(xw, gv))
                sa.oC[w, b] = sa.oC[w, b] - wp.outer(gv, xv)
            s.swn[w, b] = wn
            s.swf[w, b] = wf
            s.spn[w, b] = pn
            s.spf[w, b] = pf
        sa.G[w, 0] = sa.G[w, 0] + adjG
        # leaves to root: subtree sums, the adjoints of the cdof and the link offsets
        for kk in range(tree.nbody - 1):
            b = tree.nbody - 1 - kk
            if tree.body_moving[b] == 0:
                continue
            wn = s.swn[w, b]
            wf = s.swf[w, b]
            pn = s.spn[w, b]
            pf = s.spf[w, b]
            adr = tree.body_dofadr[b]
            for q in range(tree.body_dofnum[b]):
                i = adr + q
                g = s.R2[w, i]
                x = s.qacc[w, i]
                sa.cdw[w, i] = sa.cdw[w, i] - (wn * g + pn * x)
                sa.cdv[w, i] = sa.cdv[w, i] - (wf * g + pf * x)
            pb = tree.body_parent[b]
            if tree.body_moving[pb] != 0:
                d = s.xd[w, b]
                sa.xd[w, b] = sa.xd[w, b] - (wp.cross(wf, s.aw[w, pb]) + wp.cross(pf, s.qaw[w, pb]))
                s.swn[w, pb] = s.swn[w, pb] + shift_moment(wn, wf, d)
                s.swf[w, pb] = s.swf[w, pb] + wf
                s.spn[w, pb] = s.spn[w, pb] + shift_moment(pn, pf, d)
                s.spf[w, pb] = s.spf[w, pb] + pf
        for i in range(tree.nv):
            g = s.R2[w, i]
            if wp.static(SLOTS):
                sa.qts[w, i] = sa.qts[w, i] + g
                sa.dg[w, i] = sa.dg[w, i] - g * s.qacc[w, i]
            else:
                sa.qt[w, i] = sa.qt[w, i] + g
                sa.diag[w, i] = sa.diag[w, i] - g * s.qacc[w, i]

    @wp.func
    def solve_adjoint(w: int, tree: Tree, p: P, s: S, sa: S):
        """Adjoint of ``solve`` (see the module's docstring), from sa.qacc (adj_x) into the adjoints
        (accumulated) of everything the solve read: the right-hand side (qt or qts), diag (dg), the
        bodies' cdof, own inertias, RNE wrenches, contact stiffness and link offsets, and gravity
        (s.G). Uses the forward's factor and solution s.qacc; g goes into s.R2 and G_b into s.aw,
        av (the substitution's work arrays), X_b into s.qaw, qav, the bodies' own and then subtree
        wrenches I A + K X + f into s.swn, swf and momenta (I + K) G into s.spn, spf."""
        substitute(w, tree, p, s, sa.qacc, s.R2, 0)
        solve_adjoint_terms(w, tree, p, s, sa)

    @wp.func
    def solve_rows_adjoint(w: int, tree: Tree, p: P, s: S, sa: S):
        """Adjoint of ``solve_rows``: ``solve_adjoint`` in the rows' final states, then the
        adjoints of what the constraint solver's system adds to it (kernels/limits.py: the
        rows' 1/R, aref and bounds, and the implicit share it leaves out; the dense rows' 1/R,
        aref and Jacobian where quadratic, bound and Jacobian where at a friction bound:
        g = (K + J^T D J)^-1 adj_x by the forward's Woodbury factors)."""
        woodbury(w, tree, p, s, sa.qacc, s.R2, 0)
        solve_adjoint_terms(w, tree, p, s, sa)
        ne = tree.nerow
        nv = tree.nv
        for r in range(ne):
            z = s.estate[w, r]
            jg = row_dot(s, w, r, nv, s.R2)
            if z == T(1.0):
                res = row_dot(s, w, r, nv, s.qacc) - s.eA[w, r]
                dd = s.eD[w, r]
                sa.eD[w, r] = sa.eD[w, r] - jg * res
                sa.eA[w, r] = sa.eA[w, r] + dd * jg
                for i in range(nv):
                    sa.eJ[w, r * nv + i] = sa.eJ[w, r * nv + i] - dd * (res * s.R2[w, i] + jg * s.qacc[w, i])
            elif z == T(2.0) or z == T(3.0):  # the bound's force F J^T in the right-hand side
                sf = wp.where(z == T(2.0), T(1.0), T(-1.0))
                sa.eF[w, r] = sa.eF[w, r] + sf * jg
                for i in range(nv):
                    sa.eJ[w, r * nv + i] = sa.eJ[w, r * nv + i] + sf * s.eF[w, r] * s.R2[w, i]
        if row_count(w, tree, s) > 0:
            for i in range(tree.nv):
                g = s.R2[w, i]
                x = s.qacc[w, i]
                sa.idg[w, i] = sa.idg[w, i] + g * x
                for k in range(3):
                    r = 3 * i + k
                    z = s.rowZ[w, r]
                    sg = row_sign(r)
                    if z == T(1.0):
                        sa.rowD[w, r] = sa.rowD[w, r] + g * sg * (s.rowA[w, r] - sg * x)
                        sa.rowA[w, r] = sa.rowA[w, r] + g * sg * s.rowD[w, r]
                    elif z == T(2.0):
                        sa.rowF[w, r] = sa.rowF[w, r] + g * sg
                    elif z == T(3.0):
                        sa.rowF[w, r] = sa.rowF[w, r] - g * sg

    out = dict(solve=solve, solve_adjoint=solve_adjoint)
    if MJC:
        out.update(solve_rows=solve_rows, solve_rows_adjoint=solve_rows_adjoint)
    return out
