"""``hw.HybridModel`` = Physics ∘ Residual, and the ``hw.WorldModel`` protocol.

Checkpoints are a folder with ``config.json`` (model identity and residual settings) and
``weights.safetensors`` (residual weights and buffers, and the model's physical parameters).
No pickle anywhere; files are written atomically.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file
from torch.utils.checkpoint import checkpoint

from .model import JOINT_TYPE_NAMES, Model, load_model
from .physics import Physics, Trajectory
from .residual import Residual

FORMAT = "hybridwam-checkpoint"
VERSION = 1


@runtime_checkable
class WorldModel(Protocol):
    """What planning and calibration need: sizes, one step and a batched rollout.

    ``step(qpos [B, nq], qvel [B, nv], ctrl [B, nu]) -> (qpos', qvel')`` and
    ``rollout(qpos0 [B, nq], qvel0 [B, nv], ctrls [B, T, nu])`` returning an object with
    ``.qpos [B, T+1, nq]`` and ``.qvel [B, T+1, nv]``.
    """

    nq: int
    nv: int
    nu: int

    def step(self, qpos, qvel, ctrl): ...

    def rollout(self, qpos0, qvel0, ctrls): ...


def model_fingerprint(model: Model) -> dict:
    """Structure that a checkpoint must match: sizes, joint names/types, actuator names."""
    mj = model.mj
    return {"nq": mj.nq, "nv": mj.nv, "nu": mj.nu,
            "joints": [[n, JOINT_TYPE_NAMES[int(t)]] for n, t in zip(model.names("joint"), mj.jnt_type, strict=True)],
            "actuators": model.names("actuator")}


def _atomic_write(path: str, write):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".tmp-", suffix=os.path.basename(path))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _atomic_write_text(path: str, text: str):
    def write(p):
        with open(p, "w") as f:
            f.write(text)

    _atomic_write(path, write)


class HybridModel(torch.nn.Module):
    """Physics plus a learned residual; the same ``step`` / ``rollout`` as :class:`Physics`.

    Gradients reach the residual's weights, the inputs and the model's physical parameters.
    """

    def __init__(self, physics: Physics, residual: Residual | None = None):
        super().__init__()
        model = physics.model
        if residual is not None and (residual.nq, residual.nv, residual.nu) != (model.nq, model.nv, model.nu):
            raise ValueError(f"residual was built for nq/nv/nu={residual.nq}/{residual.nv}/{residual.nu}, "
                             f"the physics model has {model.nq}/{model.nv}/{model.nu}")
        self.physics = physics
        self.residual = residual

    model = property(lambda self: self.physics.model)
    nq = property(lambda self: self.physics.nq)
    nv = property(lambda self: self.physics.nv)
    nu = property(lambda self: self.physics.nu)

    def _correction(self, qpos, qvel, ctrl):
        if self.residual is None:
            return {}
        r = self.residual(qpos, qvel, ctrl)
        return {"qfrc_extra": r} if self.residual.mode == "force" else {"qacc_extra": r}

    def step(self, qpos, qvel, ctrl):
        """qpos [B, nq], qvel [B, nv], ctrl [B, nu] -> (qpos', qvel'), residual applied."""
        m = self.model
        qpos, qvel, ctrl = (torch.as_tensor(x).to(device=m.device, dtype=m.dtype) for x in (qpos, qvel, ctrl))
        return self.physics.step(qpos, qvel, ctrl, **self._correction(qpos, qvel, ctrl))

    def _segment(self, qpos, qvel, ctrls):
        qs, vs = [qpos], [qvel]
        for t in range(ctrls.shape[-2]):
            qpos, qvel = self.step(qpos, qvel, ctrls[..., t, :])
            qs.append(qpos)
            vs.append(qvel)
        return torch.stack(qs, -2), torch.stack(vs, -2)

    def rollout(self, qpos0, qvel0, ctrls, checkpoint_every: int | None = None) -> Trajectory:
        """Roll out T = ctrls.shape[-2] steps; returns Trajectory (qacc from finite differences).

        ``checkpoint_every=K`` keeps only every K-th state during the forward pass and
        recomputes the segments in backward: memory O(T/K + K) residual activations per world
        instead of O(T), at the price of one extra forward pass.
        """
        if self.residual is None:
            return self.physics.rollout(qpos0, qvel0, ctrls)
        m = self.model
        qpos0, qvel0, ctrls = (torch.as_tensor(x).to(device=m.device, dtype=m.dtype) for x in (qpos0, qvel0, ctrls))
        T = ctrls.shape[-2]
        if not checkpoint_every or not torch.is_grad_enabled():
            Q, V = self._segment(qpos0, qvel0, ctrls)
        else:
            Qs, Vs = [qpos0.unsqueeze(-2)], [qvel0.unsqueeze(-2)]
            q, v = qpos0, qvel0
            for s in range(0, T, checkpoint_every):
                Qseg, Vseg = checkpoint(self._segment, q, v, ctrls[..., s:s + checkpoint_every, :],
                                        use_reentrant=False)
                Qs.append(Qseg[..., 1:, :])
                Vs.append(Vseg[..., 1:, :])
                q, v = Qseg[..., -1, :], Vseg[..., -1, :]
            Q, V = torch.cat(Qs, -2), torch.cat(Vs, -2)
        A = (V[..., 1:, :] - V[..., :-1, :]) / m.timestep
        return Trajectory(Q, V, A)

    # ---- checkpoints -----------------------------------------------------------------------
    def save(self, path: str) -> str:
        """Write ``config.json`` + ``weights.safetensors`` into folder ``path`` (atomically)."""
        os.makedirs(path, exist_ok=True)
        m = self.model
        cfg = {"format": FORMAT, "version": VERSION,
               "model": {"source": m.source, "xml": m.xml, "dtype": str(m.dtype).replace("torch.", ""),
                         "fingerprint": model_fingerprint(m)},
               "residual": None if self.residual is None else self.residual.config()}
        tensors = {f"params.{k}": v.detach().contiguous().cpu() for k, v in m.params.items()}
        if self.residual is not None:
            tensors.update({f"residual.{k}": v.detach().contiguous().cpu()
                            for k, v in self.residual.state_dict().items()})
        _atomic_write(os.path.join(path, "weights.safetensors"), lambda p: save_file(tensors, p))
        _atomic_write_text(os.path.join(path, "config.json"), json.dumps(cfg, indent=2))
        return path

    @classmethod
    def load(cls, path: str, model: Model | None = None, device: str | None = None) -> HybridModel:
        """Load a checkpoint folder. ``model``: the Model to attach it to (default: rebuilt from
        the saved scene). Raises ValueError when the checkpoint was made for another model."""
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{path}: not a hybridwam checkpoint (no config.json)")
        with open(cfg_path) as f:
            cfg = json.load(f)
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: not a hybridwam checkpoint (format {cfg.get('format')!r})")
        if cfg.get("version", 0) > VERSION:
            raise ValueError(f"{cfg_path}: checkpoint version {cfg['version']} is newer than this hybridwam")
        mc = cfg["model"]
        if model is None:
            src = mc["source"] if os.path.exists(mc.get("source") or "") else mc.get("xml")
            if not src:
                raise ValueError(f"{path}: the saved scene {mc.get('source')!r} is gone; pass model=")
            model = load_model(src, device=device, dtype=mc.get("dtype", "float32"))
        fp = model_fingerprint(model)
        if fp != mc["fingerprint"]:
            diff = [k for k in fp if fp[k] != mc["fingerprint"].get(k)]
            raise ValueError(f"{path}: checkpoint was made for another model (differs in {', '.join(diff)}: "
                             f"saved {[mc['fingerprint'][k] for k in diff]}, given {[fp[k] for k in diff]})")
        weights = load_file(os.path.join(path, "weights.safetensors"))
        with torch.no_grad():
            for k, v in model.params.items():
                saved = weights.get(f"params.{k}")
                if saved is not None and saved.shape == v.shape:
                    v.copy_(saved.to(v))
        residual = None
        if cfg.get("residual") is not None:
            residual = Residual(model, **cfg["residual"])
            state = {k[len("residual."):]: v for k, v in weights.items() if k.startswith("residual.")}
            residual.load_state_dict(state)
            residual.to(device=model.device, dtype=model.dtype)
        return cls(Physics(model), residual)
