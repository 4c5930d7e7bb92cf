"""Actuator forces (MuJoCo's mj_fwdActuation for joint transmissions), looped over actuators.

Per actuator: ctrl clamped to ctrlrange (when limited), force = gain * x + bias[0] (+ the
affine bias bias[1] * length + bias[2] * velocity, length and velocity = gear * q, gear * qd;
an affine gain adds (gainprm[1] length + gainprm[2] velocity) x), x the ctrl, or for an actuator
with activation dynamics its activation act (with actearly the activation at the step's end,
``next_act``), clamped to forcerange (when limited), times gear; summed per joint, plus gravity compensation
where the joint counts it as actuator force (actuatorgravcomp), and clamped to the joint's
actuatorfrcrange (when limited). The flags are per actuator in ``Tree.act_flags``. With MuJoCo's
implicitfast integrator (``Tree.implicit_act``) each affine-bias actuator's d force / d qvel,
gear^2 bias[2], goes to the solve's diagonal as -h gear^2 bias[2] (M - h D), except while its
force is clamped by its forcerange or its joint's by actuatorfrcrange (as MuJoCo skips them).

Tendon transmissions (``Tree.act_ten``; with ``tendon``, kernels.tree.Features.tendon): length and
velocity are gear times the tendon's (kernels/tendon.py); each tendon's actuators' forces are
summed (MuJoCo's actuator_force) and, where the tendon's actuatorfrcrange limits them, scaled
together so that the sum is clamped, as MuJoCo does; the result acts through gear and the tendon
Jacobian, before the joints' actuatorfrcrange clamps. (The loader refuses velocity-dependent
tendon actuators under implicitfast, whose implicit term couples the tendon's dofs.)

Activation dynamics (with ``act``, kernels.tree.Features.act; MuJoCo's mj_fwdActuation and
mj_nextActivation): an actuator's activation act (qpos[w, t, nq + k], k its Tree.act_adr) moves at
act_dot = ctrl (integrator) or (ctrl - act) / tau (filter and filterexact, tau = dynprm[0]),
ctrl clamped; the step (kernels/forward.py) integrates it, filterexact exactly (act + act_dot tau
(1 - exp(-h / tau))), and clamps it to actrange where actlimited. act_dot goes into s.actdot.
Under implicitfast an affine gain's velocity term, gear^2 gainprm[2] x, joins the bias's on the
solve's diagonal, as MuJoCo's mjd_actuator_vel (x as in the force: the clamped ctrl or the
activation, at the step's end with actearly).

Site transmissions (``Tree.act_site``; with ``site``, Features.site), as MuJoCo's mj_transmission:
the actuator's force f applies the wrench f (R gear[0:3], R gear[3:6]) at the site, R the site's
frame, or with a reference site R the reference site's and the opposite wrench on the reference
site's body, at the site (the length's exact derivative in the rotating reference frame, as
MuJoCo's moment); the length is then gear . (the site's position in the reference frame, the
rotation vector of the reference site's orientation to the site's), else 0; the velocity is the
wrench's direction dotted with the site's velocity relative to the reference body's point there
(MuJoCo's moment . qvel).
"""
import warp as wp

from ..types import DYN_FILTEREXACT, DYN_INTEGRATOR, FREE
from .integration import quat_sub, quat_to_rotvec
from .tendon import make as tendon_make
from .tree import Tree, aliases, per_dtype, stored

_INTEGRATOR, _FILTEREXACT, _FREE = wp.constant(DYN_INTEGRATOR), wp.constant(DYN_FILTEREXACT), wp.constant(FREE)


@per_dtype
def make(T, tendon=False, site=False, mjlimits=False, act=False):
    a = aliases(T)
    S, A3, AT, V2, V3, Q = a["S"], a["A3"], a["AT"], a["V2"], a["V3"], a["Q"]
    MINVAL = T(1e-15)  # MuJoCo's mjMINVAL: the smallest time constant

    @wp.func
    def next_act(dyn: int, flags: int, x: T, xdot: T, h: T, tau: T, rng: V2):
        """MuJoCo's mj_nextActivation: the activation x after a step h at rate xdot (filterexact:
        the filter's exact solution over the step), clamped to rng where actlimited (flags bit 5)."""
        out = x + xdot * h
        if dyn == _FILTEREXACT:
            tt = wp.max(tau, MINVAL)
            out = x + xdot * tt * (T(1.0) - wp.exp(-h / tt))
        if flags & 32:
            out = wp.clamp(out, rng[0], rng[1])
        return out
    tendon_force = tendon_make(T)["tendon_force"]
    add_point_force, site_point = tendon_make(T)["add_point_force"], tendon_make(T)["site_point"]

    @wp.func
    def site_frame(w: int, tree: Tree, s: S, site_pos: wp.array(dtype=V3), site_quat: wp.array(dtype=Q), i: int):
        """World position and orientation of site i."""
        return site_point(w, tree, s, site_pos, i), s.xq[w, tree.site_body[i]] * site_quat[i]

    @wp.func
    def point_motion(w: int, tree: Tree, s: S, b: int, p: V3):
        """(angular velocity, velocity) of body b's point at p."""
        return s.cvw[w, b], s.cvv[w, b] + wp.cross(s.cvw[w, b], p - s.xp[w, b])

    @stored
    @wp.func
    def actuate_site(w: int, tree: Tree, s: S, a: int, flags: int, f: T, x: T, bias: V3, ga: V2, gf: V3, gt: V3,
                     actuator_forcerange: wp.array(dtype=V2), site_pos: wp.array(dtype=V3),
                     site_quat: wp.array(dtype=Q)):
        """Actuator a on its site (and reference site) with its force so far f and input x: the
        affine bias and gain in the transmission's length and velocity, the forcerange clamp, the
        wrench into qsite."""
        i = tree.act_site[a]
        r = tree.act_refsite[a]
        b = tree.site_body[i]
        p, q = site_frame(w, tree, s, site_pos, site_quat, i)
        ww, vv = point_motion(w, tree, s, b, p)
        pr = p
        qr = q  # the frame of the wrench: the reference site's, else the site's
        length = T(0.0)
        if r >= 0:
            pr, qr = site_frame(w, tree, s, site_pos, site_quat, r)
            # the site's velocity relative to the reference body's point at the site (the
            # derivative of its position in the rotating reference frame)
            wr, vr = point_motion(w, tree, s, tree.site_body[r], p)
            length = wp.dot(gf, wp.quat_rotate_inv(qr, p - pr)) + wp.dot(gt, quat_sub(q, qr))
            ww = ww - wr
            vv = vv - vr
        F = wp.quat_rotate(qr, gf)
        N = wp.quat_rotate(qr, gt)
        if (flags & 12) != 0:
            vel = wp.dot(F, vv) + wp.dot(N, ww)
            f = f + bias[1] * length + bias[2] * vel + (ga[0] * length + ga[1] * vel) * x
        if flags & 2:
            f = wp.clamp(f, actuator_forcerange[a][0], actuator_forcerange[a][1])
        add_point_force(w, tree, s, s.qsite, 0, b, p, F * f, N * f)
        if r >= 0:
            add_point_force(w, tree, s, s.qsite, 0, tree.site_body[r], p, -F * f, -N * f)

    @stored
    @wp.func
    def actuate_ball(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, a: int, j: int, flags: int, f: T, x: T,
                     bias: V3, ga: V2, gear: V3, gear_torque: V3, actuator_forcerange: wp.array(dtype=V2)):
        """Actuator a on ball or free joint j with its force so far f and input x (MuJoCo's
        mj_transmission for these joints). A ball joint: the axis ``gear`` (gear[0:3]) in the
        child's frame, or with jointinparent (flags bit 6) in the parent's (rotated into the
        child's by the joint's rotation); the length the axis . the joint's rotation vector
        (mju_quat2Vel), the velocity the axis . its angular velocity. A free joint: the force
        along gear[0:3] (world frame) and the torque about ``gear_torque`` (gear[3:6], the body's
        frame, or with jointinparent the world's), length 0 as MuJoCo's. Then the affine terms, the
        forcerange clamp, the generalized force f moment into qsite."""
        pa = tree.jnt_qposadr[j]
        da = tree.jnt_dofadr[j]
        lin = V3(T(0.0), T(0.0), T(0.0))
        free = tree.jnt_type[j] == _FREE
        if free:  # the translation first, then the rotation as a ball joint's
            lin = gear
            gear = gear_torque
            pa = pa + 3
            da = da + 3
        q = Q(qpos[w, t, pa + 1], qpos[w, t, pa + 2], qpos[w, t, pa + 3], qpos[w, t, pa])
        ax = gear
        if flags & 64:
            ax = wp.quat_rotate_inv(q, gear)
        if (flags & 12) != 0:
            length = wp.dot(ax, quat_to_rotvec(q))
            vel = ax[0] * qvel[w, t, da] + ax[1] * qvel[w, t, da + 1] + ax[2] * qvel[w, t, da + 2]
            if free:
                length = T(0.0)
                vel = vel + lin[0] * qvel[w, t, da - 3] + lin[1] * qvel[w, t, da - 2] + lin[2] * qvel[w, t, da - 1]
            f = f + bias[1] * length + bias[2] * vel + (ga[0] * length + ga[1] * vel) * x
        if flags & 2:
            f = wp.clamp(f, actuator_forcerange[a][0], actuator_forcerange[a][1])
        for e in range(3):
            wp.atomic_add(s.qsite, w, da + e, ax[e] * f)
            if free:
                wp.atomic_add(s.qsite, w, da - 3 + e, lin[e] * f)

    @stored
    @wp.func
    def actuate_joint(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, a: int, j: int, flags: int, f: T,
                      x: T, bias: V3, ga: V2, gear: T, actuator_forcerange: wp.array(dtype=V2), h: T):
        """Actuator a on joint j with its force so far f (gain * x + bias[0], x its input): the
        affine bias and gain in the joint's coordinate and velocity, implicitfast's derivative,
        the forcerange clamp, the gear, into the joint's sum jact."""
        if (flags & 12) != 0:
            length = gear * qpos[w, t, tree.jnt_qposadr[j]]
            vel = gear * qvel[w, t, tree.jnt_dofadr[j]]
            f = f + bias[1] * length + bias[2] * vel + (ga[0] * length + ga[1] * vel) * x
        if tree.implicit_act != 0 and (flags & 12) != 0:
            # implicitfast: the velocity terms' derivative gear^2 (bias[2] + gainprm[2] x), summed
            # per joint for the solve's diagonal, unless the force is clamped (MuJoCo skips
            # clamped actuators)
            free = 1
            if flags & 2:
                if f <= actuator_forcerange[a][0] or f >= actuator_forcerange[a][1]:
                    free = 0
            if free != 0:
                wp.atomic_add(s.jimp, w, j, -h * (bias[2] + ga[1] * x) * gear * gear)
        if flags & 2:
            f = wp.clamp(f, actuator_forcerange[a][0], actuator_forcerange[a][1])
        wp.atomic_add(s.jact, w, j, gear * f)

    @stored
    @wp.func
    def actuate_tendon(w: int, tree: Tree, s: S, a: int, k: int, flags: int, f: T, x: T, bias: V3, ga: V2, gear: T,
                       actuator_forcerange: wp.array(dtype=V2)):
        """Actuator a on tendon k with its force so far f and input x: the affine bias and gain in
        gear times the tendon's length and velocity, the forcerange clamp, into the tendon's sums
        ten_tot (the forces, MuJoCo's actuator_force) and ten_act (times gear)."""
        if (flags & 12) != 0:
            length = gear * s.ten_len[w, k]
            vel = gear * s.ten_vel[w, k]
            f = f + bias[1] * length + bias[2] * vel + (ga[0] * length + ga[1] * vel) * x
        if flags & 2:
            f = wp.clamp(f, actuator_forcerange[a][0], actuator_forcerange[a][1])
        wp.atomic_add(s.ten_tot, w, k, f)
        wp.atomic_add(s.ten_act, w, k, gear * f)

    @stored
    @wp.func
    def actuation(w: int, qpos: A3, qvel: A3, ctrl: A3, t: int, tree: Tree, s: S, actuator_gain: AT,
                  actuator_bias: wp.array(dtype=V3), actuator_gear: AT, actuator_ctrlrange: wp.array(dtype=V2),
                  actuator_forcerange: wp.array(dtype=V2), jnt_actfrcrange: wp.array(dtype=V2),
                  tendon_actfrcrange: wp.array(dtype=V2), site_pos: wp.array(dtype=V3),
                  site_quat: wp.array(dtype=Q), actuator_gear_force: wp.array(dtype=V3),
                  actuator_gear_torque: wp.array(dtype=V3), actuator_gain_affine: wp.array(dtype=V2),
                  actuator_dynprm: AT, actuator_actrange: wp.array(dtype=V2), h: T):
        for j in range(tree.njnt):
            s.jact[w, j] = T(0.0)
            s.jimp[w, j] = T(0.0)
        if wp.static(tendon):
            for k in range(tree.ntendon):
                s.ten_tot[w, k] = T(0.0)
                s.ten_act[w, k] = T(0.0)
        if wp.static(site):
            for d in range(tree.nv):
                s.qsite[w, d] = T(0.0)
        for a in range(tree.nu):
            flags = tree.act_flags[a]
            c = ctrl[w, t, a]
            if flags & 1:
                c = wp.clamp(c, actuator_ctrlrange[a][0], actuator_ctrlrange[a][1])
            x = c  # the force's input
            ga = V2(T(0.0), T(0.0))
            if wp.static(act):
                ga = actuator_gain_affine[a]
                k = tree.act_adr[a]
                ad = T(0.0)
                if k >= 0:
                    x = qpos[w, t, tree.nq + k]
                    dyn = tree.act_dyn[a]
                    ad = (c - x) / wp.max(actuator_dynprm[a], MINVAL)
                    if dyn == _INTEGRATOR:
                        ad = c
                    if flags & 16:  # actearly: the activation at the step's end
                        x = next_act(dyn, flags, x, ad, h, actuator_dynprm[a], actuator_actrange[a])
                s.actdot[w, a] = ad
            bias = actuator_bias[a]
            gear = actuator_gear[a]
            f = actuator_gain[a] * x + bias[0]
            if tree.act_jnt[a] >= 0:
                actuate_joint(w, qpos, qvel, t, tree, s, a, tree.act_jnt[a], flags, f, x, bias, ga, gear,
                              actuator_forcerange, h)
            if wp.static(tendon):
                k = tree.act_ten[a]
                if k >= 0:
                    actuate_tendon(w, tree, s, a, k, flags, f, x, bias, ga, gear, actuator_forcerange)
            if wp.static(site):
                if tree.act_site[a] >= 0:
                    actuate_site(w, tree, s, a, flags, f, x, bias, ga, actuator_gear_force[a],
                                 actuator_gear_torque[a], actuator_forcerange, site_pos, site_quat)
                if tree.act_ball[a] >= 0:
                    actuate_ball(w, qpos, qvel, t, tree, s, a, tree.act_ball[a], flags, f, x, bias, ga,
                                 actuator_gear_force[a], actuator_gear_torque[a], actuator_forcerange)
        if wp.static(tendon):
            for k in range(tree.ntendon):
                # MuJoCo scales a tendon's actuator forces together so that their sum is clamped
                scale = T(1.0)
                tot = s.ten_tot[w, k]
                if tree.ten_actlimited[k] != 0 and tot != T(0.0):
                    scale = wp.clamp(tot, tendon_actfrcrange[k][0], tendon_actfrcrange[k][1]) / tot
                s.ten_frc[w, k] = scale * s.ten_act[w, k]
        for d in range(tree.nv):
            j = tree.dof_jnt[d]
            f = T(0.0)
            if wp.static(tendon):
                f = tendon_force(w, d, tree, s, s.ten_frc)
            if wp.static(site):
                f = f + s.qsite[w, d]
            if (tree.jnt_nact[j] > 0 or tree.jnt_actgravcomp[j] != 0) and d == tree.jnt_dofadr[j]:
                f = f + s.jact[w, j]
                if tree.jnt_actgravcomp[j] != 0:
                    b = tree.dof_body[d]
                    f = f + wp.dot(s.cdw[w, d], s.cgn[w, b]) + wp.dot(s.cdv[w, d], s.cgf[w, b])
                free = 1
                if tree.jnt_actfrclimited[j] != 0:
                    if f <= jnt_actfrcrange[j][0] or f >= jnt_actfrcrange[j][1]:
                        free = 0  # clamped at the joint: MuJoCo skips all its actuators' terms
                    f = wp.clamp(f, jnt_actfrcrange[j][0], jnt_actfrcrange[j][1])
                if tree.implicit_act != 0 and free != 0:
                    wp.atomic_add(s.diag, w, d, s.jimp[w, j])
                    if wp.static(mjlimits):  # the step's implicit share (kernels/limits.py)
                        wp.atomic_add(s.idg, w, d, s.jimp[w, j])
            s.qfrc_actuator[w, d] = f

    out = dict(actuation=actuation, next_act=next_act)
    return out
