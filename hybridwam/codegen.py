"""Per-model fused Warp kernels, generated from the model's structure.

The tree structure (parents, joint types, actuator flags) is unrolled into straight-line code:
every intermediate is its own SSA variable, so Warp's reverse mode is exact (no array entry is
read and later overwritten) and all loops disappear at code-generation time. Numeric values
(masses, axes, gains, ...) stay in arrays passed to the kernel, so models that share a structure
share one compiled module, and parameters can be differentiated.

Two kernels per structure, in one generated module (one compile, cached by Warp on disk):
``rollout_kernel`` (T steps per world in one launch, state in registers, forward only) and
``rollout_grad_kernel`` (the same rollout with the state carried through the trajectory arrays,
launched once in adjoint mode for the whole backward pass).
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
import shutil
import stat
import sys
import time
import warnings

from .fsutil import atomic_write_text, clean_stale_temp, pid_alive
from .types import (  # noqa: F401 - re-exported: the kinds' old home
    BALL,
    BOX,
    CAPSULE,
    FREE,
    HINGE,
    MESH,
    PAIR_TYPES,
    PARAM_SPEC,
    PLANE,
    SLIDE,
    SPHERE,
    Structure,
)


class _Emitter:
    def __init__(self):
        self.lines: list[str] = []

    def __call__(self, line: str):
        self.lines.append("    " + line)


class _Indented:
    """An emitter whose lines go one block deeper (the body of an ``if``)."""

    def __init__(self, e):
        self.e = e

    def __call__(self, line: str):
        self.e("    " + line)


def _dof_body(s: Structure) -> list[int]:
    out = [0] * s.nv
    for b, jnts in enumerate(s.body_jnts):
        for j in jnts:
            nd = {FREE: 6, BALL: 3}.get(s.jnt_type[j], 1)
            for k in range(nd):
                out[s.jnt_dofadr[j] + k] = b
    return out


def _ancestors(s: Structure, b: int) -> list[int]:
    out = []
    while b != 0:
        out.append(b)
        b = s.body_parent[b]
    return out


def _pair_call(s: Structure, g1: int, g2: int) -> str:
    """Call of the pair function (kernels/contact.py) for geoms g1, g2 (type(g1) <= type(g2))."""
    t1, t2 = s.geom_type[g1], s.geom_type[g2]
    names = {PLANE: "plane", SPHERE: "sphere", CAPSULE: "capsule", BOX: "box"}

    def geo(g):
        t = s.geom_type[g]
        if t == PLANE:
            return [f"gp{g}", f"gz{g}"]
        if t == SPHERE:
            return [f"gp{g}", f"geom_size[{g}][0]"]
        if t == CAPSULE:
            return [f"gp{g} - gz{g} * geom_size[{g}][1]", f"gp{g} + gz{g} * geom_size[{g}][1]", f"geom_size[{g}][0]"]
        return [f"gp{g}", f"gR{g}", f"geom_size[{g}]"]

    if t2 == MESH:
        return None
    if (t1, t2) not in PAIR_TYPES:
        raise NotImplementedError(f"no narrow phase for geom types {t1}, {t2}")
    return f"pair_{names[t1]}_{names[t2]}(" + ", ".join(geo(g1) + geo(g2)) + ", "



def _mesh_pair_lines(s: Structure, i: int, g1: int, g2: int, vel: list[str]) -> list[str]:
    """Unrolled contact points of a pair whose second geom is a convex mesh (one call per hull
    vertex or sampled point, so that every accumulation is straight-line code)."""
    t1 = s.geom_type[g1]
    acc = f"cN{i}, cF{i}, cA{i}, cB{i}, cC{i}"
    tail = f"rc{i}, {', '.join(vel)}, cprm{i}, {acc}"
    ps2, pc2, vs2, vc2 = s.geom_hull[g2]

    def vert(g, k):
        return f"gp{g} + gR{g} * hull_verts[{s.geom_hull[g][2] + k}]"

    def vs_mesh(g, c, r, flip):
        ps, pc = s.geom_hull[g][:2]
        return f"{acc} = accumulate_point_mesh(hull_planes, {ps}, {pc}, gp{g}, gR{g}, {c}, {r}, {flip}, {tail})"

    out = [f"{acc} = zero_action(rc{i})"]
    if t1 == PLANE:
        out += [f"{acc} = accumulate_vertex_plane(gp{g1}, gz{g1}, {vert(g2, k)}, {tail})" for k in range(vc2)]
    elif t1 == SPHERE:
        out.append(vs_mesh(g2, f"gp{g1}", f"geom_size[{g1}][0]", 1))
    elif t1 == CAPSULE:
        a0, a1 = f"gp{g1} - gz{g1} * geom_size[{g1}][1]", f"gp{g1} + gz{g1} * geom_size[{g1}][1]"
        for c in (a0, a1, f"gp{g1}"):
            out.append(vs_mesh(g2, c, f"geom_size[{g1}][0]", 1))
        out += [f"{acc} = accumulate_point_capsule({a0}, {a1}, geom_size[{g1}][0], {vert(g2, k)}, {tail})"
                for k in range(vc2)]
    elif t1 == BOX:
        for k in range(8):
            out.append(vs_mesh(g2, f"box_corner(gp{g1}, gR{g1}, geom_size[{g1}], {k})", "T(0.0)", 1))
        out += [f"{acc} = accumulate_point_box(gp{g1}, gR{g1}, geom_size[{g1}], {vert(g2, k)}, 0, {tail})"
                for k in range(vc2)]
    elif t1 == MESH:
        out += [vs_mesh(g2, vert(g1, k), "T(0.0)", 1) for k in range(s.geom_hull[g1][3])]
        out += [vs_mesh(g1, vert(g2, k), "T(0.0)", 0) for k in range(vc2)]
    return out


def _emit_contacts(e: _Emitter, s: Structure, moving: list[bool], ref: dict[int, str], second: bool = False
                   ) -> dict[int, list[tuple[str, int]]]:
    """Contact actions of every candidate pair; returns body -> [(sign, pair)] acting on it.

    Per pair: a bounding-sphere (or plane half-space) test at ~10 flops, then the narrow phase
    and contact law only when it passes, so the time per world is O(pairs) cheap tests plus
    O(touching pairs) contact work. The action is computed about a point near the contact and
    shifted to each body's tree reference point (float32 precision does not depend on the
    distance from the world origin). Body velocities go to the contact law as 2x3 matrices (start
    of the step; predicted end): ``second`` is the second solve, where implicitly treated pairs
    get the first solve's predicted velocities ``vwp`` / ``vvp`` (the friction limit of
    kernels/contact.contact_force); in the first solve both rows are the start velocities.
    """
    Z = "V3(T(0.0), T(0.0), T(0.0))"
    ZM = "M33(T(0.0), T(0.0), T(0.0), T(0.0), T(0.0), T(0.0), T(0.0), T(0.0), T(0.0))"
    used = sorted({g for p in s.pairs for g in p})
    e(f"# ---- contacts ({'second solve, with predicted velocities' if second else 'first solve'})")
    if not second:
        e("ctau = contact_tau[0]")
        e("ceps = contact_eps[0]")
        e("cmargin = ctau * T(2.0)")
        for g in used:
            b = s.geom_body[g]
            e(f"gp{g} = xp{b} + wp.quat_rotate(xq{b}, geom_pos[{g}])")
            e(f"gR{g} = wp.quat_to_matrix(xq{b} * geom_quat[{g}])")
            e(f"gz{g} = V3(gR{g}[0, 2], gR{g}[1, 2], gR{g}[2, 2])")
    acting: dict[int, list[tuple[str, int]]] = {}
    for i, (g1, g2) in enumerate(s.pairs):
        b1, b2 = s.geom_body[g1], s.geom_body[g2]
        e(f"# pair {i}: geom {g1} (body {b1}) - geom {g2} (body {b2})")
        if not second:
            e(f"rc{i} = gp{g2}")
        vel = []
        for bb in (b1, b2):
            if not moving[bb]:
                vel += [f"wp.matrix_from_rows({Z}, {Z})"] * 2
                continue
            if not second:
                e(f"cv{i}_{bb} = vv{bb} + wp.cross(vw{bb}, rc{i} - {ref[bb]})")
            if second and s.pair_implicit[i]:
                e(f"cvp{i}_{bb} = vvp{bb} + wp.cross(vwp{bb}, rc{i} - {ref[bb]})")
                vel += [f"wp.matrix_from_rows(vw{bb}, vwp{bb})", f"wp.matrix_from_rows(cv{i}_{bb}, cvp{i}_{bb})"]
            else:
                vel += [f"wp.matrix_from_rows(vw{bb}, vw{bb})", f"wp.matrix_from_rows(cv{i}_{bb}, cv{i}_{bb})"]
        # the first solve's total force of the pair: its normal load, shared by the pair's points
        # in the second solve's friction limit (zero in the first solve: no sharing)
        e(f"cFp{i} = {'cF' + str(i) if second and s.pair_implicit[i] else Z}")
        if second and s.pair_implicit[i]:
            e(f"cTp{i} = wp.trace(cC{i})")
        e(f"cN{i} = {Z}")
        e(f"cF{i} = {Z}")
        e(f"cA{i} = {ZM}")
        e(f"cB{i} = {ZM}")
        e(f"cC{i} = {ZM}")
        if s.geom_type[g1] == PLANE:
            e(f"if wp.dot(gp{g2} - gp{g1}, gz{g1}) < geom_rbound[{g2}] + cmargin:")
        else:
            e(f"if wp.length_sq(gp{g2} - gp{g1}) < wp.pow(geom_rbound[{g1}] + geom_rbound[{g2}] + cmargin, T(2.0)):")
        e(f"    cprm{i} = VP(pair_meff[{i}], pair_stiffness[{i}], pair_damping[{i}], "
          f"pair_friction[{i}][0], ctau, ceps, h, cFp{i}[0], cFp{i}[1], cFp{i}[2])")
        call = _pair_call(s, g1, g2)
        if call is None:
            for line in _mesh_pair_lines(s, i, g1, g2, vel):
                e("    " + line)
        else:
            e(f"    cN{i}, cF{i}, cA{i}, cB{i}, cC{i} = {call}rc{i}, {', '.join(vel)}, cprm{i})")
        for sign, bb in (("-", b1), ("+", b2)):
            if not moving[bb]:
                continue
            e(f"cd{i}_{bb} = rc{i} - {ref[bb]}")
            e(f"cn{i}_{bb} = {sign}shift_moment(cN{i}, cF{i}, cd{i}_{bb})")
            e(f"cf{i}_{bb} = {sign}cF{i}")
            if s.pair_implicit[i]:
                # per-body share of the implicit stiffness: exact for two bodies in translation
                sc = f"pair_iscale[{i}][{0 if bb == b1 else 1}]"
                e(f"cA{i}_{bb}_, cB{i}_{bb}_ = shift_stiffness(cA{i}, cB{i}, cC{i}, cd{i}_{bb})")
                e(f"cA{i}_{bb} = cA{i}_{bb}_ * {sc}")
                e(f"cB{i}_{bb} = cB{i}_{bb}_ * {sc}")
                e(f"cC{i}_{bb} = cC{i} * {sc}")
            acting.setdefault(bb, []).append((sign, i))
    return acting


def _emit_predicted_velocities(e: _Emitter, s: Structure, moving: list[bool], dof_body: list[int]):
    """Velocities at the end of the step that the first solve predicts: qdp = qd + h (a + ax),
    then each moving body's (vwp, vvp), propagated down the tree as (vw, vv) are."""
    for d in range(s.nv):
        e(f"qdp{d} = qd{d} + h * (a{d} + ax[{d}])")
    for b in range(1, len(s.body_parent)):
        if not moving[b]:
            continue
        p = s.body_parent[b]
        pm = p if moving[p] else 0
        dofs = [d for d in range(s.nv) if dof_body[d] == b]
        base_w, base_v = (f"vwp{pm}", f"vvp{pm}") if pm else ("vw0", "vv0")
        e(f"vwp{b} = {base_w}" + "".join(f" + sw{d} * qdp{d}" for d in dofs))
        e(f"vvp{b} = {base_v}" + "".join(f" + sv{d} * qdp{d}" for d in dofs))


def _step_func(s: Structure) -> str:
    """Source of ``step_world``: (q, qd, u, fx, ax, params...) -> (q', qd', qacc)."""
    e = _Emitter()
    nb = len(s.body_parent)
    Z = "V3(T(0.0), T(0.0), T(0.0))"
    # bodies that move: some dof on the path to the root
    moving = [False] * nb
    for b in range(1, nb):
        moving[b] = bool(s.body_jnts[b]) or moving[s.body_parent[b]]
    # bodies whose pose the step reads: moving ones, owners of geoms in candidate pairs, and
    # their ancestors; static bodies outside that set (scenery without contacts) get no code
    needed = [False] * nb
    roles = {b for b in range(1, nb) if moving[b]} | {s.geom_body[g] for pair in s.pairs for g in pair}
    for b in roles:
        while b and not needed[b]:
            needed[b] = True
            b = s.body_parent[b]
    dof_body = _dof_body(s)
    # each kinematic tree (topmost moving body and below) uses its root body's position as the
    # reference point of its spatial quantities: float32 accuracy then does not depend on how
    # far the model sits from the world origin (MuJoCo uses the subtree centre of mass)
    ref: dict[int, str] = {}
    for b in range(1, nb):
        if moving[b]:
            p = s.body_parent[b]
            ref[b] = ref[p] if moving[p] else f"r{b}"

    params = ", ".join(f"{n}: wp.array(dtype={t})" for n, t in PARAM_SPEC)
    head = f"@wp.func\ndef step_world(q: VQ, qd: VV, u: VU, fx: VV, ax: VV, {params}):"
    e("g = gravity[0]")
    e("h = timestep[0]")
    for i in range(s.nq):
        e(f"q{i} = q[{i}]")
    for i in range(s.nv):
        e(f"qd{i} = qd[{i}]")
    # ---- kinematics, velocities and velocity-product accelerations (MuJoCo mj_kinematics,
    # mj_comPos, mj_comVel) in world-origin spatial coordinates
    e(f"xp0 = {Z}")
    e("xq0 = Q(T(0.0), T(0.0), T(0.0), T(1.0))")
    e(f"vw0 = {Z}")
    e(f"vv0 = {Z}")
    e(f"aw0 = {Z}")
    e("av0 = -g")
    for b in range(1, nb):
        if not needed[b]:
            continue
        p = s.body_parent[b]
        e(f"# body {b} (parent {p})")
        e(f"xq{b}_0 = xq{p} * body_quat[{b}]")
        e(f"xp{b}_0 = xp{p} + wp.quat_rotate(xq{p}, body_pos[{b}])")
        cur = 0
        anchors = {}
        for j in s.body_jnts[b]:
            t, pa = s.jnt_type[j], s.jnt_qposadr[j]
            c, n = f"{b}_{cur}", f"{b}_{cur + 1}"
            if t == FREE:
                e(f"xp{n} = V3(q{pa}, q{pa + 1}, q{pa + 2})")
                e(f"xq{n} = quat_from_wxyz(q{pa + 3}, q{pa + 4}, q{pa + 5}, q{pa + 6})")
                anchors[j] = f"xp{n}"
            else:
                e(f"xa{j} = wp.quat_rotate(xq{c}, jnt_axis[{j}])")
                e(f"xn{j} = wp.quat_rotate(xq{c}, jnt_pos[{j}]) + xp{c}")
                anchors[j] = f"xn{j}"
                if t == SLIDE:
                    e(f"xq{n} = xq{c}")
                    e(f"xp{n} = xp{c} + xa{j} * (q{pa} - qpos0[{pa}])")
                else:
                    if t == HINGE:
                        e(f"ql{j} = hinge_quat(jnt_axis[{j}], q{pa} - qpos0[{pa}])")
                    else:
                        e(f"ql{j} = quat_from_wxyz(q{pa}, q{pa + 1}, q{pa + 2}, q{pa + 3})")
                    e(f"xq{n} = xq{c} * ql{j}")
                    e(f"xp{n} = xn{j} - wp.quat_rotate(xq{n}, jnt_pos[{j}])")
            cur += 1
        e(f"xq{b} = xq{b}_{cur}")
        e(f"xp{b} = xp{b}_{cur}")
        if not moving[b]:
            continue
        if ref[b] == f"r{b}":
            e(f"r{b} = xp{b}")
        r = ref[b]
        anchors = {j: f"({a} - {r})" for j, a in anchors.items()}
        # motion subspace (cdof) and its time derivative, joint by joint as MuJoCo's mj_comVel
        pm = p if moving[p] else 0
        e(f"vw{b}_0 = vw{pm}")
        e(f"vv{b}_0 = vv{pm}")
        e(f"aw{b}_0 = aw{pm}")
        e(f"av{b}_0 = av{pm}")
        k = 0

        def add_dof(d, w_expr, v_expr, zero_dot=False, b=b):
            nonlocal k
            e(f"sw{d} = {w_expr}")
            e(f"sv{d} = {v_expr}")
            if zero_dot:
                e(f"aw{b}_{k + 1} = aw{b}_{k}")
                e(f"av{b}_{k + 1} = av{b}_{k}")
            else:
                e(f"aw{b}_{k + 1} = aw{b}_{k} + cross_motion_w(vw{b}_{k}, vv{b}_{k}, sw{d}, sv{d}) * qd{d}")
                e(f"av{b}_{k + 1} = av{b}_{k} + cross_motion_v(vw{b}_{k}, vv{b}_{k}, sw{d}, sv{d}) * qd{d}")
            k += 1

        for j in s.body_jnts[b]:
            t, da = s.jnt_type[j], s.jnt_dofadr[j]
            if t in (HINGE, SLIDE):
                if t == HINGE:
                    add_dof(da, f"xa{j}", f"motion_dof(xa{j}, {anchors[j]})")
                else:
                    add_dof(da, Z, f"xa{j}")
                e(f"vw{b}_{k} = vw{b}_{k - 1} + sw{da} * qd{da}")
                e(f"vv{b}_{k} = vv{b}_{k - 1} + sv{da} * qd{da}")
                continue
            if t == FREE:
                # translation dofs: world axes, constant, so their derivative is zero
                for i in range(3):
                    unit = ["T(0.0)"] * 3
                    unit[i] = "T(1.0)"
                    k0 = k
                    add_dof(da + i, Z, f"V3({', '.join(unit)})", zero_dot=True)
                    e(f"vw{b}_{k} = vw{b}_{k0}")
                    e(f"vv{b}_{k} = vv{b}_{k0} + sv{da + i} * qd{da + i}")
                da += 3
            # rotation dofs of ball / free: axes of the body frame, all with the same velocity
            kb = k
            e(f"rm{j} = wp.quat_to_matrix(xq{b})")
            for i in range(3):
                ax_ = f"V3(rm{j}[0, {i}], rm{j}[1, {i}], rm{j}[2, {i}])"
                e(f"sw{da + i} = {ax_}")
                e(f"sv{da + i} = motion_dof(sw{da + i}, {anchors[j]})")
                sv_ = f"vw{b}_{kb}, vv{b}_{kb}, sw{da + i}, sv{da + i}"
                e(f"aw{b}_{k + 1} = aw{b}_{k} + cross_motion_w({sv_}) * qd{da + i}")
                e(f"av{b}_{k + 1} = av{b}_{k} + cross_motion_v({sv_}) * qd{da + i}")
                k += 1
            # velocity update after the three rotations (vw_b_k still holds the pre-rotation velocity)
            e(f"vw{b}_{k} = vw{b}_{kb} + sw{da} * qd{da} + sw{da + 1} * qd{da + 1} + sw{da + 2} * qd{da + 2}")
            e(f"vv{b}_{k} = vv{b}_{kb} + sv{da} * qd{da} + sv{da + 1} * qd{da + 1} + sv{da + 2} * qd{da + 2}")
        # joints may alternate velocity / acceleration indices; close with the last ones
        e(f"vw{b} = vw{b}_{k}")
        e(f"vv{b} = vv{b}_{k}")
        e(f"aw{b} = aw{b}_{k}")
        e(f"av{b} = av{b}_{k}")
        # body inertia about the origin, then RNE force of the body alone
        e(f"xiq{b} = xq{b} * body_iquat[{b}]")
        e(f"com{b} = xp{b} - {r} + wp.quat_rotate(xq{b}, body_ipos[{b}])")
        e(f"im{b} = body_mass[{b}]")
        e(f"ih{b}, iJ{b} = inertia_about_origin(im{b}, com{b}, wp.quat_to_matrix(xiq{b}), body_inertia[{b}])")
        e(f"pn{b} = inertia_apply_n(ih{b}, iJ{b}, vw{b}, vv{b})")
        e(f"pf{b} = inertia_apply_f(im{b}, ih{b}, vw{b}, vv{b})")
        e(f"fn{b} = inertia_apply_n(ih{b}, iJ{b}, aw{b}, av{b}) + cross_force_n(vw{b}, vv{b}, pn{b}, pf{b})")
        e(f"ff{b} = inertia_apply_f(im{b}, ih{b}, aw{b}, av{b}) + cross_force_f(vw{b}, vv{b}, pn{b}, pf{b})")
    # ---- generalized force terms that do not depend on contact: passive, actuators, extra
    f_terms: dict[int, list[str]] = {d: [] for d in range(s.nv)}
    for d in range(s.nv):
        f_terms[d].append(f"-dof_damping[{d}] * qd{d}")
        # smooth Coulomb friction (hybridwam extra, zero unless set): -c tanh(qd / v_s)
        f_terms[d].append(f"-dof_coulomb[{d}] * wp.tanh(qd{d} / dof_coulomb_vel[{d}])")
        f_terms[d].append(f"fx[{d}]")
    for j, t in enumerate(s.jnt_type):
        pa, da = s.jnt_qposadr[j], s.jnt_dofadr[j]
        if t in (HINGE, SLIDE):
            f_terms[da].append(f"-jnt_stiffness[{j}] * (q{pa} - qpos_spring[{pa}])")
            continue
        if t == FREE:
            for i in range(3):
                f_terms[da + i].append(f"-jnt_stiffness[{j}] * (q{pa + i} - qpos_spring[{pa + i}])")
            pa, da = pa + 3, da + 3
        e(f"dq{j} = quat_sub(quat_from_wxyz(q{pa}, q{pa + 1}, q{pa + 2}, q{pa + 3}), "
          f"quat_from_wxyz(qpos_spring[{pa}], qpos_spring[{pa + 1}], qpos_spring[{pa + 2}], qpos_spring[{pa + 3}]))")
        for i in range(3):
            f_terms[da + i].append(f"-jnt_stiffness[{j}] * dq{j}[{i}]")
    # range limits of hinge / slide joints: the contact law's normal part in joint space, its
    # implicit coefficient on the dof's diagonal of the mass matrix
    limit_diag: dict[int, str] = {}
    for j, lim in enumerate(s.jnt_limited):
        if lim:
            pa, da = s.jnt_qposadr[j], s.jnt_dofadr[j]
            e(f"lf{j}, la{j} = limit_force(q{pa}, qd{da}, jnt_range[{j}], jnt_margin[{j}], dof_meff[{da}], "
              f"jnt_limit_stiffness[{j}], jnt_limit_damping[{j}], contact_tau[0], h)")
            f_terms[da].append(f"lf{j}")
            limit_diag[da] = f"la{j}"
    # gravity compensation (MuJoCo's gravcomp): an upward force m g gravcomp at each such body's
    # centre of mass, mapped to the dofs above it through the subtree sums of its wrench
    act_terms: dict[int, list[str]] = {}
    gc = [b for b in range(1, nb) if s.body_gravcomp[b] and moving[b]]
    if gc:
        need = set()
        for b in gc:
            while b and moving[b] and b not in need:
                need.add(b)
                b = s.body_parent[b]
        for b in sorted(need, reverse=True):
            sub = [c for c in need if s.body_parent[c] == b]
            torques, forces = [f"gN{c}" for c in sub], [f"gF{c}" for c in sub]
            if b in gc:
                e(f"gf{b} = -g * (body_mass[{b}] * body_gravcomp[{b}])")
                torques.insert(0, f"wp.cross(com{b}, gf{b})")
                forces.insert(0, f"gf{b}")
            e(f"gN{b} = " + " + ".join(torques))
            e(f"gF{b} = " + " + ".join(forces))
        for j, t in enumerate(s.jnt_type):
            b = dof_body[s.jnt_dofadr[j]]
            if b not in need:
                continue
            ndof = {FREE: 6, BALL: 3}.get(t, 1)
            for d in range(s.jnt_dofadr[j], s.jnt_dofadr[j] + ndof):
                tau = f"(wp.dot(sw{d}, gN{b}) + wp.dot(sv{d}, gF{b}))"
                (act_terms.setdefault(j, []) if s.jnt_actgravcomp[j] else f_terms[d]).append(tau)
    act_diag: dict[int, list[str]] = {}  # implicitfast's actuator terms on the diagonal, per dof
    for a in range(s.nu):
        j = s.act_jnt[a]
        pa, da = s.jnt_qposadr[j], s.jnt_dofadr[j]
        e(f"c{a} = u[{a}]")
        if s.act_ctrllimited[a]:
            e(f"c{a} = wp.clamp(c{a}, actuator_ctrlrange[{a}][0], actuator_ctrlrange[{a}][1])")
        # bias[0] is a constant force offset (zero for MuJoCo motors; identifiable in calibration)
        e(f"af{a} = actuator_gain[{a}] * c{a} + actuator_bias[{a}][0]")
        if s.act_affine_bias[a]:
            e(f"af{a} = af{a} + actuator_bias[{a}][1] * actuator_gear[{a}] * q{pa}"
              f" + actuator_bias[{a}][2] * actuator_gear[{a}] * qd{da}")
        if s.implicit_actuators and s.act_affine_bias[a]:
            # implicitfast: d force / d qvel = gear^2 bias[2] on the diagonal as -h gear^2 bias[2],
            # skipped while the force is clamped (as MuJoCo does)
            ia = f"-h * actuator_bias[{a}][2] * actuator_gear[{a}] * actuator_gear[{a}]"
            if s.act_forcelimited[a]:
                ia = (f"wp.where(af{a} > actuator_forcerange[{a}][0] and af{a} < actuator_forcerange[{a}][1], "
                      f"{ia}, T(0.0))")
            e(f"ia{a} = {ia}")
            act_diag.setdefault(da, []).append(f"ia{a}")
        if s.act_forcelimited[a]:
            e(f"af{a} = wp.clamp(af{a}, actuator_forcerange[{a}][0], actuator_forcerange[{a}][1])")
        act_terms.setdefault(j, []).append(f"actuator_gear[{a}] * af{a}")
    for j, terms in act_terms.items():
        da = s.jnt_dofadr[j]
        e(f"fa{j} = " + " + ".join(terms))
        if s.jnt_actfrclimited[j]:
            if act_diag.get(da):
                # clamped at the joint: MuJoCo skips all its actuators' implicit terms
                e(f"ij{j} = wp.where(fa{j} > jnt_actfrcrange[{j}][0] and fa{j} < jnt_actfrcrange[{j}][1], "
                  + " + ".join(act_diag[da]) + ", T(0.0))")
                act_diag[da] = [f"ij{j}"]
            e(f"fa{j} = wp.clamp(fa{j}, jnt_actfrcrange[{j}][0], jnt_actfrcrange[{j}][1])")
        f_terms[da].append(f"fa{j}")
    contact = bool(s.pairs)
    children = {b: [c for c in range(1, nb) if s.body_parent[c] == b and moving[c]] for b in range(nb)}
    friction = [d for d in range(s.nv) if s.dof_frictionloss[d]]
    # one solve, or two when some contact is treated implicitly or some dof has dry friction: the
    # second limits each contact's friction to mu f_n, and each dof's to its frictionloss, using
    # the velocities the first predicted (kernels/contact.contact_force, joint_friction)
    for second in ((False, True) if (contact and any(s.pair_implicit)) or friction else (False,)):
        if second:
            _emit_predicted_velocities(e, s, moving, dof_body)
        acting = _emit_contacts(e, s, moving, ref, second) if contact else {}
        sfx = "p" if second else ""
        for d in friction:
            e(f"jf{sfx}{d}, ja{sfx}{d} = joint_friction(qd{d}, {'qdp' if second else 'qd'}{d}, "
              f"dof_frictionloss[{d}], dof_meff[{d}], contact_eps[0], h)")
        out = e
        if second:
            # where no friction was limited, the second solve would repeat the first exactly
            # (same viscosities, so the same implicit stiffness trace): skip it there
            imp = [i for i in range(len(s.pairs)) if s.pair_implicit[i]]
            e("climited = " + " + ".join([f"wp.abs(wp.trace(cC{i}) - cTp{i})" for i in imp]
                                         + [f"wp.abs(jap{d} - ja{d})" for d in friction]))
            e("if climited > T(0.0):")
            out = _Indented(e)
        # ---- backward pass: subtree forces (RNE) and composite inertias (CRBA); contact wrenches
        # act as external forces, their implicit stiffness as extra composite inertia (A, B, C)
        for b in range(nb - 1, 0, -1):
            if not moving[b]:
                continue
            ch = children[b]
            ext_n = "".join(f" - cn{i}_{b}" for _, i in acting.get(b, []))
            ext_f = "".join(f" - cf{i}_{b}" for _, i in acting.get(b, []))
            out(f"Fn{b} = fn{b}{ext_n}" + "".join(f" + Fn{c}" for c in ch))
            out(f"Ff{b} = ff{b}{ext_f}" + "".join(f" + Ff{c}" for c in ch))
            if contact:
                imp = [i for _, i in acting.get(b, []) if s.pair_implicit[i]]
                out(f"cA{b}_ = iJ{b}" + "".join(f" + cA{i}_{b}" for i in imp) + "".join(f" + cA{c}_" for c in ch))
                out(f"cB{b}_ = skew(ih{b})" + "".join(f" + cB{i}_{b}" for i in imp) + "".join(f" + cB{c}_" for c in ch))
                out(f"cC{b}_ = wp.identity(n=3, dtype=T) * im{b}" + "".join(f" + cC{i}_{b}" for i in imp)
                  + "".join(f" + cC{c}_" for c in ch))
            else:
                out(f"cm{b} = im{b}" + "".join(f" + cm{c}" for c in ch))
                out(f"ch{b} = ih{b}" + "".join(f" + ch{c}" for c in ch))
                out(f"cJ{b} = iJ{b}" + "".join(f" + cJ{c}" for c in ch))
        # generalized forces: bias (RNE, with contact wrenches), then the terms above
        for d in range(s.nv):
            b = dof_body[d]
            fr = [f"jf{sfx}{d}"] if s.dof_frictionloss[d] else []
            out(f"f{d} = " + " + ".join([f"-(wp.dot(sw{d}, Fn{b}) + wp.dot(sv{d}, Ff{b}))", *f_terms[d], *fr]))
        # ---- mass matrix (lower triangle, structural zeros skipped), armature, implicit damping
        # CRBA: the composite inertia of each dof's body applied to its motion axis, once per dof
        for i in range(s.nv):
            bi = dof_body[i]
            if contact:
                out(f"Fn_{i} = cA{bi}_ * sw{i} + cB{bi}_ * sv{i}")
                out(f"Ff_{i} = wp.transpose(cB{bi}_) * sw{i} + cC{bi}_ * sv{i}")
            else:
                out(f"Fn_{i} = inertia_apply_n(ch{bi}, cJ{bi}, sw{i}, sv{i})")
                out(f"Ff_{i} = inertia_apply_f(cm{bi}, ch{bi}, sw{i}, sv{i})")
        A: dict[tuple[int, int], str | None] = {}
        for i in range(s.nv):
            bi = dof_body[i]
            anc = set(_ancestors(s, bi))
            for j in range(i + 1):
                if dof_body[j] not in anc:
                    A[i, j] = None
                    continue
                expr = f"wp.dot(sw{j}, Fn_{i}) + wp.dot(sv{j}, Ff_{i})"
                if i == j:
                    expr += f" + dof_armature[{i}]"
                    if i in limit_diag:
                        expr += f" + {limit_diag[i]}"
                    if s.dof_frictionloss[i]:
                        expr += f" + ja{sfx}{i}"
                    if s.implicit_damping:
                        expr += f" + h * dof_damping[{i}]"
                    expr += "".join(f" + {t}" for t in act_diag.get(i, ()))
                out(f"M{i}_{j} = {expr}")
                A[i, j] = f"M{i}_{j}"
        # ---- dense Cholesky with symbolic zeros, then two triangular solves
        L: dict[tuple[int, int], str | None] = {}
        for j in range(s.nv):
            terms = [f"L{j}_{k} * L{j}_{k}" for k in range(j) if L[j, k]]
            out(f"L{j}_{j} = wp.sqrt({A[j, j]}" + "".join(f" - {t}" for t in terms) + ")")
            L[j, j] = f"L{j}_{j}"
            for i in range(j + 1, s.nv):
                terms = [f"L{i}_{k} * L{j}_{k}" for k in range(j) if L[i, k] and L[j, k]]
                if A[i, j] is None and not terms:
                    L[i, j] = None
                    continue
                num = (A[i, j] or "T(0.0)") + "".join(f" - {t}" for t in terms)
                out(f"L{i}_{j} = ({num}) / L{j}_{j}")
                L[i, j] = f"L{i}_{j}"
        for i in range(s.nv):
            terms = [f"L{i}_{k} * y{k}" for k in range(i) if L[i, k]]
            out(f"y{i} = (f{i}" + "".join(f" - {t}" for t in terms) + f") / L{i}_{i}")
        for i in range(s.nv - 1, -1, -1):
            terms = [f"L{k}_{i} * a{k}" for k in range(i + 1, s.nv) if L[k, i]]
            out(f"a{i} = (y{i}" + "".join(f" - {t}" for t in terms) + f") / L{i}_{i}")
    # ---- semi-implicit Euler: velocity first, then positions on their manifolds
    for d in range(s.nv):
        e(f"qa{d} = a{d} + ax[{d}]")
        e(f"nqd{d} = qd{d} + h * qa{d}")
    nq_names = [f"q{i}" for i in range(s.nq)]
    for j, t in enumerate(s.jnt_type):
        pa, da = s.jnt_qposadr[j], s.jnt_dofadr[j]
        if t in (HINGE, SLIDE):
            nq_names[pa] = f"(q{pa} + h * nqd{da})"
            continue
        if t == FREE:
            for i in range(3):
                nq_names[pa + i] = f"(q{pa + i} + h * nqd{da + i})"
            pa, da = pa + 3, da + 3
        e(f"nquat{j} = quat_integrate(Q(q{pa + 1}, q{pa + 2}, q{pa + 3}, q{pa}), "
          f"V3(nqd{da}, nqd{da + 1}, nqd{da + 2}), h)")
        # back to MuJoCo's (w, x, y, z)
        for i, c in enumerate((3, 0, 1, 2)):
            nq_names[pa + i] = f"nquat{j}[{c}]"
    e("return (VQ(" + ", ".join(nq_names) + "), VV(" + ", ".join(f"nqd{d}" for d in range(s.nv))
      + "), VV(" + ", ".join(f"qa{d}" for d in range(s.nv)) + "))")
    return head + "\n" + "\n".join(e.lines) + "\n"


def _load(n: int, arr: str, idx: str, vec: str) -> str:
    return f"{vec}(" + ", ".join(f"{arr}[{idx}, {i}]" for i in range(n)) + ")"


@functools.lru_cache(maxsize=16)
def generate_source(s: Structure) -> str:
    """Python/Warp source of the module holding ``rollout_kernel`` and ``rollout_grad_kernel``
    (kept for the last few structures: choosing the engine and loading the module both need it)."""
    tf = {"float32": "f", "float64": "d"}[s.dtype]
    nu1 = max(s.nu, 1)
    pdecl = ", ".join(f"{n}: wp.array(dtype={t})" for n, t in PARAM_SPEC)
    pnames = ", ".join(n for n, _ in PARAM_SPEC)
    A3 = "wp.array3d(dtype=T)"
    u_load = (lambda idx: _load(s.nu, "ctrl", idx, "VU")) if s.nu else (lambda idx: "VU(T(0.0))")
    src = [
        f"# generated by hybridwam.codegen for structure {s.key()}; do not edit",
        "import warp as wp",
        "from hybridwam.kernels.dynamics import (cross_force_f, cross_force_n, cross_motion_v, cross_motion_w,",
        "    inertia_about_origin, inertia_apply_f, inertia_apply_n)",
        "from hybridwam.kernels.integration import quat_integrate, quat_sub",
        "from hybridwam.kernels.contact import (pair_box_box, pair_capsule_box, pair_capsule_capsule,",
        "    pair_plane_box, pair_plane_capsule, pair_plane_sphere, pair_sphere_box, pair_sphere_capsule,",
        "    pair_sphere_sphere, shift_moment, shift_stiffness, skew, zero_action, accumulate_vertex_plane,",
        "    accumulate_point_mesh, accumulate_point_box, accumulate_point_capsule, box_corner, joint_friction,",
        "    limit_force)",
        "from hybridwam.kernels.kinematics import hinge_quat, motion_dof, quat_from_wxyz",
        f"T = wp.float{tf == 'f' and 32 or 64}",
        f"V2 = wp.vec2{tf}",
        f"V3 = wp.vec3{tf}",
        f"V4 = wp.vec4{tf}",
        "V5 = wp.types.vector(length=5, dtype=T)",
        f"Q = wp.quat{tf}",
        f"M33 = wp.mat33{tf}",
        "VP = wp.types.vector(length=10, dtype=T)",
        f"VQ = wp.types.vector(length={s.nq}, dtype=T)",
        f"VV = wp.types.vector(length={s.nv}, dtype=T)",
        f"VU = wp.types.vector(length={nu1}, dtype=T)",
        "",
        _step_func(s),
        "",
        "@wp.kernel",
        f"def rollout_grad_kernel(qpos: {A3}, qvel: {A3}, ctrl: {A3}, qfrc_extra: {A3}, qacc_extra: {A3}, "
        f"qacc_out: {A3}, nstep: int, {pdecl}):",
        "    # the state is carried through the arrays, never through loop-carried locals: Warp's",
        "    # adjoint of this dynamic loop then replays each step in reverse order, exactly",
        "    w = wp.tid()",
        "    for t in range(nstep):",
        "        nq, nqd, nqa = step_world(" + _load(s.nq, "qpos", "w, t", "VQ") + ", "
        + _load(s.nv, "qvel", "w, t", "VV") + ", " + u_load("w, t") + ", "
        + _load(s.nv, "qfrc_extra", "w, t", "VV") + ", " + _load(s.nv, "qacc_extra", "w, t", "VV")
        + f", {pnames})",
    ]
    for i in range(s.nq):
        src.append(f"        qpos[w, t + 1, {i}] = nq[{i}]")
    for i in range(s.nv):
        src.append(f"        qvel[w, t + 1, {i}] = nqd[{i}]")
        src.append(f"        qacc_out[w, t, {i}] = nqa[{i}]")
    src += [
        "",
        "",
        "@wp.kernel(enable_backward=False)",
        f"def rollout_kernel(qpos: {A3}, qvel: {A3}, ctrl: {A3}, qfrc_extra: {A3}, qacc_extra: {A3}, "
        f"qacc_out: {A3}, nstep: int, {pdecl}):",
        "    w = wp.tid()",
        "    q = " + _load(s.nq, "qpos", "w, 0", "VQ"),
        "    qd = " + _load(s.nv, "qvel", "w, 0", "VV"),
        "    for t in range(nstep):",
        "        q, qd, qa = step_world(q, qd, " + u_load("w, t") + ", "
        + _load(s.nv, "qfrc_extra", "w, t", "VV") + ", " + _load(s.nv, "qacc_extra", "w, t", "VV")
        + f", {pnames})",
    ]
    for i in range(s.nq):
        src.append(f"        qpos[w, t + 1, {i}] = q[{i}]")
    for i in range(s.nv):
        src.append(f"        qvel[w, t + 1, {i}] = qd[{i}]")
        src.append(f"        qacc_out[w, t, {i}] = qa[{i}]")
    return "\n".join(src) + "\n"


class KernelCacheError(OSError):
    """The kernel cache folder is not safe to import generated code from (see ``cache_dir``)."""


def cache_dir() -> str:
    """Folder of generated kernel modules (``HYBRIDWAM_CACHE`` overrides).

    Generated modules are Python files that get imported, so the folder is created private
    (mode 0700, whatever the umask) and is refused when it, or the hybridwam folder above it,
    belongs to another user or is writable by group or others (see :func:`_check_private`).
    """
    base = os.environ.get("HYBRIDWAM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "hybridwam")
    return os.path.join(base, "kernels")


def _private_dir(d: str) -> str:
    """Create ``d`` (and its hybridwam parent) with mode 0700 if missing; check that both are private."""
    base = os.path.dirname(d)
    for p in (base, d):
        if not os.path.isdir(p):
            try:
                os.makedirs(p, mode=0o700)
                os.chmod(p, 0o700)  # makedirs' mode is masked by the umask; this is not
            except FileExistsError:  # created concurrently; checked below like any other folder
                pass
        _check_private(p, "folder")
    return d


def _check_private(path: str, what: str, st: os.stat_result | None = None):
    """Refuse ``path`` unless this user owns it and neither group nor others can write it."""
    st = st or os.stat(path)
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None and st.st_uid != uid:
        raise KernelCacheError(
            f"{path}: the kernel cache {what} belongs to user id {st.st_uid}, not to you ({uid}); hybridwam "
            "imports generated code from it, so it must be yours. Set HYBRIDWAM_CACHE to a folder of your own")
    if st.st_mode & 0o022:
        raise KernelCacheError(
            f"{path}: the kernel cache {what} is writable by group or others (mode {stat.S_IMODE(st.st_mode):o}); "
            f"hybridwam imports generated code from it. Make it private (chmod go-w {path}) or set HYBRIDWAM_CACHE "
            "to a folder of your own")


def module_path(s: Structure) -> tuple[str, str, str]:
    """(module name, path of its file in the cache, source) of a structure's generated module."""
    src = generate_source(s)
    name = f"hybridwam_gen_{s.key()}_{hashlib.sha256(src.encode()).hexdigest()[:16]}"
    return name, os.path.join(cache_dir(), name + ".py"), src


_MODULES: dict[Structure, object] = {}


def get_module(s: Structure, verbose: bool = True):
    """Import (generating on first use) the kernel module of a structure.

    The file in the cache is imported only when its bytes are exactly the source generated for
    ``s`` now, it is a regular file of this user's that nobody else can write, and the folder is
    private: a file planted at the predictable path, or one that was edited or corrupted, is
    replaced by the generated source (with a warning) and never executed.
    """
    mod = _MODULES.get(s)
    if mod is not None:
        return mod
    name, path, src = module_path(s)
    d = _private_dir(os.path.dirname(path))
    clean_stale_temp(d)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    if st is not None:
        ok = stat.S_ISREG(st.st_mode)
        if ok:
            _check_private(path, "file", st)
            with open(path, encoding="utf-8", errors="replace") as f:
                ok = f.read() == src
        if not ok:
            warnings.warn(f"{path}: the cached kernel module is not the source hybridwam generates for this model "
                          "(edited, corrupted or planted); it was not imported and is replaced", stacklevel=2)
            st = None
    if st is None:
        atomic_write_text(path, src)  # mkstemp: created 0600; readers never see a part
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    mod.__source__ = src
    _MODULES[s] = mod
    return mod


_BUILD_DIR = re.compile(r"^wp_hybridwam_gen_[0-9a-f]+_[0-9a-f]+_[0-9a-f]+_p(\d+)_t\d+$")


def _cache_entries(kernel_cache: str | None) -> list[os.DirEntry]:
    """The entries of Warp's kernel cache folder (none when it is unset or unreadable)."""
    try:
        return list(os.scandir(kernel_cache)) if kernel_cache else []
    except OSError:
        return []


def _clean_stale_builds(entries: list[os.DirEntry]):
    """Remove Warp build folders of hybridwam modules whose building process no longer runs
    (Warp builds into ``<module>_p<pid>_t<thread>`` and renames it when done; a kill -9 during
    a compile leaves that folder behind for good). ``entries``: see :func:`_cache_entries`."""
    for e in entries:
        m = _BUILD_DIR.match(e.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(e.path, ignore_errors=True)


#: Cold compile time of a generated module on the CPU, as seconds = A * (source kB) ** P: fitted to
#: cold compiles (fresh caches) on a 2-core CPU, see _COMPILE_FIT_NOTE. Printed as a rough guide
#: before a compile that is expected to be long, never used to decide anything.
_COMPILE_A, _COMPILE_P = 0.24, 1.39
_COMPILE_FIT_NOTE = ("2026-12-01, Warp 1.19: acrobot 12 kB 8.8 s, a 4-hinge chain 22 kB 14.6 s, "
                     "an 8-hinge chain 58 kB 73 s")


def estimate_compile_seconds(source_chars: int) -> float:
    """Rough cold-compile seconds on a 2-core CPU for a generated module of that many characters."""
    return _COMPILE_A * (source_chars / 1000.0) ** _COMPILE_P


def is_compiled(mod, device, entries: list[os.DirEntry] | None = None) -> bool:
    """Whether Warp's kernel cache holds a build of this module for ``device``'s kind (so loading
    it is quick). The module's name carries a hash of its source, so a cached folder of that name
    is a build of exactly this code. ``entries``: the cache folder's, when already listed."""
    import warp as wp

    if entries is None:
        wp.init()
        entries = _cache_entries(wp.config.kernel_cache_dir)
    prefix = f"wp_{mod.__name__}_"
    suffixes = (".o",) if str(device).startswith("cpu") else (".cubin", ".ptx")
    try:
        dirs = [e.path for e in entries if e.name.startswith(prefix) and e.is_dir() and not _BUILD_DIR.match(e.name)]
        return any(n.endswith(suffixes) for d in dirs for n in os.listdir(d))
    except OSError:
        return False


def compile_module(mod, device, verbose: bool = True, label: str = "this model") -> float:
    """Load (compile on a cache miss) the module's kernels on ``device``; returns seconds.

    Before a compile, stale build folders of killed hybridwam compiles are removed, and when the
    compile is expected to take more than a few seconds a line says what is compiled (``label``),
    how large it is and roughly how long it will take."""
    import warp as wp

    wp.init()  # sets Warp's kernel cache folder
    entries = _cache_entries(wp.config.kernel_cache_dir)  # listed once for both uses
    _clean_stale_builds(entries)
    if verbose and not is_compiled(mod, device, entries):
        n = len(getattr(mod, "__source__", ""))
        est = estimate_compile_seconds(n)
        if est > 5.0:
            print(f"hybridwam: compiling physics kernels for {label} ({n / 1000:.0f} kB of generated code; "
                  f"roughly {est:.0f} s on a 2-core CPU, once: the result is cached on disk) ...", file=sys.stderr)
    t0 = time.perf_counter()
    wp.load_module(mod, device=device)
    dt = time.perf_counter() - t0
    if verbose and dt > 1.0:
        print(f"hybridwam: compiled physics kernels for {label} in {dt:.1f} s "
              "(cached on disk for the next run)", file=sys.stderr)
    return dt
