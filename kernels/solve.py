"""The linear solve (M + diag) qacc = qf (MuJoCo's mj_factorM / mj_solveM), looped over the tree,
with a hand-written adjoint.

``diag`` holds what the step integrates implicitly: h * damping (Euler with eulerdamp) and the
joint limits' implicit share (kernels/limits.py).

M + diag = U U^T with U upper triangular, factored from the last dof to the first as MuJoCo
does, so that U keeps M's tree sparsity: U[j, k] is non-zero only for j an ancestor of k (no
fill-in). In MuJoCo's dof order a dof's descendants are the contiguous range after it
(``Tree.dof_subtree``), so each entry is a contiguous dot product over that range:

    U[j, k] = (M[k, j] - sum_{m in subtree(k), m > k} U[j, m] U[k, m]) / U[k, k]

The forward code accumulates in registers, which Warp's reverse mode cannot follow; the adjoint
is written by hand instead (``solve_adjoint``): with x = (M + diag)^-1 qf and g = (M + diag)^-1
adj_x (the same factor, M symmetric), adj_qf += g, adj_diag[i] -= g_i x_i and, for the stored
lower triangle, adj_M[i, j] -= g_i x_j + g_j x_i (i != j), adj_M[i, i] -= g_i x_i.
"""
import warp as wp

from .tree import NO_FEATURES, Tree, aliases, per_dtype


@per_dtype
def make(T, features=NO_FEATURES):
    """``solve`` and ``solve_adjoint`` for scalar ``T``. With a collision / dry-friction stage
    (``features.assemble``) the solve reads its slot's right-hand side ``qfs`` and diagonal ``dg``
    instead of ``qf`` and ``diag``, and with implicit contacts adds its slot's ``dM`` to M."""
    S = aliases(T)["S"]
    SLOTS = features.assemble
    DM = features.implicit

    @wp.func
    def m_entry(w: int, s: S, i: int):
        v = s.M[w, i]
        if wp.static(DM):
            v = v + s.dM[w, i]
        return v

    @wp.func
    def diag_entry(w: int, s: S, k: int):
        if wp.static(SLOTS):
            return s.dg[w, k]
        return s.diag[w, k]

    @wp.func
    def factor(w: int, tree: Tree, s: S):
        """U from M + diag, into s.U (row-major, U[j, k] at j * nv + k)."""
        nv = tree.nv
        for kk in range(nv):
            k = nv - 1 - kk
            end = k + tree.dof_subtree[k]
            d = m_entry(w, s, k * nv + k) + diag_entry(w, s, k)
            for m in range(k + 1, end):
                u = s.U[w, k * nv + m]
                d = d - u * u
            ukk = wp.sqrt(d)
            s.U[w, k * nv + k] = ukk
            adr = tree.anc_adr[k]
            for a in range(1, tree.anc_num[k]):
                j = tree.anc[adr + a]
                acc = m_entry(w, s, k * nv + j)
                for m in range(k + 1, end):
                    acc = acc - s.U[w, j * nv + m] * s.U[w, k * nv + m]
                s.U[w, j * nv + k] = acc / ukk

    @wp.func
    def back_substitute(w: int, tree: Tree, s: S, rhs: wp.array2d(dtype=T), tmp: wp.array2d(dtype=T),
                        out: wp.array2d(dtype=T)):
        """out = (U U^T)^-1 rhs: U tmp = rhs from the last dof up, then U^T out = tmp from the root down."""
        nv = tree.nv
        for kk in range(nv):
            k = nv - 1 - kk
            acc = rhs[w, k]
            for m in range(k + 1, k + tree.dof_subtree[k]):
                acc = acc - s.U[w, k * nv + m] * tmp[w, m]
            tmp[w, k] = acc / s.U[w, k * nv + k]
        for k in range(nv):
            acc = tmp[w, k]
            adr = tree.anc_adr[k]
            for a in range(1, tree.anc_num[k]):
                j = tree.anc[adr + a]
                acc = acc - s.U[w, j * nv + k] * out[w, j]
            out[w, k] = acc / s.U[w, k * nv + k]

    @wp.func
    def solve(w: int, tree: Tree, s: S):
        """s.qacc = (M + diag)^-1 s.qf, factor in s.U."""
        factor(w, tree, s)
        if wp.static(SLOTS):
            back_substitute(w, tree, s, s.qfs, s.y, s.qacc)
        else:
            back_substitute(w, tree, s, s.qf, s.y, s.qacc)

    @wp.func
    def solve_adjoint(w: int, tree: Tree, s: S, sa: S):
        """Adjoint of ``solve``: from sa.qacc (adj_x) into sa.qf, sa.M, sa.diag (accumulated), using
        the forward's factor s.U and solution s.qacc; s.R and s.R2 are its work space."""
        nv = tree.nv
        back_substitute(w, tree, s, sa.qacc, s.R, s.R2)
        for i in range(nv):
            g = s.R2[w, i]
            xi = s.qacc[w, i]
            if wp.static(SLOTS):
                sa.qfs[w, i] = sa.qfs[w, i] + g
                sa.dg[w, i] = sa.dg[w, i] - g * xi
            else:
                sa.qf[w, i] = sa.qf[w, i] + g
                sa.diag[w, i] = sa.diag[w, i] - g * xi
            adr = tree.anc_adr[i]
            sa.M[w, i * nv + i] = sa.M[w, i * nv + i] - g * xi
            if wp.static(DM):
                sa.dM[w, i * nv + i] = sa.dM[w, i * nv + i] - g * xi
            for a in range(1, tree.anc_num[i]):
                j = tree.anc[adr + a]
                gm = g * s.qacc[w, j] + s.R2[w, j] * xi
                sa.M[w, i * nv + j] = sa.M[w, i * nv + j] - gm
                if wp.static(DM):
                    sa.dM[w, i * nv + j] = sa.dM[w, i * nv + j] - gm

    out = dict(solve=solve, solve_adjoint=solve_adjoint)
    return out
