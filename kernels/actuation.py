"""Actuator forces (MuJoCo's mj_fwdActuation for joint transmissions), looped over actuators.

Per actuator: ctrl clamped to ctrlrange (when limited), force = gain * ctrl + bias[0] (+ the
affine bias bias[1] * length + bias[2] * velocity, length and velocity = gear * q, gear * qd),
clamped to forcerange (when limited), times gear; summed per joint, plus gravity compensation
where the joint counts it as actuator force (actuatorgravcomp), and clamped to the joint's
actuatorfrcrange (when limited). The flags are per actuator in ``Tree.act_flags``. With MuJoCo's
implicitfast integrator (``Tree.implicit_act``) each affine-bias actuator's d force / d qvel,
gear^2 bias[2], goes to the solve's diagonal as -h gear^2 bias[2] (M - h D), except while its
force is clamped by its forcerange or its joint's by actuatorfrcrange (as MuJoCo skips them).
"""
import warp as wp

from .tree import Tree, aliases, per_dtype, stored


@per_dtype
def make(T):
    a = aliases(T)
    S, A3, AT, V2, V3 = a["S"], a["A3"], a["AT"], a["V2"], a["V3"]

    @stored
    @wp.func
    def actuation(w: int, qpos: A3, qvel: A3, ctrl: A3, t: int, tree: Tree, s: S, actuator_gain: AT,
                  actuator_bias: wp.array(dtype=V3), actuator_gear: AT, actuator_ctrlrange: wp.array(dtype=V2),
                  actuator_forcerange: wp.array(dtype=V2), jnt_actfrcrange: wp.array(dtype=V2), h: T):
        for j in range(tree.njnt):
            s.jact[w, j] = T(0.0)
            s.jimp[w, j] = T(0.0)
        for a in range(tree.nu):
            j = tree.act_jnt[a]
            flags = tree.act_flags[a]
            c = ctrl[w, t, a]
            if flags & 1:
                c = wp.clamp(c, actuator_ctrlrange[a][0], actuator_ctrlrange[a][1])
            bias = actuator_bias[a]
            gear = actuator_gear[a]
            f = actuator_gain[a] * c + bias[0]
            if flags & 4:
                f = (f + bias[1] * gear * qpos[w, t, tree.jnt_qposadr[j]]
                     + bias[2] * gear * qvel[w, t, tree.jnt_dofadr[j]])
            if tree.implicit_act != 0 and (flags & 4) != 0:
                # implicitfast: the velocity term's derivative gear^2 bias[2], summed per joint for
                # the solve's diagonal, unless the force is clamped (MuJoCo skips clamped actuators)
                free = 1
                if flags & 2:
                    if f <= actuator_forcerange[a][0] or f >= actuator_forcerange[a][1]:
                        free = 0
                if free != 0:
                    wp.atomic_add(s.jimp, w, j, -h * bias[2] * gear * gear)
            if flags & 2:
                f = wp.clamp(f, actuator_forcerange[a][0], actuator_forcerange[a][1])
            wp.atomic_add(s.jact, w, j, gear * f)
        for d in range(tree.nv):
            j = tree.dof_jnt[d]
            f = T(0.0)
            if (tree.jnt_nact[j] > 0 or tree.jnt_actgravcomp[j] != 0) and d == tree.jnt_dofadr[j]:
                f = s.jact[w, j]
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
            s.qfrc_actuator[w, d] = f

    out = dict(actuation=actuation)
    return out
