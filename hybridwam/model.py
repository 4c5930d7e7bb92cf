"""``hw.load_model``: MJCF / URDF -> ``hw.Model`` (structure + differentiable parameters).

Models are compiled by MuJoCo's own compiler (``mujoco.MjModel``: defaults, URDF, inertias from
geoms and meshes), then copied into torch tensors on the chosen device that Warp reads zero-copy.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from dataclasses import field as dc_field

import mujoco
import numpy as np
import torch

from .types import (
    ACT_DYNAMICS,
    BALL,
    DYN_INTEGRATOR,
    DYN_NONE,
    EQ_SIMULATED,
    FREE,
    GAIN_AFFINE,
    GAINS,
    HFIELD,
    HINGE,
    LIMIT_LAWS,
    MESH,
    PAIR_TYPES,
    PARAM_SPEC,
    ROW_BALL_LIMIT,
    ROW_TENDON_FRICTION,
    ROW_TENDON_LOWER,
    ROW_TENDON_UPPER,
    SLIDE,
    TENDON_CONSTRAINED,
    TENDON_REFUSED,
    TENDON_SIMULATED,
    TENDON_WRAPS,
    TRANSMISSIONS,
    TRN_JOINT,
    TRN_JOINTINPARENT,
    TRN_SITE,
    TRN_TENDON,
    WRAP_JOINT,
    Structure,
)

JOINT_TYPE_NAMES = {FREE: "free", BALL: "ball", SLIDE: "slide", HINGE: "hinge"}
#: geom types with a narrow phase against something: read off the pair table (types.PAIR_KINDS)
COLLIDABLE = tuple(sorted({t for kind in PAIR_TYPES for t in kind}))
#: hull vertices a mesh contributes as contact points (farthest-point subset beyond this)
MAX_HULL_VERTS = 32
#: candidate pairs named per pair of geom types a refusal lists (the rest counted)
SHOWN_PAIRS = 3
#: default smoothing of the contact law: onset length (m) and friction slip velocity (m/s)
CONTACT_TAU = 5e-4
CONTACT_EPS = 1e-3
#: MJCF ``<custom><numeric name=... data=.../></custom>`` entries a scene may set to override them
CONTACT_NUMERICS = {"hybridwam_contact_tau": CONTACT_TAU, "hybridwam_contact_eps": CONTACT_EPS}
MAX_NV = 32  # the unrolled engine's cap: its generated code grows as nv^3 (the looped engine has none)


class UnsupportedFeatureError(ValueError):
    """The model uses elements hybridwam does not simulate; ``.features`` lists them all."""

    def __init__(self, source: str, features: list[str]):
        self.source = source
        self.features = list(features)
        lines = "\n".join(f"  - {f}" for f in self.features)
        super().__init__(f"{source}: unsupported by hybridwam (never approximated silently):\n{lines}")


class ModelLoadError(ValueError):
    """The model file could not be read or compiled (missing file, malformed XML, ...)."""


def default_device() -> str:
    """"cuda:0" when a CUDA device is visible to both torch and Warp, else "cpu"."""
    if torch.cuda.is_available():
        import warp as wp

        if wp.is_cuda_available():
            return "cuda:0"
    return "cpu"


def _package_path(rel: str) -> str | None:
    """A shipped scene named "x.xml" or "scenes/x.xml" (never a path into another folder)."""
    from importlib import resources

    head, name = os.path.split(rel)
    if head not in ("", "scenes"):
        return None
    p = resources.files("hybridwam.scenes") / name
    return str(p) if p.is_file() else None


def resolve_scene(path: str) -> str:
    """A scene path as given, else a shipped scene by file name or short name ("cartpole")."""
    if os.path.exists(path):
        return path
    name = path if path.endswith((".xml", ".urdf")) else path + ".xml"
    found = _package_path(name)
    if found is None:
        raise ModelLoadError(f"{path}: no such file (and no shipped scene of that name; shipped: "
                             f"{', '.join(list_scenes())})")
    return found


def list_scenes() -> list[str]:
    from importlib import resources

    return sorted(p.name[:-4] for p in resources.files("hybridwam.scenes").iterdir() if p.name.endswith(".xml"))


def _compile(path_or_xml: str) -> tuple[mujoco.MjModel, str, str | None]:
    """(MjModel, source name, XML text when self-contained enough to rebuild from)."""
    text = path_or_xml.lstrip()
    if text.startswith("<"):
        source = "<xml string>"
        try:
            return mujoco.MjModel.from_xml_string(path_or_xml), source, path_or_xml
        except ValueError as e:
            raise ModelLoadError(f"{source}: {e}") from None
    path = os.path.abspath(resolve_scene(os.fspath(path_or_xml)))
    try:
        m = mujoco.MjModel.from_xml_path(path)
    except ValueError as e:
        raise ModelLoadError(f"{path}: {e}") from None
    with open(path, errors="replace") as f:
        xml = f.read()
    return m, path, xml


def _name(m: mujoco.MjModel, objtype, i: int, kind: str) -> str:
    n = mujoco.mj_id2name(m, objtype, i)
    return f"{kind} '{n}'" if n else f"{kind} #{i}"


#: tendon properties through which a tendon acts on the step (MuJoCo's tendon_* fields): a tendon
#: with all of them zero / off and no actuator on it exerts no force, so ignoring it is exact
TENDON_ACTING = ("stiffness", "stiffnesspoly", "springyield", "damping", "dampingpoly", "frictionloss", "armature",
                 "limited")


def inert_tendon_violations(m: mujoco.MjModel, i: int) -> list[str]:
    """What makes tendon ``i`` act on the step (TENDON_ACTING fields that are set, an actuator
    on it); empty for a tendon the step may ignore exactly."""
    out = [f for f in TENDON_ACTING if hasattr(m, "tendon_" + f) and np.any(np.asarray(getattr(m, "tendon_" + f))[i])]
    if any(int(m.actuator_trntype[a]) == int(mujoco.mjtTrn.mjTRN_TENDON) and int(m.actuator_trnid[a, 0]) == i
           for a in range(m.nu)):
        out.append("an actuator")
    if any(int(m.eq_type[e]) == int(mujoco.mjtEq.mjEQ_TENDON) and m.eq_active0[e]
           and i in (m.eq_obj1id[e], m.eq_obj2id[e]) for e in range(m.neq)):
        out.append("an equality constraint")
    return out


def tendon_violations(m: mujoco.MjModel, i: int, implicitfast: bool, limit_law: str = "compliant") -> list[str]:
    """What the step cannot simulate of tendon ``i`` (empty: it can, or the tendon acts on nothing).
    A tendon that acts (:func:`inert_tendon_violations`) must be a path of the elements in
    TENDON_WRAPS with none of TENDON_REFUSED set (nor TENDON_CONSTRAINED unless ``limit_law`` is
    "mujoco"), and without damping under implicitfast (MuJoCo integrates it implicitly there,
    coupling the tendon's dofs)."""
    if not inert_tendon_violations(m, i):
        return []
    tn = _name(m, mujoco.mjtObj.mjOBJ_TENDON, i, "tendon")
    out = []
    refused = [f for f in TENDON_REFUSED
               if hasattr(m, "tendon_" + f) and np.any(np.asarray(getattr(m, "tendon_" + f))[i])]
    if refused:
        out.append(f"{tn} {', '.join(refused)} (simulated: tendon {', '.join(TENDON_SIMULATED)}, actuators and, "
                   f"with limit_law 'mujoco', {' and '.join(TENDON_CONSTRAINED)})")
    constrained = [f for f in TENDON_CONSTRAINED if np.any(np.asarray(getattr(m, "tendon_" + f))[i])]
    if constrained and limit_law != "mujoco":
        out.append(f"{tn} {', '.join(constrained)} with limit_law 'compliant' (tendon limits and dry friction are "
                   "MuJoCo's soft constraints: load the model with limit_law='mujoco')")
    adr, num = int(m.tendon_adr[i]), int(m.tendon_num[i])
    for k in range(adr, adr + num):
        typ = int(m.wrap_type[k])
        if typ not in TENDON_WRAPS:
            out.append(f"{tn} path element #{k - adr} of type {mujoco.mjtWrap(typ).name[7:].lower()} (tendon "
                       f"paths through {', '.join(TENDON_WRAPS.values())} are simulated)")
        elif typ == WRAP_JOINT and int(m.jnt_type[m.wrap_objid[k]]) not in (HINGE, SLIDE):
            out.append(f"{tn} on a ball/free joint")
    if implicitfast and m.tendon_damping[i] > 0:
        out.append(f"{tn} damping with the implicitfast integrator (integrated implicitly there, coupling the "
                   "tendon's dofs; Euler and RK4 integrate it explicitly, as MuJoCo does)")
    return out


def unsupported_features(m: mujoco.MjModel, pairs: list[tuple[int, int]] | None = None,
                         limit_law: str = "compliant") -> list[str]:
    """Every element of ``m`` that hybridwam cannot simulate exactly, by name (``limit_law``:
    load_model's; equality constraints need "mujoco")."""
    O = mujoco.mjtObj
    out: list[str] = []
    I = mujoco.mjtIntegrator
    if int(m.opt.integrator) not in (int(I.mjINT_EULER), int(I.mjINT_IMPLICITFAST), int(I.mjINT_RK4)):
        out.append(f"option integrator '{I(m.opt.integrator).name}' (Euler, implicitfast and RK4 only)")
    fast = int(m.opt.integrator) == int(I.mjINT_IMPLICITFAST)
    for i in range(m.ntendon):
        out += tendon_violations(m, i, fast, limit_law)
    for i in range(m.neq):
        name, typ = _name(m, O.mjOBJ_EQUALITY, i, "equality constraint"), int(m.eq_type[i])
        if typ not in EQ_SIMULATED:
            out.append(f"{name} of type {mujoco.mjtEq(typ).name[5:].lower()} (simulated: "
                       f"{', '.join(EQ_SIMULATED.values())})")
        elif limit_law != "mujoco" and m.eq_active0[i]:
            out.append(f"{name} with limit_law 'compliant' (equality constraints are MuJoCo's soft constraints: "
                       "load the model with limit_law='mujoco')")
    for i in range(getattr(m, "nflex", 0)):
        out.append(_name(m, O.mjOBJ_FLEX, i, "flex"))
    if getattr(m, "nplugin", 0):
        out.append(f"{m.nplugin} engine plugin(s)")
    if m.opt.density > 0 or m.opt.viscosity > 0:  # without either, wind does nothing
        for g in range(m.ngeom):
            if m.geom_fluid[g, 0] > 0:
                out.append(f"{_name(m, O.mjOBJ_GEOM, g, 'geom')} fluidshape 'ellipsoid' (the ellipsoid fluid model; "
                           "the inertia-box model is simulated)")
        if int(m.opt.integrator) == int(I.mjINT_IMPLICITFAST):
            out.append("fluid forces with the implicitfast integrator (their velocity derivatives couple dofs; "
                       "Euler and RK4 integrate them explicitly, as MuJoCo does)")
    dis = m.opt.disableflags
    for flag in ("mjDSBL_SPRING", "mjDSBL_DAMPER", "mjDSBL_ACTUATION"):
        if dis & int(getattr(mujoco.mjtDisableBit, flag)):
            out.append(f"option disable flag {flag[6:].lower()}")
    for j in range(m.njnt):
        jn = _name(m, O.mjOBJ_JOINT, j, "joint")
        if m.jnt_actgravcomp[j] and int(m.jnt_type[j]) not in (HINGE, SLIDE):
            out.append(f"{jn} actuatorgravcomp on a ball/free joint")
        if m.jnt_limited[j] and int(m.jnt_type[j]) == FREE:
            out.append(f"{jn} range limit on a free joint")
        elif m.jnt_limited[j] and int(m.jnt_type[j]) == BALL and limit_law != "mujoco":
            out.append(f"{jn} cone limit of a ball joint with limit_law 'compliant' (cone limits are MuJoCo's soft "
                       "constraints: load the model with limit_law='mujoco')")
        for field in ("jnt_stiffnesspoly", "jnt_springyield"):
            if hasattr(m, field) and np.any(np.asarray(getattr(m, field))[j] != 0):
                out.append(f"{jn} {field[4:]}")
    for d in range(m.nv):
        jn = _name(m, O.mjOBJ_JOINT, int(m.dof_jntid[d]), "joint")
        if hasattr(m, "dof_dampingpoly") and np.any(np.asarray(m.dof_dampingpoly)[d] != 0):
            out.append(f"{jn} dampingpoly")
    A = mujoco.mjtTrn, mujoco.mjtDyn, mujoco.mjtGain, mujoco.mjtBias
    for a in range(m.nu):
        an = _name(m, O.mjOBJ_ACTUATOR, a, "actuator")
        trn = int(m.actuator_trntype[a])
        if trn not in TRANSMISSIONS:
            out.append(f"{an} transmission '{A[0](trn).name[6:].lower()}' (simulated: "
                       f"{', '.join(TRANSMISSIONS.values())})")
        elif trn in (TRN_TENDON, TRN_SITE):
            affine_bias = int(m.actuator_biastype[a]) == int(A[3].mjBIAS_AFFINE)
            affine_gain = int(m.actuator_gaintype[a]) == GAIN_AFFINE
            if (trn == TRN_SITE and m.actuator_trnid[a, 1] >= 0 and np.any(m.actuator_gear[a, 3:] != 0)
                    and ((affine_bias and m.actuator_biasprm[a, 1] != 0)
                         or (affine_gain and m.actuator_gainprm[a, 1] != 0))):
                out.append(f"{an} length-dependent force of a rotation in a reference site's frame (MuJoCo wraps "
                           "its angle error to [-pi, pi]; motors, velocity terms and translations are simulated)")
            if fast and ((affine_bias and m.actuator_biasprm[a, 2] != 0)
                         or (affine_gain and m.actuator_gainprm[a, 2] != 0)):
                out.append(f"{an} velocity-dependent force on a {TRANSMISSIONS[trn]} with the implicitfast integrator "
                           f"(integrated implicitly there, coupling the {TRANSMISSIONS[trn]}'s dofs)")
        elif int(m.jnt_type[m.actuator_trnid[a, 0]]) in (BALL, FREE):
            j = int(m.actuator_trnid[a, 0])
            kind = JOINT_TYPE_NAMES[int(m.jnt_type[j])]
            if m.jnt_actfrclimited[j]:
                out.append(f"{an} on {kind} joint '{_name(m, O.mjOBJ_JOINT, j, 'joint')}' with actuatorfrcrange")
            if fast and ((int(m.actuator_biastype[a]) == int(A[3].mjBIAS_AFFINE) and m.actuator_biasprm[a, 2] != 0)
                         or (int(m.actuator_gaintype[a]) == GAIN_AFFINE and m.actuator_gainprm[a, 2] != 0)):
                out.append(f"{an} velocity-dependent force on a {kind} joint with the implicitfast integrator "
                           "(integrated implicitly there, coupling the joint's dofs)")
        dyn = int(m.actuator_dyntype[a])
        if dyn != DYN_NONE and dyn not in ACT_DYNAMICS:
            out.append(f"{an} dynamics '{A[1](dyn).name[6:].lower()}' (simulated: "
                       f"{', '.join(ACT_DYNAMICS.values())})")
        elif dyn != DYN_NONE and int(m.actuator_actnum[a]) != 1:
            out.append(f"{an} with {int(m.actuator_actnum[a])} activation states (simulated: one)")
        if int(m.actuator_gaintype[a]) not in GAINS:
            out.append(f"{an} gain '{A[2](m.actuator_gaintype[a]).name[7:].lower()}' (simulated: "
                       f"{', '.join(GAINS.values())})")
        if int(m.actuator_biastype[a]) not in (int(A[3].mjBIAS_NONE), int(A[3].mjBIAS_AFFINE)):
            out.append(f"{an} bias '{A[3](m.actuator_biastype[a]).name}'")
        for field in ("actuator_damping", "actuator_armature", "actuator_dampingpoly", "actuator_delay"):
            if hasattr(m, field) and np.any(np.asarray(getattr(m, field))[a] != 0):
                out.append(f"{an} {field[9:]}")
    if getattr(m, "npair", 0):
        out.append(f"{m.npair} explicit <contact><pair> element(s) (use contype/conaffinity and <exclude>)")
    missing: dict[str, list] = {}
    for g1, g2 in contact_pairs(m) if pairs is None else pairs:
        for g in (g1, g2):
            gn = _name(m, O.mjOBJ_GEOM, g, "geom")
            if int(m.geom_type[g]) not in COLLIDABLE:
                msg = f"{gn} collision geometry '{mujoco.mjtGeom(m.geom_type[g]).name[7:].lower()}' (supported: "
                msg += ", ".join(mujoco.mjtGeom(t).name[7:].lower() for t in COLLIDABLE) + ")"
                if msg not in out:
                    out.append(msg)
        t1, t2 = int(m.geom_type[g1]), int(m.geom_type[g2])
        if t1 in COLLIDABLE and t2 in COLLIDABLE and (t1, t2) not in PAIR_TYPES:
            kinds = "-".join(mujoco.mjtGeom(t).name[7:].lower() for t in (t1, t2))
            missing.setdefault(kinds, []).append((g1, g2))
    # one line per pair of geom types (a scene of primitives has thousands of such pairs): how
    # many, and the first few by name
    for kinds, found in missing.items():
        names = ", ".join(f"{_name(m, O.mjOBJ_GEOM, g1, 'geom')} - {_name(m, O.mjOBJ_GEOM, g2, 'geom')}"
                          for g1, g2 in found[:SHOWN_PAIRS])
        more = f" and {len(found) - SHOWN_PAIRS} more" if len(found) > SHOWN_PAIRS else ""
        out.append(f"{kinds} contact, {len(found)} candidate pair{'s' if len(found) > 1 else ''}: {names}{more} "
                   "(no narrow phase for this pair of geom types; cylinders collide with planes, spheres, capsules, "
                   "boxes and cylinders, ellipsoids with planes, height fields with spheres, capsules and boxes)")
    if m.nv == 0:
        out.append("a model without degrees of freedom (nv=0: no joints, nothing to simulate)")
    return out


@dataclass
class Model:
    """Immutable structure plus differentiable physical parameters on one device.

    ``params`` maps names to torch tensors (SI units); set ``requires_grad`` on any of them to
    differentiate a step or rollout with respect to it. Names follow MuJoCo's fields
    (body_mass [nbody], body_inertia [nbody, 3], body_ipos, dof_damping [nv], dof_armature,
    jnt_stiffness [njnt], actuator_gear [nu], actuator_gain, actuator_bias [nu, 3], gravity [1, 3],
    ...) plus two hybridwam extras that are zero/inactive for MuJoCo models: ``dof_coulomb`` [nv]
    (smooth Coulomb friction -c tanh(qd / dof_coulomb_vel)) and ``actuator_bias[:, 0]`` on motors
    (a constant torque offset). ``mj`` is the MuJoCo
    model it was compiled from (the exact reference, and the source of names).
    """

    mj: mujoco.MjModel
    source: str
    xml: str | None
    device: str
    dtype: torch.dtype
    structure: Structure
    params: dict[str, torch.Tensor]
    #: the shape of each parameter as loaded: the kernels index the parameter arrays without
    #: bounds checks, so a replacement tensor must keep it (checked at launch, see Physics)
    param_shapes: dict[str, tuple[int, ...]] = dc_field(default_factory=dict)

    def __post_init__(self):
        if not self.param_shapes:
            self.param_shapes = {k: tuple(v.shape) for k, v in self.params.items()}

    # sizes ---------------------------------------------------------------------------------
    @property
    def nq(self) -> int:
        return self.mj.nq

    @property
    def nv(self) -> int:
        return self.mj.nv

    @property
    def nu(self) -> int:
        return self.mj.nu

    @property
    def na(self) -> int:
        """Activation states (MuJoCo's na: one per actuator with activation dynamics); rollouts
        carry them as ``act`` beside qpos and qvel."""
        return self.mj.na

    @property
    def nbody(self) -> int:
        return self.mj.nbody

    @property
    def njnt(self) -> int:
        return self.mj.njnt

    @property
    def timestep(self) -> float:
        return float(self.params["timestep"][0])

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    def names(self, kind: str) -> list[str]:
        """Names of "body", "joint", "actuator", "site", "geom" or "tendon" elements, in index order."""
        objtype, n = {"body": (mujoco.mjtObj.mjOBJ_BODY, self.mj.nbody),
                      "joint": (mujoco.mjtObj.mjOBJ_JOINT, self.mj.njnt),
                      "actuator": (mujoco.mjtObj.mjOBJ_ACTUATOR, self.mj.nu),
                      "site": (mujoco.mjtObj.mjOBJ_SITE, self.mj.nsite),
                      "geom": (mujoco.mjtObj.mjOBJ_GEOM, self.mj.ngeom),
                      "tendon": (mujoco.mjtObj.mjOBJ_TENDON, self.mj.ntendon)}[kind]
        return [mujoco.mj_id2name(self.mj, objtype, i) or f"{kind}{i}" for i in range(n)]

    def __getattr__(self, name):
        # model.body_mass etc.: the parameter tensors
        params = self.__dict__.get("params")
        if params is not None and name in params:
            return params[name]
        raise AttributeError(name)

    def parameters(self, names=None) -> list[torch.Tensor]:
        return [self.params[n] for n in (names or self.params)]

    def default_state(self, batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(qpos0, zeros) as MuJoCo's reset state, optionally with a leading batch dim."""
        q = torch.as_tensor(self.mj.qpos0, dtype=self.dtype, device=self.device)
        v = torch.zeros(self.nv, dtype=self.dtype, device=self.device)
        if batch is not None:
            q, v = q.expand(batch, -1).clone(), v.expand(batch, -1).clone()
        return q, v

    def describe(self) -> str:
        """Human-readable summary: sizes, joints, actuators, unsupported features."""
        m = self.mj
        lines = [f"model   {self.source}",
                 f"sizes   nq={m.nq} nv={m.nv} nu={m.nu} nbody={m.nbody} njnt={m.njnt} ngeom={m.ngeom}",
                 f"option  timestep={m.opt.timestep:g} s, gravity={tuple(float(x) for x in m.opt.gravity)}, "
                 f"integrator={mujoco.mjtIntegrator(m.opt.integrator).name[6:]}, device={self.device}, "
                 f"dtype={str(self.dtype)[6:]}"]
        jn, bn = self.names("joint"), self.names("body")
        lines.append("joints")
        for j in range(m.njnt):
            lines.append(f"  {jn[j]:<20} {JOINT_TYPE_NAMES[int(m.jnt_type[j])]:<6} qpos[{m.jnt_qposadr[j]}] "
                         f"dof[{m.jnt_dofadr[j]}] body '{bn[m.jnt_bodyid[j]]}' "
                         f"damping={m.dof_damping[m.jnt_dofadr[j]]:g} armature={m.dof_armature[m.jnt_dofadr[j]]:g} "
                         f"stiffness={m.jnt_stiffness[j]:g}"
                         + (f" range=[{m.jnt_range[j, 0]:g}, {m.jnt_range[j, 1]:g}]" if m.jnt_limited[j] else "")
                         + (f" margin={m.jnt_margin[j]:g}" if m.jnt_limited[j] and m.jnt_margin[j] else "")
                         + (f" frictionloss={fl:g}" if (fl := m.dof_frictionloss[m.jnt_dofadr[j]]) > 0 else "")
                         + (" actuatorgravcomp" if m.jnt_actgravcomp[j] else ""))
        if m.ntendon:
            tn, acting = self.names("tendon"), self.structure.tendon_wraps
            lines.append(f"tendons  (limits and dry friction: limit law '{self.structure.limit_law}')")
            for i in range(m.ntendon):
                spatial = any(int(m.wrap_type[k]) != WRAP_JOINT
                              for k in range(m.tendon_adr[i], m.tendon_adr[i] + m.tendon_num[i]))
                lines.append(f"  {tn[i]:<20} {'spatial' if spatial else 'fixed':<7} {m.tendon_num[i]} path element(s)"
                             + ("" if acting and acting[i] else " (exerts no force: left out of the step)")
                             + (f" stiffness={m.tendon_stiffness[i]:g}" if m.tendon_stiffness[i] else "")
                             + (f" damping={m.tendon_damping[i]:g}" if m.tendon_damping[i] else "")
                             + (f" range=[{m.tendon_range[i, 0]:g}, {m.tendon_range[i, 1]:g}]"
                                if m.tendon_limited[i] else "")
                             + (f" margin={m.tendon_margin[i]:g}" if m.tendon_limited[i] and m.tendon_margin[i] else "")
                             + (f" frictionloss={m.tendon_frictionloss[i]:g}" if m.tendon_frictionloss[i] > 0 else ""))
        if self.structure.eq:
            lines.append(f"equality constraints  {len(self.structure.eq)} active")
            for typ, o1, o2, site, i in self.structure.eq:
                kind = EQ_SIMULATED[typ]
                objs = {"connect": "body", "weld": "body", "joint": "joint", "tendon": "tendon"}[kind]
                objs = "site" if site else objs
                names = self.names(objs)
                lines.append(f"  #{i} {kind}: {objs} '{names[o1]}'" + (f" - '{names[o2]}'" if o2 >= 0 else ""))
        gc = [f"'{bn[b]}' {m.body_gravcomp[b]:g}" for b in range(m.nbody) if m.body_gravcomp[b]]
        if gc:
            lines.append("gravity compensation  " + ", ".join(gc))
        an = self.names("actuator")
        lines.append("actuators" if m.nu else "actuators (none)")
        for a in range(m.nu):
            kind = _actuator_kind(m, a)
            rng = (f"ctrlrange=[{m.actuator_ctrlrange[a, 0]:g}, {m.actuator_ctrlrange[a, 1]:g}]"
                   if m.actuator_ctrllimited[a] else "ctrl unlimited")
            trn_kind = int(m.actuator_trntype[a])
            trn = (f"{TRANSMISSIONS[trn_kind]} '{self.names(TRANSMISSIONS[trn_kind])[m.actuator_trnid[a, 0]]}'"
                   if trn_kind in (TRN_TENDON, TRN_SITE) else f"joint '{jn[m.actuator_trnid[a, 0]]}'")
            dyn = int(m.actuator_dyntype[a])
            act = ""
            if dyn in ACT_DYNAMICS:  # the activation state's dynamics
                tau = f" tau={m.actuator_dynprm[a, 0]:g} s" if dyn != DYN_INTEGRATOR else ""
                act = f", {ACT_DYNAMICS[dyn]}{tau}"
                act += (f" act in [{m.actuator_actrange[a, 0]:g}, {m.actuator_actrange[a, 1]:g}]"
                        if m.actuator_actlimited[a] else "") + (" actearly" if m.actuator_actearly[a] else "")
            lines.append(f"  {an[a]:<20} {kind:<11} {trn} "
                         f"gear={m.actuator_gear[a, 0]:g} {rng}{act}")
        pairs = self.structure.pairs
        gn = self.names("geom")
        fr = self.params["pair_friction"].detach().cpu().double().numpy()

        def friction(i):  # the pair's friction as MuJoCo mixes it, by what its condim keeps
            s, t, r = fr[i]
            return ("frictionless" if s == 0 and t == 0 and r == 0 else f"friction {s:g}"
                    + (f", torsional {t:g} m" if t else "") + (f", rolling {r:g} m" if r else ""))
        lines.append(f"contacts  {m.ngeom} geoms, {len(pairs)} candidate pair(s) after filtering"
                     + "".join(f"\n  {gn[a]} - {gn[b]}  {friction(i)}" for i, (a, b) in enumerate(pairs[:20]))
                     + (f"\n  ... {len(pairs) - 20} more" if len(pairs) > 20 else ""))
        if pairs:
            eps, tau = (float(self.params[k].reshape(-1)[0]) for k in ("contact_eps", "contact_tau"))
            own = list(scene_contact_numerics(m))
            lines.append(f"contact law  friction slip scale {eps:.3g} m/s, onset length {tau:.3g} m"
                         + (f" (the scene sets {', '.join(own)})" if own else ""))
        lines.append("unsupported  none")
        return "\n".join(lines)


def _actuator_kind(m: mujoco.MjModel, a: int) -> str:
    gain, b = m.actuator_gainprm[a, 0], m.actuator_biasprm[a, :3]
    if int(m.actuator_gaintype[a]) == GAIN_AFFINE:
        return "affine gain"
    if m.actuator_biastype[a] == 0:
        return "motor"
    if b[1] == -gain and b[0] == 0:
        return "position"
    if b[1] == 0 and b[2] == -gain and b[0] == 0:
        return "velocity"
    return "affine"


def mesh_hulls(m: mujoco.MjModel, pairs: list[tuple[int, int]] | None = None
               ) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Convex hull of every mesh geom that takes part in a contact pair, in the geom frame:
    (face planes [F, 4] as n . x <= d, contact vertices [V, 3]). Computed with trimesh; coplanar
    triangles are merged into one plane; hulls with more than MAX_HULL_VERTS vertices contribute
    a farthest-point subset of them as contact points (their planes are all kept)."""
    import trimesh

    out = {}
    pairs = contact_pairs(m) if pairs is None else pairs
    for g in sorted({g for p in pairs for g in p if int(m.geom_type[g]) == MESH}):
        mid = int(m.geom_dataid[g])
        adr, num = int(m.mesh_vertadr[mid]), int(m.mesh_vertnum[mid])
        hull = trimesh.convex.convex_hull(np.asarray(m.mesh_vert[adr:adr + num], dtype=np.float64))
        normals = np.asarray(hull.face_normals)
        offsets = np.einsum("ij,ij->i", normals, np.asarray(hull.triangles_center))
        planes = np.unique(np.round(np.c_[normals, offsets], 9), axis=0)
        verts = np.asarray(hull.vertices)
        if len(verts) > MAX_HULL_VERTS:
            keep = [int(np.argmax(np.linalg.norm(verts, axis=1)))]
            dist = np.linalg.norm(verts - verts[keep[0]], axis=1)
            while len(keep) < MAX_HULL_VERTS:
                keep.append(int(np.argmax(dist)))
                dist = np.minimum(dist, np.linalg.norm(verts - verts[keep[-1]], axis=1))
            verts = verts[keep]
        out[g] = (planes, verts)
    return out


def hfield_grids(m: mujoco.MjModel, pairs: list[tuple[int, int]]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Every height field geom that takes part in a contact pair as (no planes, its grid's
    vertices [nrow * ncol, 3] in the geom frame, row-major): MuJoCo's hfield_data (0..1) times the
    elevation size[2] at x = -size[0] .. size[0] over the columns, y = -size[1] .. size[1] over
    the rows (kernels/collision.py's hfield_point triangulates them as MuJoCo does)."""
    out = {}
    for g in sorted({g for p in pairs for g in p if int(m.geom_type[g]) == HFIELD}):
        h = int(m.geom_dataid[g])
        nrow, ncol = int(m.hfield_nrow[h]), int(m.hfield_ncol[h])
        adr = int(m.hfield_adr[h])
        sx, sy, sz, _ = (float(v) for v in m.hfield_size[h])
        z = np.asarray(m.hfield_data[adr:adr + nrow * ncol], dtype=np.float64).reshape(nrow, ncol) * sz
        x, y = np.meshgrid(np.linspace(-sx, sx, ncol), np.linspace(-sy, sy, nrow))
        out[g] = (np.zeros((0, 4)), np.stack([x, y, z], -1).reshape(-1, 3))
    return out


def contact_pairs(m: mujoco.MjModel) -> list[tuple[int, int]]:
    """Candidate geom pairs after MuJoCo's static filters: contype/conaffinity, same weld body,
    weld parent-child (unless the parent is the world), both static, and <exclude>. Ordered so
    that the first geom has the lower type (plane < sphere < capsule < box)."""
    if m.opt.disableflags & (int(mujoco.mjtDisableBit.mjDSBL_CONTACT) | int(mujoco.mjtDisableBit.mjDSBL_CONSTRAINT)):
        return []
    filterparent = not m.opt.disableflags & int(mujoco.mjtDisableBit.mjDSBL_FILTERPARENT)
    excluded = {int(x) for x in m.exclude_signature}
    out = []
    for g1 in range(m.ngeom):
        for g2 in range(g1 + 1, m.ngeom):
            if not ((m.geom_contype[g1] & m.geom_conaffinity[g2]) or (m.geom_contype[g2] & m.geom_conaffinity[g1])):
                continue
            b1, b2 = int(m.geom_bodyid[g1]), int(m.geom_bodyid[g2])
            w1, w2 = int(m.body_weldid[b1]), int(m.body_weldid[b2])
            if w1 == w2 or (w1 == 0 and w2 == 0):
                continue
            p1, p2 = int(m.body_weldid[m.body_parentid[w1]]), int(m.body_weldid[m.body_parentid[w2]])
            if filterparent and w1 != 0 and w2 != 0 and (w1 == p2 or w2 == p1):
                continue
            if (min(b1, b2) << 16) + max(b1, b2) in excluded:
                continue
            if int(m.geom_type[g1]) > int(m.geom_type[g2]):
                g1_, g2_ = g2, g1
            else:
                g1_, g2_ = g1, g2
            out.append((g1_, g2_))
    return out


def _soft_spring(m: mujoco.MjModel, solref, solimp, deep: bool = False) -> tuple[float, float]:
    """Stiffness and damping (acceleration units) of the compliant law for MuJoCo's solref/solimp.

    k = 1/(dmax^2 tc^2 zeta^2), b = 2/(dmax tc) (or the direct negative form), tc >= 2 timestep
    unless refsafe is disabled. MuJoCo's soft constraint rests at the penetration r where
    d k r = (1 - d) a, with its impedance d = d(r) rising from d0 = solimp[0] at r = 0 to dmax =
    solimp[1] at the width solimp[2] and beyond; k is scaled by d/(1-d), which gives that
    equilibrium, with d = d0 (contacts: resting bodies penetrate less than the width) or, when
    ``deep``, d = dmax (joint limits: a loaded limit is pressed beyond the width). b is scaled by
    the square root, which keeps the damping ratio (the bounce) of solref.
    """
    refsafe = not m.opt.disableflags & int(mujoco.mjtDisableBit.mjDSBL_REFSAFE)
    d0, dmax = float(np.clip(solimp[0], 1e-4, 0.9999)), float(np.clip(solimp[1], 1e-4, 0.9999))
    d = dmax if deep else d0
    scale = d / (1 - d)
    if solref[0] > 0:
        tc = max(solref[0], 2 * m.opt.timestep) if refsafe else solref[0]
        kk, bb = 1 / (dmax**2 * tc**2 * solref[1] ** 2), 2 / (dmax * tc)
    else:
        kk, bb = -solref[0] / dmax**2, -solref[1] / dmax
    return scale * kk, float(np.sqrt(scale)) * bb


def _pair_friction(m: mujoco.MjModel, pairs) -> np.ndarray:
    """Per pair its contact friction [npair, 3] (sliding, torsional, rolling) as MuJoCo mixes it:
    the higher priority geom's friction and condim, else the larger of each; the components the
    contact's condim leaves out are zero (condim 1: all, 3: torsional and rolling, 4: rolling)."""
    g = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    g1, g2 = g[:, 0], g[:, 1]
    p1, p2 = m.geom_priority[g1], m.geom_priority[g2]
    same = p1 == p2
    win = np.where(p1 > p2, g1, g2)
    condim = np.where(same, np.maximum(m.geom_condim[g1], m.geom_condim[g2]), m.geom_condim[win])
    mu = np.where(same[:, None], np.maximum(m.geom_friction[g1], m.geom_friction[g2]), m.geom_friction[win])
    keep = (np.array([1, 4, 6])[None, :] <= condim[:, None]) & (condim[:, None] > 1)
    return mu * keep


def _pair_params(m: mujoco.MjModel, pairs) -> dict[str, np.ndarray]:
    """Per-pair stiffness and damping (acceleration units, :func:`_soft_spring`) and effective mass.

    The effective mass 1/(invweight0_1 + invweight0_2) is MuJoCo's own diagonal approximation.
    Geom parameters are mixed as MuJoCo does: higher priority wins, else solmix-weighted (solref,
    solimp); friction: :func:`_pair_friction`.
    """
    k, b, meff, iscale = [], [], [], []
    for g1, g2 in pairs:
        if m.geom_priority[g1] != m.geom_priority[g2]:
            g = g1 if m.geom_priority[g1] > m.geom_priority[g2] else g2
            solref, solimp = m.geom_solref[g], m.geom_solimp[g]
        else:
            s1, s2 = m.geom_solmix[g1], m.geom_solmix[g2]
            mix = 0.5 if s1 + s2 < 1e-15 else s1 / (s1 + s2)
            solref = mix * m.geom_solref[g1] + (1 - mix) * m.geom_solref[g2]
            solimp = mix * m.geom_solimp[g1] + (1 - mix) * m.geom_solimp[g2]
        kk, bb = _soft_spring(m, solref, solimp)
        k.append(kk)
        b.append(bb)
        iw1, iw2 = m.body_invweight0[m.geom_bodyid[g1], 0], m.body_invweight0[m.geom_bodyid[g2], 0]
        meff.append(1.0 / max(iw1 + iw2, 1e-12))
        # share of the implicit contact stiffness each body takes (1 against a static body)
        iscale.append([(iw1 + iw2) / max(iw1, 1e-12), (iw1 + iw2) / max(iw2, 1e-12)])
    return {"pair_stiffness": np.array(k), "pair_damping": np.array(b), "pair_meff": np.array(meff),
            "pair_iscale": np.array(iscale).reshape(-1, 2), "pair_friction": _pair_friction(m, pairs)}


def _limit_params(m: mujoco.MjModel) -> dict[str, np.ndarray]:
    """Per joint: the range limit's stiffness and damping (acceleration units, from jnt_solref /
    jnt_solimp as for contacts; zeros for joints without a limit). The law scales them by its
    dof's ``dof_meff``."""
    k, b = np.zeros(m.njnt), np.zeros(m.njnt)
    for j in range(m.njnt):
        if m.jnt_limited[j]:
            k[j], b[j] = _soft_spring(m, m.jnt_solref[j], m.jnt_solimp[j], deep=True)
    return {"jnt_limit_stiffness": k, "jnt_limit_damping": b}


#: float32 models whose tree has a path of at least this many dofs from the root refine the
#: solve's solution once (kernels/solve.py's refine; about 15% of a step on the 24-link chain and the
#: 31-dof tree): one step of a chain from random states is then within 4e-6 of mj_step at 8 to 24
#: links, where without it the error grows with the length (12 links: up to 1.0e-5, 24: 1.5e-5;
#: tests/test_looped.py). Shorter trees stay well inside 1e-5 without it (10 links: 7e-6).
REFINE_DEPTH = 10


def dof_depth(m: mujoco.MjModel) -> int:
    """The largest number of dofs on a path from the world to a dof (0 without dofs)."""
    depth = [0] * m.nv
    for i in range(m.nv):
        parent = int(m.dof_parentid[i])
        depth[i] = 1 + (depth[parent] if parent >= 0 else 0)
    return max(depth, default=0)


def free_subtree(mj, b: int) -> int:
    """The number of bodies of body b's subtree when b's only joint is free and no body below it
    has a dof (MuJoCo 4's free rigid subtree, whose implicitfast step adds the subtree's gyroscopic
    derivative), else 0. MuJoCo orders a subtree's bodies contiguously from its root."""
    if mj.body_jntnum[b] != 1 or mj.jnt_type[mj.body_jntadr[b]] != mujoco.mjtJoint.mjJNT_FREE:
        return 0
    tree = mj.dof_treeid[mj.jnt_dofadr[mj.body_jntadr[b]]]
    if int((mj.dof_treeid == tree).sum()) != 6:
        return 0
    n = 1
    while b + n < mj.nbody and _is_below(mj, b + n, b):
        n += 1
    return n


def _is_below(mj, c: int, b: int) -> bool:
    while c > 0:
        c = int(mj.body_parentid[c])
        if c == b:
            return True
    return False


def _dense_rows(m: mujoco.MjModel, limit_law: str, no_limits: bool, no_friction: bool) -> tuple:
    """Structure.dense_rows: per limited tendon its lower and upper limit row, per tendon with
    frictionloss its dry friction row, per limited ball joint its cone limit row (MuJoCo's soft
    constraints only; its disable flags honoured)."""
    if limit_law != "mujoco":
        return ()
    rows = []
    for i in range(m.ntendon):
        if m.tendon_limited[i] and not no_limits:
            rows += [(ROW_TENDON_LOWER, i), (ROW_TENDON_UPPER, i)]
        if m.tendon_frictionloss[i] > 0 and not no_friction:
            rows.append((ROW_TENDON_FRICTION, i))
    rows += [(ROW_BALL_LIMIT, j) for j in range(m.njnt)
             if m.jnt_limited[j] and int(m.jnt_type[j]) == BALL and not no_limits]
    return tuple(rows)


def _structure(m: mujoco.MjModel, dtype: str, pairs: list[tuple[int, int]], hulls: dict,
               limit_law: str = "compliant") -> Structure:
    dis = m.opt.disableflags
    D = mujoco.mjtDisableBit
    # MuJoCo's disable flags: no limit rows (limit, constraint), no dry friction (frictionloss, constraint)
    no_limits = bool(dis & (int(D.mjDSBL_LIMIT) | int(D.mjDSBL_CONSTRAINT)))
    no_friction = bool(dis & (int(D.mjDSBL_FRICTIONLOSS) | int(D.mjDSBL_CONSTRAINT)))
    fast = int(m.opt.integrator) == int(mujoco.mjtIntegrator.mjINT_IMPLICITFAST)
    rk4 = int(m.opt.integrator) == int(mujoco.mjtIntegrator.mjINT_RK4)
    tendon = [int(m.actuator_trntype[a]) == TRN_TENDON for a in range(m.nu)]
    site = [int(m.actuator_trntype[a]) == TRN_SITE for a in range(m.nu)]
    # actuators on ball joints (joint or jointinparent transmissions)
    ball = [int(m.actuator_trntype[a]) in (TRN_JOINT, TRN_JOINTINPARENT)
            and int(m.jnt_type[m.actuator_trnid[a, 0]]) in (BALL, FREE) for a in range(m.nu)]
    acts = [bool(inert_tendon_violations(m, i)) for i in range(m.ntendon)]  # the tendons that act
    acting = any(acts)
    hull_index, ps, vs = [], 0, 0
    for g in range(m.ngeom):
        if g in hulls:
            planes, verts = hulls[g]
            hull_index.append((ps, len(planes), vs, len(verts)))
            ps, vs = ps + len(planes), vs + len(verts)
        else:
            hull_index.append(())
    return Structure(
        dtype=dtype,
        nq=m.nq, nv=m.nv, nu=m.nu,
        body_parent=tuple(int(p) for p in m.body_parentid),
        body_jnts=tuple(tuple(range(m.body_jntadr[b], m.body_jntadr[b] + m.body_jntnum[b]))
                        for b in range(m.nbody)),
        jnt_type=tuple(int(t) for t in m.jnt_type),
        jnt_qposadr=tuple(int(x) for x in m.jnt_qposadr),
        jnt_dofadr=tuple(int(x) for x in m.jnt_dofadr),
        jnt_actfrclimited=tuple(bool(x) for x in m.jnt_actfrclimited),
        jnt_limited=tuple(bool(x) and not no_limits for x in m.jnt_limited),
        body_gravcomp=tuple(bool(x != 0) for x in m.body_gravcomp),
        jnt_actgravcomp=tuple(bool(x) for x in m.jnt_actgravcomp),
        dof_frictionloss=tuple(bool(x > 0) and not no_friction for x in m.dof_frictionloss),
        act_jnt=tuple(-1 if tendon[a] or site[a] or ball[a] else int(m.actuator_trnid[a, 0]) for a in range(m.nu)),
        act_ball=tuple((int(m.actuator_trnid[a, 0]), int(m.actuator_trntype[a]) == TRN_JOINTINPARENT) if ball[a]
                       else (-1, False) for a in range(m.nu)) if any(ball) else (),
        act_site=tuple((int(m.actuator_trnid[a, 0]), int(m.actuator_trnid[a, 1])) if site[a] else (-1, -1)
                       for a in range(m.nu)) if any(site) else (),
        act_tendon=tuple(int(m.actuator_trnid[a, 0]) if tendon[a] else -1 for a in range(m.nu)) if any(tendon) else (),
        tendon_wraps=tuple(tuple((int(m.wrap_type[k]), int(m.wrap_objid[k]))
                                 for k in range(m.tendon_adr[i], m.tendon_adr[i] + m.tendon_num[i]))
                           if acts[i] else () for i in range(m.ntendon)) if acting else (),
        tendon_actfrclimited=tuple(bool(x) for x in m.tendon_actfrclimited) if acting else (),
        act_ctrllimited=tuple(bool(m.actuator_ctrllimited[a])
                              and not dis & int(mujoco.mjtDisableBit.mjDSBL_CLAMPCTRL) for a in range(m.nu)),
        act_forcelimited=tuple(bool(x) for x in m.actuator_forcelimited),
        act_affine_bias=tuple(int(x) == int(mujoco.mjtBias.mjBIAS_AFFINE) for x in m.actuator_biastype),
        implicit_damping=((fast or not dis & int(mujoco.mjtDisableBit.mjDSBL_EULERDAMP)) and not rk4
                          and bool(np.any(m.dof_damping > 0))),
        implicit_actuators=fast and (any(int(x) == int(mujoco.mjtBias.mjBIAS_AFFINE) for x in m.actuator_biastype)
                                     or any(int(x) == GAIN_AFFINE for x in m.actuator_gaintype)),
        refine=dtype == "float32" and dof_depth(m) >= REFINE_DEPTH,
        jnt_free_subtree=tuple(free_subtree(m, int(m.jnt_bodyid[j])) if fast else 0 for j in range(m.njnt)),
        geom_type=tuple(int(t) for t in m.geom_type),
        geom_body=tuple(int(b) for b in m.geom_bodyid),
        pairs=tuple(pairs),
        pair_implicit=tuple(_different_trees(m, int(m.geom_bodyid[g1]), int(m.geom_bodyid[g2])) for g1, g2 in pairs),
        spin_roll=bool(np.any(_pair_friction(m, pairs)[:, 1:] > 0)),
        geom_hull=tuple(hull_index),
        rk4=rk4,
        fluid=bool(m.opt.density > 0 or m.opt.viscosity > 0),
        limit_law=limit_law,
        dense_rows=_dense_rows(m, limit_law, no_limits, no_friction),
        act_dyn=tuple(int(x) for x in m.actuator_dyntype) if m.na else (),
        act_early=tuple(bool(x) for x in m.actuator_actearly) if m.na else (),
        act_actlimited=tuple(bool(x) for x in m.actuator_actlimited) if m.na else (),
        act_affine_gain=tuple(int(x) == GAIN_AFFINE for x in m.actuator_gaintype)
        if any(int(x) == GAIN_AFFINE for x in m.actuator_gaintype) else (),
        eq=tuple((int(m.eq_type[i]), int(m.eq_obj1id[i]), int(m.eq_obj2id[i]),
                  int(m.eq_objtype[i]) == int(mujoco.mjtObj.mjOBJ_SITE), i) for i in range(m.neq)
                 if m.eq_active0[i] and int(m.eq_type[i]) in EQ_SIMULATED),
    )


def _moving_ancestors(m: mujoco.MjModel, b: int) -> set[int]:
    out = set()
    while b != 0:
        if m.body_jntnum[b]:
            out.add(b)
        b = int(m.body_parentid[b])
    return out


def _different_trees(m: mujoco.MjModel, b1: int, b2: int) -> bool:
    """True when no joint moves both bodies (their contact stiffness can then be implicit)."""
    return not (_moving_ancestors(m, b1) & _moving_ancestors(m, b2))


def _wxyz_to_xyzw(q: np.ndarray) -> np.ndarray:
    return np.concatenate([q[..., 1:], q[..., :1]], axis=-1)


def scene_contact_numerics(m: mujoco.MjModel) -> dict[str, float]:
    """The entries of ``CONTACT_NUMERICS`` that the scene sets in its MJCF
    ``<custom><numeric name="hybridwam_contact_eps" data="0.02"/></custom>``, by full name.
    Raises ``ModelLoadError`` for a value that is not one positive number."""
    out = {}
    for name in CONTACT_NUMERICS:
        i = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_NUMERIC, name)
        if i < 0:
            continue
        adr, size = int(m.numeric_adr[i]), int(m.numeric_size[i])
        data = np.asarray(m.numeric_data[adr:adr + size], dtype=float)
        if size != 1 or not np.isfinite(data).all() or data[0] <= 0:
            raise ModelLoadError(f"custom numeric {name!r}: expected one positive number, got {data.tolist()}")
        out[name] = float(data[0])
    return out


def contact_smoothing(m: mujoco.MjModel) -> dict[str, float]:
    """The contact law's smoothing lengths, "contact_tau" (onset length, m) and "contact_eps"
    (friction slip velocity scale, m/s): the defaults, or the scene's own
    (:func:`scene_contact_numerics`; other simulators ignore these entries)."""
    own = scene_contact_numerics(m)
    return {name[len("hybridwam_"):]: own.get(name, default) for name, default in CONTACT_NUMERICS.items()}


def _params(m: mujoco.MjModel, pairs: list[tuple[int, int]], hulls: dict) -> dict[str, np.ndarray]:
    """Numeric arrays in PARAM_SPEC order (never empty: Warp needs an allocation)."""
    g = np.array(m.opt.gravity, dtype=np.float64)
    if m.opt.disableflags & int(mujoco.mjtDisableBit.mjDSBL_GRAVITY):
        g = np.zeros(3)

    affine = m.actuator_biastype == int(mujoco.mjtBias.mjBIAS_AFFINE)

    def nz(a, shape):
        a = np.asarray(a, dtype=np.float64).reshape(shape)
        return a if a.shape[0] else np.zeros((1,) + a.shape[1:])

    p = {
        "gravity": g.reshape(1, 3),
        "timestep": np.array([m.opt.timestep]),
        "body_pos": nz(m.body_pos, (-1, 3)),
        "body_quat": nz(_wxyz_to_xyzw(m.body_quat), (-1, 4)),
        "body_ipos": nz(m.body_ipos, (-1, 3)),
        "body_iquat": nz(_wxyz_to_xyzw(m.body_iquat), (-1, 4)),
        "body_mass": nz(m.body_mass, (-1,)),
        "body_inertia": nz(m.body_inertia, (-1, 3)),
        "body_gravcomp": nz(m.body_gravcomp, (-1,)),
        "jnt_pos": nz(m.jnt_pos, (-1, 3)),
        "jnt_axis": nz(m.jnt_axis, (-1, 3)),
        "jnt_stiffness": nz(m.jnt_stiffness, (-1,)),
        "qpos0": nz(m.qpos0, (-1,)),
        "qpos_spring": nz(m.qpos_spring, (-1,)),
        "dof_damping": nz(m.dof_damping, (-1,)),
        "dof_armature": nz(m.dof_armature, (-1,)),
        "dof_coulomb": nz(np.zeros(m.nv), (-1,)),
        "dof_coulomb_vel": nz(np.full(m.nv, 0.01), (-1,)),
        "dof_frictionloss": nz(m.dof_frictionloss, (-1,)),
        # MuJoCo's diagonal approximation of each dof's effective inertia (joint limits, frictionloss)
        "dof_meff": nz(1.0 / np.maximum(m.dof_invweight0, 1e-12), (-1,)),
        "actuator_gain": nz(m.actuator_gainprm[:, 0], (-1,)),
        # MuJoCo ignores biasprm unless biastype is affine; zero it so the kernel can always add bias[0]
        "actuator_bias": nz(m.actuator_biasprm[:, :3] * affine[:, None], (-1, 3)),
        "actuator_gear": nz(m.actuator_gear[:, 0], (-1,)),
        "actuator_ctrlrange": nz(m.actuator_ctrlrange, (-1, 2)),
        "actuator_forcerange": nz(m.actuator_forcerange, (-1, 2)),
        "jnt_actfrcrange": nz(m.jnt_actfrcrange, (-1, 2)),
        "jnt_range": nz(m.jnt_range, (-1, 2)),
        "jnt_margin": nz(m.jnt_margin, (-1,)),
        **{k: nz(v, (-1,)) for k, v in _limit_params(m).items()},
        "jnt_solref": nz(m.jnt_solref, (-1, 2)),
        "jnt_solimp": nz(m.jnt_solimp, (-1, 5)),
        "dof_solref": nz(m.dof_solref, (-1, 2)),
        "dof_solimp": nz(m.dof_solimp, (-1, 5)),
        "dof_invweight0": nz(m.dof_invweight0, (-1,)),
        "body_invweight0": nz(m.body_invweight0[:, 0], (-1,)),
        "body_invweight0r": nz(m.body_invweight0[:, 1], (-1,)),
        "eq_solref": nz(m.eq_solref, (-1, 2)),
        "eq_solimp": nz(m.eq_solimp, (-1, 5)),
        "eq_polycoef": nz(m.eq_data[:, 0:5], (-1, 5)),
        "eq_anchor1": nz(m.eq_data[:, 0:3], (-1, 3)),
        "eq_anchor2": nz(m.eq_data[:, 3:6], (-1, 3)),
        "eq_relpose": nz(_wxyz_to_xyzw(m.eq_data[:, 6:10]), (-1, 4)),
        "eq_torquescale": nz(m.eq_data[:, 10], (-1,)),
        "geom_pos": nz(m.geom_pos, (-1, 3)),
        "geom_quat": nz(_wxyz_to_xyzw(m.geom_quat), (-1, 4)),
        "geom_size": nz(m.geom_size, (-1, 3)),
        "geom_rbound": nz(m.geom_rbound, (-1,)),
        **{k: nz(v, (-1,) + v.shape[1:]) for k, v in _pair_params(m, pairs).items()},
        "hull_planes": nz(np.concatenate([h[0] for h in hulls.values()]) if hulls else np.zeros((0, 4)), (-1, 4)),
        "hull_verts": nz(np.concatenate([h[1] for h in hulls.values()]) if hulls else np.zeros((0, 3)), (-1, 3)),
        **{k: np.array([v]) for k, v in contact_smoothing(m).items()},
        "site_pos": nz(m.site_pos, (-1, 3)),
        "site_quat": nz(_wxyz_to_xyzw(m.site_quat), (-1, 4)),
        "actuator_gear_force": nz(m.actuator_gear[:, 0:3], (-1, 3)),
        "actuator_gear_torque": nz(m.actuator_gear[:, 3:6], (-1, 3)),
        "wrap_prm": nz(m.wrap_prm, (-1,)),
        "tendon_stiffness": nz(m.tendon_stiffness, (-1,)),
        "tendon_lengthspring": nz(m.tendon_lengthspring, (-1, 2)),
        "tendon_damping": nz(m.tendon_damping, (-1,)),
        "tendon_length0": nz(m.tendon_length0, (-1,)),
        "tendon_invweight0": nz(m.tendon_invweight0, (-1,)),
        "tendon_actfrcrange": nz(m.tendon_actfrcrange, (-1, 2)),
        "tendon_range": nz(m.tendon_range, (-1, 2)),
        "tendon_margin": nz(m.tendon_margin, (-1,)),
        "tendon_solref_lim": nz(m.tendon_solref_lim, (-1, 2)),
        "tendon_solimp_lim": nz(m.tendon_solimp_lim, (-1, 5)),
        "tendon_frictionloss": nz(m.tendon_frictionloss, (-1,)),
        "tendon_solref_fri": nz(m.tendon_solref_fri, (-1, 2)),
        "tendon_solimp_fri": nz(m.tendon_solimp_fri, (-1, 5)),
        "fluid_density": np.array([m.opt.density]),
        "fluid_viscosity": np.array([m.opt.viscosity]),
        "wind": np.array(m.opt.wind, dtype=np.float64).reshape(1, 3),
        # MuJoCo ignores gainprm[1:3] unless gaintype is affine; zeroed like the bias
        "actuator_gain_affine": nz(m.actuator_gainprm[:, 1:3] * (m.actuator_gaintype == GAIN_AFFINE)[:, None], (-1, 2)),
        "actuator_dynprm": nz(m.actuator_dynprm[:, 0], (-1,)),
        "actuator_actrange": nz(m.actuator_actrange, (-1, 2)),
    }
    assert list(p) == [n for n, _ in PARAM_SPEC]
    return p


def load_model(path_or_xml, device: str | None = None, dtype: str | torch.dtype = "float32",
               limit_law: str = "compliant") -> Model:
    """Compile an MJCF or URDF file (or an XML string, or a shipped scene name) into a Model.

    Raises ``ModelLoadError`` for a missing or malformed file and ``UnsupportedFeatureError``
    listing every element hybridwam does not simulate. ``device``: "cpu" or "cuda:N"
    (default: "cuda:0" when available). ``dtype``: "float32" (default) or "float64".
    ``limit_law``: how joint range limits and dry friction (frictionloss) act: "compliant"
    (default: hybridwam's own smooth law, both engines) or "mujoco" (MuJoCo's soft constraints,
    equal to mj_step, also from states beyond a limit; the looped engine only, see the README's
    "What is simulated").
    """
    if limit_law not in LIMIT_LAWS:
        raise ValueError(f"limit_law must be one of {', '.join(map(repr, LIMIT_LAWS))}, got {limit_law!r}")
    if isinstance(path_or_xml, mujoco.MjModel):
        m, source, xml = path_or_xml, "<MjModel>", None
    else:
        m, source, xml = _compile(str(path_or_xml))
    pairs = contact_pairs(m)  # filtered once; the hulls, structure and parameters all use them
    bad = unsupported_features(m, pairs, limit_law)
    if bad:
        raise UnsupportedFeatureError(source, bad)
    tdtype = {"float32": torch.float32, "float64": torch.float64, torch.float32: torch.float32,
              torch.float64: torch.float64}.get(dtype)
    if tdtype is None:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    device = str(device or default_device())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but torch sees no CUDA device")
    # the meshes' hulls and the height fields' grids, in geom order (the parameters' order)
    hulls = dict(sorted({**mesh_hulls(m, pairs), **hfield_grids(m, pairs)}.items()))
    # copies (torch.tensor): torch.as_tensor would share memory with the MjModel's own arrays for
    # float64 (editing a parameter then edited model.mj, and two parameters sliced from one field,
    # actuator_gear and actuator_gear_force, aliased each other)
    params = {k: torch.tensor(v, dtype=tdtype, device=device).contiguous()
              for k, v in _params(m, pairs, hulls).items()}
    return Model(mj=m, source=source, xml=xml, device=device, dtype=tdtype,
                 structure=_structure(m, "float32" if tdtype == torch.float32 else "float64", pairs, hulls,
                                      limit_law),
                 params=params)
