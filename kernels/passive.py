"""Passive generalized forces (MuJoCo's mj_passive), looped over dofs.

Per dof: viscous damping -b qd (integrated implicitly when the tree says so: h b goes to the
solve's diagonal), hybridwam's smooth Coulomb friction -c tanh(qd / v_c) (zero for MuJoCo
models), the joint spring of the dof's joint, one function per joint kind: hinge and slide
-k (q - q_spring), a free joint's translations likewise, ball and free rotations -k (q (-)
q_spring) (MuJoCo's quaternion difference, in the joint's frame), gravity compensation
(cdof . subtree gravcomp wrench) unless the joint counts it as actuator force, fluid forces
(cdof . subtree fluid wrench, kernels/smooth.py) where the model has a medium, and with acting
tendons each tendon's spring (MuJoCo's deadband: no force between the two lengthspring values,
-k (L - bound) outside) and damper -b dL/dt (explicit, as MuJoCo's Euler and RK4 integrate it)
through the tendon Jacobian (kernels/tendon.py).
"""
import warp as wp

from ..types import BALL, FREE, HINGE, SLIDE
from .integration import quat_sub
from .kinematics import quat_from_wxyz
from .tendon import make as tendon_make
from .tree import Tree, aliases, per_dtype, stored

_FREE, _BALL = wp.constant(FREE), wp.constant(BALL)
_HINGE, _SLIDE = wp.constant(HINGE), wp.constant(SLIDE)


@per_dtype
def make(T, fluid=False, tendon=False, mjlimits=False):
    """``passive`` for scalar ``T``; with ``fluid`` (kernels.tree.Features.fluid) it adds the
    subtree fluid wrench kernels/smooth.py's rne_crb sums, with ``tendon`` (Features.tendon) the
    tendons' springs and dampers; with ``mjlimits`` (Features.mjlimits) it also keeps the implicit
    damping apart (s.idg: MuJoCo's constraint solver leaves it out, kernels/limits.py)."""
    a = aliases(T)
    S, A3, AT, V2 = a["S"], a["A3"], a["AT"], a["V2"]
    tendon_force = tendon_make(T)["tendon_force"]

    @wp.func
    def spring_rotation(q: A3, w: int, t: int, qa: int, qs: AT):
        """q (-) q_spring for the quaternion at qpos[qa:qa + 4] (a rotation vector in its frame)."""
        return quat_sub(quat_from_wxyz(q[w, t, qa], q[w, t, qa + 1], q[w, t, qa + 2], q[w, t, qa + 3]),
                        quat_from_wxyz(qs[qa], qs[qa + 1], qs[qa + 2], qs[qa + 3]))

    @stored
    @wp.func
    def passive(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, jnt_stiffness: AT, qpos_spring: AT,
                dof_damping: AT, dof_coulomb: AT, dof_coulomb_vel: AT, tendon_stiffness: AT,
                tendon_lengthspring: wp.array(dtype=V2), tendon_damping: AT, h: T):
        if wp.static(tendon):
            for i in range(tree.ntendon):
                length = s.ten_len[w, i]
                rest = wp.clamp(length, tendon_lengthspring[i][0], tendon_lengthspring[i][1])
                s.ten_pas[w, i] = tendon_stiffness[i] * (rest - length) - tendon_damping[i] * s.ten_vel[w, i]
        # the rotational spring displacement once per ball / free joint, for its three dofs
        for j in range(tree.njnt):
            typ = tree.jnt_type[j]
            if typ == _FREE:
                s.jdq[w, j] = spring_rotation(qpos, w, t, tree.jnt_qposadr[j] + 3, qpos_spring)
            elif typ == _BALL:
                s.jdq[w, j] = spring_rotation(qpos, w, t, tree.jnt_qposadr[j], qpos_spring)
        for d in range(tree.nv):
            j = tree.dof_jnt[d]
            typ = tree.jnt_type[j]
            pa = tree.jnt_qposadr[j]
            i = d - tree.jnt_dofadr[j]
            qd = qvel[w, t, d]
            f = -dof_damping[d] * qd - dof_coulomb[d] * wp.tanh(qd / dof_coulomb_vel[d])
            k = jnt_stiffness[j]
            if typ == _HINGE or typ == _SLIDE:
                f = f - k * (qpos[w, t, pa] - qpos_spring[pa])
            elif typ == _FREE and i < 3:
                f = f - k * (qpos[w, t, pa + i] - qpos_spring[pa + i])
            elif typ == _FREE:
                f = f - k * s.jdq[w, j][i - 3]
            else:
                f = f - k * s.jdq[w, j][i]
            if tree.jnt_actgravcomp[j] == 0:
                b = tree.dof_body[d]
                f = f + wp.dot(s.cdw[w, d], s.cgn[w, b]) + wp.dot(s.cdv[w, d], s.cgf[w, b])
            if wp.static(fluid):
                b = tree.dof_body[d]
                f = f + wp.dot(s.cdw[w, d], s.cwn[w, b]) + wp.dot(s.cdv[w, d], s.cwf[w, b])
            if wp.static(tendon):
                f = f + tendon_force(w, d, tree, s, s.ten_pas)
            s.qfrc_passive[w, d] = f
            # implicit damping: (M + h D) qacc = f (MuJoCo's Euler with eulerdamp)
            s.diag[w, d] = h * dof_damping[d] * T(tree.implicit)
            if wp.static(mjlimits):
                s.idg[w, d] = h * dof_damping[d] * T(tree.implicit)

    out = dict(passive=passive)
    return out
