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

What the CPU's time went to, and what answers it: index arithmetic per weight read (blocks of
BLOCK outputs per input, a whole block of inputs per iteration), blocks split into lanes (the
scratch arrays also seen as blocks: kernels.tree.ALIASES), padding lanes of a narrow output layer
(NARROW layers as dot products), a libm call per hidden unit (silu through exp_fast), products
and sums in separate statements (madd), and in the adjoint the weights and their adjoints
streamed per world (GROUP worlds per thread).
"""
import math

import warp as wp

from .tree import NET_BLOCK, per_dtype

#: feature kinds (Net.fkind): sin / cos of a hinge angle, a coordinate as it is, a quaternion
#: component times the sign of its w (q and -q are the same rotation), a velocity, a control
F_SIN, F_COS, F_RAW, F_QUAT, F_VEL, F_CTRL = 0, 1, 2, 3, 4, 5
#: activations (Net.act), the order of hybridwam.residual.ACTIVATIONS' names in ACT_NAMES
ACT_NAMES = ("silu", "tanh", "relu", "gelu")
#: outputs per block of weights: a layer's matrix-vector product accumulates a block of BLOCK
#: outputs per input read (one vector load of their weights, one index computation; Warp's
#: index arithmetic, not the multiply-adds, is what a narrower block spends its time on: 8-wide
#: blocks four at a time ran a 64x64 layer in about 600 ns per world-step inside the step)
BLOCK = NET_BLOCK
#: worlds per CPU thread of the residual's adjoint: their weight adjoints are summed before the
#: one update per weight, and each load of the transposed weights serves them all (one world per
#: thread streamed the weights and their adjoints through the cache per world and step). A GPU
#: keeps one world per thread.
GROUP = 4
#: a layer with at most this many outputs (the output layer: one per dof) runs its product per
#: output, as dot products of blocks of inputs with its transposed weights (Wt), and its weights'
#: adjoints accumulate in that layout: by blocks of outputs its BLOCK lanes would be mostly
#: padding (a 2-dof model's output layer: 30 of 32)
NARROW = 8

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
def make(T, G=1):
    """``residual(w, qpos, qvel, ctrl, t, nv, net, s, deriv)`` and ``residual_adjoint(w0, n, qpos,
    ctrl, t, nv, net, gnet, s, sa, adj_qpos, adj_qvel, adj_ctrl)`` for scalar ``T`` (``gnet``: a
    Net over the weights' and biases' adjoint arrays; the adjoint for the n <= G worlds w0 .. w0
    + n - 1, G: 1 or GROUP), as a dict."""
    if G not in (1, GROUP):
        raise ValueError(f"residual adjoint: expected 1 or {GROUP} worlds per thread, got {G}")
    from .tree import aliases

    a = aliases(T)
    S, A3 = a["S"], a["A3"]
    A2 = wp.array2d(dtype=T)
    VB = wp.types.vector(BLOCK, T)
    AB2 = wp.array2d(dtype=VB)
    AVB = wp.array(dtype=VB)
    HALF = BLOCK // 2
    V16, V8, V4 = (wp.types.vector(n, T) for n in (HALF, HALF // 2, HALF // 4))
    N = net_type(T)
    half = T(0.5)
    rsqrt2 = T(0.7071067811865476)
    rsqrt2pi = T(0.3989422804014327)

    @wp.func
    def act_d(k: int, x: T):
        """(activation k at x, its derivative), sharing their work, for tanh, relu and gelu (k =
        1, 2, 3; silu, k = 0, is :func:`activate`'s own loop)."""
        if k == 1:
            th = wp.tanh(x)
            return th, T(1.0) - th * th
        if k == 2:
            return wp.max(x, T(0.0)), wp.where(x > T(0.0), T(1.0), T(0.0))
        e = wp.erf(x * rsqrt2)
        return half * x * (T(1.0) + e), half * (T(1.0) + e) + x * rsqrt2pi * wp.exp(-half * x * x)

    F64 = T == wp.float64
    # e^x by range reduction x = n ln2 + r (|r| <= ln2 / 2, ln2 in two parts: Cody and Waite)
    # and a Taylor polynomial of r (error below the type's rounding: degree 7 in float32, 13 in
    # float64), 2^n from its exponent bits: no library call, so a loop over a block's lanes
    # vectorizes (libm's exp, one call per unit, was most of the activation's time)
    EXP_LO, EXP_HI = (T(-708.0), T(709.0)) if F64 else (T(-87.0), T(88.0))
    LOG2E, LN2HI, LN2LO = T(1.4426950408889634), T(0.693145751953125), T(1.4286068203094173e-06)
    NPOLY = 14 if F64 else 8
    INV_FACT = wp.constant(wp.types.vector(NPOLY, T)(*[1.0 / math.factorial(NPOLY - 1 - i) for i in range(NPOLY)]))

    @wp.func
    def exp_poly(x: T):
        """e^x for |x| <= ln2 / 2 (Horner, from the highest power)."""
        p = INV_FACT[0]
        for i in range(1, NPOLY):
            p = p * x + INV_FACT[i]
        return p

    @wp.func
    def exp_fast(x: T):
        """e^x, branch- and call-free (clamped to the type's normal range)."""
        xc = wp.clamp(x, EXP_LO, EXP_HI)
        n = wp.floor(xc * LOG2E + half)
        r = (xc - n * LN2HI) - n * LN2LO
        if wp.static(F64):
            scale = wp.cast((wp.int64(n) + wp.int64(1023)) << wp.int64(52), wp.float64)
        else:
            scale = wp.cast((wp.int32(n) + 127) << 23, wp.float32)
        return exp_poly(r) * scale

    @wp.func
    def activate(k: int, v: VB):
        """(activation k, its derivative) of each lane of a block: silu's by :func:`exp_fast` in a
        loop the compiler vectorizes, the others' through :func:`act_d`."""
        y = VB()
        d = VB()
        if k == 0:
            for e in range(BLOCK):
                x = v[e]
                sg = T(1.0) / (T(1.0) + exp_fast(-x))
                y[e] = x * sg
                d[e] = sg * (T(1.0) + x * (T(1.0) - sg))
        else:
            for e in range(BLOCK):
                a, b = act_d(k, v[e])
                y[e] = a
                d[e] = b
        return y, d

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
    def lanesum(v: VB):
        """The sum of a block's lanes, as a tree of pairwise sums (a chain of 31 dependent adds
        otherwise)."""
        h = V16()
        for e in range(HALF):
            h[e] = v[e] + v[HALF + e]
        q = V8()
        for e in range(HALF // 2):
            q[e] = h[e] + h[HALF // 2 + e]
        r = V4()
        for e in range(HALF // 4):
            r[e] = q[e] + q[HALF // 4 + e]
        return (r[0] + r[2]) + (r[1] + r[3])

    # acc + x w lane by lane as fused multiply-adds (Warp's C++ has each product and sum in a
    # statement of its own, which the compiler does not fuse: 13% of a 64x64 hybrid rollout)
    @wp.func_native(f"for (int e = 0; e < {BLOCK}; ++e) acc.c[e] = wp::muladd(x, v.c[e], acc.c[e]);\nreturn acc;")
    def madd(acc: VB, x: T, v: VB) -> VB: ...

    @wp.func
    def block_madd(acc: VB, x: VB, W: AVB, c: int):
        """acc + sum over the lanes e of x[e] W[c + e]: a whole block of inputs, its lanes read
        at constant indices from registers (unrolled in halves: Warp unrolls loops of up to 16),
        so no index arithmetic or loop control per input."""
        for e in range(HALF):
            acc = madd(acc, x[e], W[c + e])
        for e in range(HALF):
            acc = madd(acc, x[HALF + e], W[c + HALF + e])
        return acc

    @wp.func
    def emit(nactb: AB2, npreb: AB2, w: int, blk: int, acc: VB, hidden: bool, k: int, deriv: int):
        """Block ``blk`` of a layer's outputs into nactb[w, blk], through the activation where
        ``hidden`` (its derivatives into npreb with ``deriv``; every activation is 0 at 0, which keeps the padding
        lanes zero)."""
        if hidden:
            y, d = activate(k, acc)
            nactb[w, blk] = y
            if deriv != 0:
                npreb[w, blk] = d
        else:
            nactb[w, blk] = acc

    @wp.func(inline=False)
    def layer(Wb: AVB, bb: AVB, Wt: AVB, nact: A2, nactb: AB2, npreb: AB2, w: int, nin: int, nout: int, io: int,
              ho: int, wo: int, bo: int, to: int, hidden: bool, k: int, deriv: int):
        """One layer of world w: nact[ho:ho + nout] from nact[io:io + nin] (nactb, npreb: the
        same memory as nact, npre by blocks, which it writes whole; its blocks of weights
        and biases from Wb[wo], bb[bo]; whole blocks written, the padding lanes too), through the
        activation ``k`` where ``hidden``; with ``deriv`` (the backward pass's recompute) the
        activation's derivatives into npre (what the adjoint reads). A NARROW layer: per output,
        the dot products of its transposed weights (Wt from Wt[to]) with the blocks of inputs
        (whose padding lanes are zero, as are the weights'). Not inlined: inside the whole
        step's function the compiler splits the accumulators into scalars."""
        if nout <= NARROW:
            nbin = (nin + BLOCK - 1) / BLOCK
            out = bb[bo]
            for j in range(nbin):
                x = nactb[w, io / BLOCK + j]
                c = to + j * nout
                for o in range(nout):
                    out[o] = out[o] + lanesum(wp.cw_mul(Wt[c + o], x))
            emit(nactb, npreb, w, ho / BLOCK, out, hidden, k, deriv)
        else:
            nfull = nin / BLOCK
            for g in range((nout + BLOCK - 1) / BLOCK):
                acc = bb[bo + g]
                c = wo + g * nin
                for j in range(nfull):
                    acc = block_madd(acc, nactb[w, io / BLOCK + j], Wb, c + j * BLOCK)
                for i in range(nfull * BLOCK, nin):
                    acc = madd(acc, nact[w, io + i], Wb[c + i])
                emit(nactb, npreb, w, ho / BLOCK + g, acc, hidden, k, deriv)

    @wp.func
    def residual(w: int, qpos: A3, qvel: A3, ctrl: A3, t: int, nv: int, net: N, s: S, deriv: int):
        """s.res = the residual's output at step t (the standardised features, then each layer's
        outputs into s.nact; with ``deriv`` (the backward pass's recompute) the hidden units'
        activation derivatives into s.npre), a layer at a time (:func:`layer`)."""
        for f in range(net.nfeat):
            s.nact[w, f] = (feature(w, qpos, qvel, ctrl, t, net, f) - net.mean[f]) / net.std[f]
        last = net.nlayer - 1
        for l in range(net.nlayer):
            layer(net.Wb, net.bb, net.Wt, s.nact, s.nactb, s.npreb, w, net.dims[l], net.dims[l + 1], net.ioff[l],
                  net.hoff[l], net.woff[l], net.boff[l], net.toff[l], l < last, net.act, deriv)
        ho = net.hoff[last]
        for d in range(nv):
            s.res[w, d] = s.nact[w, ho + d] * net.oscl[d]

    @wp.func
    def sum4(v0: VB, s0: T, v1: VB, s1: T, v2: VB, s2: T, v3: VB, s3: T):
        """v0 s0 + v1 s1 + v2 s2 + v3 s3 over a group's worlds (v0 s0 alone when G = 1)."""
        u = v0 * s0
        if wp.static(G > 1):
            u = madd(madd(madd(u, s1, v1), s2, v2), s3, v3)
        return u

    @wp.func
    def gather4(a: AB2, blk: int, w0: int, w1: int, w2: int, w3: int, m1: T, m2: T, m3: T):
        """Block ``blk`` of the group's worlds, the spare slots of a partial group (m = 0) and,
        with G = 1, the other three zero."""
        z = VB()
        v1 = z
        v2 = z
        v3 = z
        if wp.static(G > 1):
            v1 = a[w1, blk] * m1
            v2 = a[w2, blk] * m2
            v3 = a[w3, blk] * m3
        return a[w0, blk], v1, v2, v3

    @wp.func
    def outer_add(gW: AVB, c: int, g0: VB, g1: VB, g2: VB, g3: VB, x0: VB, x1: VB, x2: VB, x3: VB):
        """gW[c + e] += sum over the group's worlds k of g_k x_k[e], for each lane e of a block of
        inputs (the weights' adjoint of :func:`block_madd`): one update per weight for the G
        worlds."""
        for i in range(BLOCK):  # longer than Warp unrolls: one copy of the body
            wp.atomic_add(gW, c + i, sum4(g0, x0[i], g1, x1[i], g2, x2[i], g3, x3[i]))

    @wp.func(inline=False)
    def layer_adjoint(Wt: AVB, gWb: AVB, gbb: AVB, gWt: AVB, nact: A2, nactb: AB2, ng: A2, ngb: AB2, w0: int,
                      n: int, nin: int, nout: int, io: int, ho: int, wo: int, bo: int, to: int):
        """The adjoint of :func:`layer`'s product (without its activation) for the n <= G worlds
        w0 .. w0 + n - 1: from ng[ho:ho + nout] (zero in the padding lanes) into the weights' and
        biases' adjoints gWb, gbb (atomic adds, a block of outputs per input; a NARROW layer's
        weights into gWt instead, per output a block of inputs: Wt's layout), one update per
        weight for the n worlds, and the inputs' adjoints ng[io:io + nin] (set, whole blocks: a
        block of inputs accumulated over the outputs with the transposed weights Wt from Wt[to],
        each load of Wt serving the n worlds; zero in the padding lanes). nactb, ngb: nact, ng
        by blocks. With n < G the spare slots repeat the last world, weighted zero in the sums."""
        w1 = w0 + wp.min(1, n - 1)
        w2 = w0 + wp.min(2, n - 1)
        w3 = w0 + wp.min(3, n - 1)
        m1 = wp.where(n > 1, T(1.0), T(0.0))
        m2 = wp.where(n > 2, T(1.0), T(0.0))
        m3 = wp.where(n > 3, T(1.0), T(0.0))
        one = T(1.0)
        if nout <= NARROW:
            g0, g1, g2, g3 = gather4(ngb, ho / BLOCK, w0, w1, w2, w3, m1, m2, m3)
            wp.atomic_add(gbb, bo, g0 + g1 + g2 + g3)
            for j in range((nin + BLOCK - 1) / BLOCK):
                x0, x1, x2, x3 = gather4(nactb, io / BLOCK + j, w0, w1, w2, w3, one, one, one)
                c = to + j * nout
                for o in range(nout):
                    wp.atomic_add(gWt, c + o, sum4(x0, g0[o], x1, g1[o], x2, g2[o], x3, g3[o]))
        else:
            nfull = nin / BLOCK
            for g in range((nout + BLOCK - 1) / BLOCK):
                g0, g1, g2, g3 = gather4(ngb, ho / BLOCK + g, w0, w1, w2, w3, m1, m2, m3)
                wp.atomic_add(gbb, bo + g, g0 + g1 + g2 + g3)
                c = wo + g * nin
                for j in range(nfull):
                    x0, x1, x2, x3 = gather4(nactb, io / BLOCK + j, w0, w1, w2, w3, one, one, one)
                    outer_add(gWb, c + j * BLOCK, g0, g1, g2, g3, x0, x1, x2, x3)
                for i in range(nfull * BLOCK, nin):
                    u = g0 * nact[w0, io + i]
                    if wp.static(G > 1):
                        u = sum4(g0, nact[w0, io + i], g1, nact[w1, io + i], g2, nact[w2, io + i], g3,
                                 nact[w3, io + i])
                    wp.atomic_add(gWb, c + i, u)
        nfo = nout / BLOCK
        for j in range((nin + BLOCK - 1) / BLOCK):
            a0 = VB()
            a1 = a0
            a2 = a0
            a3 = a0
            c = to + j * nout
            for b in range(nfo):
                blk = ho / BLOCK + b
                cb = c + b * BLOCK
                v0 = ngb[w0, blk]
                if wp.static(G > 1):
                    v1 = ngb[w1, blk]
                    v2 = ngb[w2, blk]
                    v3 = ngb[w3, blk]
                    for i in range(BLOCK):  # longer than Warp unrolls: one copy of the body
                        wv = Wt[cb + i]
                        a0 = madd(a0, v0[i], wv)
                        a1 = madd(a1, v1[i], wv)
                        a2 = madd(a2, v2[i], wv)
                        a3 = madd(a3, v3[i], wv)
                else:
                    a0 = block_madd(a0, v0, Wt, cb)
            for o in range(nfo * BLOCK, nout):
                wv = Wt[c + o]
                a0 = madd(a0, ng[w0, ho + o], wv)
                if wp.static(G > 1):
                    a1 = madd(a1, ng[w1, ho + o], wv)
                    a2 = madd(a2, ng[w2, ho + o], wv)
                    a3 = madd(a3, ng[w3, ho + o], wv)
            ngb[w0, io / BLOCK + j] = a0
            if wp.static(G > 1):
                ngb[w1, io / BLOCK + j] = a1
                ngb[w2, io / BLOCK + j] = a2
                ngb[w3, io / BLOCK + j] = a3

    @wp.func
    def residual_adjoint(w0: int, n: int, qpos: A3, ctrl: A3, t: int, nv: int, net: N, gnet: N, s: S, sa: S,
                         adj_qpos: A3, adj_qvel: A3, adj_ctrl: A3):
        """From sa.res (the adjoint of s.res) of the n <= G worlds w0 .. w0 + n - 1 into the
        adjoints of qpos, qvel, ctrl at step t and of the weights and biases (gnet.Wb, gnet.bb:
        the forward's block layout, a NARROW layer's weights in gnet.Wt: Wt's; atomic adds),
        layer by layer from the last (:func:`layer_adjoint`, the n worlds together); s.ng holds
        the adjoints of the features and each layer's outputs (s.nact's layout). Needs the
        forward's s.npre (the activations' derivatives) and s.nact."""
        last = net.nlayer - 1
        ho = net.hoff[last]
        nb = (net.dims[net.nlayer] + BLOCK - 1) / BLOCK
        for v in range(n):
            w = w0 + v
            for d in range(nb * BLOCK):
                s.ng[w, ho + d] = T(0.0)
            for d in range(nv):
                s.ng[w, ho + d] = sa.res[w, d] * net.oscl[d]
        for ll in range(net.nlayer):
            l = last - ll
            ho = net.hoff[l]
            if l < last:
                for v in range(n):
                    w = w0 + v
                    for b in range((net.dims[l + 1] + BLOCK - 1) / BLOCK):
                        s.ngb[w, ho / BLOCK + b] = wp.cw_mul(s.ngb[w, ho / BLOCK + b], s.npreb[w, ho / BLOCK + b])
            layer_adjoint(net.Wt, gnet.Wb, gnet.bb, gnet.Wt, s.nact, s.nactb, s.ng, s.ngb, w0, n, net.dims[l],
                          net.dims[l + 1], net.ioff[l], ho, net.woff[l], net.boff[l], net.toff[l])
        for v in range(n):
            w = w0 + v
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

    return {"residual": residual, "residual_adjoint": residual_adjoint, "exp_fast": exp_fast, "activate": activate}
