"""The looped engine: the step of kernels/forward.py, one compiled module set per scalar type
and set of features (kernels.tree.Features: the contact pair kinds present, implicit contacts,
dry friction).

Its code does not depend on the model's size (sizes, the tree and the candidate pairs are
arrays), so it compiles once, in seconds, for every model with the same features, where the
unrolled engine (:mod:`hybridwam.codegen`) generates code that grows with the model.
:func:`unsupported` names what a model needs beyond what it simulates.
"""
from __future__ import annotations

import functools

import mujoco
import numpy as np
import torch
import warp as wp

from .kernels.tree import ALIASES, NET_BLOCK, NET_FIELDS
from .replay import Replay
from .types import (
    CYLINDER,
    ELLIPSOID,
    EQ_ROWS,
    HFIELD,
    MESH,
    PAIR_KINDS,
    PARAM_SPEC,
    ROW_EQUALITY,
    WRAP_CYLINDER,
    WRAP_PULLEY,
    WRAP_SITE,
    WRAP_SPHERE,
    Structure,
)


def _tendon_feature(s: Structure) -> int:
    """Features.tendon: 0 without acting tendons, 2 where some acting tendon's path wraps a sphere
    or cylinder (the tendon stage's wrapping code is compiled only then), else 1."""
    if not s.tendon_wraps:
        return 0
    return 2 if any(typ in (WRAP_SPHERE, WRAP_CYLINDER) for path in s.tendon_wraps for typ, _ in path) else 1


#: Scalar type of each parameter key, per torch dtype (as in physics._WP_DTYPES).
_SCALAR = {torch.float32: wp.float32, torch.float64: wp.float64}


def unsupported(s: Structure) -> list[str]:
    """What the looped engine does not simulate in a model of structure ``s`` (empty: it does)."""
    kinds = {(s.geom_type[a], s.geom_type[b]) for a, b in s.pairs}
    return [f"geom pair {k}" for k in sorted(kinds - set(PAIR_KINDS))]


def features(s: Structure, contacts: bool = True):
    """The kernels.tree.Features a structure compiles with (``contacts=False``: as if it had no
    contact pairs and no dry friction, which the stage API's kinematics and mass matrix do not
    need). Contact models compile in groups, so that one compile serves every model of its
    group on the machine: all primitive pair kinds, or all kinds with convex meshes, each with or
    without the cylinder and ellipsoid kinds and the height field kinds (present only where a
    model's pairs have them); all with
    the implicit contact stiffness and dry friction (their cost where a model has none: the
    second collision pass, whose solve then never runs)."""
    from .kernels.tree import Features

    if not contacts:
        return Features()
    mj = s.limit_law == "mujoco"  # MuJoCo's soft constraints replace hybridwam's limits and dry friction
    rows = mj and (any(s.jnt_limited) or any(s.dof_frictionloss) or bool(s.eq) or bool(s.dense_rows))
    act = s.na > 0 or bool(s.act_affine_gain)
    if not s.pairs:
        return Features((), False, any(s.dof_frictionloss) and not mj, rk4=s.rk4, fluid=s.fluid,
                        tendon=_tendon_feature(s), site=bool(s.act_site) or bool(s.act_ball), mjlimits=rows,
                        gyro=s.free_gyro, refine=s.refine, act=act)
    mesh = any(MESH in (s.geom_type[a], s.geom_type[b]) for a, b in s.pairs)
    # the cylinder and ellipsoid kinds only where some pair has them (a group of their own)
    cyl = any({CYLINDER, ELLIPSOID} & {s.geom_type[a], s.geom_type[b]} for a, b in s.pairs)
    hf = any(HFIELD in (s.geom_type[a], s.geom_type[b]) for a, b in s.pairs)  # height fields alike
    kinds = [i for i, k in enumerate(PAIR_KINDS)
             if (mesh or MESH not in k) and (cyl or not {CYLINDER, ELLIPSOID} & set(k)) and (hf or HFIELD not in k)]
    return Features(kinds, True, not mj, rk4=s.rk4, fluid=s.fluid, tendon=_tendon_feature(s),
                    site=bool(s.act_site) or bool(s.act_ball),
                    mjlimits=mj, gyro=s.free_gyro, refine=s.refine, act=act)


def _kernels(dtype: torch.dtype, feats, group: int = 1):
    from .kernels import forward

    return forward.build(_SCALAR[dtype], feats, group)




def tree_arrays(mj, s: Structure) -> dict[str, np.ndarray | int]:
    """The fields of ``kernels.tree.Tree`` for a model (int32 arrays, never empty)."""
    nb = mj.nbody
    moving = [False] * nb
    for b in range(1, nb):
        moving[b] = bool(mj.body_jntnum[b]) or moving[int(mj.body_parentid[b])]
    anc_adr, anc_num, anc = [], [], []
    for i in range(mj.nv):
        anc_adr.append(len(anc))
        j = i
        while j >= 0:
            anc.append(j)
            j = int(mj.dof_parentid[j])
        anc_num.append(len(anc) - anc_adr[-1])
    nact = np.zeros(mj.njnt, dtype=np.int32)
    for j in s.act_jnt:
        if j >= 0:
            nact[j] += 1
    # a tendon or site actuator may act on any joint (through a Jacobian): every joint's actuator
    # force is then clamped where its actuatorfrcrange says (as MuJoCo clamps every limited joint)
    nact += sum(1 for k in s.act_tendon if k >= 0) + sum(1 for k, _ in s.act_site if k >= 0)
    lastdof = [int(mj.body_dofadr[b] + mj.body_dofnum[b] - 1) if mj.body_dofnum[b] else -1 for b in range(nb)]
    for b in range(1, nb):
        if lastdof[b] < 0:
            lastdof[b] = lastdof[int(mj.body_parentid[b])]
    # every tendon's path at MuJoCo's wrap addresses (the wrap_prm parameter is indexed by them),
    # traversed only for the tendons that act (ten_wrapnum: 0 for the others)
    wraps = [tuple((int(mj.wrap_type[k]), int(mj.wrap_objid[k]))
                   for k in range(mj.tendon_adr[i], mj.tendon_adr[i] + mj.tendon_num[i]))
             for i in range(mj.ntendon)] if s.tendon_wraps else []
    wrap_adr = [int(mj.tendon_adr[i]) for i in range(len(wraps))]
    wrap_prev, wrap_pulley = [], []
    for i, path in enumerate(wraps):  # each site's predecessor in its branch (a geom wrap between
        prev, pulley = -1, -1          # them: the geom's side site, -1 none) and the pulley that
        for k, (typ, obj) in enumerate(path):  # divides the branch
            side = int(mj.wrap_prm[wrap_adr[i] + k]) if typ in (WRAP_SPHERE, WRAP_CYLINDER) else -1
            wrap_prev.append(prev if typ == WRAP_SITE else side)
            wrap_pulley.append(pulley)
            if typ == WRAP_PULLEY:
                prev, pulley = -1, len(wrap_prev) - 1
            elif typ == WRAP_SITE:
                prev = obj
    dyn = list(s.act_dyn) or [0] * mj.nu
    early = list(s.act_early) or [False] * mj.nu
    actlim = list(s.act_actlimited) or [False] * mj.nu
    again = list(s.act_affine_gain) or [False] * mj.nu
    ball = list(s.act_ball) or [(-1, False)] * mj.nu
    flags = [int(s.act_ctrllimited[a]) | 2 * int(s.act_forcelimited[a]) | 4 * int(s.act_affine_bias[a])
             | 8 * int(again[a]) | 16 * int(early[a] and dyn[a] != 0) | 32 * int(actlim[a] and dyn[a] != 0)
             | 64 * int(ball[a][1]) for a in range(mj.nu)]
    act_adr = np.cumsum([0] + [int(d != 0) for d in dyn])[:-1]  # MuJoCo's actuator_actadr: one state each
    act_adr = [int(k) if d != 0 else -1 for k, d in zip(act_adr, dyn, strict=True)]

    def arr(x):
        a = np.asarray(x, dtype=np.int32).reshape(-1)
        return a if a.size else np.zeros(1, dtype=np.int32)

    from .kernels.collision import POINTS

    hull = list(s.geom_hull) or [()] * mj.ngeom
    pnum = [POINTS[(s.geom_type[g1], s.geom_type[g2])](hull[g1][3] if hull[g1] else 0, hull[g2][3] if hull[g2] else 0)
            for g1, g2 in s.pairs]
    padr = np.cumsum([0, *pnum])[:-1]
    point_pair = [i for i, n in enumerate(pnum) for _ in range(n)]

    return {
        "nbody": nb, "njnt": mj.njnt, "nq": mj.nq, "nv": mj.nv, "nu": mj.nu, "nstage": 4 if s.rk4 else 1,
        "implicit": int(s.implicit_damping),
        "implicit_act": int(s.implicit_actuators),
        "refsafe": int(not mj.opt.disableflags & int(mujoco.mjtDisableBit.mjDSBL_REFSAFE)),
        "refine": int(s.refine),
        "jnt_gyro": arr(s.jnt_free_subtree or [0] * mj.njnt),
        "body_parent": arr(mj.body_parentid), "body_jntadr": arr(mj.body_jntadr), "body_jntnum": arr(mj.body_jntnum),
        "body_moving": arr(moving), "body_gravcomp": arr(s.body_gravcomp),
        "jnt_type": arr(mj.jnt_type), "jnt_qposadr": arr(mj.jnt_qposadr), "jnt_dofadr": arr(mj.jnt_dofadr),
        "jnt_actfrclimited": arr(s.jnt_actfrclimited), "jnt_nact": arr(nact),
        "jnt_limited": arr(s.jnt_limited), "jnt_actgravcomp": arr(s.jnt_actgravcomp),
        "dof_body": arr(mj.dof_bodyid), "dof_jnt": arr(mj.dof_jntid),
        "anc_adr": arr(anc_adr), "anc_num": arr(anc_num), "anc": arr(anc),
        "act_jnt": arr(s.act_jnt), "act_flags": arr(flags),
        "na": s.na, "act_adr": arr(act_adr), "act_dyn": arr(dyn), "act_ball": arr([j for j, _ in ball]),
        "body_dofadr": arr(np.maximum(mj.body_dofadr, 0)), "body_dofnum": arr(mj.body_dofnum),
        "dof_frictionloss": arr(s.dof_frictionloss),
        "ngeom": mj.ngeom, "npair": len(s.pairs),
        "geom_type": arr(mj.geom_type), "geom_body": arr(mj.geom_bodyid),
        **{f"geom_hull_{k}": arr([h[i] if h else 0 for h in hull])
           for i, k in enumerate(("padr", "pnum", "vadr", "vnum"))},
        "geom_hf_nrow": arr([int(mj.hfield_nrow[mj.geom_dataid[g]]) if mj.geom_type[g] == HFIELD else 0
                             for g in range(mj.ngeom)]),
        "geom_hf_ncol": arr([int(mj.hfield_ncol[mj.geom_dataid[g]]) if mj.geom_type[g] == HFIELD else 0
                             for g in range(mj.ngeom)]),
        "pair_geom1": arr([a for a, _ in s.pairs]), "pair_geom2": arr([b for _, b in s.pairs]),
        "pair_kind": arr([PAIR_KINDS.index((s.geom_type[a], s.geom_type[b])) for a, b in s.pairs]),
        "pair_implicit": arr(s.pair_implicit),
        "npoint": len(point_pair), "pair_padr": arr(padr), "pair_pnum": arr(pnum), "point_pair": arr(point_pair),
        "ntendon": len(wraps), "ten_wrapadr": arr(wrap_adr), "ten_wrapnum": arr([len(p) for p in s.tendon_wraps]),
        "wrap_type": arr([t for p in wraps for t, _ in p]), "wrap_obj": arr([o for p in wraps for _, o in p]),
        "wrap_prev": arr(wrap_prev), "wrap_pulley": arr(wrap_pulley), "site_body": arr(mj.site_bodyid),
        "body_lastdof": arr(lastdof), "act_ten": arr(s.act_tendon or [-1] * mj.nu),
        "ten_actlimited": arr(s.tendon_actfrclimited),
        "act_site": arr([a for a, _ in s.act_site] or [-1] * mj.nu),
        "act_refsite": arr([r for _, r in s.act_site] or [-1] * mj.nu),
        "neq": len(s.eq), "eq_type": arr([q[0] for q in s.eq]), "eq_obj1": arr([q[1] for q in s.eq]),
        "eq_obj2": arr([q[2] for q in s.eq]), "eq_site": arr([int(q[3]) for q in s.eq]),
        "eq_id": arr([q[4] for q in s.eq]),
        "eq_rowadr": arr(np.cumsum([0, *(EQ_ROWS[q[0]] for q in s.eq)])[:-1]),
        "nerow": sum(EQ_ROWS[q[0]] for q in s.eq) + len(s.dense_rows),
        "nerow_eq": sum(EQ_ROWS[q[0]] for q in s.eq),
        # per dense row its kind (types.ROW_*) and tendon (-1: an equality's row)
        "erow_kind": arr([ROW_EQUALITY] * sum(EQ_ROWS[q[0]] for q in s.eq) + [k for k, _ in s.dense_rows]),
        "erow_ten": arr([-1] * sum(EQ_ROWS[q[0]] for q in s.eq) + [i for _, i in s.dense_rows]),
    }


#: Kernels only the stage API launches (Physics.forward, mass_matrix): compiled on first use.
_STAGE_API_ONLY = ("stage_full_kernel", "solve_kernel")


class _Specs(list):
    """A ``record`` list (:func:`_launch`) that collects (kernel, launch keywords) instead."""


def _launch(record, kernel, **kw):
    """wp.launch, or with ``record`` (a list) its launch command appended instead; a
    :class:`_Specs` list gets (kernel, keywords), nothing launched or recorded."""
    if isinstance(record, _Specs):
        record.append((kernel, kw))
        return
    cmd = wp.launch(kernel, record_cmd=record is not None, **kw)
    if record is not None:
        record.append(cmd)


class LoopedEngine:
    """Launches of the looped step for one model (see kernels/forward.py)."""

    def __init__(self, model, contacts: bool = True, residual=None):
        from .kernels.tree import SCRATCH, SLOT, Tree, kind_types

        self.model = model
        #: what the compiled step covers (``contacts=False``: the contact-free, frictionless step
        #: of the stage API, whatever the model has); ``residual``: a hw.Residual whose MLP the
        #: step evaluates (kernels/residual.py; see :class:`ResidualNet`)
        f = features(model.structure, contacts)
        self.net = None if residual is None else ResidualNet(residual, model.device)
        self._net_cache = None  # the last Net struct net_struct made
        self._params_cache = None  # (ids, arrays, struct): the last Params struct without adjoints
        self.features = f if residual is None else f.with_residual(residual.mode)
        #: worlds per thread of the residual's adjoint (kernels/residual.GROUP on the CPU: they
        #: share its weight loads and updates; one on a GPU)
        self.group = 1
        if residual is not None and wp.get_device(model.device).is_cpu:
            from .kernels.residual import GROUP

            self.group = GROUP
        self.k = _kernels(model.dtype, self.features, self.group)
        #: the backward pass reverses kinematics -> com_vel -> rne by their hand-written adjoint
        #: (kernels/smooth.py; not with fluid forces); False: by Warp's reverse mode of stage_a
        #: (the tests compare the two)
        self.smooth_adjoint = "smooth_adjoint_kernel" in self.k
        dev = model.device
        self.tree = Tree()
        #: the same tree with explicit damping: the stage API reports qacc as mj_forward does
        #: (MuJoCo applies implicit damping only in its Euler step)
        self.stage_tree = Tree()
        self._tree_np = tree_arrays(model.mj, model.structure)
        for name, v in self._tree_np.items():
            value = wp.array(v, dtype=int, device=dev) if isinstance(v, np.ndarray) else int(v)
            setattr(self.tree, name, value)
            setattr(self.stage_tree, name, value)
        self.stage_tree.implicit = 0
        self.stage_tree.implicit_act = 0
        m = model.mj
        n = {"nbody": m.nbody, "njnt": max(m.njnt, 1), "nv": m.nv, "nv2": m.nv * m.nv, "one": 1,
             "ngeom": max(m.ngeom, 1) if self.features.kinds else 1,
             "npair": max(len(model.structure.pairs), 1) if self.features.kinds else 1,
             "npoint": max(int(self._tree_np["npoint"]), 1) if self.features.kinds else 1,
             "nnet": 1 if self.net is None else self.net.nnet,
             "nfluid": m.nbody if self.features.fluid else 1,
             "nten": max(m.ntendon, 1) if self.features.tendon else 1,
             "ntennv": max(m.ntendon * m.nv, 1) if self.features.tendon else 1,
             "nsitev": m.nv if self.features.site else 1,
             "nrow": 3 * m.nv if self.features.mjlimits else 1, "nvmj": m.nv if self.features.mjlimits else 1,
             "nerow": max(int(self._tree_np["nerow"]), 1), "nerownv": max(int(self._tree_np["nerow"]) * m.nv, 1),
             "nerow2": max(int(self._tree_np["nerow"]) ** 2, 1),
             "ngyro": m.nbody if self.features.gyro else 1,
             "nuact": max(m.nu, 1) if self.features.act else 1}
        comps = {"T": 1, "V3": 3, "Q": 4, "M33": 9}
        #: per scratch field: (name, warp type key, entries per world, scalars per entry, slot):
        #: the fields of each solve (kernels.tree.SLOT) once per solve, slot 0 and 1; shared
        #: fields have slot -1
        self.nsolve = self.features.nsolve
        shared = [(name, kind, n[size], comps[kind], -1) for name, kind, size in SCRATCH]
        self.layout = [f for f in shared if f[0] not in NET_FIELDS and f[0] != "res"]
        for slot in range(self.nsolve):
            self.layout += [(name, kind, n[size], comps[kind], slot) for name, kind, size in SLOT]
        #: scalars per world of the part of the scratch one RK4 stage's adjoint is zeroed in (all
        #: but the residual's output and NET_FIELDS: with RK4 the residual runs once per step,
        #: at its state, and every stage adds into the adjoint of its output)
        self.stage_adjoint_size = sum(c * k for _, _, c, k, _ in self.layout)
        self.layout += [f for f in shared if f[0] == "res"]
        #: scalars per world of the part of the scratch an adjoint reads (all but the residual's
        #: NET_FIELDS, which come last): what the backward pass zeroes in the adjoint's scratch
        #: at each step
        self.adjoint_size = sum(c * k for _, _, c, k, _ in self.layout)
        self.layout += [f for f in shared if f[0] in NET_FIELDS]
        #: scalars of scratch per world
        self.scratch_size = sum(c * k for _, _, c, k, _ in self.layout)
        #: the fields the kinematics stage writes (kinematics_kernel's scratch) and their size
        self.kin_layout = [f for f in self.layout if f[0] in KIN_FIELDS]
        self.kin_size = sum(c * k for _, _, c, k, _ in self.kin_layout)
        #: warp type of each scratch kind ("T", "V3", "Q", "M33")
        self._types = kind_types(_SCALAR[model.dtype])
        self._bufs: dict = {}

    # ---- structs --------------------------------------------------------------------------
    def params(self, wparams, wadj=None) -> object:
        """A Params struct over the kernel's parameter arrays (PARAM_SPEC order). With ``wadj``
        (the adjoint arrays, None where no gradient is wanted) each differentiated array is a
        view whose ``grad`` is its adjoint: Warp's adjoint of a struct argument accumulates into
        the ``grad`` of the struct's own arrays. Without adjoints the struct is kept for the same
        arrays (hybridwam.physics caches them per parameter tensor): building it costs more than a
        small rollout."""
        plain = wadj is None or all(g is None for g in wadj)
        if plain:
            key = tuple(id(a) for a in wparams)
            hit = self._params_cache
            if hit is not None and hit[0] == key:
                return hit[2]
        p = self.k["Params"]()
        for i, ((name, _), a) in enumerate(zip(PARAM_SPEC, wparams, strict=True)):
            g = None if wadj is None else wadj[i]
            if g is not None:
                a = wp.array(ptr=a.ptr, dtype=a.dtype, shape=a.shape, strides=a.strides, device=a.device)
                a.grad = g
            setattr(p, name, a)
        if plain:
            self._params_cache = (key, list(wparams), p)  # the arrays held: their ids stay theirs
        return p

    def param_grads(self, wparams, wadj) -> tuple | None:
        """(Params struct over the parameters' adjoint arrays, 1) for the hand-written adjoint of
        the smooth stages, which adds into the arrays themselves (Warp's adjoints reach them as
        the ``grad`` of :meth:`params`' arrays); a parameter without an adjoint gets a zeroed
        array to add into, dropped after. None when no parameter wants one."""
        if all(g is None for g in wadj):
            return None
        p = self.k["Params"]()
        for (name, _), a, g in zip(PARAM_SPEC, wparams, wadj, strict=True):
            setattr(p, name, g if g is not None else wp.zeros(a.shape, dtype=a.dtype, device=a.device))
        return p, 1

    def scratch(self, buf: torch.Tensor, grad: torch.Tensor | None = None, layout=None) -> tuple:
        """The Scratch structs of both solves (the same struct twice with one solve), whose arrays
        are views of ``buf`` [B, scratch_size] (one world per row): shared fields alike, each
        solve's fields (kernels.tree.SLOT) its own. With ``grad`` (same shape) each array's
        adjoint is the matching view of it; the block views of kernels.tree.ALIASES cover the
        memory of the fields they alias. ``layout``: only these fields (a sublist of
        ``self.layout``, as :attr:`kin_layout`; ``buf`` then holds just them, the other arrays
        stay unset)."""
        types = self._types
        structs = [self.k["Scratch"]() for _ in range(self.nsolve)]
        B = buf.shape[0]
        esize = buf.element_size()
        dev = self.model.device
        off = 0
        offsets = {}
        fields = self.layout if layout is None else layout
        # the block views (kernels.tree.ALIASES) over the memory of the fields they alias
        aliases = [(n, kind, count // NET_BLOCK, NET_BLOCK, -1, target) for n, kind, target in ALIASES
                   for f, _, count, _, _ in fields if f == target and count >= NET_BLOCK]
        for name, kind, count, comp, slot, *target in [*fields, *aliases]:
            at = offsets[target[0]] if target else off

            def view(t, at=at, kind=kind, count=count, comp=comp):
                return wp.array(ptr=t.data_ptr() + at * esize, dtype=types[kind], shape=(B, count),
                                strides=(t.stride(0) * esize, comp * esize), device=dev)
            a = view(buf)
            if grad is not None:
                a.grad = view(grad)
            for k, st in enumerate(structs):
                if slot in (k, -1):
                    setattr(st, name, a)
            if not target:
                offsets[name] = off
                off += count * comp
        return structs[0], structs[-1]

    def new_scratch(self, batch: int) -> torch.Tensor:
        m = self.model
        return torch.zeros(batch, self.scratch_size, dtype=m.dtype, device=m.device)

    # ---- launches -------------------------------------------------------------------------
    def _buffer(self, key: str, batch: int) -> torch.Tensor:
        """Scratch memory [batch, scratch_size], kept per kind and batch size (recorded launches
        and captured graphs point into it)."""
        buf = self._bufs.get((key, batch))
        if buf is None:
            buf = self._bufs[(key, batch)] = self.new_scratch(batch)
        return buf

    def _rows(self, key: str, batch: int, a: int, b: int, adjoint: bool = False):
        """Rows [a, b) of the ``key`` buffer of ``batch`` worlds and a Scratch struct over them;
        with ``adjoint``, also rows of the ``key + " adj"`` buffer as the arrays' adjoints:
        (rows, adjoint rows or None, struct, struct over the adjoint rows or None)."""
        k = (key, batch, a, b, adjoint)
        hit = self._bufs.get(k)
        if hit is None:
            rows = self._buffer(key, batch)[a:b]
            arows = self._buffer(key + " adj", batch)[a:b] if adjoint else None
            hit = self._bufs[k] = (rows, arows, self.scratch(rows, arows),
                                   None if arows is None else self.scratch(arows))
        return hit

    def rk_rows(self, key: str, batch: int, a: int, b: int, adjoint: bool = False):
        """The RK4 stages' arrays over rows [a, b) of the ``key`` RK buffer of ``batch`` worlds
        (kernels.tree.RK_FIELDS, each [world, RK_SLOTS, n]): (RK struct, its arrays in RK_FIELDS
        order, the adjoint rows or None); with ``adjoint`` each array's grad is its view of the
        ``key`` adjoint RK buffer. Without RK4: an empty struct (the kernels take one)."""
        from .kernels.tree import RK_FIELDS, RK_SLOTS

        k = ("rk", key, batch, a, b, adjoint)
        hit = self._bufs.get(k)
        if hit is not None:
            return hit
        if not self.features.rk4:
            hit = self._bufs[k] = (self.k["RK"](), [], None)
            return hit
        mj, m = self.model.mj, self.model
        na = self.model.structure.na  # the activations after the coordinates, their rates after the accelerations
        widths = {"q": mj.nq + na, "v": mj.nv, "k": mj.nv, "c": max(mj.nu, 1), "fe": mj.nv, "ae": mj.nv,
                  "a": mj.nv + na}
        size = RK_SLOTS * sum(widths.values())

        def rows(name):
            t = self._bufs.get((name, batch))
            if t is None:
                t = self._bufs[(name, batch)] = torch.zeros(batch, size, dtype=m.dtype, device=m.device)
            return t[a:b]

        buf = rows(key + " rk")
        abuf = rows(key + " rk adj") if adjoint else None
        st, arrays, off = self.k["RK"](), [], 0
        esize = buf.element_size()
        for name in RK_FIELDS:
            n = widths[name]

            def view(t, off=off, n=n):
                return wp.array(ptr=t.data_ptr() + off * esize, dtype=_SCALAR[m.dtype], shape=(b - a, RK_SLOTS, n),
                                strides=(t.stride(0) * esize, n * esize, esize), device=m.device)
            arr = view(buf)
            if abuf is not None:
                arr.grad = view(abuf)
            setattr(st, name, arr)
            arrays.append(arr)
            off += RK_SLOTS * n
        hit = self._bufs[k] = (st, arrays, abuf)
        return hit

    def net_struct(self, tensors=None):
        """The Net struct of the residual's numbers (``tensors``: :meth:`ResidualNet.tensors`'
        order), or an empty one without a residual (the struct over the weights' adjoints:
        :meth:`grad_buffers`)."""
        if self.net is None:
            return self.k["Net"]()
        # the flat copies of the weights are remade only when a weight changed (ResidualNet.changed)
        if self._net_cache is None or self.net.changed(tensors, "net_struct"):
            self._net_cache = self.net.struct(self.k["Net"], self.model.dtype, tensors)
        return self._net_cache

    def grad_buffers(self, K: int):
        """((gWb [K, nwb, block], gbb [K, nbb, block], gWt [K, ntb, block]), structs): zeroed
        buffers the residual's adjoint accumulates its weights' and biases' adjoints into, one per
        range of worlds, in the layouts of the Net struct's Wb, bb, Wt (see
        :meth:`ResidualNet.split_grads`), and a Net struct over each
        (:meth:`ResidualNet.grad_struct`); kept per K, zeroed per call (making the structs costs
        more than a small rollout's backward)."""
        hit = self._bufs.get(("grad net", K))
        if hit is None:
            net = self.net
            like = net.linears[0].weight
            bufs = tuple(torch.zeros(K, n, net.block, dtype=like.dtype, device=like.device)
                         for n in (net.nwb, net.nbb, net.ntb))
            structs = [net.grad_struct(self.k["Net"], self.model.dtype, *(b[k] for b in bufs)) for k in range(K)]
            hit = self._bufs[("grad net", K)] = (bufs, structs)
        else:
            for b in hit[0]:
                b.zero_()
        return hit

    def forward_launches(self, arrays, T: int, wparams, sl, stream=None, record=False, net=None) -> list:
        """Launches of ``rollout_kernel`` over the slices ``sl`` of worlds; ``arrays``: a function
        (a, b) -> the six trajectory arrays (qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc) of
        those worlds; ``net``: the residual's Net struct (:meth:`net_struct`). Returns the launch
        commands when ``record`` (else launches, returns [])."""
        p = self.params(wparams)
        net = self.net_struct() if net is None else net
        B = sl[-1][1]
        cmds = []
        for a, b in sl:
            _, _, s, _ = self._rows("fwd", B, a, b)
            rk = self.rk_rows("fwd", B, a, b)[0]
            cmd = wp.launch(self.k["rollout_kernel"], dim=b - a, device=self.model.device, stream=stream,
                            inputs=[*arrays(a, b), 0, T, 0, self.tree, p, *s, net, rk], record_cmd=record)
            if record:
                cmds.append(cmd)
        return cmds

    def step_forward(self, dim: int, fwd, t: int, tree, p, s, full: bool = False, record=None) -> None:
        """Step t of the trajectory arrays ``fwd`` in parts (stage_a, per solve the collision /
        dry-friction stage and the solve, stage_b), leaving its intermediates in the scratch
        structs ``s`` (one per solve, see :meth:`scratch`): the stage API's step (the backward
        pass of a rollout runs the rollout kernel for one step instead). ``full``: with MuJoCo's
        joint-space terms (M, qfrc_bias; the stage API's stage_full_kernel); ``record``: a list
        the launches are appended to as Warp launch commands, instead of running them. Physics
        only: an engine with a residual has no separate residual stage forward."""
        dev = self.model.device

        def go(kernel, **kw):
            _launch(record, kernel, dim=dim, device=dev, **kw)

        if self.net is not None:
            raise ValueError("step_forward runs the physics' stages; an engine with a residual steps through "
                             "its rollout kernel")
        s0, s1 = s
        stage = self.k["stage_full_kernel" if full else "stage_a_kernel"]
        go(stage, inputs=[*fwd, t, tree, p, s0, s1])
        for slot, sk in enumerate(s[:self.nsolve]):
            if "assemble_kernel" in self.k:
                go(self.k["assemble_kernel"], inputs=[fwd[1], fwd[4], t, slot, tree, p, sk, s0])
            go(self.k["solve_kernel"], inputs=[tree, p, sk, slot])
        go(self.k["stage_b_kernel"], inputs=[*fwd, t, tree, p, s0, s1])

    def step_adjoint(self, dim: int, fwd, adj, t: int, tree, padj, s, sa, full: bool = False, net=None,
                     gnet=None, record=None, residual: bool = True, pgrad=None) -> None:
        """Adjoint of step t (its forward run just before, same arrays, by :meth:`step_forward` or
        the rollout kernel for that step): stage_b in Warp's adjoint
        mode, per solve from the last its hand-written adjoint and the collision stage's adjoint,
        stage_a in adjoint mode. ``s``'s arrays carry their adjoints (the structs ``sa`` are over
        the same adjoint memory), ``padj`` the parameters' (see :meth:`params`), ``adj`` the
        trajectory arrays'; ``full`` as in :meth:`step_forward`; ``net`` / ``gnet``: the
        residual's Net struct and the one over its weights' adjoints (engines with a residual:
        its hand-written adjoint runs last, unless not ``residual``: an RK4 stage after the first,
        whose residual is the first stage's); ``record`` as in :meth:`step_forward`; ``pgrad``: the
        (struct, flag) of :meth:`param_grads` for the hand-written adjoint of the smooth stages
        (kernels/smooth.py; models without fluid forces, not ``full``), None: no parameter adjoints
        wanted."""
        dev = self.model.device

        def go(kernel, **kw):
            _launch(record, kernel, dim=dim, device=dev, **kw)

        s0, s1 = s
        go(self.k["stage_b_kernel"], inputs=[*fwd, t, tree, padj, s0, s1], adj_inputs=[*adj, 0, tree, padj, s0, s1],
           adjoint=True)
        for slot in range(self.nsolve - 1, -1, -1):
            go(self.k["solve_adjoint_kernel"], inputs=[tree, padj, s[slot], sa[slot], slot])
            if "assemble_kernel" in self.k:
                go(self.k["assemble_kernel"], inputs=[fwd[1], fwd[4], t, slot, tree, padj, s[slot], s0],
                   adj_inputs=[adj[1], adj[4], 0, 0, tree, padj, s[slot], s0], adjoint=True)
        hand = not full and self.smooth_adjoint
        stage = self.k["stage_full_kernel" if full else "stage_rest_kernel" if hand else "stage_a_kernel"]
        go(stage, inputs=[*fwd, t, tree, padj, s0, s1], adj_inputs=[*adj, 0, tree, padj, s0, s1], adjoint=True)
        if hand:
            pg, gp = (padj, 0) if pgrad is None else pgrad
            go(self.k["smooth_adjoint_kernel"], inputs=[fwd[0], fwd[1], adj[0], adj[1], t, tree, padj, pg, gp, s0,
                                                        sa[0]])
        if self.net is not None and residual:
            _launch(record, self.k["residual_adjoint_kernel"], dim=-(-dim // self.group), device=dev,
                    inputs=[fwd[0], fwd[2], t, dim, tree, net, gnet, s0, sa[0], adj[0], adj[1], adj[2]])

    def backward(self, arrays, adj_arrays, T: int, wparams, wadj, ranges, threads: int, run, net=None,
                 gnets=None) -> None:
        """Adjoint of a rollout: per range of worlds, for t = T-1 .. 0, step t forward (its
        intermediates into the scratch, outputs into the trajectory arrays, which must be copies
        of the rollout's) then its adjoint, with the scratch adjoints zeroed in between (with
        RK4: the combination's adjoint, then per stage from the last its evaluation again and its
        adjoint, the scratch adjoints zeroed before each; kernels/forward.py).
        ``arrays`` / ``adj_arrays``: (a, b) -> the six trajectory arrays / their adjoints;
        ``wadj[k]``: the parameter adjoint arrays of range k; ``run(tasks, threads)`` runs the
        ranges' tasks (hybridwam.parallel.run); ``net``, ``gnets[k]``: the residual's Net struct
        and range k's struct over its weights' adjoints (engines with a residual; the adjoints of
        ctrl must then be an array)."""
        from .kernels.tree import RK_FIELDS

        B = ranges[-1][1]
        p = self.params(wparams)

        def task(k, a, b):
            def go():
                _, abuf, s, sa = self._rows("bwd", B, a, b, adjoint=True)
                rk, rka, rkbuf = self.rk_rows("bwd", B, a, b, adjoint=True)
                padj = self.params(wparams, wadj[k])
                pgrad = self.param_grads(wparams, wadj[k])
                fwd, adj = arrays(a, b), adj_arrays(a, b)
                gnet = None if gnets is None else gnets[k]
                netf = self.net_struct() if net is None else net
                dev, dim = self.model.device, b - a
                # the step's launches, packed once and replayed with each t (a launch's argument
                # packing costs more than a small batch's arithmetic; hybridwam.replay): the step
                # forward as one launch of the rollout kernel (step t only), then its adjoint. They
                # are kept for the next backward pass of this range, which repacks only the
                # arguments that changed (the trajectory arrays, as a rule). ``plan``: per launch
                # whether its t is the step's (an RK stage's launches take the stage there) and
                # whether the scratch adjoints are zeroed before it
                specs, plan = _Specs(), []

                def add(timed: bool, zero: bool, record) -> None:
                    """``record(specs)`` appends launches: their t is the step's where ``timed`` (an
                    RK stage's launches take the stage there), the scratch adjoints zeroed before
                    the first where ``zero``."""
                    n0 = len(specs)
                    record(specs)
                    plan.extend((timed, zero and i == n0) for i in range(n0, len(specs)))

                def launch(kernel, **kw):
                    return lambda r: _launch(r, kernel, dim=dim, device=dev, **kw)

                add(True, False, launch(self.k["rollout_kernel"],
                                        inputs=[*fwd, T - 1, 1, 1, self.tree, p, *s, netf, rk]))
                if self.features.rk4:
                    # the stage kernels' trajectory arrays: the rk arrays of (q, v, c, fe, ae, a)
                    rkf = [rka[RK_FIELDS.index(n)] for n in ("q", "v", "c", "fe", "ae", "a")]
                    rkg = [x.grad for x in rkf]
                    add(True, True, launch(self.k["rk_final_kernel"],
                                           inputs=[fwd[0], fwd[1], fwd[5], T - 1, self.tree, padj, rk],
                                           adj_inputs=[adj[0], adj[1], adj[5], 0, self.tree, padj, rk], adjoint=True))
                    for i in range(3, -1, -1):
                        if i < 3:  # stage i again: its intermediates into the scratch
                            add(False, False, launch(self.k["rk_eval_kernel"], inputs=[i, self.tree, p, *s, netf, rk]))
                        add(False, i < 3, lambda r, i=i: self.step_adjoint(dim, rkf, rkg, i, self.tree, padj, s, sa,
                                                                             net=net, gnet=gnet, record=r,
                                                                             residual=i == 0, pgrad=pgrad))
                        add(True, False, launch(self.k["rk_prep_kernel"],
                                                inputs=[*fwd[:5], T - 1, i, self.tree, padj, rk],
                                                adj_inputs=[*adj[:5], 0, 0, self.tree, padj, rk], adjoint=True))
                else:
                    add(True, True, lambda r: self.step_adjoint(dim, fwd, adj, T - 1, self.tree, padj, s, sa, net=net,
                                                                gnet=gnet, record=r, pgrad=pgrad))
                reps = self._replays(("replay", B, a, b), specs, (p, padj, net, gnet, pgrad and pgrad[0]))
                timed = [r.setter("t") for r, (tm, _) in zip(reps, plan, strict=True) if tm and "t" in r.names]
                cpu = abuf.device.type == "cpu"

                def zero(t):
                    return functools.partial(t.numpy().fill, 0) if cpu else t.zero_

                # at the step's first zeroing its whole adjoint scratch (and the RK arrays'), later
                # (RK4's stages) all but the residual's output, which every stage adds into
                first = [zero(abuf[:, :self.adjoint_size])] + ([] if rkbuf is None else [zero(rkbuf)])
                later = zero(abuf[:, :self.stage_adjoint_size])
                calls = []
                for r, (_, z) in zip(reps, plan, strict=True):
                    if z:
                        calls += [later] if first is None else first
                        first = None
                    calls.append(r.call)
                for t in range(T - 1, -1, -1):
                    for c in timed:
                        c(t)
                    for c in calls:
                        c()
            return go

        run([task(k, a, b) for k, (a, b) in enumerate(ranges)], threads)

    def _replays(self, slot, specs, structs) -> list[Replay]:
        """The launches ``specs`` (a :class:`_Specs` list) as Replays, kept under ``slot``: the
        ones kept there are rebound to the specs' arguments when they were made with the very
        same ``structs`` and kernels (held, so the identity check stays sound), else new ones
        are recorded and kept."""
        held = (*structs, *(k for k, _ in specs))
        hit = self._bufs.get(slot)
        if hit is not None and len(hit[0]) == len(held) and all(x is y for x, y in zip(hit[0], held, strict=True)):
            for r, (_, kw) in zip(hit[1], specs, strict=True):
                r.rebind(kw["inputs"], kw.get("adj_inputs"))
            return hit[1]
        reps = [Replay(wp.launch(k, record_cmd=True, **kw), kw["inputs"], kw.get("adj_inputs")) for k, kw in specs]
        self._bufs[slot] = (held, reps)
        return reps

    def load(self, verbose: bool = True, label: str = "this model") -> float:
        """Compile (or load from Warp's cache) the kernels on the model's device; returns seconds.
        The code is the same for every model of this scalar type and features, so it compiles
        once per machine (Warp caches it on disk). The kernels are separate modules, compiled
        side by side on the CPU's cores (one after another for a GPU). What only the stage API
        runs (stage_full_kernel, the forward solve_kernel) is left to its first launch (Warp
        compiles a module when first used)."""
        import os
        import sys
        import time
        from concurrent.futures import ThreadPoolExecutor

        t0 = time.perf_counter()
        dev = self.model.device
        lazy = (*_STAGE_API_ONLY, *(("stage_a_kernel",) if self.smooth_adjoint else ()))
        mods = [k.module for name, k in self.k.items() if name.endswith("_kernel") and name not in lazy]
        wp.init()
        # on the CPU each module's compile is a call into Warp's compiler that releases the GIL;
        # CUDA modules load one after another (each thread would need the device's context)
        workers = min(len(mods), os.cpu_count() or 1) if str(dev).startswith("cpu") else 1
        if workers > 1:
            with ThreadPoolExecutor(workers) as ex:
                list(ex.map(lambda m: wp.load_module(m, device=dev), mods))
        else:
            for m in mods:
                wp.load_module(m, device=dev)
        dt = time.perf_counter() - t0
        if verbose and dt > 1.0:
            print(f"hybridwam: compiled the looped physics kernels ({label}) in {dt:.1f} s; they serve every "
                  "model of this dtype with the same contact pair kinds and are cached on disk", file=sys.stderr)
        return dt


# ---- stage-level API: the same stage functions, one step's intermediates as torch tensors -------
def field(eng: LoopedEngine, buf: torch.Tensor, name: str, layout=None) -> torch.Tensor:
    """View [B, entries, scalars per entry] of scratch field ``name`` in ``buf`` [B, scratch_size]
    (``layout``: of a buffer holding only those fields, as LoopedEngine.kin_layout)."""
    off = 0
    for n, _, count, comp, slot in eng.layout if layout is None else layout:
        if n == name and slot <= 0:
            return buf[:, off:off + count * comp].view(buf.shape[0], count, comp)
        off += count * comp
    raise KeyError(name)


class ResidualNet:
    """A hw.Residual as the Net struct of kernels/residual.py: its structure (layer sizes, the
    feature plan, activation) as index arrays made once, its numbers (the weights and biases in
    the kernel's block layout, the standardisation, the controls' centre and half-range, the
    output scale) from the tensors of :meth:`tensors`."""

    def __init__(self, residual, device: str):
        from .kernels import residual as kr

        if residual.activation not in kr.ACT_NAMES:
            raise ValueError(f"the fused residual has no activation {residual.activation!r}")
        self.linears = [m for m in residual.net if isinstance(m, torch.nn.Linear)]
        dims = [self.linears[0].in_features] + [lin.out_features for lin in self.linears]
        self.nfeat = dims[0]
        self.act = kr.ACT_NAMES.index(residual.activation)
        fk, fa, fs = [], [], []
        for kind, a in residual._plan:
            if kind == "hinge":
                fk += [kr.F_SIN, kr.F_COS]
                fa += [a, a]
                fs += [0, 0]
            elif kind == "slide":
                fk.append(kr.F_RAW)
                fa.append(a)
                fs.append(0)
            else:
                fk += [kr.F_QUAT] * 4
                fa += [a, a + 1, a + 2, a + 3]
                fs += [a] * 4
        fk += [kr.F_VEL] * residual.nv + [kr.F_CTRL] * residual.nu
        fa += list(range(residual.nv)) + list(range(residual.nu))
        fs += [0] * (residual.nv + residual.nu)
        if len(fk) != self.nfeat:
            raise ValueError(f"the residual's first layer takes {self.nfeat} inputs, its features are {len(fk)}")
        # per layer: where its blocks of weights and biases start (woff, boff) and, per world
        # (the features first), where its outputs go (hoff; the features and each layer's outputs
        # padded to whole blocks, which the kernel writes whole) and its inputs are (ioff)
        NB = kr.BLOCK
        woff, boff, toff, hoff = [], [], [], []
        nw = nb = nt = 0
        h = -(-self.nfeat // NB) * NB
        for nin, nout in zip(dims[:-1], dims[1:], strict=True):
            woff.append(nw)
            boff.append(nb)
            toff.append(nt)
            hoff.append(h)
            if nout > kr.NARROW:  # a narrow layer reads Wt only (kernels/residual.layer)
                nw += -(-nout // NB) * nin
            nb += -(-nout // NB)
            nt += -(-nin // NB) * nout
            h += -(-nout // NB) * NB
        #: blocks of weights (one unread row when every layer is narrow), of biases and of
        #: transposed weights (rows of the block tensors, :meth:`blocks`), the block width
        self.nwb, self.nbb, self.ntb, self.block = max(nw, 1), nb, nt, NB
        #: per world: the features, then every layer's outputs (padded to whole blocks)
        self.nnet = h
        ioff = [0] + hoff[:-1]
        self._ints = {n: wp.array(np.asarray(v, dtype=np.int32), dtype=int, device=device)
                      for n, v in (("dims", dims), ("woff", woff), ("boff", boff), ("toff", toff), ("ioff", ioff),
                                   ("hoff", hoff), ("fkind", fk), ("fadr", fa), ("fsgn", fs))}
        self.residual = residual
        self._seen: dict = {}  # tag -> the weights as last seen (changed)

    def tensors(self) -> list[torch.Tensor]:
        """The residual's numbers in the order the struct reads them: each layer's weight and
        bias (the differentiable ones), then input_mean, input_std, ctrl_center, ctrl_scale,
        output_scale."""
        r = self.residual
        out = []
        for lin in self.linears:
            out += [lin.weight, lin.bias]
        return out + [r.input_mean, r.input_std, r.ctrl_center, r.ctrl_scale, r.output_scale]

    def blocks(self, tensors) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(Wb [nwb, block], bb [nbb, block], Wt [ntb, block]): the weights and biases among
        ``tensors`` (:meth:`tensors`' order) in the kernel's layout: per layer of more than
        kernels.residual.NARROW outputs, per block of ``block`` outputs (the last padded with
        zeros), per input, the block's weights; the biases by blocks alike; Wt the same weights by
        blocks of inputs (per block of ``block`` inputs, per output, the weights from those
        inputs: the adjoint's product with the transpose, and a narrow layer's product)."""
        from .kernels.residual import NARROW

        nl, NB = len(self.linears), self.block
        Ws = [t.detach() for t in tensors[0:2 * nl:2]]
        bs = [t.detach() for t in tensors[1:2 * nl:2]]
        pad = [-x.shape[0] % NB for x in Ws]
        Wb = [torch.cat([x, x.new_zeros(n, x.shape[1])]).reshape(-1, NB, x.shape[1]).transpose(1, 2).reshape(-1, NB)
              for x, n in zip(Ws, pad, strict=True) if x.shape[0] > NARROW]
        Wb = torch.cat(Wb) if Wb else Ws[0].new_zeros(1, NB)
        bb = torch.cat([torch.cat([x, x.new_zeros(n)]).reshape(-1, NB) for x, n in zip(bs, pad, strict=True)])
        Wt = torch.cat([torch.cat([x.T, x.new_zeros(-x.shape[1] % NB, x.shape[0])]).reshape(-1, NB, x.shape[0])
                        .transpose(1, 2).reshape(-1, NB) for x in Ws])
        return Wb.contiguous(), bb.contiguous(), Wt.contiguous()

    def _struct(self, cls, dtype, Wb, bb, Wt=None, buffers=()):
        """The Net struct ``cls`` over the block tensors Wb, bb, Wt and the residual's ``buffers``
        (input_mean, input_std, ctrl_center, ctrl_scale, output_scale; none for the struct the
        adjoint accumulates the weights' adjoints into). wp.from_torch keeps each tensor alive
        as long as its array."""
        T = _SCALAR[dtype]
        VB = wp.types.vector(self.block, T)
        n = cls()
        n.nlayer, n.nfeat, n.act = len(self.linears), self.nfeat, self.act
        for k, v in self._ints.items():
            setattr(n, k, v)
        n.Wb = wp.from_torch(Wb, dtype=VB, requires_grad=False)
        n.bb = wp.from_torch(bb, dtype=VB, requires_grad=False)
        if Wt is not None:
            n.Wt = wp.from_torch(Wt, dtype=VB, requires_grad=False)
        for name, t in zip(("mean", "std", "ccen", "cscl", "oscl"), buffers, strict=bool(buffers)):
            t = t.detach().contiguous()
            if t.numel() == 0:  # no actuators: an unread placeholder
                t = torch.ones(1, dtype=t.dtype, device=t.device)
            setattr(n, name, wp.from_torch(t, dtype=T, requires_grad=False))
        return n

    def struct(self, cls, dtype, tensors):
        """The Net struct ``cls`` over ``tensors`` (as :meth:`tensors`; the weights copied into
        the block layout, :meth:`blocks`)."""
        return self._struct(cls, dtype, *self.blocks(tensors), buffers=tensors[2 * len(self.linears):])

    def grad_struct(self, cls, dtype, gWb: torch.Tensor, gbb: torch.Tensor, gWt: torch.Tensor):
        """The Net struct the adjoint kernel accumulates the weights' and biases' adjoints into:
        its Wb, bb, Wt over gWb [nwb, block], gbb [nbb, block], gWt [ntb, block] (see
        :meth:`split_grads`)."""
        return self._struct(cls, dtype, gWb, gbb, gWt)

    def owned_struct(self, cls, dtype, device):
        """(struct, refresh): a Net struct whose block weights are buffers it owns (their addresses
        stay, as a captured graph needs) and ``refresh()``, which copies the residual's current
        weights and biases into them when they changed since the last call (:meth:`changed`; the
        buffers mean, std, ... are the module's own tensors)."""
        like = self.linears[0].weight
        Wb = torch.zeros(self.nwb, self.block, dtype=like.dtype, device=like.device)
        bb = torch.zeros(self.nbb, self.block, dtype=like.dtype, device=like.device)
        Wt = torch.zeros(self.ntb, self.block, dtype=like.dtype, device=like.device)
        tag = ("owned", id(Wb))

        def refresh():
            t = self.tensors()
            if self.changed(t, tag):
                with torch.no_grad():
                    for buf, fresh in zip((Wb, bb, Wt), self.blocks(t), strict=True):
                        buf.copy_(fresh)

        refresh()
        return self._struct(cls, dtype, Wb, bb, Wt, self.tensors()[2 * len(self.linears):]), refresh

    def changed(self, tensors, tag) -> bool:
        """Whether the weights and biases among ``tensors`` (:meth:`tensors`' order) differ from
        what they were at the last call with the same ``tag`` (True the first time): compared by
        address and value, since an edit through ``.data`` leaves torch's version counter as it
        was (the copies are cheap next to remaking the flat weights)."""
        w = [t.detach() for t in tensors[:2 * len(self.linears)]]
        old = self._seen.get(tag)
        same = (old is not None and all(a.data_ptr() == p and torch.equal(a, c)
                                        for a, (p, c) in zip(w, old, strict=True)))
        if not same:
            self._seen[tag] = [(a.data_ptr(), a.clone()) for a in w]
        return not same

    def split_grads(self, gWb: torch.Tensor, gbb: torch.Tensor, gWt: torch.Tensor) -> list[torch.Tensor]:
        """Per-layer (weight, bias) gradients, in :meth:`tensors`' order, from the layouts the
        adjoint accumulates them in (gWb [nwb, block], gbb [nbb, block], gWt [ntb, block], as the
        struct's Wb, bb, Wt; a layer of at most kernels.residual.NARROW outputs has its weights'
        in gWt, by blocks of inputs)."""
        from .kernels.residual import NARROW

        out, wo, bo, to, NB = [], 0, 0, 0, self.block
        for lin in self.linears:
            nout, nin = lin.weight.shape
            nblk, nbin = -(-nout // NB), -(-nin // NB)
            if nout <= NARROW:
                g = gWt[to:to + nbin * nout].reshape(nbin, nout, NB).transpose(0, 1).reshape(nout, nbin * NB)[:, :nin]
            else:
                g = gWb[wo:wo + nblk * nin].reshape(nblk, nin, NB).transpose(1, 2).reshape(nblk * NB, nin)[:nout]
                wo += nblk * nin
            out += [g, gbb[bo:bo + nblk].reshape(-1)[:nout]]
            bo, to = bo + nblk, to + nbin * nout
        return out


#: Scratch fields the kinematics stage writes (kernels/smooth.kinematics), parameters it reads.
KIN_FIELDS = ("xp0", "xq0", "xp", "xq", "xd", "jp", "jq", "jaxis", "janchor")
KIN_PARAMS = ("body_pos", "body_quat", "jnt_pos", "jnt_axis", "qpos0")


def _kin_params(eng: LoopedEngine, params, grads=None):
    """A Params struct with the KIN_PARAMS arrays (``params``: their tensors in that order), each
    with its adjoint ``grads[i]`` where given; the other fields stay unset."""
    from .kernels.tree import kind_types

    types = kind_types(_SCALAR[eng.model.dtype])
    kinds = dict(PARAM_SPEC)
    p = eng.k["Params"]()
    for i, (name, t) in enumerate(zip(KIN_PARAMS, params, strict=True)):
        a = wp.from_torch(t.contiguous(), dtype=types[kinds[name]], requires_grad=False)
        if grads is not None and grads[i] is not None:
            a.grad = wp.from_torch(grads[i], dtype=types[kinds[name]], requires_grad=False)
        setattr(p, name, a)
    return p


class _Kinematics(torch.autograd.Function):
    """Body poses at qpos [B, nq]: (xp [B, nbody, 3], xq [B, nbody, 4] as (x, y, z, w)) from the
    kinematics stage (kernels.forward.build_kinematics), differentiable w.r.t. qpos and the
    KIN_PARAMS parameters (Warp's adjoint of the same kernel)."""

    @staticmethod
    def forward(ctx, eng, qpos, *params):
        from .kernels.forward import build_kinematics

        k = build_kinematics(_SCALAR[eng.model.dtype])["kinematics_kernel"]
        B = qpos.shape[0]
        Q = qpos.detach().contiguous().view(B, 1, -1)
        buf = torch.zeros(B, eng.kin_size, dtype=qpos.dtype, device=qpos.device)
        s = eng.scratch(buf, layout=eng.kin_layout)[0]
        T = wp.from_torch(Q, dtype=_SCALAR[eng.model.dtype], requires_grad=False)
        wp.launch(k, dim=B, device=eng.model.device, inputs=[T, eng.tree, _kin_params(eng, params), s])
        ctx.eng, ctx.kernel = eng, k
        ctx.save_for_backward(Q, *params)
        return tuple(field(eng, buf, n, eng.kin_layout).clone() for n in ("xp", "xq"))

    @staticmethod
    def backward(ctx, gxp, gxq):
        eng, k = ctx.eng, ctx.kernel
        Q, *params = ctx.saved_tensors
        B = Q.shape[0]
        needs = ctx.needs_input_grad
        buf = torch.zeros(B, eng.kin_size, dtype=Q.dtype, device=Q.device)
        abuf = torch.zeros_like(buf)
        for name, g in (("xp", gxp), ("xq", gxq)):
            if g is not None:
                field(eng, abuf, name, eng.kin_layout).copy_(g)
        aQ = torch.zeros_like(Q)
        pgrads = [torch.zeros_like(p) if needs[2 + i] else None for i, p in enumerate(params)]
        s = eng.scratch(buf, abuf, layout=eng.kin_layout)[0]
        sT = _SCALAR[eng.model.dtype]
        T = wp.from_torch(Q, dtype=sT, requires_grad=False)
        aT = wp.from_torch(aQ, dtype=sT, requires_grad=False)
        p = _kin_params(eng, params, pgrads)
        dev = eng.model.device
        wp.launch(k, dim=B, device=dev, inputs=[T, eng.tree, p, s])
        wp.launch(k, dim=B, device=dev, inputs=[T, eng.tree, p, s], adj_inputs=[aT, eng.tree, p, s], adjoint=True)
        return (None, aQ.view(B, -1) if needs[1] else None, *pgrads)


def kinematics(eng: LoopedEngine, qpos: torch.Tensor, params: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """(xp [B, nbody, 3], xq [B, nbody, 4] (x, y, z, w)) at qpos [B, nq] with the model parameter
    tensors ``params`` (a Model's ``params``), differentiable (see :class:`_Kinematics`)."""
    return _Kinematics.apply(eng, qpos, *(params[n] for n in KIN_PARAMS))


def site_positions(mj, xpos: torch.Tensor, xq: torch.Tensor, sites=None) -> torch.Tensor:
    """World positions [..., n, 3] of the sites ``sites`` (ids; default: all) from the body poses
    xpos [..., nbody, 3], xq [..., nbody, 4] as (x, y, z, w): each site's body pose applied to its
    ``site_pos``."""
    ids = list(range(mj.nsite)) if sites is None else list(sites)
    if not ids:
        return xpos.new_zeros(*xpos.shape[:-2], 0, 3)
    b = torch.as_tensor(np.asarray(mj.site_bodyid, dtype=np.int64)[ids], device=xpos.device)
    r = torch.as_tensor(np.asarray(mj.site_pos)[ids], dtype=xpos.dtype, device=xpos.device)
    q = xq[..., b, :]
    u, w = q[..., :3], q[..., 3:]
    t = 2.0 * torch.linalg.cross(u, r.expand_as(u))
    return xpos[..., b, :] + r + w * t + torch.linalg.cross(u, t)


#: What a stage evaluation returns, from the scratch fields of the same names.
STAGE_OUTPUTS = ("xp", "xq", "M", "qacc", "qfrc_bias", "qfrc_passive", "qfrc_actuator", "qfrc_constraint")


class _Stages(torch.autograd.Function):
    """One evaluation of the step's stages at (qpos, qvel, ctrl) [B, .]: the STAGE_OUTPUTS fields,
    differentiable w.r.t. the state, the controls and every parameter (one step's adjoint).
    ``phys``: the Physics whose stage engine runs it and whose checked parameter arrays it reads."""

    @staticmethod
    def forward(ctx, phys, qpos, qvel, ctrl, *params):
        eng = phys._stage_engine()
        m = eng.model
        B = qpos.shape[0]
        # qpos [B, nq + na]: the coordinates, then the activations (as the trajectory arrays)
        Q = torch.zeros(B, 2, m.nq + m.na, dtype=m.dtype, device=m.device)
        V = torch.zeros(B, 2, m.nv, dtype=m.dtype, device=m.device)
        C = torch.zeros(B, 1, max(m.nu, 1), dtype=m.dtype, device=m.device)
        Z = torch.zeros(B, 1, m.nv, dtype=m.dtype, device=m.device)
        A = torch.zeros(B, 1, m.nv + m.na, dtype=m.dtype, device=m.device)
        Q[:, 0], V[:, 0] = qpos, qvel
        if m.nu:
            C[:, 0] = ctrl
        buf = eng.new_scratch(B)
        s = eng.scratch(buf)
        eng.step_forward(B, [phys._wp(t) for t in (Q, V, C, Z, Z, A)], 0, eng.stage_tree,
                         eng.params(phys._wp_params(params)), s, full=True)
        ctx.phys, ctx.arrays = phys, (Q, V, C, Z, A)
        ctx.save_for_backward(*params)
        return tuple(field(eng, buf, n).clone() for n in STAGE_OUTPUTS)

    @staticmethod
    def backward(ctx, *grads):
        phys = ctx.phys
        eng = phys._stage_engine()
        m = eng.model
        params = ctx.saved_tensors
        Q, V, C, Z, A = ctx.arrays
        B = Q.shape[0]
        needs = ctx.needs_input_grad
        buf, abuf = eng.new_scratch(B), eng.new_scratch(B)
        for n, g in zip(STAGE_OUTPUTS, grads, strict=True):
            if g is not None:
                field(eng, abuf, n).copy_(g)
        aQ, aV, aC = torch.zeros_like(Q), torch.zeros_like(V), torch.zeros_like(C)
        wt = [phys._wp(t) for t in (Q, V, C, Z, Z, A)]
        wa = [phys._wp(t) for t in (aQ, aV, aC)]
        pgrads = [torch.zeros_like(p) if needs[4 + i] else None for i, p in enumerate(params)]
        wadj = [None if g is None else phys._wp_param(n, g) for (n, _), g in zip(PARAM_SPEC, pgrads, strict=True)]
        s = eng.scratch(buf, abuf)
        pa = eng.params(phys._wp_params(params), wadj)
        eng.step_forward(B, wt, 0, eng.stage_tree, pa, s, full=True)
        eng.step_adjoint(B, wt, [*wa, None, None, None], 0, eng.stage_tree, pa, s, eng.scratch(abuf), full=True)
        out = [None, aQ[:, 0], aV[:, 0], aC[:, 0, :m.nu] if m.nu else None, *pgrads]
        return tuple(g if needs[i] else None for i, g in enumerate(out))
