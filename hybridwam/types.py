"""Kinds, the model's structure and its parameter schema: the package's type home.

Imports no Warp (and no torch), so loaders, the unsupported-feature audit, residual features and
the kernels all read the same tables. Values of the kinds are MuJoCo's (``mjtJoint``, ``mjtGeom``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

# Joint types, as MuJoCo's mjtJoint.
FREE, BALL, SLIDE, HINGE = 0, 1, 2, 3
# Geom types, as MuJoCo's mjtGeom (those with a narrow phase here).
PLANE, HFIELD, SPHERE, CAPSULE, ELLIPSOID, CYLINDER, BOX, MESH = 0, 1, 2, 3, 4, 5, 6, 7

#: Geom pair kinds with a narrow phase, (type(g1), type(g2)) with type(g1) <= type(g2): the pair
#: table. Each has its narrow phase in kernels/contact.py and its entry in
#: the ``narrow`` table of kernels/collision.make (every kind); the loader refuses pairs of other kinds.
PAIR_KINDS = ((PLANE, SPHERE), (PLANE, CAPSULE), (PLANE, BOX), (SPHERE, SPHERE), (SPHERE, CAPSULE),
              (SPHERE, BOX), (CAPSULE, CAPSULE), (CAPSULE, BOX), (BOX, BOX), (PLANE, MESH), (SPHERE, MESH),
              (CAPSULE, MESH), (BOX, MESH), (MESH, MESH), (PLANE, CYLINDER), (SPHERE, CYLINDER), (CAPSULE, CYLINDER),
              (PLANE, ELLIPSOID), (CYLINDER, BOX), (CYLINDER, CYLINDER), (HFIELD, SPHERE), (HFIELD, CAPSULE),
              (HFIELD, BOX))
PAIR_TYPES = set(PAIR_KINDS)

# Tendon path elements, as MuJoCo's mjtWrap: the kinds the tendon stage (kernels/tendon.py)
# follows. A fixed tendon is a sum of joint coordinates; a spatial tendon a path through sites,
# split by pulleys (each divides the length of the branch after it), bent around the sphere and
# cylinder geoms between its sites (optionally on a side site's side).
WRAP_JOINT, WRAP_PULLEY, WRAP_SITE, WRAP_SPHERE, WRAP_CYLINDER = 1, 2, 3, 4, 5
#: the tendon path elements the tendon stage follows (the loader refuses others by name)
TENDON_WRAPS = {WRAP_JOINT: "joint", WRAP_PULLEY: "pulley", WRAP_SITE: "site", WRAP_SPHERE: "sphere",
                WRAP_CYLINDER: "cylinder"}
# Actuator transmissions, as MuJoCo's mjtTrn.
TRN_JOINT, TRN_JOINTINPARENT, TRN_TENDON, TRN_SITE = 0, 1, 3, 4
#: the transmissions kernels/actuation.py applies: a hinge / slide joint's coordinate, a tendon's
#: length, or a wrench at a site (its length the site's pose in a reference site's frame) (the
#: loader refuses others by name)
TRANSMISSIONS = {TRN_JOINT: "joint", TRN_JOINTINPARENT: "jointinparent", TRN_TENDON: "tendon", TRN_SITE: "site"}
# Actuator activation dynamics, as MuJoCo's mjtDyn: those kernels/actuation.py integrates (each
# actuator with one activation state, ``act``: its force is gain times act instead of ctrl).
DYN_NONE, DYN_INTEGRATOR, DYN_FILTER, DYN_FILTEREXACT = 0, 1, 2, 3
#: the activation dynamics the step simulates (the loader refuses others by name: muscle, user,
#: DC motor): act_dot = ctrl (integrator) or (ctrl - act) / tau (filter; filterexact integrates
#: it exactly over the step), ctrl clamped to its range, act clamped to actrange where limited
ACT_DYNAMICS = {DYN_INTEGRATOR: "integrator", DYN_FILTER: "filter", DYN_FILTEREXACT: "filterexact"}
# Actuator gain types, as MuJoCo's mjtGain: fixed (gainprm[0]) and affine (gainprm[0] +
# gainprm[1] length + gainprm[2] velocity); the loader refuses others by name
GAIN_FIXED, GAIN_AFFINE = 0, 1
GAINS = {GAIN_FIXED: "fixed", GAIN_AFFINE: "affine"}
#: tendon properties the step simulates (kernels/tendon.py, passive.py, actuation.py), and
#: those it refuses by name, as MuJoCo's tendon_* fields
TENDON_SIMULATED = ("stiffness", "damping", "actfrclimited")
TENDON_REFUSED = ("stiffnesspoly", "springyield", "dampingpoly", "armature")
#: tendon properties simulated as MuJoCo's soft constraints (limit_law "mujoco" only, refused by
#: name under the compliant law): range limits and dry friction, rows of the constraint solve
TENDON_CONSTRAINED = ("limited", "frictionloss")

# Equality constraint types, as MuJoCo's mjtEq: those kernels/limits.py simulates (as MuJoCo's
# soft constraints, with limit_law "mujoco"); the loader refuses others by name
EQ_CONNECT, EQ_WELD, EQ_JOINT, EQ_TENDON = 0, 1, 2, 3
EQ_SIMULATED = {EQ_CONNECT: "connect", EQ_WELD: "weld", EQ_JOINT: "joint", EQ_TENDON: "tendon"}
#: constraint rows per simulated equality constraint
EQ_ROWS = {EQ_CONNECT: 3, EQ_WELD: 6, EQ_JOINT: 1, EQ_TENDON: 1}
#: kinds of the constraint solve's dense rows (kernels/limits.py; rows with a Jacobian over all
#: dofs, after the equality rows): an equality's (always quadratic), a tendon's lower and upper
#: range limit (quadratic where violated, else inactive) and a tendon's dry friction (Huber's cost:
#: quadratic near zero, at its bound beyond)
ROW_EQUALITY, ROW_TENDON_LOWER, ROW_TENDON_UPPER, ROW_TENDON_FRICTION = 0, 1, 2, 3
#: a ball joint's cone limit (MuJoCo's limited ball joint: its rotation angle below the range's
#: larger end), a dense row on the joint's three dofs after the tendons' (limit_law "mujoco")
ROW_BALL_LIMIT = 4

#: the laws of joint limits and dry friction (Structure.limit_law)
LIMIT_LAWS = ("compliant", "mujoco")

#: Order of the model parameter arrays in every kernel signature (name, warp type key).
PARAM_SPEC = (
    ("gravity", "V3"),
    ("timestep", "T"),
    ("body_pos", "V3"),
    ("body_quat", "Q"),
    ("body_ipos", "V3"),
    ("body_iquat", "Q"),
    ("body_mass", "T"),
    ("body_inertia", "V3"),
    ("body_gravcomp", "T"),
    ("jnt_pos", "V3"),
    ("jnt_axis", "V3"),
    ("jnt_stiffness", "T"),
    ("qpos0", "T"),
    ("qpos_spring", "T"),
    ("dof_damping", "T"),
    ("dof_armature", "T"),
    ("dof_coulomb", "T"),
    ("dof_coulomb_vel", "T"),
    ("dof_frictionloss", "T"),
    ("dof_meff", "T"),
    ("actuator_gain", "T"),
    ("actuator_bias", "V3"),
    ("actuator_gear", "T"),
    ("actuator_ctrlrange", "V2"),
    ("actuator_forcerange", "V2"),
    ("jnt_actfrcrange", "V2"),
    ("jnt_range", "V2"),
    ("jnt_margin", "T"),
    ("jnt_limit_stiffness", "T"),
    ("jnt_limit_damping", "T"),
    ("jnt_solref", "V2"),
    ("jnt_solimp", "V5"),
    ("dof_solref", "V2"),
    ("dof_solimp", "V5"),
    ("dof_invweight0", "T"),
    ("body_invweight0", "T"),
    ("body_invweight0r", "T"),
    ("eq_solref", "V2"),
    ("eq_solimp", "V5"),
    ("eq_polycoef", "V5"),
    ("eq_anchor1", "V3"),
    ("eq_anchor2", "V3"),
    ("eq_relpose", "Q"),
    ("eq_torquescale", "T"),
    ("geom_pos", "V3"),
    ("geom_quat", "Q"),
    ("geom_size", "V3"),
    ("geom_rbound", "T"),
    ("pair_stiffness", "T"),
    ("pair_damping", "T"),
    ("pair_meff", "T"),
    ("pair_iscale", "V2"),
    ("pair_friction", "V3"),
    ("hull_planes", "V4"),
    ("hull_verts", "V3"),
    ("contact_tau", "T"),
    ("contact_eps", "T"),
    ("site_pos", "V3"),
    ("site_quat", "Q"),
    ("actuator_gear_force", "V3"),
    ("actuator_gear_torque", "V3"),
    ("wrap_prm", "T"),
    ("tendon_stiffness", "T"),
    ("tendon_lengthspring", "V2"),
    ("tendon_damping", "T"),
    ("tendon_length0", "T"),
    ("tendon_invweight0", "T"),
    ("tendon_actfrcrange", "V2"),
    ("tendon_range", "V2"),
    ("tendon_margin", "T"),
    ("tendon_solref_lim", "V2"),
    ("tendon_solimp_lim", "V5"),
    ("tendon_frictionloss", "T"),
    ("tendon_solref_fri", "V2"),
    ("tendon_solimp_fri", "V5"),
    ("fluid_density", "T"),
    ("fluid_viscosity", "T"),
    ("wind", "V3"),
    ("actuator_gain_affine", "V2"),
    ("actuator_dynprm", "T"),
    ("actuator_actrange", "V2"),
)


@dataclass(frozen=True)
class Structure:
    """Everything the generated code depends on (hashable; numbers live in arrays)."""

    dtype: str  # "float32" | "float64"
    nq: int
    nv: int
    nu: int
    body_parent: tuple[int, ...]
    body_jnts: tuple[tuple[int, ...], ...]
    jnt_type: tuple[int, ...]
    jnt_qposadr: tuple[int, ...]
    jnt_dofadr: tuple[int, ...]
    jnt_actfrclimited: tuple[bool, ...]
    #: hinge / slide joints with a range limit (a one-sided compliant constraint, see kernels/contact.py)
    jnt_limited: tuple[bool, ...]
    #: bodies with gravity compensation (body_gravcomp != 0), and the joints that count it as
    #: actuator force (clamped by their actuator force range) rather than as passive force
    body_gravcomp: tuple[bool, ...]
    jnt_actgravcomp: tuple[bool, ...]
    #: dofs with dry friction (MuJoCo's frictionloss > 0), see kernels/contact.joint_friction
    dof_frictionloss: tuple[bool, ...]
    #: per actuator the joint it drives (-1 for tendon and site transmissions: act_tendon, act_site)
    act_jnt: tuple[int, ...]
    act_ctrllimited: tuple[bool, ...]
    act_forcelimited: tuple[bool, ...]
    act_affine_bias: tuple[bool, ...]
    implicit_damping: bool
    geom_type: tuple[int, ...] = ()
    geom_body: tuple[int, ...] = ()
    #: candidate contact pairs (g1, g2) after static filtering, type(g1) <= type(g2)
    pairs: tuple[tuple[int, int], ...] = ()
    #: whether a pair's contact stiffness is treated implicitly (bodies in different trees). The
    #: implicit term is block-diagonal per tree (each body takes a share of the contact's implicit
    #: stiffness scaled so that two bodies in translation get the exact implicit step), so the
    #: mass matrix keeps its tree sparsity. Only the integration scheme is approximated; the
    #: contact forces and equilibria are exact.
    pair_implicit: tuple[bool, ...] = ()
    #: some pair has torsional or rolling friction (MuJoCo's condim 4 or 6; looped engine only)
    spin_roll: bool = False
    #: per geom: (first plane, plane count, first vertex, vertex count) of its convex hull, or ()
    geom_hull: tuple[tuple[int, ...], ...] = ()
    #: MuJoCo's implicitfast integrator: besides joint damping (implicit_damping, always on with
    #: it), each affine-bias actuator's velocity term d force / d qvel = gear^2 bias[2] is
    #: integrated implicitly (on the solve's diagonal; skipped while the actuator's force is
    #: clamped by its forcerange or its joint's by actuatorfrcrange, as MuJoCo does); the rest of
    #: the step is Euler's
    implicit_actuators: bool = False
    #: MuJoCo's RK4 integrator (mj_RungeKutta): four evaluations of the dynamics per step, joint
    #: damping explicit (as in MuJoCo); the looped engine only (kernels/forward.py)
    rk4: bool = False
    #: per joint, under implicitfast, the number of bodies of the free rigid subtree it moves (a
    #: body whose only joint is free, no dofs below it; 0 for other joints and integrators): MuJoCo
    #: 4 integrates their gyroscopic term implicitly too (kernels/forward.py's free_gyroscopic; the
    #: looped engine only)
    jnt_free_subtree: tuple[int, ...] = ()
    #: float32 with a path of at least REFINE_DEPTH dofs (hybridwam.model): the solve refines its
    #: solution once (kernels/solve.py; the looped engine only)
    refine: bool = False
    #: MuJoCo's inertia-box fluid forces (option density or viscosity > 0; kernels/smooth.py's
    #: rne_crb, the looped engine only)
    fluid: bool = False
    #: per actuator the tendon it pulls (-1: a joint transmission); empty without tendon actuators
    act_tendon: tuple[int, ...] = ()
    #: per tendon its path, ((wrap type, joint or site id), ...) (TENDON_WRAPS), when some tendon
    #: acts (stiffness, damping, an actuator; kernels/tendon.py, the looped engine only); empty
    #: otherwise, and () for a tendon that exerts no force (it changes nothing in the step)
    tendon_wraps: tuple[tuple[tuple[int, int], ...], ...] = ()
    #: per tendon: its actuators' total force clamped to tendon_actfrcrange (MuJoCo's actuatorfrclimited)
    tendon_actfrclimited: tuple[bool, ...] = ()
    #: the law of joint range limits and dry friction (frictionloss): "compliant" (hybridwam's
    #: own, kernels/contact.py's limit_force and joint_friction) or "mujoco" (MuJoCo's soft
    #: constraints: solref / solimp impedance, reference acceleration, rows coupled through M^-1,
    #: kernels/limits.py; the looped engine only)
    limit_law: str = "compliant"
    #: active equality constraints (type, obj1, obj2, between sites, MuJoCo's index) of
    #: EQ_SIMULATED kinds: joints for joint and tendons for tendon (obj2 -1: none), bodies or sites
    #: for connect and weld (limit_law "mujoco", kernels/limits.py)
    eq: tuple[tuple[int, int, int, bool, int], ...] = ()
    #: the dense constraint rows after the equalities' (kind, tendon or joint): kind
    #: ROW_TENDON_LOWER / UPPER / FRICTION two per limited tendon, one per tendon with
    #: frictionloss, ROW_BALL_LIMIT one per limited ball joint (limit_law "mujoco", kernels/limits.py)
    dense_rows: tuple[tuple[int, int], ...] = ()
    #: per actuator its (site, reference site) for a site transmission ((-1, -1) otherwise, -1 for
    #: no reference site); empty without site transmissions (the looped engine only)
    act_site: tuple[tuple[int, int], ...] = ()
    #: per actuator its activation dynamics (ACT_DYNAMICS; DYN_NONE: the force reads ctrl), empty
    #: without activation states; its activation's index is its rank among those with dynamics
    #: (MuJoCo's actuator_actadr: one state each). The looped engine only
    act_dyn: tuple[int, ...] = ()
    #: per actuator with dynamics: MuJoCo's actearly (the force reads the activation at the step's
    #: end) and actlimited (the activation clamped to actrange); empty without activation states
    act_early: tuple[bool, ...] = ()
    act_actlimited: tuple[bool, ...] = ()
    #: per actuator: an affine gain (gainprm[1] length + gainprm[2] velocity, parameter
    #: actuator_gain_affine); empty when every gain is fixed. The looped engine only
    act_affine_gain: tuple[bool, ...] = ()
    #: per actuator on a ball or free joint (joint transmission: a ball's torque about gear[0:3]
    #: in the child frame, a free joint's force along gear[0:3] in the world's and torque about
    #: gear[3:6] in the body's; jointinparent: the rotations' axes in the parent frame) (joint, in
    #: parent), (-1, False) for the others; empty without such actuators (kernels/actuation.py,
    #: the looped engine only)
    act_ball: tuple[tuple[int, bool], ...] = ()

    def key(self) -> str:
        return hashlib.sha1(repr(self).encode()).hexdigest()[:16]

    @property
    def na(self) -> int:
        """The number of activation states (MuJoCo's na): one per actuator with dynamics."""
        return sum(1 for d in self.act_dyn if d != DYN_NONE)

    @property
    def free_gyro(self) -> bool:
        """Whether some free rigid subtree takes implicitfast's gyroscopic term (jnt_free_subtree)."""
        return any(self.jnt_free_subtree)


#: Units and meaning of each parameter in PARAM_SPEC (shapes: see ``Model.param_shapes``).
PARAM_UNITS = {
    "gravity": ("m/s^2", "gravity vector [1, 3]"),
    "timestep": ("s", "integration step [1]"),
    "body_pos": ("m", "body frame position in its parent [nbody, 3]"),
    "body_quat": ("1", "body frame orientation in its parent, x y z w [nbody, 4]"),
    "body_ipos": ("m", "centre of mass in the body frame [nbody, 3]"),
    "body_iquat": ("1", "principal inertia frame in the body frame, x y z w [nbody, 4]"),
    "body_mass": ("kg", "[nbody]"),
    "body_inertia": ("kg m^2", "principal moments of inertia [nbody, 3]"),
    "body_gravcomp": ("1", "gravity compensation fraction [nbody]"),
    "jnt_pos": ("m", "joint anchor in the body frame [njnt, 3]"),
    "jnt_axis": ("1", "joint axis in the body frame [njnt, 3]"),
    "jnt_stiffness": ("N m/rad or N/m", "joint spring stiffness [njnt]"),
    "qpos0": ("rad or m", "reference configuration [nq]"),
    "qpos_spring": ("rad or m", "spring rest configuration [nq]"),
    "dof_damping": ("N m s/rad or N s/m", "viscous damping [nv]"),
    "dof_armature": ("kg m^2 or kg", "armature inertia [nv]"),
    "dof_coulomb": ("N m or N", "smooth Coulomb friction amplitude (hybridwam extra) [nv]"),
    "dof_coulomb_vel": ("rad/s or m/s", "velocity scale of the smooth Coulomb friction [nv]"),
    "dof_frictionloss": ("N m or N", "dry friction (MuJoCo frictionloss) [nv]"),
    "dof_meff": ("kg m^2 or kg", "effective inertia of a dof at qpos0 (1 / dof_invweight0) [nv]"),
    "actuator_gain": ("N m per ctrl unit", "gainprm[0] [nu]"),
    "actuator_bias": ("N m, N m/rad, N m s/rad", "biasprm[0:3] (affine bias) [nu, 3]"),
    "actuator_gear": ("1", "gear[0] [nu]"),
    "actuator_ctrlrange": ("ctrl units", "[nu, 2]"),
    "actuator_forcerange": ("N m or N", "[nu, 2]"),
    "jnt_actfrcrange": ("N m or N", "clamp of the total actuator force at a joint [njnt, 2]"),
    "jnt_range": ("rad or m", "joint limits [njnt, 2]"),
    "jnt_margin": ("rad or m", "limit margin [njnt]"),
    "jnt_limit_stiffness": ("N m/rad or N/m", "limit spring [njnt]"),
    "jnt_limit_damping": ("N m s/rad or N s/m", "limit damper [njnt]"),
    "jnt_solref": ("s, 1 (or stiffness, damping where negative)", "MuJoCo's solreflimit: the limit's time constant "
                   "and damping ratio (limit_law='mujoco') [njnt, 2]"),
    "jnt_solimp": ("1, 1, rad or m, 1, 1", "MuJoCo's solimplimit: impedance dmin, dmax, width, midpoint, power "
                   "(limit_law='mujoco') [njnt, 5]"),
    "dof_solref": ("s, 1 (or stiffness, damping where negative)", "MuJoCo's solreffriction of the dry friction "
                   "(limit_law='mujoco') [nv, 2]"),
    "dof_solimp": ("1, 1, rad or m, 1, 1", "MuJoCo's solimpfriction (limit_law='mujoco') [nv, 5]"),
    "body_invweight0": ("1/kg", "MuJoCo's body_invweight0[:, 0]: a body's translational inverse inertia at qpos0, "
                        "the connect and weld constraints' diagonal approximation [nbody]"),
    "body_invweight0r": ("1/(kg m^2)", "MuJoCo's body_invweight0[:, 1]: a body's rotational inverse inertia at "
                         "qpos0, the weld constraints' rotational rows' diagonal approximation [nbody]"),
    "eq_solref": ("s, 1 (or stiffness, damping where negative)", "equality constraints' solref [neq, 2]"),
    "eq_solimp": ("1, 1, m or rad, 1, 1", "equality constraints' solimp [neq, 5]"),
    "eq_polycoef": ("rad or m per power", "joint and tendon equality: joint1 - ref1 = sum_k c_k (joint2 - ref2)^k, "
                    "tendons' lengths alike [neq, 5]"),
    "eq_anchor1": ("m", "connect: the anchor in body1's frame; weld: the anchor in body2's frame [neq, 3]"),
    "eq_anchor2": ("m", "connect: the same point in body2's frame at qpos0; weld: in body1's frame (relpose's "
                   "position) [neq, 3]"),
    "eq_relpose": ("1", "weld: body2's orientation relative to body1's that the weld holds, relpose's "
                   "quaternion (x, y, z, w) [neq, 4]"),
    "eq_torquescale": ("m", "weld: the rotational rows' scale against the translational ones [neq]"),
    "dof_invweight0": ("1/(kg m^2) or 1/kg", "MuJoCo's dof_invweight0: the constraint rows' diagonal approximation "
                       "of the inverse inertia, at qpos0 (limit_law='mujoco') [nv]"),
    "geom_pos": ("m", "geom position in its body [ngeom, 3]"),
    "geom_quat": ("1", "geom orientation in its body, x y z w [ngeom, 4]"),
    "geom_size": ("m", "MuJoCo's geom size [ngeom, 3]"),
    "geom_rbound": ("m", "bounding-sphere radius [ngeom]"),
    "pair_stiffness": ("N/m", "contact stiffness per candidate pair [npair]"),
    "pair_damping": ("N s/m", "contact damping per candidate pair [npair]"),
    "pair_meff": ("kg", "effective mass of a candidate pair [npair]"),
    "pair_iscale": ("1", "per-body share of the implicit contact stiffness [npair, 2]"),
    "pair_friction": ("1, m, m", "a candidate pair's contact friction as MuJoCo mixes it (the higher priority "
                      "geom's, else the larger of the two) per component: sliding, torsional, rolling; the components "
                      "its condim leaves out are zero (condim 1: all, 3: torsional and rolling, 4: rolling) "
                      "[npair, 3]"),
    "hull_planes": ("m", "convex hull face planes (normal, offset) [nplane, 4]"),
    "hull_verts": ("m", "convex hull vertices [nvert, 3]"),
    "site_pos": ("m", "site position in its body [nsite, 3]"),
    "site_quat": ("1", "site orientation in its body, x y z w [nsite, 4]"),
    "actuator_gear_force": ("1", "gear[0:3] of site transmissions: the force direction in the (reference) site's "
                                 "frame [nu, 3]"),
    "actuator_gear_torque": ("m", "gear[3:6] of site transmissions: the torque axis in the (reference) site's "
                                  "frame [nu, 3]"),
    "wrap_prm": ("1", "per tendon path element: a fixed tendon's joint coefficient, a pulley's divisor (a "
                        "wrapping geom's entry is MuJoCo's side site index, structure the step reads from the "
                        "loader, not from here) [nwrap]"),
    "tendon_stiffness": ("N/m or N m/rad", "tendon spring stiffness [ntendon]"),
    "tendon_lengthspring": ("m or rad", "tendon spring rest lengths: no force between the two [ntendon, 2]"),
    "tendon_damping": ("N s/m", "tendon viscous damping (explicit, as in MuJoCo's Euler and RK4) [ntendon]"),
    "tendon_length0": ("m or rad", "MuJoCo's tendon_length0: a tendon's length at qpos0, the tendon equality's "
                       "reference [ntendon]"),
    "tendon_invweight0": ("1/kg or 1/(kg m^2)", "MuJoCo's tendon_invweight0: the tendon equality rows' diagonal "
                          "approximation [ntendon]"),
    "tendon_actfrcrange": ("N", "clamp of the total actuator force on a tendon [ntendon, 2]"),
    "tendon_range": ("m or rad", "a limited tendon's length range (limit_law 'mujoco') [ntendon, 2]"),
    "tendon_margin": ("m or rad", "distance from a tendon's range end within which its limit row acts [ntendon]"),
    "tendon_solref_lim": ("s, 1 (or stiffness, damping where negative)",
                          "MuJoCo's solreflimit of a tendon's limit rows [ntendon, 2]"),
    "tendon_solimp_lim": ("1, 1, m or rad, 1, 1",
                          "MuJoCo's solimplimit of a tendon's limit rows [ntendon, 5]"),
    "tendon_frictionloss": ("N or N m", "a tendon's dry friction bound (limit_law 'mujoco') [ntendon]"),
    "tendon_solref_fri": ("s, 1 (or stiffness, damping where negative)",
                          "MuJoCo's solreffriction of a tendon's dry friction row [ntendon, 2]"),
    "tendon_solimp_fri": ("1, 1, m or rad, 1, 1",
                          "MuJoCo's solimpfriction of a tendon's dry friction row [ntendon, 5]"),
    "fluid_density": ("kg/m^3", "the medium's density (MuJoCo's option density; inertia-box fluid model) [1]"),
    "fluid_viscosity": ("Pa s", "the medium's viscosity (MuJoCo's option viscosity) [1]"),
    "wind": ("m/s", "the medium's velocity (MuJoCo's option wind) [1, 3]"),
    "actuator_gain_affine": ("N m per ctrl unit per rad (or m), per rad/s (or m/s)", "gainprm[1:3] of affine gains: "
                             "the gain's length and velocity coefficients (zero for fixed gains) [nu, 2]"),
    "actuator_dynprm": ("s", "dynprm[0] of filter and filterexact activations: the time constant tau [nu]"),
    "actuator_actrange": ("ctrl units", "the activation's range where actlimited [nu, 2]"),
    "contact_tau": ("m", "contact onset smoothing length [1]"),
    "contact_eps": ("m/s", "friction slip velocity scale [1]"),
}
