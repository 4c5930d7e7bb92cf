"""The hybrid model's residual MLP as a stage of the looped step (``hw.Residual`` in the kernel).

Per world and step: the residual's features of (qpos, qvel, ctrl) (sin / cos of hinge angles,
slide coordinates, sign-fixed quaternions, velocities, controls scaled by their ctrlrange), their
standardisation, the layers with the activation between them, and the output scale ->
``s.res`` [nv], which the step adds to the generalized force before the solve (force mode) or
to the acceleration (acceleration mode; the mode is a compile-time feature). The numbers come
in a ``Net`` struct (the weights and biases by blocks of BLOCK outputs, the buffers as they
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
#: outputs per block of weights: a layer's matrix-vector product accumulates a block of BLOCK
#: outputs per input read (one vector load of their weights, one index computation; Warp's
#: index arithmetic, not the multiply-adds, is what a narrower block spends its time on: 8-wide
#: blocks four at a time ran a 64x64 layer in about 600 ns per world-step inside the step)
BLOCK = 32

_SIN, _COS, _RAW, _QUAT, _VEL, _CTRL = (wp.constant(k) for k in (F_SIN, F_COS, F_RAW, F_QUAT, F_VEL, F_CTRL))


@per_dtype
def net_type(T):
    """The ``wp.struct`` Net for scalar ``T``: sizes (nlayer, nfeat, act), per layer its input
    width dims[l] (dims[nlayer] the output width), where its blocks of weights and biases start
    (woff, boff) and where its inputs and outputs are in the per-world arrays s.nact, s.npre,
    s.ng (ioff, hoff: the features first, then each layer's outputs, each padded to whole
    blocks); Wb: per layer, per block of BLOCK outputs and per input, those outputs' weights (one
    load each; a partial last block padded with zeros), bb the biases by blocks alike; Wt the
    weights by blocks of BLOCK inputs (per output, its weights from those inputs; from toff[l]),
    for the adjoint's product with the transpose; the feature plan
    (fkind, fadr: the index into qpos / qvel / ctrl, fsgn: a quaternion component's w index), the
    standardisation (mean, std), the controls' centre and half-range (ccen, cscl) and the output
    scale (oscl). The residual's mode (force or acceleration) is a compile-time feature
    (kernels.tree.Features.residual), not a field."""
    fields = {"nlayer": int, "nfeat": int, "act": int}
    for n in ("dims", "woff", "boff", "toff", "ioff", "hoff", "fkind", "fadr", "fsgn"):
        fields[n] = wp.array(dtype=int)
    for n in ("mean", "std", "ccen", "cscl", "oscl"):
        fields[n] = wp.array(dtype=T)
    fields["Wb"] = wp.array(dtype=wp.types.vector(BLOCK, T))
    fields["bb"] = wp.array(dtype=wp.types.vector(BLOCK, T))
    fields["Wt"] = wp.array(dtype=wp.types.vector(BLOCK, T))
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
    VB = wp.types.vector(BLOCK, T)
    AVB = wp.array(dtype=VB)
    HALF = BLOCK // 2
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

    @wp.func
    def store(nact: A2, w: int, at: int, acc: VB):
        """A block's outputs into nact[w, at:at + BLOCK], in two unrolled halves (Warp unrolls
        loops of up to 16): each lane read at a constant index, so the accumulator stays in
        registers (a vector read at a variable index lives in memory, through the whole loop)."""
        for e in range(HALF):
            nact[w, at + e] = acc[e]
        for e in range(HALF):
            nact[w, at + HALF + e] = acc[HALF + e]

    @wp.func
    def load(ng: A2, w: int, at: int):
        """The block ng[w, at:at + BLOCK] as a vector (the adjoint's :func:`store`)."""
        g = VB()
        for e in range(HALF):
            g[e] = ng[w, at + e]
        for e in range(HALF):
            g[HALF + e] = ng[w, at + HALF + e]
        return g

    @wp.func(inline=False)
    def layer(Wb: AVB, bb: AVB, nact: A2, npre: A2, w: int, nin: int, nout: int, io: int, ho: int, wo: int,
              bo: int, hidden: bool, k: int, deriv: int):
        """One layer of world w: nact[ho:ho + nout] from nact[io:io + nin] (its blocks of weights
        and biases from Wb[wo], bb[bo]; whole blocks written, the padding lanes too), through the
        activation ``k`` where ``hidden``; with ``deriv`` (the backward pass's recompute) the
        activation's derivatives into npre (what the adjoint reads). Not inlined: inside the
        whole step's function the compiler splits the accumulators into scalars."""
        for g in range((nout + BLOCK - 1) / BLOCK):
            acc = bb[bo + g]
            c = wo + g * nin
            for i in range(nin):
                acc = acc + nact[w, io + i] * Wb[c + i]
            store(nact, w, ho + g * BLOCK, acc)
        if hidden:
            if deriv != 0:
                for o in range(nout):
                    y, d = act_d(k, nact[w, ho + o])
                    npre[w, ho + o] = d
                    nact[w, ho + o] = y
            elif k == 0:  # silu, the default, in a loop of its own: no branch per unit
                for o in range(nout):
                    nact[w, ho + o] = act(0, nact[w, ho + o])
            else:
                for o in range(nout):
                    nact[w, ho + o] = act(k, nact[w, ho + o])

    @wp.func
    def residual(w: int, qpos: A3, qvel: A3, ctrl: A3, t: int, nv: int, net: N, s: S, deriv: int):
        """s.res = the residual's output at step t (the standardised features, then each layer's
        outputs into s.nact; with ``deriv`` (the backward pass's recompute) the hidden units'
        activation derivatives into s.npre), a layer at a time (:func:`layer`)."""
        for f in range(net.nfeat):
            s.nact[w, f] = (feature(w, qpos, qvel, ctrl, t, net, f) - net.mean[f]) / net.std[f]
        last = net.nlayer - 1
        for l in range(net.nlayer):
            layer(net.Wb, net.bb, s.nact, s.npre, w, net.dims[l], net.dims[l + 1], net.ioff[l], net.hoff[l],
                  net.woff[l], net.boff[l], l < last, net.act, deriv)
        ho = net.hoff[last]
        for d in range(nv):
            s.res[w, d] = s.nact[w, ho + d] * net.oscl[d]

    @wp.func(inline=False)
    def layer_adjoint(Wt: AVB, gWb: AVB, gbb: AVB, nact: A2, ng: A2, w: int, nin: int, nout: int, io: int,
                      ho: int, wo: int, bo: int, to: int):
        """The adjoint of :func:`layer`'s product (without its activation): from ng[ho:ho + nout]
        (zero in the padding lanes) into the weights' and biases' adjoints gWb, gbb (atomic adds,
        a block of outputs per input) and the inputs' adjoints ng[io:io + nin] (set, whole blocks:
        a block of inputs accumulated over the outputs with the transposed weights Wt from
        Wt[to], zero in the padding lanes)."""
        for g in range((nout + BLOCK - 1) / BLOCK):
            gb = load(ng, w, ho + g * BLOCK)
            wp.atomic_add(gbb, bo + g, gb)
            c = wo + g * nin
            for i in range(nin):
                wp.atomic_add(gWb, c + i, gb * nact[w, io + i])
        for j in range((nin + BLOCK - 1) / BLOCK):
            acc = VB()
            c = to + j * nout
            for o in range(nout):
                acc = acc + ng[w, ho + o] * Wt[c + o]
            store(ng, w, io + j * BLOCK, acc)

    @wp.func
    def residual_adjoint(w: int, qpos: A3, ctrl: A3, t: int, nv: int, net: N, gnet: N, s: S, sa: S,
                         adj_qpos: A3, adj_qvel: A3, adj_ctrl: A3):
        """From sa.res (the adjoint of s.res) into the adjoints of qpos, qvel, ctrl at step t and
        of the weights and biases (gnet.Wb, gnet.bb: the forward's block layout; atomic adds),
        layer by layer from the last (:func:`layer_adjoint`); s.ng holds the adjoints of the
        features and each layer's outputs (s.nact's layout). Needs the forward's s.npre (the
        activations' derivatives) and s.nact."""
        last = net.nlayer - 1
        ho = net.hoff[last]
        nb = (net.dims[net.nlayer] + BLOCK - 1) / BLOCK
        for d in range(nb * BLOCK):
            s.ng[w, ho + d] = T(0.0)
        for d in range(nv):
            s.ng[w, ho + d] = sa.res[w, d] * net.oscl[d]
        for ll in range(net.nlayer):
            l = last - ll
            ho = net.hoff[l]
            if l < last:
                for o in range(net.dims[l + 1]):
                    s.ng[w, ho + o] = s.ng[w, ho + o] * s.npre[w, ho + o]
            layer_adjoint(net.Wt, gnet.Wb, gnet.bb, s.nact, s.ng, w, net.dims[l], net.dims[l + 1], net.ioff[l],
                          ho, net.woff[l], net.boff[l], net.toff[l])
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
