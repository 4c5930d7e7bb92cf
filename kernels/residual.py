"""The hybrid model's residual MLP as a stage of the looped step (``hw.Residual`` in the kernel).

Per world and step: the residual's features of (qpos, qvel, ctrl) (sin / cos of hinge angles,
slide coordinates, sign-fixed quaternions, velocities, controls scaled by their ctrlrange), their
standardisation, the layers with the activation between them, and the output scale ->
``s.res`` [nv], which the step adds to the generalized force before the solve (force mode) or
to the acceleration (acceleration mode; the mode is a compile-time feature). The numbers come
in a ``Net`` struct (the weights and biases by blocks of eight outputs, the buffers as they
are, the layer sizes and the feature plan as index arrays), so one compiled module serves
every residual of any width and depth.

The forward accumulates the matrix-vector products in registers, which Warp's reverse mode
cannot follow; ``residual_adjoint`` is its hand-written adjoint (backpropagation through the
activations s.nact and their derivatives s.npre, which the
backward pass's recompute of the step stores): from sa.res into the adjoints of the
state and controls at step t and (atomically, summed over worlds and steps) of the weights and
biases.
"""
import warp as wp

from .tree import per_dtype

#: feature kinds (Net.fkind): sin / cos of a hinge angle, a coordinate as it is, a quaternion
#: component times the sign of its w (q and -q are the same rotation), a velocity, a control
F_SIN, F_COS, F_RAW, F_QUAT, F_VEL, F_CTRL = 0, 1, 2, 3, 4, 5
#: activations (Net.act), the order of hybridwam.residual.ACTIVATIONS' names in ACT_NAMES
ACT_NAMES = ("silu", "tanh", "relu", "gelu")

_SIN, _COS, _RAW, _QUAT, _VEL, _CTRL = (wp.constant(k) for k in (F_SIN, F_COS, F_RAW, F_QUAT, F_VEL, F_CTRL))


@per_dtype
def net_type(T):
    """The ``wp.struct`` Net for scalar ``T``: sizes (nlayer, nfeat, act), per layer its input
    width dims[l] (dims[nlayer] the output width), where its blocks of weights and biases start
    (woff8, boff8) and where its inputs and outputs are in the per-world arrays s.nact, s.npre,
    s.ng (ioff, hoff: the features first, then each layer's outputs); W8: per layer, per block
    of eight outputs and per input, those outputs' eight weights (one load each; a partial last
    block padded with zeros), b8 the biases by blocks alike; the feature plan (fkind, fadr: the
    index into qpos / qvel / ctrl, fsgn: a quaternion component's w index), the standardisation
    (mean, std), the controls' centre and half-range (ccen, cscl) and the output scale (oscl).
    The residual's mode (force or acceleration) is a compile-time feature
    (kernels.tree.Features.residual), not a field."""
    fields = {"nlayer": int, "nfeat": int, "act": int}
    for n in ("dims", "woff8", "boff8", "ioff", "hoff", "fkind", "fadr", "fsgn"):
        fields[n] = wp.array(dtype=int)
    for n in ("mean", "std", "ccen", "cscl", "oscl"):
        fields[n] = wp.array(dtype=T)
    fields["W8"] = wp.array(dtype=wp.types.vector(8, T))
    fields["b8"] = wp.array(dtype=wp.types.vector(8, T))
    qualname = "Net" + ("64" if T == wp.float64 else "32")
    return wp.struct(type(qualname, (), {"__annotations__": fields, "__module__": __name__, "__qualname__": qualname}))


@per_dtype
def make(T):
    """``residual(w, qpos, qvel, ctrl, t, nv, net, s)`` and ``residual_adjoint(w, qpos, ctrl, t, nv,
    net, gnet, s, sa, adj_qpos, adj_qvel, adj_ctrl)`` for scalar ``T`` (``gnet``: a Net over the
    weights' and biases' adjoint arrays), as a dict."""
    from .tree import aliases

    a = aliases(T)
    S, A3 = a["S"], a["A3"]
    A2 = wp.array2d(dtype=T)
    N = net_type(T)
    half = T(0.5)
    rsqrt2 = T(0.7071067811865476)
    rsqrt2pi = T(0.3989422804014327)

    @wp.func
    def act(k: int, x: T):
        if k == 0:
            return x / (T(1.0) + wp.exp(-x))
        if k == 1:
            return wp.tanh(x)
        if k == 2:
            return wp.max(x, T(0.0))
        return half * x * (T(1.0) + wp.erf(x * rsqrt2))

    @wp.func
    def act_d(k: int, x: T):
        """(act(k, x), its derivative at x), sharing their work."""
        if k == 0:
            sg = T(1.0) / (T(1.0) + wp.exp(-x))
            return x * sg, sg * (T(1.0) + x * (T(1.0) - sg))
        if k == 1:
            th = wp.tanh(x)
            return th, T(1.0) - th * th
        if k == 2:
            return wp.max(x, T(0.0)), wp.where(x > T(0.0), T(1.0), T(0.0))
        e = wp.erf(x * rsqrt2)
        return half * x * (T(1.0) + e), half * (T(1.0) + e) + x * rsqrt2pi * wp.exp(-half * x * x)

    @wp.func
    def feature(w: int, qpos: A3, qvel: A3, ctrl: A3, t: int, net: N, f: int):
        k = net.fkind[f]
        i = net.fadr[f]
        if k == _SIN:
            return wp.sin(qpos[w, t, i])
        if k == _COS:
            return wp.cos(qpos[w, t, i])
        if k == _RAW:
            return qpos[w, t, i]
        if k == _QUAT:
            return wp.where(qpos[w, t, net.fsgn[f]] < T(0.0), -qpos[w, t, i], qpos[w, t, i])
        if k == _VEL:
            return qvel[w, t, i]
        return (ctrl[w, t, i] - net.ccen[i]) / net.cscl[i]

    V8 = wp.types.vector(8, T)

    @wp.func
    def emit(nact: A2, npre: A2, w: int, at: int, n: int, acc: V8, hidden: bool, k: int, deriv: int):
        """The first ``n`` outputs of a block (``acc``) into nact (s.nact) from index ``at``,
        through the activation ``k`` where ``hidden``; with ``deriv`` the activation's derivatives
        into npre (s.npre: what the adjoint reads). The arrays, not the Scratch struct, are
        passed: a struct argument is copied where the call is not inlined."""
        for e in range(n):
            y = acc[e]
            if hidden:
                if deriv != 0:
                    y, d = act_d(k, y)
                    npre[w, at + e] = d
                else:
                    y = act(k, y)
            nact[w, at + e] = y

    @wp.func
    def residual(w: int, qpos: A3, qvel: A3, ctrl: A3, t: int, nv: int, net: N, s: S, deriv: int):
        """s.res = the residual's output at step t (the standardised features, then each layer's
        outputs into s.nact; with ``deriv`` (the backward pass's recompute) the hidden units'
        activation derivatives into s.npre). Outputs in blocks of eight (an
        accumulator over each input's eight weights W8; a last, partial block padded with zeros),
        four blocks at a time: four independent accumulation chains per input read."""
        for f in range(net.nfeat):
            s.nact[w, f] = (feature(w, qpos, qvel, ctrl, t, net, f) - net.mean[f]) / net.std[f]
        last = net.nlayer - 1
        for l in range(net.nlayer):
            nin = net.dims[l]
            nout = net.dims[l + 1]
            io = net.ioff[l]
            ho = net.hoff[l]
            bo = net.boff8[l]
            hidden = l < last
            nb = (nout + 7) / 8
            for g in range(nb / 4):
                k = g * 4
                a0 = net.b8[bo + k]
                a1 = net.b8[bo + k + 1]
                a2 = net.b8[bo + k + 2]
                a3 = net.b8[bo + k + 3]
                c = net.woff8[l] + k * nin
                for i in range(nin):
                    x = s.nact[w, io + i]
                    a0 = a0 + x * net.W8[c + i]
                    a1 = a1 + x * net.W8[c + nin + i]
                    a2 = a2 + x * net.W8[c + 2 * nin + i]
                    a3 = a3 + x * net.W8[c + 3 * nin + i]
                o0 = ho + k * 8
                emit(s.nact, s.npre, w, o0, 8, a0, hidden, net.act, deriv)
                emit(s.nact, s.npre, w, o0 + 8, 8, a1, hidden, net.act, deriv)
                emit(s.nact, s.npre, w, o0 + 16, 8, a2, hidden, net.act, deriv)
                emit(s.nact, s.npre, w, o0 + 24, wp.min(8, nout - k * 8 - 24), a3, hidden, net.act, deriv)
            for k in range((nb / 4) * 4, nb):
                acc = net.b8[bo + k]
                c = net.woff8[l] + k * nin
                for i in range(nin):
                    acc = acc + s.nact[w, io + i] * net.W8[c + i]
                emit(s.nact, s.npre, w, ho + k * 8, wp.min(8, nout - k * 8), acc, hidden, net.act, deriv)
        ho = net.hoff[last]
        for d in range(nv):
            s.res[w, d] = s.nact[w, ho + d] * net.oscl[d]

    @wp.func
    def hsum(v: V8):
        """The sum of v's entries as a tree (three additions deep, not a chain of eight)."""
        return ((v[0] + v[1]) + (v[2] + v[3])) + ((v[4] + v[5]) + (v[6] + v[7]))

    @wp.func
    def grad8(ng: A2, w: int, at: int, n: int):
        """The block of ng (s.ng) from ``at`` (``n`` of its eight entries; the rest zero)."""
        g = V8()
        for e in range(n):
            g[e] = ng[w, at + e]
        return g

    @wp.func
    def residual_adjoint(w: int, qpos: A3, ctrl: A3, t: int, nv: int, net: N, gnet: N, s: S, sa: S,
                         adj_qpos: A3, adj_qvel: A3, adj_ctrl: A3):
        """From sa.res (the adjoint of s.res) into the adjoints of qpos, qvel, ctrl at step t and
        of the weights and biases (gnet.W8, gnet.b8: the forward's block layout; atomic adds), by
        the same blocks of eight outputs as the forward (four at a time: one sum over the lanes
        per input for four blocks); s.ng holds the adjoints of the features
        and each layer's outputs (s.nact's layout). Needs the forward's s.npre, s.nact."""
        last = net.nlayer - 1
        ho = net.hoff[last]
        for d in range(nv):
            s.ng[w, ho + d] = sa.res[w, d] * net.oscl[d]
        for ll in range(net.nlayer):
            l = last - ll
            nin = net.dims[l]
            nout = net.dims[l + 1]
            io = net.ioff[l]
            ho = net.hoff[l]
            if l < last:
                for o in range(nout):
                    s.ng[w, ho + o] = s.ng[w, ho + o] * s.npre[w, ho + o]
            for i in range(nin):
                s.ng[w, io + i] = T(0.0)
            bo = net.boff8[l]
            nb = (nout + 7) / 8
            for gi in range(nb / 4):
                k = gi * 4
                o0 = ho + k * 8
                g0 = grad8(s.ng, w, o0, 8)
                g1 = grad8(s.ng, w, o0 + 8, 8)
                g2 = grad8(s.ng, w, o0 + 16, 8)
                g3 = grad8(s.ng, w, o0 + 24, wp.min(8, nout - k * 8 - 24))
                wp.atomic_add(gnet.b8, bo + k, g0)
                wp.atomic_add(gnet.b8, bo + k + 1, g1)
                wp.atomic_add(gnet.b8, bo + k + 2, g2)
                wp.atomic_add(gnet.b8, bo + k + 3, g3)
                c = net.woff8[l] + k * nin
                for i in range(nin):
                    x = s.nact[w, io + i]
                    wp.atomic_add(gnet.W8, c + i, g0 * x)
                    wp.atomic_add(gnet.W8, c + nin + i, g1 * x)
                    wp.atomic_add(gnet.W8, c + 2 * nin + i, g2 * x)
                    wp.atomic_add(gnet.W8, c + 3 * nin + i, g3 * x)
                    v = (wp.cw_mul(net.W8[c + i], g0) + wp.cw_mul(net.W8[c + nin + i], g1)
                         + wp.cw_mul(net.W8[c + 2 * nin + i], g2) + wp.cw_mul(net.W8[c + 3 * nin + i], g3))
                    s.ng[w, io + i] = s.ng[w, io + i] + hsum(v)
            for k in range((nb / 4) * 4, nb):
                g8 = grad8(s.ng, w, ho + k * 8, wp.min(8, nout - k * 8))
                wp.atomic_add(gnet.b8, bo + k, g8)
                c = net.woff8[l] + k * nin
                for i in range(nin):
                    wp.atomic_add(gnet.W8, c + i, g8 * s.nact[w, io + i])
                    s.ng[w, io + i] = s.ng[w, io + i] + hsum(wp.cw_mul(net.W8[c + i], g8))
        for f in range(net.nfeat):
            g = s.ng[w, f] / net.std[f]
            k = net.fkind[f]
            i = net.fadr[f]
            if k == _SIN:
                adj_qpos[w, t, i] = adj_qpos[w, t, i] + g * wp.cos(qpos[w, t, i])
            elif k == _COS:
                adj_qpos[w, t, i] = adj_qpos[w, t, i] - g * wp.sin(qpos[w, t, i])
            elif k == _RAW:
                adj_qpos[w, t, i] = adj_qpos[w, t, i] + g
            elif k == _QUAT:
                adj_qpos[w, t, i] = adj_qpos[w, t, i] + wp.where(qpos[w, t, net.fsgn[f]] < T(0.0), -g, g)
            elif k == _VEL:
                adj_qvel[w, t, i] = adj_qvel[w, t, i] + g
            else:
                adj_ctrl[w, t, i] = adj_ctrl[w, t, i] + g / net.cscl[i]

    return {"residual": residual, "residual_adjoint": residual_adjoint}
