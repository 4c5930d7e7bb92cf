"""The linear solve (M + diag) qacc = f (MuJoCo's mj_factorM / mj_solveM), looped over the tree.

``diag`` holds what the step integrates implicitly: h * damping (Euler with eulerdamp) and the
joint limits' implicit share (kernels/limits.py).

M = U U^T with U upper triangular, factored from the last dof to the first as MuJoCo does, so
that U keeps M's tree sparsity: U[j, k] is non-zero only for j an ancestor of k (no fill-in).
Every entry is written once; the sums are atomic adds into slots zeroed first and read only after
the last add (see kernels/tree.py), so Warp's reverse mode differentiates it exactly. Work per
step: sum over dofs of depth^2 / 2 (a chain: nv^3 / 6; a branching robot far less).
"""
import warp as wp

from .tree import Tree

_CACHE: dict = {}


def make(T):
    if T in _CACHE:
        return _CACHE[T]
    from .tree import scratch_type

    S = scratch_type(T)

    @wp.func
    def solve(w: int, tree: Tree, s: S):
        nv = tree.nv
        for k in range(nv):
            adr = tree.anc_adr[k]
            for a in range(tree.anc_num[k]):
                s.S[w, tree.anc[adr + a] * nv + k] = T(0.0)
            s.R[w, k] = T(0.0)
            s.R2[w, k] = T(0.0)
        # factor: column k of U from M's row k and the contributions of k's descendants
        for kk in range(nv):
            k = nv - 1 - kk
            adr = tree.anc_adr[k]
            n = tree.anc_num[k]
            ukk = wp.sqrt(s.M[w, k * nv + k] + s.diag[w, k] - s.S[w, k * nv + k])
            s.U[w, k * nv + k] = ukk
            for a in range(1, n):
                j = tree.anc[adr + a]
                s.U[w, j * nv + k] = (s.M[w, k * nv + j] - s.S[w, j * nv + k]) / ukk
            for a in range(1, n):
                kp = tree.anc[adr + a]
                ukp = s.U[w, kp * nv + k]
                for b in range(a, n):
                    j = tree.anc[adr + b]
                    wp.atomic_add(s.S, w, j * nv + kp, s.U[w, j * nv + k] * ukp)
        # U y = f, from the last dof up
        for kk in range(nv):
            k = nv - 1 - kk
            yk = (s.qf[w, k] - s.R[w, k]) / s.U[w, k * nv + k]
            s.y[w, k] = yk
            adr = tree.anc_adr[k]
            for a in range(1, tree.anc_num[k]):
                j = tree.anc[adr + a]
                wp.atomic_add(s.R, w, j, s.U[w, j * nv + k] * yk)
        # U^T qacc = y, from the root down
        for k in range(nv):
            adr = tree.anc_adr[k]
            for a in range(1, tree.anc_num[k]):
                j = tree.anc[adr + a]
                wp.atomic_add(s.R2, w, k, s.U[w, j * nv + k] * s.qacc[w, j])
            s.qacc[w, k] = (s.y[w, k] - s.R2[w, k]) / s.U[w, k * nv + k]

    out = dict(solve=solve)
    _CACHE[T] = out
    return out
