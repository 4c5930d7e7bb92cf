"""The pure neural baseline: an MLP that predicts the state change of one step.

``x' = x + MLP(features(q, qv, u)) * scale`` with x = (qpos, qvel), the same input features as
:class:`hw.Residual` (sin/cos of hinge angles, velocities, scaled controls; standardised) and an
output scale per state component fitted from the data's one-step changes. No physics inside; it has
the same ``step`` / ``rollout`` as the other world models and is trained with the same multi-step
loss, so it measures what the physics prior is worth. (qpos is updated additively, so for ball /
free joints it is a baseline only, not a valid quaternion integrator.)
"""
from __future__ import annotations

import torch
from torch import nn

from ..physics import Trajectory
from ..residual import Residual


class NeuralModel(nn.Module):
    """(qpos [B, nq], qvel [B, nv], ctrl [B, nu]) -> next (qpos, qvel); ``rollout`` as Physics."""

    def __init__(self, model, hidden=(128, 128), activation: str = "silu"):
        super().__init__()
        self.nq, self.nv, self.nu = model.nq, model.nv, model.nu
        self.dt = model.timestep
        # Residual supplies features, normalisation buffers and the MLP trunk; its head is replaced
        self.encoder = Residual(model, hidden=hidden, activation=activation)
        width = self.encoder.net[-1].in_features
        head = nn.Linear(width, self.nq + self.nv)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        self.encoder.net[-1] = head
        self.register_buffer("output_scale", torch.ones(self.nq + self.nv))
        self.to(device=model.device, dtype=model.dtype)
        self.hidden = tuple(hidden)

    @torch.no_grad()
    def fit_normalization(self, qpos, qvel, ctrl, dq, dv):
        """Input standardisation from states/controls [N, .], output scale from one-step changes."""
        self.encoder.fit_normalization(qpos, qvel, ctrl)
        d = torch.cat([torch.as_tensor(dq), torch.as_tensor(dv)], -1).to(self.output_scale)
        self.output_scale.copy_(d.std(0).clamp_min(1e-6))

    def step(self, qpos, qvel, ctrl):
        e = self.encoder
        x = (e.features(qpos, qvel, ctrl) - e.input_mean) / e.input_std
        d = e.net(x) * self.output_scale
        return qpos + d[..., :self.nq], qvel + d[..., self.nq:]

    def forward(self, qpos, qvel, ctrl):
        return self.step(qpos, qvel, ctrl)

    def rollout(self, qpos0, qvel0, ctrls) -> Trajectory:
        qs, vs = [qpos0], [qvel0]
        q, v = qpos0, qvel0
        for t in range(ctrls.shape[-2]):
            q, v = self.step(q, v, ctrls[..., t, :])
            qs.append(q)
            vs.append(v)
        Q, V = torch.stack(qs, -2), torch.stack(vs, -2)
        return Trajectory(Q, V, (V[..., 1:, :] - V[..., :-1, :]) / self.dt)
