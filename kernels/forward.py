"""The looped step (MuJoCo's mj_step with the Euler integrator), composed from the stage files.

kinematics -> com_vel -> rne_crb -> bias_and_mass (kernels/smooth.py) -> passive
(kernels/passive.py) -> actuation (kernels/actuation.py) -> joint limits (kernels/limits.py) ->
qf = passive + actuator + limits + extra - bias -> solve (kernels/solve.py) -> qacc +=
qacc_extra -> semi-implicit Euler on the joint manifolds.

The same code serves every model: sizes and the tree come in ``Tree`` arrays, numbers in the
``Params`` struct (PARAM_SPEC order, differentiable), intermediates in the ``Scratch`` struct.
Kernels, per scalar type (``build(T)``):

- ``rollout_kernel``: T steps per world in one launch, forward only.
- the step at index ``t`` of the trajectory arrays in three parts, for the backward pass:
  ``stage_a_kernel`` (up to M and qf), ``solve_kernel`` and ``stage_b_kernel`` (Euler). For
  t = T-1 .. 0 the backward pass launches the three forward (step t's intermediates into the
  scratch), then stage_b in Warp's adjoint mode, ``solve_adjoint_kernel`` (hand-written) and
  stage_a in adjoint mode, with the scratch adjoints zeroed per step: the trajectory stays
  O(T (nq + nv)) per world and the scratch is one step's.
"""
import warp as wp

from ..types import BALL, FREE, PARAM_SPEC
from . import actuation as _actuation
from . import limits as _limits
from . import passive as _passive
from . import smooth as _smooth
from . import solve as _solve
from .integration import quat_integrate
from .tree import Tree, aliases, array_struct, per_dtype

_FREE, _BALL = wp.constant(FREE), wp.constant(BALL)
@per_dtype
def params_type(T):
    """The ``wp.struct`` holding the model parameter arrays (PARAM_SPEC order) for scalar ``T``."""
    return array_struct("Params", T, PARAM_SPEC)


@per_dtype
def build(T):
    """The kernels (rollout_kernel, stage_a_kernel, solve_kernel, stage_b_kernel,
    solve_adjoint_kernel) and structs (Params, Scratch) for scalar type ``T``, as a dict."""
    a = aliases(T)
    V3, Q, A3, S = a["V3"], a["Q"], a["A3"], a["S"]
    P = params_type(T)
    sm = _smooth.make(T)
    kinematics, com_vel, rne_crb, bias_and_mass = sm["kinematics"], sm["com_vel"], sm["rne_crb"], sm["bias_and_mass"]
    passive = _passive.make(T)["passive"]
    actuation = _actuation.make(T)["actuation"]
    solve, solve_adjoint = _solve.make(T)["solve"], _solve.make(T)["solve_adjoint"]
    joint_limits = _limits.make(T)["joint_limits"]

    @wp.func
    def euler(w: int, qpos: A3, qvel: A3, qacc_extra: A3, qacc_out: A3, t: int, tree: Tree, s: S, h: T):
        """qacc (+ extra) into the velocity first, then positions on their manifolds (MuJoCo's
        mj_Euler / mj_integratePos); writes step t + 1 of qpos, qvel and step t of qacc_out."""
        for d in range(tree.nv):
            acc = s.qacc[w, d] + qacc_extra[w, t, d]
            qacc_out[w, t, d] = acc
            qvel[w, t + 1, d] = qvel[w, t, d] + h * acc
        for j in range(tree.njnt):
            typ = tree.jnt_type[j]
            pa = tree.jnt_qposadr[j]
            da = tree.jnt_dofadr[j]
            if typ == _FREE or typ == _BALL:
                qa = pa
                va = da
                if typ == _FREE:
                    for i in range(3):
                        qpos[w, t + 1, pa + i] = qpos[w, t, pa + i] + h * qvel[w, t + 1, da + i]
                    qa = pa + 3
                    va = da + 3
                nq = quat_integrate(Q(qpos[w, t, qa + 1], qpos[w, t, qa + 2], qpos[w, t, qa + 3], qpos[w, t, qa]),
                                    V3(qvel[w, t + 1, va], qvel[w, t + 1, va + 1], qvel[w, t + 1, va + 2]), h)
                qpos[w, t + 1, qa] = nq[3]
                qpos[w, t + 1, qa + 1] = nq[0]
                qpos[w, t + 1, qa + 2] = nq[1]
                qpos[w, t + 1, qa + 3] = nq[2]
            else:
                qpos[w, t + 1, pa] = qpos[w, t, pa] + h * qvel[w, t + 1, da]

    @wp.func
    def stage_a(w: int, qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                tree: Tree, p: P, s: S):
        """Everything before the solve: M, its implicit diagonal and the generalized force qf."""
        h = p.timestep[0]
        kinematics(w, qpos, t, tree, s, p.body_pos, p.body_quat, p.jnt_pos, p.jnt_axis, p.qpos0)
        com_vel(w, qvel, t, tree, s, p.gravity)
        rne_crb(w, tree, s, p.body_ipos, p.body_iquat, p.body_mass, p.body_inertia, p.body_gravcomp, p.gravity)
        bias_and_mass(w, tree, s, p.dof_armature)
        passive(w, qpos, qvel, t, tree, s, p.jnt_stiffness, p.qpos_spring, p.dof_damping, p.dof_coulomb,
                p.dof_coulomb_vel, h)
        actuation(w, qpos, qvel, ctrl, t, tree, s, p.actuator_gain, p.actuator_bias, p.actuator_gear,
                  p.actuator_ctrlrange, p.actuator_forcerange, p.jnt_actfrcrange)
        joint_limits(w, qpos, qvel, t, tree, s, p.jnt_range, p.jnt_margin, p.dof_meff, p.jnt_limit_stiffness,
                     p.jnt_limit_damping, p.contact_tau[0], h)
        for d in range(tree.nv):
            s.qf[w, d] = (s.qfrc_passive[w, d] + s.qfrc_actuator[w, d] + s.qfrc_constraint[w, d]
                          + qfrc_extra[w, t, d] - s.qfrc_bias[w, d])

    @wp.func
    def stage_b(w: int, qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                tree: Tree, p: P, s: S):
        """Everything after the solve: the Euler step."""
        euler(w, qpos, qvel, qacc_extra, qacc_out, t, tree, s, p.timestep[0])

    @wp.kernel(enable_backward=False, module="unique")
    def rollout_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, nstep: int,
                       tree: Tree, p: P, s: S):
        w = wp.tid()
        for t in range(nstep):
            stage_a(w, qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s)
            solve(w, tree, s)
            stage_b(w, qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s)

    # one step in three launches, for the backward pass: stage_a and stage_b forward and in Warp's
    # adjoint mode, the solve forward and through its hand-written adjoint in between
    @wp.kernel(module="unique")
    def stage_a_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                       tree: Tree, p: P, s: S):
        stage_a(wp.tid(), qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s)

    @wp.kernel(module="unique")
    def stage_b_kernel(qpos: A3, qvel: A3, ctrl: A3, qfrc_extra: A3, qacc_extra: A3, qacc_out: A3, t: int,
                       tree: Tree, p: P, s: S):
        stage_b(wp.tid(), qpos, qvel, ctrl, qfrc_extra, qacc_extra, qacc_out, t, tree, p, s)

    @wp.kernel(enable_backward=False, module="unique")
    def solve_kernel(tree: Tree, s: S):
        solve(wp.tid(), tree, s)

    @wp.kernel(enable_backward=False, module="unique")
    def solve_adjoint_kernel(tree: Tree, s: S, sa: S):
        solve_adjoint(wp.tid(), tree, s, sa)

    out = dict(rollout_kernel=rollout_kernel, stage_a_kernel=stage_a_kernel, stage_b_kernel=stage_b_kernel,
               solve_kernel=solve_kernel, solve_adjoint_kernel=solve_adjoint_kernel, Params=P, Scratch=S)
    return out
