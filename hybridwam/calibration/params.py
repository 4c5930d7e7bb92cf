"""Identifiable physical parameters: groups of ``model.params`` entries, parametrised so that
gradient descent stays physical (log scale for quantities that must stay positive).

Groups (names accepted by ``calibrate(params=...)``):

- ``mass``: mass of every moving body, ``m = m_nominal * exp(theta)``
- ``inertia``: rotational inertia (about the centre of mass) of every moving body, one scale per body
- ``armature``: rotor / reflected inertia per dof, ``exp(theta)`` (kg m^2)
- ``damping``: viscous friction per dof, ``exp(theta)`` (N m s)
- ``coulomb``: smooth Coulomb friction per dof (``dof_coulomb``), ``exp(theta)`` (N m)
- ``frictionloss``: MuJoCo's dry friction per dof that has it in the MJCF (``dof_frictionloss``),
  ``exp(theta)`` (N m); with ``limit_law="mujoco"`` stepped as MuJoCo does, so that the export
  (calibration/export.py) runs the same physics in MuJoCo
- ``motor_offset``: constant torque offset per actuator (``actuator_bias[:, 0]``), linear (N m)
- ``gain``: actuator gain per actuator, ``gain_nominal * exp(theta)``

The default set ``DEFAULT_GROUPS`` (mass, armature, damping, coulomb, motor_offset) is well posed for
chains of hinges: masses (with fixed centres of mass and inertias) and armatures move the mass
matrix and gravity terms independently, and leaving the gain out avoids the one exact ambiguity
(scaling every force and inertia together leaves the motion unchanged).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

GROUPS = ("mass", "inertia", "armature", "damping", "coulomb", "frictionloss", "motor_offset", "gain")
DEFAULT_GROUPS = ("mass", "armature", "damping", "coulomb", "motor_offset")
#: starting value for log-parametrised quantities whose nominal value is zero or tiny (SI units)
DEFAULT_FLOOR = {"armature": 1e-6, "damping": 1e-3, "coulomb": 1e-2, "frictionloss": 1e-2}


@dataclass(frozen=True)
class Entry:
    group: str
    param: str       # key in model.params
    index: tuple     # index into that tensor (a row for body_inertia)
    kind: str        # "rel" (nominal * exp), "abs" (exp), "lin" (value)
    nominal: float
    label: str


class PhysicalParameters:
    """The parameter vector ``theta`` [n] (float64) of the chosen groups of a model.

    ``values(theta)`` gives the full parameter tensors (differentiable in theta); ``write(theta)``
    copies them into ``model.params`` in place (so Physics objects keep seeing them).
    """

    def __init__(self, model, groups=DEFAULT_GROUPS, nominal: dict | None = None, init: dict | None = None):
        bad = [g for g in groups if g not in GROUPS]
        if bad:
            raise ValueError(f"unknown parameter group(s) {bad}; choose from {GROUPS}")
        self.model = model
        self.groups = tuple(groups)
        P = nominal if nominal is not None else model.params
        self.nominal = {k: v.detach().clone() for k, v in P.items()}
        init = dict(init or {})
        mj = model.mj
        bodies = [b for b in range(1, mj.nbody) if mj.body_dofnum[b] > 0 or _has_moving_ancestor(mj, b)]
        bodies = [b for b in bodies if float(self.nominal["body_mass"][b]) > 0]
        bname, jname, aname = model.names("body"), model.names("joint"), model.names("actuator")
        dname = [jname[int(mj.dof_jntid[d])] + (f"[{d - int(mj.jnt_dofadr[mj.dof_jntid[d]])}]"
                                               if mj.jnt_type[mj.dof_jntid[d]] in (0, 1) else "")
                 for d in range(mj.nv)]
        entries: list[Entry] = []
        for g in self.groups:
            if g == "mass":
                entries += [Entry(g, "body_mass", (b,), "rel", float(self.nominal["body_mass"][b]), f"mass[{bname[b]}]")
                            for b in bodies]
            elif g == "inertia":
                entries += [Entry(g, "body_inertia", (b,), "rel", 1.0, f"inertia_scale[{bname[b]}]") for b in bodies]
            elif g in ("armature", "damping", "coulomb"):
                key = {"armature": "dof_armature", "damping": "dof_damping", "coulomb": "dof_coulomb"}[g]
                for d in range(mj.nv):
                    nom = float(self.nominal[key][d])
                    entries.append(Entry(g, key, (d,), "abs", nom, f"{g}[{dname[d]}]"))
            elif g == "frictionloss":
                dofs = [d for d in range(mj.nv) if model.structure.dof_frictionloss[d]]
                if not dofs:
                    raise ValueError("parameter group 'frictionloss': no joint of the model has a frictionloss in "
                                     "its MJCF (dofs without one get no friction code); give the joints to "
                                     "identify a small one, e.g. frictionloss=\"0.01\"")
                entries += [Entry(g, "dof_frictionloss", (d,), "abs", float(self.nominal["dof_frictionloss"][d]),
                                  f"frictionloss[{dname[d]}]") for d in dofs]
            elif g == "motor_offset":
                entries += [Entry(g, "actuator_bias", (a, 0), "lin", float(self.nominal["actuator_bias"][a, 0]),
                                  f"motor_offset[{aname[a]}]") for a in range(mj.nu)]
            elif g == "gain":
                entries += [Entry(g, "actuator_gain", (a,), "rel", float(self.nominal["actuator_gain"][a]),
                                  f"gain[{aname[a]}]") for a in range(mj.nu)]
        self.entries = entries
        th = []
        for e in entries:
            v = init.get(e.label, init.get(e.group))
            if e.kind == "rel":
                ref = e.nominal if e.group != "inertia" else 1.0
                th.append(0.0 if v is None else math.log(max(float(v), 1e-30) / max(ref, 1e-30)))
            elif e.kind == "abs":
                start = float(v) if v is not None else max(e.nominal, DEFAULT_FLOOR[e.group])
                th.append(math.log(max(start, 1e-30)))
            else:
                th.append(float(v) if v is not None else e.nominal)
        self.theta0 = torch.tensor(th, dtype=torch.float64)
        self.param_names = sorted({e.param for e in entries})

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labels(self) -> list[str]:
        return [e.label for e in self.entries]

    def values(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        """Full tensors for every touched ``model.params`` entry, differentiable in theta."""
        dev, dt = self.model.device, self.model.dtype
        out = {n: self.nominal[n].to(device=dev, dtype=torch.float64).clone() for n in self.param_names}
        for i, e in enumerate(self.entries):
            th = theta[i].to(dev)
            idx = tuple(torch.tensor(j, device=dev) for j in e.index)
            if e.kind == "rel" and e.group == "inertia":     # one scale for the row of 3 principal moments
                val = self.nominal[e.param][e.index[0]].to(dev, torch.float64) * torch.exp(th)
            elif e.kind == "rel":
                val = e.nominal * torch.exp(th)
            elif e.kind == "abs":
                val = torch.exp(th)
            else:
                val = th
            out[e.param] = out[e.param].index_put(idx, val)
        return {k: v.to(dt) for k, v in out.items()}

    def physical(self, theta: torch.Tensor) -> dict[str, float]:
        """{label: value in SI units} (inertia: the scale factor)."""
        out = {}
        for i, e in enumerate(self.entries):
            t = float(theta[i])
            out[e.label] = (e.nominal * math.exp(t) if e.kind == "rel" and e.group != "inertia"
                            else math.exp(t) if e.kind in ("rel", "abs") else t)
        return out

    @torch.no_grad()
    def write(self, theta: torch.Tensor) -> None:
        for k, v in self.values(theta.detach()).items():
            self.model.params[k].copy_(v)

    @torch.no_grad()
    def write_nominal(self) -> None:
        for k, v in self.nominal.items():
            self.model.params[k].copy_(v)

    def backward_to_theta(self, theta: torch.Tensor) -> None:
        """Chain ``model.params[*].grad`` (from a loss.backward()) into ``theta.grad``."""
        vals = self.values(theta)
        outs, grads = [], []
        for k, v in vals.items():
            g = self.model.params[k].grad
            if g is not None:
                outs.append(v)
                grads.append(g)
        if outs:
            torch.autograd.backward(outs, grads)

    def requires_grad(self, flag: bool) -> None:
        for k in self.param_names:
            p = self.model.params[k]
            p.grad = None
            p.requires_grad_(flag)


def _has_moving_ancestor(mj, b: int) -> bool:
    while b > 0:
        if mj.body_dofnum[b] > 0:
            return True
        b = int(mj.body_parentid[b])
    return False
