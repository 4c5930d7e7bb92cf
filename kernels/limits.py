"""Joint range limits of hinge and slide joints, looped over joints (the role of MuJoCo's limit
constraints, mj_instantiateLimit): each end of the range is the contact law's normal part in
joint space (kernels/contact.limit_force), active within jnt_margin of it and zero elsewhere; its
implicit coefficient goes to the solve's diagonal. Not MuJoCo's soft-constraint solver: inside
the range both give no force; at and beyond a limit they differ (see the README's table).
"""
import warp as wp

from .contact import limit_force
from .tree import Tree, aliases, per_dtype, stored


@per_dtype
def make(T):
    a = aliases(T)
    S, A3, AT, V2 = a["S"], a["A3"], a["AT"], a["V2"]

    @stored
    @wp.func
    def joint_limits(w: int, qpos: A3, qvel: A3, t: int, tree: Tree, s: S, jnt_range: wp.array(dtype=V2),
                     jnt_margin: AT, dof_meff: AT, jnt_limit_stiffness: AT, jnt_limit_damping: AT, tau: T, h: T):
        for d in range(tree.nv):
            s.qfrc_constraint[w, d] = T(0.0)
        for j in range(tree.njnt):
            if tree.jnt_limited[j] != 0:
                da = tree.jnt_dofadr[j]
                f, a = limit_force(qpos[w, t, tree.jnt_qposadr[j]], qvel[w, t, da], jnt_range[j], jnt_margin[j],
                                   dof_meff[da], jnt_limit_stiffness[j], jnt_limit_damping[j], tau, h)
                wp.atomic_add(s.qfrc_constraint, w, da, f)
                wp.atomic_add(s.diag, w, da, a)

    out = dict(joint_limits=joint_limits)
    return out
