"""Optional benchmark peers: other Warp-based simulators run on the same MJCF, inputs and machine.

Only used by ``hybridwam bench step``. Each peer is skipped, with the reason in the report, when
its package is not installed or the model uses something the comparison would not be fair on.
``PEERS`` maps a short name to the peer; ``bench_step(peers=None)`` runs Newton on any device and
MuJoCo Warp on CUDA devices only (it is built for GPUs; on the CPU it runs, slowly, when asked
for by name).

- ``newton`` (``pip install newton``): Newton's Featherstone solver (``SolverFeatherstone``,
  semi-implicit Euler on generalized coordinates) on the scene's MJCF as imported by Newton's own
  MJCF parser, one Newton world per hybridwam world, each motor's ``gear * ctrl`` applied as the
  joint's generalized force. Contact-free models with hinge and slide joints and motor
  actuators only: contacts would compare different contact models, not speed.
- ``mjwarp`` (``pip install mujoco-warp``): MuJoCo Warp, MuJoCo's own algorithms in Warp, on the
  same ``MjModel``; it simulates what ``mujoco.rollout`` simulates, contacts included.

Every peer's ``run()`` simulates ``ctrls.shape[1]`` steps of the model's timestep from
(qpos, qvel) and returns the final (qpos [B, nq], qvel [B, nv]) as numpy arrays.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


def _version(module: str) -> str | None:
    try:
        mod = __import__(module)
    except Exception:  # noqa: BLE001  (any import failure means: no peer)
        return None
    return str(getattr(mod, "__version__", "unknown"))


def newton_version() -> str | None:
    """Newton's version, or None when it is not installed."""
    return _version("newton")


def mjwarp_version() -> str | None:
    """MuJoCo Warp's version, or None when it is not installed."""
    if _version("mujoco_warp") is None:
        return None
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mujoco-warp")
    except PackageNotFoundError:
        return "unknown"


def newton_unsupported(model) -> str | None:
    """Why Newton's Featherstone run would not be a like-for-like comparison on ``model``, or None."""
    import mujoco

    from .types import HINGE, SLIDE

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


def mjwarp_unsupported(model) -> str | None:
    """MuJoCo Warp runs whatever MuJoCo runs that hybridwam loads."""
    return None


class NewtonFeatherstone:
    """``batch`` Newton worlds of the model's MJCF under Newton's Featherstone solver."""

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


class MujocoWarp:
    """``batch`` MuJoCo Warp worlds of the model's ``MjModel``, one ``mujoco_warp.step`` per step
    (contact buffers sized at 32 contacts and 256 constraint rows per world)."""

    def __init__(self, model, qpos: np.ndarray, qvel: np.ndarray, ctrls: np.ndarray, device: str = "cpu"):
        import mujoco
        import mujoco_warp as mjw
        import warp as wp

        m = model.mj
        B, T = ctrls.shape[0], ctrls.shape[1]
        with wp.ScopedDevice(device):
            self.m = mjw.put_model(m)
            self.d = mjw.put_data(m, mujoco.MjData(m), nworld=B, nconmax=32, njmax=256)
            self._ctrl = wp.array(np.ascontiguousarray(ctrls.transpose(1, 0, 2)).reshape(T, B * m.nu),
                                  dtype=wp.float32)
            self._q0 = wp.array(qpos.astype(np.float32), dtype=wp.float32)
            self._v0 = wp.array(qvel.astype(np.float32), dtype=wp.float32)
        self.B, self.T, self.nq, self.nv, self.nu = B, T, m.nq, m.nv, m.nu
        self.device, self._mjw, self._wp = device, mjw, wp

    def run(self) -> tuple[np.ndarray, np.ndarray]:
        wp, mjw, d = self._wp, self._mjw, self.d
        with wp.ScopedDevice(self.device):
            wp.copy(d.qpos, self._q0)
            wp.copy(d.qvel, self._v0)
            d.time.zero_()
            d.qacc_warmstart.zero_()
            n = self.B * self.nu
            for t in range(self.T):
                if n:
                    wp.copy(d.ctrl, self._ctrl, src_offset=t * n, count=n)
                mjw.step(self.m, d)
            wp.synchronize()
        return d.qpos.numpy().astype(np.float64), d.qvel.numpy().astype(np.float64)


@dataclass(frozen=True)
class Peer:
    label: str
    version: Callable[[], str | None]
    unsupported: Callable[..., str | None]
    runner: type
    #: runs by default on these devices ("cuda" matches every CUDA device)
    default_on: tuple[str, ...]


PEERS = {
    "newton": Peer("Newton Featherstone", newton_version, newton_unsupported, NewtonFeatherstone, ("cpu", "cuda")),
    "mjwarp": Peer("MuJoCo Warp", mjwarp_version, mjwarp_unsupported, MujocoWarp, ("cuda",)),
}


def default_peers(device: str) -> tuple[str, ...]:
    """The peers ``bench step`` runs on ``device`` unless told otherwise."""
    kind = "cuda" if device.startswith("cuda") else "cpu"
    return tuple(n for n, p in PEERS.items() if kind in p.default_on)
