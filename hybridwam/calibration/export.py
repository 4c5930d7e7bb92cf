"""Identified physics MuJoCo can run: a model's parameters (as calibration leaves them in
``model.params``) written into a copy of its MJCF through ``mujoco.MjSpec``.

What is written: body masses, centres of mass, inertia frames and principal inertias (as an
explicit ``<inertial>``), joint damping, armature, stiffness and dry friction (``frictionloss``),
actuator gains and affine biases (a motor's torque offset becomes ``biastype="affine"`` with
``biasprm[0]``). Every other parameter must still equal what MuJoCo compiled from the file: a
parameter MuJoCo has no counterpart for (``dof_coulomb``, hybridwam's smooth tanh friction; the
compliant limit law's stiffness and damping; the contact law's) or one this writer does not
cover raises a ValueError naming it, so an export never drops identified physics silently.

MjSpec's XML writer keeps six significant digits; the numbers written here are rewritten at full
precision (17 digits) in the XML it produces, whose bodies, joints and actuators it writes in
MuJoCo's index order, and the written file is compiled and checked against the parameters
before it replaces anything.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET

import mujoco
import numpy as np

from ..fsutil import atomic_write_text

#: the parameters an export writes (model.params names)
EXPORTED = ("body_mass", "body_inertia", "body_ipos", "body_iquat", "dof_damping", "dof_armature", "jnt_stiffness",
            "dof_frictionloss", "actuator_gain", "actuator_bias")
#: what MuJoCo cannot express, by parameter (the reason the error gives)
NO_COUNTERPART = {
    "dof_coulomb": "hybridwam's smooth Coulomb friction (tanh); identify 'frictionloss' instead (MuJoCo's dry "
                   "friction; load the model with limit_law='mujoco' so that hybridwam steps it as MuJoCo does)",
    "dof_coulomb_vel": "the velocity scale of hybridwam's smooth Coulomb friction",
    "jnt_limit_stiffness": "the compliant limit law's stiffness (MuJoCo's limits follow solreflimit / solimplimit)",
    "jnt_limit_damping": "the compliant limit law's damping",
    "pair_stiffness": "the compliant contact law's stiffness", "pair_damping": "the compliant contact law's damping",
    "pair_meff": "the compliant contact law's effective mass", "contact_tau": "the contact law's onset length",
    "contact_eps": "the contact law's slip velocity scale",
}


def _full(x) -> str:
    return " ".join(repr(float(v)) for v in np.atleast_1d(x))


def _changed(model) -> dict[str, np.ndarray]:
    """Per parameter of ``model`` that differs from what MuJoCo compiled (its MjModel): which
    entries along its first axis differ."""
    from ..model import load_model

    base = load_model(model.mj, device="cpu", dtype="float64", limit_law=model.structure.limit_law).params
    rtol = 1e-12 if model.dtype.itemsize == 8 else 1e-6
    out = {}
    for k, v in model.params.items():
        a = v.detach().cpu().double().numpy()
        b = base[k].numpy()
        diff = ~np.isclose(a, b, rtol=rtol, atol=0)
        if diff.any():
            out[k] = diff.reshape(len(diff), -1).any(axis=1)
    return out


def _spec(model) -> tuple[mujoco.MjSpec, str]:
    """The model's MjSpec and the folder its relative asset paths are relative to."""
    if model.xml is None:
        raise ValueError(f"{model.source}: the model was built from an MjModel, not a file or XML text; "
                         "export needs the MJCF it came from")
    if os.path.isfile(model.source):
        return mujoco.MjSpec.from_file(model.source), os.path.dirname(os.path.abspath(model.source))
    return mujoco.MjSpec.from_string(model.xml), os.getcwd()


def export_mjcf(model, path: str) -> str:
    """Write ``model``'s parameters into a copy of its MJCF at ``path`` (atomically) and return
    the path; see the module docstring for what is written and what is refused."""
    changed = _changed(model)
    bad = [k for k in changed if k not in EXPORTED]
    if bad:
        why = "; ".join(f"{k}: {NO_COUNTERPART.get(k, 'not written by the exporter')}" for k in bad)
        raise ValueError(f"{model.source}: cannot export to MJCF what MuJoCo would not reproduce: {why}")
    mj = model.mj
    P = {k: model.params[k].detach().cpu().double().numpy() for k in EXPORTED}
    for j in range(mj.njnt):  # a ball / free joint has one damping, armature and frictionloss for its dofs
        a, n = int(mj.jnt_dofadr[j]), {0: 6, 1: 3}.get(int(mj.jnt_type[j]), 1)
        for k in ("dof_damping", "dof_armature", "dof_frictionloss"):
            if n > 1 and k in changed and np.ptp(P[k][a:a + n]) > 0:
                raise ValueError(f"{model.source}: {k} differs between the dofs of joint {j}, which MJCF gives one "
                                 "value for all")
    spec, folder = _spec(model)
    spec.compile()
    if len(spec.bodies) != mj.nbody or len(spec.joints) != mj.njnt or len(spec.actuators) != mj.nu:
        raise ValueError(f"{model.source}: the MJCF no longer compiles to the loaded model")
    # the bodies whose inertial changed
    inertial = np.zeros(mj.nbody, dtype=bool)
    for k in ("body_mass", "body_inertia", "body_ipos", "body_iquat"):
        inertial |= changed.get(k, inertial)
    for b in spec.bodies:
        if inertial[b.id]:
            b.explicitinertial = True
            b.mass = float(P["body_mass"][b.id])
            b.inertia = P["body_inertia"][b.id]
            b.fullinertia = np.full(6, np.nan)
            b.ipos = P["body_ipos"][b.id]
            x, y, z, w = P["body_iquat"][b.id]
            b.iquat = np.array([w, x, y, z])
    for a in spec.actuators:
        if np.any(P["actuator_bias"][a.id] != 0) and a.biastype == mujoco.mjtBias.mjBIAS_NONE:
            a.biastype = mujoco.mjtBias.mjBIAS_AFFINE
    # the assets where the original's relative paths point
    for attr in ("meshdir", "texturedir"):
        rel = getattr(spec, attr) or ""
        setattr(spec, attr, os.path.join(folder, rel) if not os.path.isabs(rel) else rel)
    root = ET.fromstring(spec.to_xml())
    world = root.find("worldbody")
    for i, el in enumerate(world.iter("body"), start=1):
        if inertial[i]:
            ine = el.find("inertial")
            x, y, z, w = P["body_iquat"][i]
            ine.attrib.update(pos=_full(P["body_ipos"][i]), quat=_full([w, x, y, z]), mass=_full(P["body_mass"][i]),
                              diaginertia=_full(P["body_inertia"][i]))
            ine.attrib.pop("fullinertia", None)
    for j, el in enumerate(e for e in world.iter() if e.tag in ("joint", "freejoint")):
        a = int(mj.jnt_dofadr[j])
        for attr, k, v in (("damping", "dof_damping", P["dof_damping"][a]), ("armature", "dof_armature",
                           P["dof_armature"][a]), ("frictionloss", "dof_frictionloss", P["dof_frictionloss"][a]),
                           ("stiffness", "jnt_stiffness", P["jnt_stiffness"][j])):
            if k in changed:
                el.set(attr, _full(v))
    acts = [e for sec in root.findall("actuator") for e in sec]
    for i, el in enumerate(acts):
        if "actuator_gain" in changed:
            g = [float(x) for x in el.get("gainprm", "1").split()]
            el.set("gainprm", _full([P["actuator_gain"][i], *g[1:]]))
        if "actuator_bias" in changed and np.any(P["actuator_bias"][i] != 0):
            rest = [float(x) for x in el.get("biasprm", "0 0 0").split()][3:]
            el.set("biasprm", _full([*P["actuator_bias"][i], *rest]))
    text = ET.tostring(root, encoding="unicode")
    # the written file must compile to the parameters (also catches a writer whose element order
    # is not MuJoCo's index order)
    out = mujoco.MjModel.from_xml_string(text)
    quat_sign = np.sign(np.sum(out.body_iquat * P["body_iquat"][:, [3, 0, 1, 2]], axis=1, keepdims=True))
    check = {"body_mass": out.body_mass, "body_inertia": out.body_inertia, "body_ipos": out.body_ipos,
             "body_iquat": (out.body_iquat * quat_sign)[:, [1, 2, 3, 0]],
             "dof_damping": out.dof_damping, "dof_armature": out.dof_armature, "jnt_stiffness": out.jnt_stiffness,
             "dof_frictionloss": out.dof_frictionloss, "actuator_gain": out.actuator_gainprm[:, 0],
             "actuator_bias": out.actuator_biasprm[:, :3]}
    for k, v in check.items():
        if k in changed and not np.allclose(v.reshape(P[k].shape), P[k], rtol=1e-12, atol=1e-300):
            raise RuntimeError(f"export: the written MJCF compiles to a different {k} ({v.tolist()} instead of "
                               f"{P[k].tolist()}); nothing was written")
    atomic_write_text(path, text)
    return path
