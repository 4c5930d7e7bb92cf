"""Tree-order index arrays and per-world scratch of the looped step (kernels/forward.py).

The looped step compiles to the same code for every model: its loops run over these arrays, so
compile time depends on the set of joint / actuator kinds the stages know, never on the number of
bodies or dofs. ``Tree`` holds the integer structure (MuJoCo's tree order: a parent's index is
below its children's), ``scratch_type(T)`` the per-world intermediate arrays, each entry written
once per step (Warp's reverse mode replays loops without re-running array stores: a value that is
stored, read and later overwritten would be read wrong in the adjoint; accumulations are atomic
adds into a slot zeroed at the start of the step and read only after the last add). The solve
(kernels/solve.py) is the exception: it has a hand-written adjoint.
"""
import warp as wp

from ..types import PARAM_SPEC


@wp.struct
class Tree:
    nbody: int
    njnt: int
    nq: int
    nv: int
    nu: int
    #: evaluations of the dynamics per step: 1 (Euler, implicitfast) or 4 (RK4; the bound of a
    #: loop that must not be unrolled, so not the compile-time Features.rk4)
    nstage: int
    #: 1 when joint damping is integrated implicitly (MuJoCo's Euler with eulerdamp on, implicitfast)
    implicit: int
    #: 1 when the affine-bias actuators' velocity terms are too (MuJoCo's implicitfast)
    implicit_act: int
    #: 1 unless MuJoCo's refsafe is disabled: a soft constraint's time constant is then at least
    #: two steps (limit_law "mujoco", kernels/limits.py)
    refsafe: int
    #: 1 for float32 models with long chains: the solve refines its solution once
    #: (kernels/solve.py's refine, hybridwam/looped.py's REFINE_DEPTH)
    refine: int
    #: under implicitfast, for the free joint of a free rigid subtree (a body whose only joint is
    #: free, no dofs below it) the number of its subtree's bodies (contiguous from it), else 0 (the
    #: step's gyroscopic term: kernels/forward.py's free_gyroscopic)
    jnt_gyro: wp.array(dtype=int)
    body_parent: wp.array(dtype=int)
    body_jntadr: wp.array(dtype=int)
    body_jntnum: wp.array(dtype=int)
    #: 1 when some dof lies on the body's path to the world
    body_moving: wp.array(dtype=int)
    jnt_type: wp.array(dtype=int)
    jnt_qposadr: wp.array(dtype=int)
    jnt_dofadr: wp.array(dtype=int)
    jnt_actfrclimited: wp.array(dtype=int)
    #: number of actuators driving the joint (its actuator force is clamped only when > 0)
    jnt_nact: wp.array(dtype=int)
    #: 1 for a hinge / slide joint with a range limit (kernels/limits.py)
    jnt_limited: wp.array(dtype=int)
    #: 1 for a body with gravity compensation in the model (its gravcomp factor is then a
    #: parameter; bodies loaded without it have none, whatever the parameter says later)
    body_gravcomp: wp.array(dtype=int)
    #: 1 when the joint counts gravity compensation as actuator force (MuJoCo's actuatorgravcomp)
    jnt_actgravcomp: wp.array(dtype=int)
    dof_body: wp.array(dtype=int)
    dof_jnt: wp.array(dtype=int)
    #: ancestor dofs of each dof, itself first then up the tree (CSR: anc[anc_adr[i] + k])
    anc_adr: wp.array(dtype=int)
    anc_num: wp.array(dtype=int)
    anc: wp.array(dtype=int)
    act_jnt: wp.array(dtype=int)
    #: per actuator: bit 0 ctrl clamped, bit 1 force clamped, bit 2 affine bias, bit 3 affine
    #: gain, bit 4 actearly, bit 5 activation clamped to actrange (actlimited), bit 6 a ball
    #: joint's gear in the parent's frame (jointinparent)
    act_flags: wp.array(dtype=int)
    #: per actuator the ball joint it drives (-1: none; kernels/actuation.py's actuate_ball, with
    #: the site transmissions' code: Features.site)
    act_ball: wp.array(dtype=int)
    #: activation states (MuJoCo's na; kernels/actuation.py): the trajectory arrays carry them
    #: after the coordinates, qpos[w, t, nq + k], and their rates after the accelerations,
    #: qacc[w, t, nv + k]; per actuator its state's index k (-1: none) and dynamics (types.ACT_DYNAMICS)
    na: int
    act_adr: wp.array(dtype=int)
    act_dyn: wp.array(dtype=int)
    #: each body's dofs: body_dofnum[b] of them from body_dofadr[b] (MuJoCo's order)
    body_dofadr: wp.array(dtype=int)
    body_dofnum: wp.array(dtype=int)
    #: 1 for a dof with dry friction in the model (kernels/collision.py's solve_inputs)
    dof_frictionloss: wp.array(dtype=int)
    # ---- collision (kernels/collision.py)
    ngeom: int
    npair: int
    geom_type: wp.array(dtype=int)
    geom_body: wp.array(dtype=int)
    #: a mesh geom's convex hull: planes [padr, padr + pnum) and vertices [vadr, vadr + vnum) of
    #: the hull_planes / hull_verts parameters
    geom_hull_padr: wp.array(dtype=int)
    geom_hull_pnum: wp.array(dtype=int)
    geom_hull_vadr: wp.array(dtype=int)
    geom_hull_vnum: wp.array(dtype=int)
    #: a height field geom's grid (0 for others): its rows (along y) and columns (along x); its
    #: vertices are the hull vertices above, row-major
    geom_hf_nrow: wp.array(dtype=int)
    geom_hf_ncol: wp.array(dtype=int)
    #: candidate pairs: geoms (type(g1) <= type(g2)), the pair kind's index in
    #: kernels.collision.PAIR_KINDS, 1 when its stiffness is treated implicitly
    pair_geom1: wp.array(dtype=int)
    pair_geom2: wp.array(dtype=int)
    pair_kind: wp.array(dtype=int)
    pair_implicit: wp.array(dtype=int)
    #: each pair's contact points: pair_pnum[i] of them from pair_padr[i]; the pair of each point
    npoint: int
    pair_padr: wp.array(dtype=int)
    pair_pnum: wp.array(dtype=int)
    point_pair: wp.array(dtype=int)
    # ---- tendons (kernels/tendon.py; size-1 placeholders in models without acting tendons)
    ntendon: int
    #: each tendon's path: ten_wrapnum[i] elements from ten_wrapadr[i] (0 for a tendon that exerts
    #: no force), each of kind wrap_type (types.TENDON_WRAPS) on joint or site wrap_obj
    ten_wrapadr: wp.array(dtype=int)
    ten_wrapnum: wp.array(dtype=int)
    wrap_type: wp.array(dtype=int)
    wrap_obj: wp.array(dtype=int)
    #: per site element of a spatial path: the site before it in its branch (-1: the branch's
    #: first; a sphere or cylinder element between them wraps the piece) and the pulley element
    #: that divides its branch (-1: none, divisor 1); per geom element wrap_prev is its side
    #: site (-1: none)
    wrap_prev: wp.array(dtype=int)
    wrap_pulley: wp.array(dtype=int)
    site_body: wp.array(dtype=int)
    #: the last dof on each body's path to the world (its own last dof if it has some; -1: none),
    #: the start of the body's ancestor dof list (anc)
    body_lastdof: wp.array(dtype=int)
    #: per actuator: the tendon it pulls, -1 for a joint transmission (act_jnt)
    act_ten: wp.array(dtype=int)
    #: 1 for a tendon whose actuators' total force is clamped (MuJoCo's actuatorfrclimited)
    ten_actlimited: wp.array(dtype=int)
    #: per actuator of a site transmission: its site and reference site (-1: none); -1 otherwise
    act_site: wp.array(dtype=int)
    act_refsite: wp.array(dtype=int)
    #: active equality constraints (kernels/limits.py): their number, type (types.EQ_SIMULATED),
    #: objects (joints, or bodies for connect; obj2 -1: none) and first row; rows in all
    neq: int
    eq_type: wp.array(dtype=int)
    eq_obj1: wp.array(dtype=int)
    eq_obj2: wp.array(dtype=int)
    #: per equality: 1 for a connect or weld between sites (eq_obj1, eq_obj2 then sites), and
    #: MuJoCo's index of the constraint (its parameters' row)
    eq_site: wp.array(dtype=int)
    eq_id: wp.array(dtype=int)
    eq_rowadr: wp.array(dtype=int)
    #: the constraint solve's dense rows: the equalities' then the tendons' limit and dry friction
    #: rows and the ball joints' cone limits, each its kind (types.ROW_*) and tendon or joint (-1 for an
    #: equality's)
    nerow: int
    #: the equality rows' number (the dense rows before the tendons'; always quadratic)
    nerow_eq: int
    erow_kind: wp.array(dtype=int)
    erow_ten: wp.array(dtype=int)


#: Scratch fields: (name, kind, size) with kind "T" (scalar), "V3", "Q", "M33" and size one of
#: "nbody", "njnt", "nv", "nv2" (nv * nv, row-major), "ngeom", "npair", "npoint", "one", "nnet"
#: (the residual's features and its layers' outputs; 1 without a residual), "nfluid" (nbody
#: with fluid forces, else 1), "nten" and "ntennv" (ntendon and ntendon * nv with acting
#: tendons, else 1), "nsitev" (nv with site transmissions, else 1), "nrow" and "nvmj" (3 nv and nv
#: with MuJoCo's soft constraints, else 1), "nerow", "nerownv", "nerow2" (the dense rows:
#: equalities', tendon limits' and friction's; times nv, squared; at least 1), "ngyro" (nbody
#: with implicitfast's free rigid subtrees, else 1), "nuact" (nu with activation states, else 1).
SCRATCH = (
    ("xp0", "V3", "nbody"), ("xq0", "Q", "nbody"),  # body frame before its joints
    ("xp", "V3", "nbody"), ("xq", "Q", "nbody"),  # body pose (MuJoCo's xpos, xquat)
    ("xd", "V3", "nbody"),  # link offset xp[b] - xp[parent], computed without world positions
    ("jp", "V3", "njnt"), ("jq", "Q", "njnt"),  # frame after each joint (position relative to xp[parent])
    ("jaxis", "V3", "njnt"), ("janchor", "V3", "njnt"),  # MuJoCo's xaxis, xanchor (relative to xp[parent])
    ("jvw", "V3", "njnt"), ("jvv", "V3", "njnt"), ("jaw", "V3", "njnt"), ("jav", "V3", "njnt"),
    ("cvw", "V3", "nbody"), ("cvv", "V3", "nbody"), ("caw", "V3", "nbody"), ("cav", "V3", "nbody"),
    ("cdw", "V3", "nv"), ("cdv", "V3", "nv"),  # motion subspace (cdof) about its body's origin
    ("cfn", "V3", "nbody"), ("cff", "V3", "nbody"),  # RNE wrench of the subtree
    ("cgn", "V3", "nbody"), ("cgf", "V3", "nbody"),  # gravity-compensation wrench of the subtree
    ("cwn", "V3", "nfluid"), ("cwf", "V3", "nfluid"),  # fluid wrench of the subtree (inertia-box model)
    ("cm", "T", "nbody"), ("ch", "V3", "nbody"), ("cJ", "M33", "nbody"),  # composite inertia
    ("om", "T", "nbody"), ("oh", "V3", "nbody"), ("oJ", "M33", "nbody"),  # the body's own inertia
    ("ofn", "V3", "nbody"), ("off", "V3", "nbody"),  # the body's own RNE wrench without gravity
    ("qt", "T", "nv"),  # the generalized force without the bias force
    ("G", "V3", "one"),  # gravity as the world's upward acceleration, -gravity (the solve reads it)
    ("jact", "T", "njnt"),
    ("jimp", "T", "njnt"),  # implicitfast: each joint's actuators' -h d force / d qvel (kernels/actuation.py)
    ("jdq", "V3", "njnt"),  # spring displacement of a ball / free joint's rotation (passive.py)
    ("qfrc_bias", "T", "nv"), ("qfrc_passive", "T", "nv"), ("qfrc_actuator", "T", "nv"),
    ("qfrc_constraint", "T", "nv"),
    ("diag", "T", "nv"),  # added to the diagonal in the solve: armature, implicit damping h b, limits' implicit share
    ("M", "T", "nv2"),
    ("gp", "V3", "ngeom"), ("gR", "M33", "ngeom"),  # geom poses (MuJoCo's geom_xpos, geom_xmat)
    ("cdepth", "T", "npoint"), ("cnormal", "V3", "npoint"), ("cpoint", "V3", "npoint"),  # contact points
    ("qdp", "T", "nv"), ("pvw", "V3", "nbody"), ("pvv", "V3", "nbody"),  # velocities the first solve predicts
    # tendons (kernels/tendon.py): length, velocity, Jacobian [ntendon, nv] row-major, passive force,
    # the actuators' total force (MuJoCo's sum of actuator_force), their force along the tendon
    # (times gear) and that force after the tendon's actuatorfrcrange
    ("ten_len", "T", "nten"), ("ten_vel", "T", "nten"), ("ten_J", "T", "ntennv"), ("ten_pas", "T", "nten"),
    ("ten_tot", "T", "nten"), ("ten_act", "T", "nten"), ("ten_frc", "T", "nten"),
    ("qsite", "T", "nsitev"),  # the site transmissions' generalized force (kernels/actuation.py)
    # MuJoCo's soft constraints (limit_law "mujoco", kernels/limits.py): per dof three rows (lower
    # limit, upper limit, dry friction), each its 1/R (0: not instantiated), reference
    # acceleration, friction bound and state (0 inactive, 1 quadratic, 2 / 3 at +bound / -bound);
    # the step's implicit share of the diagonal (h damping, implicitfast's actuator terms), which
    # the constraint solver's M leaves out; the constraint solve's diagonal and right-hand side
    ("rowD", "T", "nrow"), ("rowA", "T", "nrow"), ("rowF", "T", "nrow"), ("rowZ", "T", "nrow"),
    ("idg", "T", "nvmj"), ("cdg", "T", "nvmj"), ("crhs", "T", "nvmj"),
    # the constraint solver's Newton point, M a - qfrc_smooth there and at the current point (kernels/solve.py)
    ("ca", "T", "nvmj"), ("cuf", "T", "nvmj"), ("cu", "T", "nvmj"),
    # equality constraint rows: Jacobian [nerow, nv] row-major, 1/R, aref; the solve's K^-1 J^T
    # [nerow, nv], the Schur complement 1/D + J K^-1 J^T [nerow, nerow] (its Cholesky factor in
    # place), a column and its solution, the Schur system's right-hand side and solution
    # (and the tendons' limit and friction rows after them: their friction bound eF, the state of
    # every dense row in estate, as rowZ's)
    ("eJ", "T", "nerownv"), ("eD", "T", "nerow"), ("eA", "T", "nerow"), ("eZ", "T", "nerownv"),
    ("eF", "T", "nerow"), ("estate", "T", "nerow"),
    ("eS", "T", "nerow2"), ("ecol", "T", "nvmj"), ("eout", "T", "nvmj"), ("ey", "T", "nerow"),
    ("elam", "T", "nerow"),
    # the second solve's equality force: the rows' J qacc and their generalized force (kernels/limits.py)
    ("ejar", "T", "nerow"), ("efq", "T", "nvmj"),
    # the residual stage (kernels/residual.py): the standardised features then each layer's outputs
    # (nact), its pre-activations (npre), their adjoints (ng) and the output
    ("npre", "T", "nnet"), ("nact", "T", "nnet"), ("ng", "T", "nnet"), ("res", "T", "nv"),
    # implicitfast's free rigid subtrees (kernels/forward.py's free_gyroscopic): each one's
    # composite inertia about its root's origin, at the root's index
    ("gm", "T", "ngyro"), ("gh", "V3", "ngyro"), ("gJ", "M33", "ngyro"),
    # activation dynamics (kernels/actuation.py): each actuator's act_dot (0 without dynamics)
    ("actdot", "T", "nuact"),
)

#: The residual's block width (kernels/residual.BLOCK): its per-world arrays npre, nact, ng are
#: also seen by blocks, as [world, nnet / NET_BLOCK] arrays of vectors over the same memory
#: (npreb, nactb, ngb), so that a block is read and written as one vector: stored lane by lane,
#: a block held in registers was split into its 32 lanes at every turn of the loop that
#: accumulates it.
NET_BLOCK = 32
#: The residual's own per-world arrays: forward intermediates its hand-written adjoint reads from
#: the forward scratch, never from the adjoint's (LoopedEngine puts them last in a world's row, so
#: that the backward pass zeroes only the part before them at each step)
NET_FIELDS = ("npre", "nact", "ng")
#: (alias, kind, field): the block views of SCRATCH fields (LoopedEngine.scratch)
ALIASES = (("npreb", "VB", "npre"), ("nactb", "VB", "nact"), ("ngb", "VB", "ng"))

#: Fields of one solve, kept once per solve (MuJoCo's step has one; the step here has a second
#: one when some contact's friction or some dof's dry friction must be limited, see
#: kernels/collision.py): the contact action on each body (xn, xf) summed over subtrees and each
#: body's own implicit contact stiffness (oA, oB, oC), each pair's action about its reference
#: point (pN, pF; pA, pB, pC its implicit stiffness), the diagonal (dg: diag plus dry friction's
#: share) and the right-hand side without the bias force (qts: qt plus contact and dry friction),
#: ``lim`` (> 0 where the second solve's friction limit changed something), the factor
#: (kernels/solve.py: articulated inertias iA, iB, iC; per dof Un, Uf, D), the substitution's work
#: arrays (ipn, ipf, uu, aw, av), the adjoint's (R2 its solution; qaw, qav, swn, swf, spn, spf) and
#: the solution.
SLOT = (
    ("xn", "V3", "nbody"), ("xf", "V3", "nbody"),
    ("pN", "V3", "npair"), ("pF", "V3", "npair"),
    ("pA", "M33", "npair"), ("pB", "M33", "npair"), ("pC", "M33", "npair"),
    ("oA", "M33", "nbody"), ("oB", "M33", "nbody"), ("oC", "M33", "nbody"),
    ("dg", "T", "nv"), ("qts", "T", "nv"), ("ja", "T", "nv"),
    ("lim", "T", "one"),
    ("iA", "M33", "nbody"), ("iB", "M33", "nbody"), ("iC", "M33", "nbody"),
    ("Un", "V3", "nv"), ("Uf", "V3", "nv"), ("D", "T", "nv"),
    ("ipn", "V3", "nbody"), ("ipf", "V3", "nbody"), ("uu", "T", "nv"), ("aw", "V3", "nbody"), ("av", "V3", "nbody"),
    ("R2", "T", "nv"), ("qaw", "V3", "nbody"), ("qav", "V3", "nbody"),
    ("swn", "V3", "nbody"), ("swf", "V3", "nbody"), ("spn", "V3", "nbody"), ("spf", "V3", "nbody"),
    ("qacc", "T", "nv"),
)


def stored(f):
    """Decorator (above ``@wp.func``) of a stage function whose only effects are stores into the
    scratch (it returns nothing): Warp's adjoint of a function calling it then skips its forward
    replay. The adjoint of a step always runs after that step's forward (kernels/forward.py), so
    what the replay would compute is in the scratch already; Warp's replay of nested calls
    otherwise runs each stage's forward once per level of nesting above it (the kernel, stage_a,
    the stage itself). Warp's replay never stores, so skipping a call without a result changes
    no value the reverse pass reads. The decorator's line is part of the function's source, so the
    module hash changes with it (Warp does not hash the flag itself)."""
    for g in (f, *getattr(f, "user_overloads", {}).values()):
        g.skip_replay = True
    return f


def per_dtype(make):
    """Decorator of a ``make(T, *key)`` that builds Warp code or types for a scalar type ``T``
    (wp.float32 or wp.float64) and optionally a hashable build key (see :class:`Features`):
    built once per arguments, the same object returned afterwards."""
    built: dict = {}

    def get(T, *key):
        if (T, *key) not in built:
            built[(T, *key)] = make(T, *key)
        return built[(T, *key)]

    get.__doc__ = make.__doc__
    return get


class Features(tuple):
    """What a model needs of the step beyond the contact-free tree, fixing the code compiled for
    it: (pair kinds present, as indices of kernels.collision.PAIR_KINDS; any pair treated
    implicitly; any dof with dry friction; the hybrid model's residual stage: "" none,
    "acceleration" or "force", its output added to the acceleration or to the force before the
    solve, kernels/residual.py; the RK4 integrator; fluid forces; acting tendons; site transmissions;
    MuJoCo's soft constraints; implicitfast's gyroscopic term of free rigid subtrees; the
    solve's float32 refinement; activation dynamics and affine gains).
    Models with the same
    features share one module."""

    def __new__(cls, kinds=(), implicit=False, friction=False, residual="", rk4=False, fluid=False, tendon=False,
                site=False, mjlimits=False, gyro=False, refine=False, act=False):
        if residual not in ("", "acceleration", "force"):
            raise ValueError(f"residual: expected '', 'acceleration' or 'force', got {residual!r}")
        if friction and mjlimits:
            raise ValueError("friction (hybridwam's dry-friction law) and mjlimits (MuJoCo's) exclude each other")
        return super().__new__(cls, (tuple(sorted(set(kinds))), bool(implicit) and bool(kinds), bool(friction),
                                     residual, bool(rk4), bool(fluid), int(tendon), bool(site), bool(mjlimits),
                                     bool(gyro), bool(refine), bool(act)))

    kinds = property(lambda self: self[0])
    implicit = property(lambda self: self[1])
    friction = property(lambda self: self[2])
    residual = property(lambda self: self[3])
    #: MuJoCo's RK4 integrator: four evaluations of the dynamics per step (kernels/forward.py)
    rk4 = property(lambda self: self[4])
    #: MuJoCo's inertia-box fluid forces (kernels/smooth.py's rne_crb, kernels/passive.py)
    fluid = property(lambda self: self[5])
    #: tendons that act: stiffness, damping, actuators (kernels/tendon.py): 1, 2 where some path wraps a geom
    tendon = property(lambda self: self[6])
    #: actuators with site transmissions (kernels/actuation.py)
    site = property(lambda self: self[7])
    #: MuJoCo's soft constraints for joint limits and dry friction (limit_law "mujoco",
    #: kernels/limits.py): the first solve is the constraint solver's, the second the step's
    mjlimits = property(lambda self: self[8])
    #: implicitfast with free rigid subtrees: their gyroscopic term (kernels/forward.py's
    #: free_gyroscopic; its code cost 1.4 s of a 6 s cold compile, so only these models carry it)
    gyro = property(lambda self: self[9])
    #: float32 trees with long chains: the solve's refinement (kernels/solve.py's substitute with
    #: bias 2; its code, present and unused, cost a MuJoCo-law model 13% of its throughput)
    refine = property(lambda self: self[10])
    #: activation dynamics or affine gains (kernels/actuation.py; their code only where a model has them)
    act = property(lambda self: self[11])

    def with_residual(self, mode: str) -> "Features":
        """The same features with the hybrid model's residual stage ``mode``."""
        return Features(*self[:3], mode, *self[4:])

    #: a collision / dry-friction stage runs before each solve
    assemble = property(lambda self: bool(self[0]) or self[2] or self[8])
    #: number of solves: two when some friction is limited by the first solve's prediction, or
    #: the constraint solver's acceleration is followed by the step's implicit one
    nsolve = property(lambda self: 2 if self[1] or self[2] or self[8] else 1)


#: the contact-free, frictionless step
NO_FEATURES = Features()


def kind_types(T) -> dict:
    """The Warp type of each kind key of SCRATCH, ALIASES and PARAM_SPEC ("T", "V2", "V3", "V4", "V5",
    "Q", "M33", "VB": a block of NET_BLOCK scalars)."""
    return {"T": T, "V2": wp.types.vector(2, T), "V3": wp.types.vector(3, T), "V4": wp.types.vector(4, T),
            "V5": wp.types.vector(5, T), "Q": wp.types.quaternion(T), "M33": wp.types.matrix((3, 3), T),
            "VB": wp.types.vector(NET_BLOCK, T)}


def array_struct(name: str, T, fields, ndim: int = 1):
    """A ``wp.struct`` named ``name`` + 32 / 64 of ``ndim``-dimensional arrays, one per
    (field, kind) in ``fields``, of the kinds' types for scalar ``T``."""
    types = kind_types(T)
    array = {1: wp.array, 2: wp.array2d, 3: wp.array3d}[ndim]
    qualname = name + ("64" if T == wp.float64 else "32")
    cls = type(qualname, (), {"__annotations__": {n: array(dtype=types[k]) for n, k in fields},
                              "__module__": __name__, "__qualname__": qualname})
    return wp.struct(cls)


@per_dtype
def scratch_type(T):
    """The ``wp.struct`` of per-world scratch arrays ([world, n]) for scalar type ``T``."""
    return array_struct("Scratch", T, [(n, k) for n, k, _ in SCRATCH + SLOT + ALIASES], ndim=2)


#: The RK4 stages' arrays (kernels/forward.py), [world, slot, n] like the trajectory arrays, so
#: the stage functions read a stage's state as they read a step's: per stage i = 0..3 its state
#: (q, v), the rate its positions integrate (k: the velocity, rotations' through the inverse
#: differential of the exponential map), the step's inputs copied (c: ctrl, fe: qfrc_extra, ae:
#: qacc_extra) and its acceleration (a); slot 4 of k holds the B-weighted rate of the step.
RK_FIELDS = ("q", "v", "k", "c", "fe", "ae", "a")
#: slots per RK array
RK_SLOTS = 5


@per_dtype
def rk_type(T):
    """The ``wp.struct`` of the RK4 stages' arrays (RK_FIELDS, [world, RK_SLOTS, n]) for scalar ``T``."""
    return array_struct("RK", T, [(n, "T") for n in RK_FIELDS], ndim=3)


@per_dtype
def params_type(T):
    """The ``wp.struct`` holding the model parameter arrays (PARAM_SPEC order) for scalar ``T``."""
    return array_struct("Params", T, PARAM_SPEC)


def aliases(T) -> dict:
    """Type aliases the stage functions annotate with, for scalar type ``T``: S (Scratch), P
    (Params), R (the RK4 stages' arrays), A3 (trajectory arrays [world, step, .]), AT (parameter
    array), V2, V3, V4, Q, M33."""
    return {"S": scratch_type(T), "P": params_type(T), "R": rk_type(T), "A3": wp.array3d(dtype=T),
            "AT": wp.array(dtype=T), **kind_types(T)}
