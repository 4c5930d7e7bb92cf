"""Optional benchmark peers: other Warp-based simulators run on the same MJCF, inputs and machine.

Only used by ``hybridwam bench``; each peer is skipped (with the reason in the report) when its
package is not installed or the model uses something the comparison would not be fair on.

- Newton (``pip install newton``): its Featherstone solver (``newton.solvers.SolverFeatherstone``,
  semi-implicit Euler on generalized coordinates) on the scene's MJCF, imported by Newton's own
  MJCF parser, one Newton world per hybridwam world, the same initial states, and each motor's
  ``gear * ctrl`` applied as the joint's generalized force at every step. Contact-free models with
  hinge and slide joints and direct (motor) actuators only: contacts would compare different
  contact models, not speed.
"""
from __future__ import annotations

import numpy as np


def newton_version() -> str | None:
    """Newton's version, or None when it is not installed."""
    try:
        import newton
    except Exception:  # noqa: BLE001  (any import failure means: no peer)
        return None
    return str(getattr(newton, "__version__", "unknown"))


def newton_unsupported(model) -> str | None:
    """Why Newton's Featherstone run would not be a like-for-like comparison on ``model``, or None."""
    import mujoco

    from .codegen import HINGE, SLIDE

    m = model.mj
    if model.structure.pairs:
        return "contacts (the peers' contact models differ from hybridwam's and MuJoCo's)"
    if any(int(t) not in (HINGE, SLIDE) for t in m.jnt_type):
        return "ball or free joints"
    for a in range(m.nu):
        direct = (int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_JOINT)
                  and int(m.actuator_gaintype[a]) == int(mujoco.mjtGain.mjGAIN_FIXED)
                  and int(m.actuator_biastype[a]) == int(mujoco.mjtBias.mjBIAS_NONE)
                  and m.actuator_gainprm[a, 0] == 1.0)
        if not direct:
            return f"actuator {a} is not a motor (gain 1, no bias) on a joint"
    return None


class NewtonFeatherstone:
    """``batch`` Newton worlds of the model's MJCF under Newton's Featherstone solver.

    ``run()`` simulates ``ctrls.shape[1]`` steps of ``model.mj.opt.timestep`` from (qpos, qvel)
    and returns the final (qpos [B, nq], qvel [B, nv]) as numpy arrays.
    """

    def __init__(self, model, qpos: np.ndarray, qvel: np.ndarray, ctrls: np.ndarray, device: str = "cpu"):
        import newton
        import warp as wp

        reason = newton_unsupported(model)
        if reason:
            raise ValueError(f"Newton peer: {reason}")
        m = model.mj
        B, T = ctrls.shape[0], ctrls.shape[1]
        single = newton.ModelBuilder()
        single.add_mjcf(model.xml if model.xml is not None else model.source)
        builder = newton.ModelBuilder()
        builder.replicate(single, B)
        self.model = builder.finalize(device=device)
        if self.model.joint_coord_count != B * m.nq or self.model.joint_dof_count != B * m.nv:
            raise ValueError(f"Newton peer: Newton built {self.model.joint_coord_count // B} coordinates and "
                             f"{self.model.joint_dof_count // B} dofs per world, MuJoCo {m.nq} and {m.nv}")
        # no extra damping: MuJoCo's joints have only the damping their MJCF gives them
        self.solver = newton.solvers.SolverFeatherstone(self.model, angular_damping=0.0)
        self.s0, self.s1, self.control = self.model.state(), self.model.state(), self.model.control()
        f = np.zeros((T, B, m.nv), dtype=np.float32)
        for a in range(m.nu):
            dof = int(m.jnt_dofadr[m.actuator_trnid[a, 0]])
            f[:, :, dof] += m.actuator_gear[a, 0] * ctrls[:, :, a].T
        self._forces = wp.array(f.reshape(T, B * m.nv), dtype=wp.float32, device=device)
        self._q0 = wp.array(qpos.astype(np.float32).reshape(-1), dtype=wp.float32, device=device)
        self._v0 = wp.array(qvel.astype(np.float32).reshape(-1), dtype=wp.float32, device=device)
        self.B, self.T, self.nq, self.nv, self.dt = B, T, m.nq, m.nv, float(m.opt.timestep)
        self._newton, self._wp = newton, wp

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        wp, newton = self._wp, self._newton
        s0, s1 = self.s0, self.s1
        wp.copy(s0.joint_q, self._q0)
        wp.copy(s0.joint_qd, self._v0)
        newton.eval_fk(self.model, s0.joint_q, s0.joint_qd, s0)
        n = self.B * self.nv
        for t in range(self.T):
            wp.copy(self.control.joint_f, self._forces, src_offset=t * n, count=n)
            self.solver.step(s0, s1, self.control, None, self.dt)
            s0, s1 = s1, s0
        wp.synchronize()
        self.s0, self.s1 = s0, s1
        return s0.joint_q.numpy().reshape(self.B, self.nq), s0.joint_qd.numpy().reshape(self.B, self.nv)
