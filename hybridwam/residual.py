"""``hw.Residual``: a torch MLP that corrects what the physics gets wrong.

Inputs are physically meaningful features of (qpos, qvel, ctrl): sin/cos of hinge angles, slide
positions, ball/free quaternions (sign-fixed to w >= 0) and free positions, velocities, and
controls scaled to [-1, 1] by their ctrlrange. Features are standardised with statistics stored
as buffers (part of the state dict, saved with checkpoints); the output is a generalized
acceleration (rad/s^2, m/s^2) or generalized force (N m, N) correction [B, nv], scaled by a
stored output scale. The last layer starts at zero, so a fresh HybridModel equals the physics (bit
for bit that of the looped engine, which runs hw.Residual inside its step; the unrolled engine's
to rounding).
"""
from __future__ import annotations

import torch
from torch import nn

from .model import Model
from .types import BALL, FREE, HINGE, SLIDE

ACTIVATIONS = {"silu": nn.SiLU, "tanh": nn.Tanh, "relu": nn.ReLU, "gelu": nn.GELU}
MODES = ("acceleration", "force")


def _feature_plan(model: Model) -> tuple[list[tuple[str, int]], int]:
    plan, n = [], 0
    mj = model.mj
    for j in range(mj.njnt):
        t, a = int(mj.jnt_type[j]), int(mj.jnt_qposadr[j])
        if t == HINGE:
            plan.append(("hinge", a))
            n += 2
        elif t == SLIDE:
            plan.append(("slide", a))
            n += 1
        elif t == BALL:
            plan.append(("quat", a))
            n += 4
        elif t == FREE:
            plan += [("slide", a), ("slide", a + 1), ("slide", a + 2), ("quat", a + 3)]
            n += 7
    return plan, n


class Residual(nn.Module):
    """MLP residual: (qpos [B, nq], qvel [B, nv], ctrl [B, nu]) -> correction [B, nv].

    ``mode="acceleration"`` adds the output to the generalized acceleration of the step;
    ``mode="force"`` adds it to the generalized force before the mass-matrix solve.
    """

    def __init__(self, model: Model, hidden=(128, 128), mode: str = "acceleration", activation: str = "silu"):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        hidden = tuple(int(h) for h in hidden)
        if any(h <= 0 for h in hidden):
            raise ValueError(f"hidden sizes must be positive, got {hidden}")
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self.mode, self.hidden, self.activation = mode, hidden, activation
        self._plan, nfeat_q = _feature_plan(model)
        self.n_features = nfeat_q + self.nv + self.nu
        layers: list[nn.Module] = []
        width = self.n_features
        for h in hidden:
            layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
            width = h
        last = nn.Linear(width, self.nv)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.net = nn.Sequential(*layers, last)
        mj = model.mj
        lo = torch.as_tensor(mj.actuator_ctrlrange[:, 0] if self.nu else [], dtype=torch.float32)
        hi = torch.as_tensor(mj.actuator_ctrlrange[:, 1] if self.nu else [], dtype=torch.float32)
        limited = torch.as_tensor(mj.actuator_ctrllimited if self.nu else [], dtype=torch.bool)
        self.register_buffer("ctrl_center", torch.where(limited, (lo + hi) / 2, torch.zeros_like(lo)))
        self.register_buffer("ctrl_scale", torch.where(limited, (hi - lo).clamp_min(1e-9) / 2, torch.ones_like(lo)))
        self.register_buffer("input_mean", torch.zeros(self.n_features))
        self.register_buffer("input_std", torch.ones(self.n_features))
        self.register_buffer("output_scale", torch.ones(self.nv))
        self.to(device=model.device, dtype=model.dtype)

    def config(self) -> dict:
        return {"hidden": list(self.hidden), "mode": self.mode, "activation": self.activation}

    def features(self, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
        """Raw (unstandardised) features [B, n_features]."""
        parts = []
        for kind, a in self._plan:
            if kind == "hinge":
                parts += [torch.sin(qpos[..., a:a + 1]), torch.cos(qpos[..., a:a + 1])]
            elif kind == "slide":
                parts.append(qpos[..., a:a + 1])
            else:
                q = qpos[..., a:a + 4]
                parts.append(q * torch.where(q[..., :1] < 0, -1.0, 1.0))  # q and -q: same rotation
        parts.append(qvel)
        if self.nu:
            parts.append((ctrl - self.ctrl_center) / self.ctrl_scale)
        return torch.cat(parts, dim=-1)

    @torch.no_grad()
    def fit_normalization(self, qpos, qvel, ctrl, target=None):
        """Set input standardisation (and the output scale from ``target`` [N, nv]) from data."""
        f = self.features(torch.as_tensor(qpos).to(self.input_mean), torch.as_tensor(qvel).to(self.input_mean),
                          torch.as_tensor(ctrl).to(self.input_mean)).reshape(-1, self.n_features)
        self.input_mean.copy_(f.mean(0))
        self.input_std.copy_(f.std(0).clamp_min(1e-6) if f.shape[0] > 1 else torch.ones_like(self.input_std))
        if target is not None:
            t = torch.as_tensor(target).to(self.output_scale).reshape(-1, self.nv)
            self.output_scale.copy_(t.std(0).clamp_min(1e-6) if t.shape[0] > 1 else t.abs().mean(0).clamp_min(1e-6))

    def forward(self, qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
        x = (self.features(qpos, qvel, ctrl) - self.input_mean) / self.input_std
        return self.net(x) * self.output_scale
