"""``hw.Physics``: the differentiable simulator. Torch tensors in and out, batched over worlds.

Forward: one fused Warp launch for a whole rollout (``rollout_kernel``), one thread per world.
Backward: one adjoint launch of ``rollout_grad_kernel``, which replays the steps in reverse order
and recomputes each step's intermediates from the stored states, so a rollout keeps only the
trajectory, O(T * (nq + nv)) per world, never a tape of intermediates.
Repeated fixed-shape forward calls (environments, MPC plants): ``Physics.capture`` records the
launch once as a graph (CUDA graph on GPUs, Warp's CPU graph on the CPU) and replays it.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import numpy as np
import torch
import warp as wp

from . import looped, parallel
from .codegen import compile_module, generate_source, get_module
from .model import MAX_NV, Model
from .types import CYLINDER, ELLIPSOID, HFIELD, PARAM_SPEC

if not os.environ.get("HYBRIDWAM_WARP_VERBOSE"):
    # Warp's per-module load lines would drown users' output; hybridwam reports compiles itself.
    wp.config.quiet = True
    wp.config.log_level = wp.LOG_WARNING

_WP_DTYPES = {
    torch.float32: {"T": wp.float32, "V2": wp.vec2f, "V3": wp.vec3f, "V4": wp.vec4f,
                    "V5": wp.types.vector(5, wp.float32), "Q": wp.quatf},
    torch.float64: {"T": wp.float64, "V2": wp.vec2d, "V3": wp.vec3d, "V4": wp.vec4d,
                    "V5": wp.types.vector(5, wp.float64), "Q": wp.quatd},
}


# On the CPU, large torch element-wise ops run on OpenMP threads that keep spinning after the op;
# they then compete with Warp's kernel for the cores (measured 5-7x slower rollouts on a busy
# 2-core machine). The hot path therefore does its CPU fills and checks with numpy.
def _zeros(shape, like: torch.Tensor) -> torch.Tensor:
    if like.device.type == "cpu":
        return torch.from_numpy(np.zeros(shape, dtype=np.float32 if like.dtype == torch.float32 else np.float64))
    return torch.zeros(shape, dtype=like.dtype, device=like.device)


def _copy(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    if t.device.type == "cpu":
        return torch.from_numpy(np.array(t.numpy(), copy=True))
    return t.contiguous().clone()


def _host(t: torch.Tensor | np.ndarray) -> np.ndarray | None:
    """A numpy view of a CPU tensor (or the array itself); None for a tensor on a GPU."""
    if isinstance(t, np.ndarray):
        return t
    return t.detach().numpy() if t.device.type == "cpu" else None


def _all_finite(t: torch.Tensor | np.ndarray) -> bool:
    a = _host(t)
    return bool(np.isfinite(a).all()) if a is not None else bool(torch.isfinite(t).all())


def _non_finite_input(name: str, rows_ok) -> ValueError:
    """The error for input ``name`` whose rows (worlds) ``rows_ok`` [B] are not all finite."""
    bad = [i for i, good in enumerate(rows_ok.tolist()) if not good]
    err = ValueError(f"{name}: contains NaN or inf (worlds {bad[:20]})")
    err.input, err.worlds = name, bad  # for callers that know where the input came from
    return err


def _finite_rows(t: torch.Tensor | np.ndarray) -> np.ndarray | torch.Tensor:
    """Per leading index: all entries finite."""
    a = _host(t)
    if a is not None:
        return np.isfinite(a).reshape(a.shape[0], -1).all(1)
    return torch.isfinite(t.detach()).reshape(t.shape[0], -1).all(1)


class NonFiniteError(FloatingPointError):
    """A step produced NaN or inf; ``.worlds`` lists the affected world indices."""

    def __init__(self, msg: str, worlds: list[int], step: int):
        super().__init__(msg)
        self.worlds = worlds
        self.step = step


@dataclass
class Trajectory:
    """A batch of rollouts: qpos [B, T+1, nq], qvel [B, T+1, nv], qacc [B, T, nv] and the
    actuators' activation states act [B, T+1, na] (MuJoCo's act; na = 0 for models without
    activation dynamics; None where a path does not carry them)."""

    qpos: torch.Tensor
    qvel: torch.Tensor
    qacc: torch.Tensor
    act: torch.Tensor | None = None

    @property
    def horizon(self) -> int:
        return self.qacc.shape[1]


@dataclass
class Kinematics:
    """Poses at one configuration: xpos [B, nbody, 3], xquat [B, nbody, 4] (w, x, y, z), site_xpos [B, nsite, 3]."""

    xpos: torch.Tensor
    xquat: torch.Tensor
    site_xpos: torch.Tensor


@dataclass
class Forward:
    """mj_forward's outputs at one state, each [B, nv]: qacc = M^-1 (qfrc_passive + qfrc_actuator +
    qfrc_constraint - qfrc_bias) (hybridwam's joint-limit law in qfrc_constraint; no contacts)."""

    qacc: torch.Tensor
    qfrc_bias: torch.Tensor
    qfrc_passive: torch.Tensor
    qfrc_actuator: torch.Tensor
    qfrc_constraint: torch.Tensor


def _stream_scope(device: str):
    if device.startswith("cuda"):
        return wp.ScopedStream(wp.stream_from_torch(torch.cuda.current_stream(torch.device(device))))
    return contextlib.nullcontext()


def _unrolled_backward(phys, Q, V, ctrls, qfrc, qaccx, A, aQ, aV, a_ctrl, a_qfrc, a_qaccx, aA, T, parts, ranges,
                       threads, wparams):
    """One adjoint launch of the unrolled ``rollout_grad_kernel`` per range of worlds."""
    w = phys._wp
    K = len(ranges)

    def launch(k, a, b, record):
        def s(t):
            return None if t is None else w(t if K == 1 else t[a:b])

        wadj = [None if P is None else phys._wp_param(n, P[k]) for (n, _), P in zip(PARAM_SPEC, parts, strict=True)]
        # one adjoint launch for all T steps: the kernel's loop is replayed in reverse order
        return wp.launch(phys._mod.rollout_grad_kernel, dim=b - a, device=phys.model.device, adjoint=True,
                         inputs=[s(Q), s(V), s(ctrls), s(qfrc), s(qaccx), s(A), T, *wparams],
                         adj_inputs=[s(aQ), s(aV), s(a_ctrl), s(a_qfrc), s(a_qaccx), s(aA), 0, *wadj],
                         record_cmd=record)

    with _stream_scope(phys.model.device):
        if K == 1:
            launch(0, 0, ranges[0][1], False)
        else:
            parallel.run([launch(k, a, b, True).launch for k, (a, b) in enumerate(ranges)], threads)


def _trajectory(m, Q: torch.Tensor, V: torch.Tensor, A: torch.Tensor) -> Trajectory:
    """The Trajectory of the kernels' arrays: Q [..., nq + na] (coordinates, then activations), V,
    A [..., nv + na] (accelerations, then the activations' rates)."""
    return Trajectory(Q[..., :m.nq], V, A[..., :m.nv], Q[..., m.nq:])


class _Rollout(torch.autograd.Function):
    """The rollout as one autograd node: (qpos0, qvel0, ctrls, qfrc, qaccx, *params, *net) ->
    (Q, V, A). ``eng``: None (the Physics' own engine), or a looped engine with a residual
    (hybridwam.looped.ResidualNet), whose tensors (weights and biases, then buffers) follow the
    parameters."""

    @staticmethod
    def forward(ctx, phys, eng, qpos0, qvel0, ctrls, qfrc, qaccx, *tensors):
        B, T = ctrls.shape[0], ctrls.shape[1]
        m = phys.model
        n = len(PARAM_SPEC)
        params, net = tensors[:n], tensors[n:]
        # the activations ride after the coordinates (their rates after the accelerations): the
        # kernels' trajectory arrays, kernels/tree.py's Tree.na
        Q = torch.empty(B, T + 1, m.nq + m.na, dtype=m.dtype, device=m.device)
        V = torch.empty(B, T + 1, m.nv, dtype=m.dtype, device=m.device)
        A = torch.empty(B, T, m.nv + m.na, dtype=m.dtype, device=m.device)
        Q[:, 0] = qpos0
        V[:, 0] = qvel0
        with _stream_scope(m.device):
            phys._launch_forward(Q, V, ctrls, qfrc, qaccx, A, params, eng=eng,
                                 net=None if eng is None else eng.net_struct(list(net)))
        ctx.phys, ctx.eng = phys, eng
        ctx.save_for_backward(Q, V, A, ctrls, qfrc, qaccx, *tensors)
        return Q, V, A

    @staticmethod
    def backward(ctx, gQ, gV, gA):
        phys, eng = ctx.phys, ctx.eng
        Q, V, A, ctrls, qfrc, qaccx, *tensors = ctx.saved_tensors
        n = len(PARAM_SPEC)
        params, net = tensors[:n], tensors[n:]
        B, T = ctrls.shape[0], ctrls.shape[1]

        def adj(g, like):
            return _copy(g).to(like.device) if g is not None else _zeros(like.shape, like)

        aQ, aV, aA = adj(gQ, Q), adj(gV, V), adj(gA, A)
        needs = ctx.needs_input_grad
        P0 = 7  # index of the first parameter among forward's inputs
        # adjoints only for what needs them: Warp skips accumulation into a null gradient array
        # (the residual's hand-written adjoint writes ctrl's)
        a_ctrl = _zeros(ctrls.shape, ctrls) if needs[4] or eng is not None else None
        a_qfrc = _zeros(qfrc.shape, qfrc) if needs[5] else None
        a_qaccx = _zeros(qaccx.shape, qaccx) if needs[6] else None
        # parameter (and weight) adjoints are sums over worlds: each fixed chunk of worlds
        # accumulates into its own buffer (concurrent slices never write one array), summed in
        # chunk order below, so the bits do not depend on the thread count; without them, slices
        # per thread
        grad_net = eng is not None and any(needs[P0 + n:])
        grad_params = any(needs[P0:P0 + n]) or grad_net
        per_thread = parallel.slices(B, phys.threads, T)
        ranges = parallel.chunks(B) if grad_params else per_thread
        threads = phys.threads if len(per_thread) > 1 else 1  # small launches: chunks one after another
        K = len(ranges)
        parts = [_zeros((K, *p.shape), p) if needs[P0 + i] else None for i, p in enumerate(params)]
        w = phys._wp
        wparams = phys._wp_params(params)
        a_net = []
        if eng is not None or phys.engine == "looped":
            looped_eng = phys._looped if eng is None else eng

            def view(ts):
                return lambda a, b: [None if t is None else w(t if K == 1 else t[a:b]) for t in ts]

            wadj = [[None if P is None else phys._wp_param(nm, P[k])
                     for (nm, _), P in zip(PARAM_SPEC, parts, strict=True)] for k in range(K)]
            netw = gnets = None
            if eng is not None:
                netw = eng.net_struct(list(net))
                gbufs, gnets = eng.grad_buffers(K)
            # the backward pass re-runs each step forward into copies: the returned trajectory keeps its bits
            Qc, Vc, Ac = _copy(Q), _copy(V), _copy(A)
            with _stream_scope(phys.model.device):
                looped_eng.backward(view((Qc, Vc, ctrls, qfrc, qaccx, Ac)),
                                    view((aQ, aV, a_ctrl, a_qfrc, a_qaccx, aA)), T, wparams, wadj, ranges, threads,
                                    parallel.run, net=netw, gnets=gnets)
            if eng is not None:
                a_net = eng.net.split_grads(*(g.sum(0) for g in gbufs))
                a_net += [None] * (len(net) - len(a_net))  # the buffers: no gradient
        else:
            _unrolled_backward(phys, Q, V, ctrls, qfrc, qaccx, A, aQ, aV, a_ctrl, a_qfrc, a_qaccx, aA, T, parts,
                               ranges, threads, wparams)
        a_params = []
        for P in parts:
            acc = None
            if P is not None:
                acc = P[0]
                for k in range(1, K):
                    acc = acc + P[k]
            a_params.append(acc)
        grads = [None, None, aQ[:, 0], aV[:, 0], a_ctrl, a_qfrc, a_qaccx, *a_params, *a_net]
        return tuple(g if needs[i] else None for i, g in enumerate(grads))


#: The unrolled engine's generated source above which "auto" picks the looped engine (when the
#: model needs nothing the looped engine lacks): its cold compile grows with that source (see
#: codegen.estimate_compile_seconds), the looped engine's does not. Models with contact pairs
#: have a higher threshold: on small contact scenes the unrolled step runs 3-6x faster (ball_toss,
#: pusher: measured 2026-12-02), and the looped contact kernels take ~15 s to compile once.
LOOPED_ABOVE_CHARS = 25_000
LOOPED_ABOVE_CHARS_CONTACT = 60_000


def choose_engine(model: Model, engine: str = "auto") -> str:
    """The engine ``Physics(model, engine=...)`` runs: "unrolled", "looped", or for "auto" the looped
    engine when the model needs nothing it lacks (:func:`hybridwam.looped.unsupported`) and uses
    RK4, fluid forces, tendons, site transmissions, cylinder / ellipsoid contacts, activation
    dynamics, affine gains, MuJoCo's
    limit law or implicitfast's gyroscopic term of free bodies (the looped engine's only) or the
    unrolled code would exceed LOOPED_ABOVE_CHARS (LOOPED_ABOVE_CHARS_CONTACT with contacts) or the
    unrolled engine's size cap; with the
    environment variable HYBRIDWAM_ENGINE=looped, "auto" takes the looped engine wherever it can."""
    if engine not in ("auto", "unrolled", "looped"):
        raise ValueError(f"engine must be 'auto', 'unrolled' or 'looped', got {engine!r}")
    missing = looped.unsupported(model.structure)
    if engine == "looped" and missing:
        raise ValueError(f"{model.source}: the looped engine does not simulate {', '.join(missing)}; "
                         "use engine='unrolled' (or 'auto')")
    too_big = model.nv > MAX_NV
    if engine == "unrolled" and too_big:
        raise ValueError(f"{model.source}: nv={model.nv} is above the unrolled engine's cap ({MAX_NV}); "
                         "use engine='looped' (or 'auto')")
    # what only the looped engine simulates
    st = model.structure
    cylinders = any({CYLINDER, ELLIPSOID, HFIELD} & {st.geom_type[a], st.geom_type[b]} for a, b in st.pairs)
    only = [w for w, on in (("the RK4 integrator", st.rk4), ("fluid forces", st.fluid),
                            ("implicitfast's gyroscopic term of free bodies", st.free_gyro),
                            ("tendons", bool(st.tendon_wraps)), ("site transmissions", bool(st.act_site)),
                            ("actuators on ball and free joints", bool(st.act_ball)),
                            ("cylinder, ellipsoid and height field contacts", cylinders),
                            ("torsional and rolling friction (condim 4, 6)", st.spin_roll),
                            ("activation dynamics", st.na > 0), ("affine actuator gains", bool(st.act_affine_gain)),
                            ("MuJoCo's limit law (limit_law='mujoco')", st.limit_law == "mujoco")) if on]
    if engine == "unrolled" and only:
        raise ValueError(f"{model.source}: {' and '.join(only)} run(s) on engine='looped' (or 'auto') only; the "
                         "unrolled engine steps with Euler and implicitfast (without the gyroscopic term of "
                         "free bodies), without fluid forces, tendons, site transmissions, cylinder, ellipsoid or "
                         "height field contacts, torsional and rolling friction, activation dynamics, affine gains "
                         "and MuJoCo's limit law")
    if missing and only:
        raise ValueError(f"{model.source}: {' and '.join(only)} run(s) on the looped engine only, which does not "
                         f"simulate {', '.join(missing)}")
    if engine != "auto":
        return engine
    if missing:
        return "unrolled"
    if only:
        return "looped"
    if os.environ.get("HYBRIDWAM_ENGINE") == "looped":  # a preference: wherever the looped engine can
        return "looped"
    limit = LOOPED_ABOVE_CHARS_CONTACT if model.structure.pairs else LOOPED_ABOVE_CHARS
    return "looped" if too_big or len(generate_source(model.structure)) > limit else "unrolled"


class Physics:
    """Differentiable rigid-body simulator for a :class:`hw.Model`.

    ``step(qpos [B, nq], qvel [B, nv], ctrl [B, nu]) -> (qpos', qvel')`` and
    ``rollout(qpos0 [B, nq], qvel0 [B, nv], ctrls [B, T, nu]) -> Trajectory``; unbatched inputs
    (no leading B) give unbatched outputs. Gradients flow to the inputs and to every tensor in
    ``model.params`` that requires grad, through contacts too.

    With the looped engine a Physics keeps per-world scratch memory (one set per batch size, for
    its lifetime): call one Physics from one Python thread at a time (its own launches are split
    across threads safely); use one Physics per thread otherwise.
    """

    def __init__(self, model: Model, check_finite: bool = True, verbose: bool = True, threads: int | None = None,
                 engine: str = "auto"):
        self.model = model
        self.check_finite = check_finite
        #: CPU threads a batched launch is split across (worlds in slices, see hybridwam.parallel);
        #: default all usable cores; 1 on a GPU
        self.threads = parallel.resolve_threads(threads, model.device)
        #: "unrolled" (code generated per model structure, hybridwam.codegen) or "looped" (one
        #: compiled step for every model, kernels/forward.py); see choose_engine
        self.engine = choose_engine(model, engine)
        st = model.structure
        label = (f"{os.path.basename(model.source) or 'the model'} (nv={model.nv}, {len(st.pairs)} contact pair(s), "
                 f"{model.dtype}, {model.device})".replace("torch.", ""))
        self._mod = self._looped = None
        if self.engine == "looped":
            self._looped = looped.LoopedEngine(model)
            self.compile_seconds = self._looped.load(verbose=verbose, label=label)
        else:
            self._mod = get_module(st)
            self.compile_seconds = compile_module(self._mod, model.device, verbose=verbose, label=label)
        self._types = _WP_DTYPES[model.dtype]
        self._cache: dict[tuple, wp.array] = {}
        #: the looped stages behind kinematics / mass_matrix / forward (made on first use when the
        #: unrolled engine steps the model)
        self._stage_eng = self._looped
        self._stage_loaded = self._looped is not None

    # protocol sizes (hw.WorldModel)
    nq = property(lambda self: self.model.nq)
    nv = property(lambda self: self.model.nv)
    nu = property(lambda self: self.model.nu)

    # ---- torch <-> warp ----------------------------------------------------------------------
    def _wp(self, t: torch.Tensor) -> wp.array:
        return wp.from_torch(t, dtype=self._types["T"], requires_grad=False)

    def _wp_param(self, name: str, t: torch.Tensor) -> wp.array:
        key = {n: k for n, k in PARAM_SPEC}[name]
        return wp.from_torch(t, dtype=self._types[key], requires_grad=False)

    def _check_param(self, name: str, t) -> None:
        """A parameter tensor handed to the kernel: the kernel reads it by index without bounds
        checks, so its shape, dtype, device and layout must be those of the loaded model."""
        m = self.model
        shape = m.param_shapes[name]
        where = f"model.params[{name!r}]"
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{where}: expected a torch tensor, got {type(t).__name__}")
        if tuple(t.shape) != shape:
            raise ValueError(f"{where}: expected shape {list(shape)} (as loaded from the model), got {list(t.shape)}; "
                             "replace a parameter with a tensor of the same shape, or edit it in place")
        if t.dtype != m.dtype:
            raise TypeError(f"{where}: expected dtype {m.dtype} (the model's), got {t.dtype}")
        if t.device != m.torch_device:
            raise ValueError(f"{where}: expected a tensor on {m.device} (the model's device), got {t.device}")
        if not t.is_contiguous():
            raise ValueError(f"{where}: expected a contiguous tensor (got strides {list(t.stride())}); "
                             "use .contiguous()")
        if name == "pair_friction" and self.engine == "unrolled" and bool((t[:, 1:] != 0).any()):
            raise ValueError(f"{where}: torsional or rolling friction (columns 1, 2) on the unrolled engine, which "
                             "simulates sliding friction only; load the model with condim 4 or 6 contacts or use "
                             "Physics(model, engine='looped')")

    def _wp_params(self, params) -> list[wp.array]:
        out = []
        for (name, _), t in zip(PARAM_SPEC, params, strict=True):
            if not isinstance(t, torch.Tensor):
                self._check_param(name, t)
            k = (name, t.data_ptr(), tuple(t.shape), t.dtype, t.stride(), t.device)
            a = self._cache.get(k)
            if a is None:
                self._check_param(name, t)  # once per tensor object: the check is off the hot path
                if len(self._cache) > 4 * len(PARAM_SPEC):  # parameters replaced, not edited in place
                    self._cache.clear()
                a = self._cache[k] = self._wp_param(name, t)
            out.append(a)
        return out

    def _forward_launches(self, Q, V, ctrls, qfrc, qaccx, A, params, stream=None, record=False, eng=None,
                          net=None):
        """Launches of ``rollout_kernel`` from Q[:, 0], V[:, 0] through all T = ctrls.shape[1]
        steps, writing Q, V [B, T+1, .] and A [B, T, nv] in place: one per slice of worlds on the
        CPU's threads (see hybridwam.parallel). ``record``: return Warp launch commands instead
        of launching (replayed by CapturedRollout). ``eng``, ``net``: a looped engine with a
        residual and the residual's Net struct (``eng.net_struct``, or CapturedRollout's over
        buffers it owns)."""
        w, T = self._wp, ctrls.shape[1]
        wparams = self._wp_params(params)
        sl = parallel.slices(Q.shape[0], self.threads, T)
        record = record or len(sl) > 1
        if eng is not None or self.engine == "looped":
            def arrays(a, b):
                return [w(t if len(sl) == 1 else t[a:b]) for t in (Q, V, ctrls, qfrc, qaccx, A)]
            return (self._looped if eng is None else eng).forward_launches(arrays, T, wparams, sl, stream=stream,
                                                                           record=record, net=net)
        cmds = []
        for a, b in sl:
            def s(t, a=a, b=b):
                return w(t if len(sl) == 1 else t[a:b])
            cmd = wp.launch(self._mod.rollout_kernel, dim=b - a, device=self.model.device, stream=stream,
                            inputs=[s(Q), s(V), s(ctrls), s(qfrc), s(qaccx), s(A), T, *wparams], record_cmd=record)
            if record:
                cmds.append(cmd)
        return cmds

    def _launch_forward(self, Q, V, ctrls, qfrc, qaccx, A, params, stream=None, eng=None, net=None):
        """Run the rollout in place (see :meth:`_forward_launches`) on up to ``self.threads`` threads."""
        cmds = self._forward_launches(Q, V, ctrls, qfrc, qaccx, A, params, stream, eng=eng, net=net)
        if cmds:
            parallel.run([c.launch for c in cmds], self.threads)

    # ---- validation --------------------------------------------------------------------------
    def _prep(self, x, name: str, shape: tuple, batch: int | None) -> torch.Tensor:
        m = self.model
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(x)
        if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
            raise TypeError(f"{name}: expected a real tensor, got dtype {x.dtype}")
        exp = ((batch,) if batch is not None else ()) + shape
        if tuple(x.shape) != exp:
            want = "[" + ", ".join(("B" if i == 0 and batch is not None else str(s)) for i, s in enumerate(exp)) + "]"
            raise ValueError(f"{name}: expected shape {want} (B={batch}), got {list(x.shape)}")
        x = x.to(device=m.device, dtype=m.dtype)
        if self.check_finite and x.dim():
            ok = _finite_rows(x)
            if not bool(ok.all()):
                raise _non_finite_input(name, ok)
        return x

    def _with_act(self, qpos: torch.Tensor, act, name: str) -> torch.Tensor:
        """qpos [B, nq] with the activations ``act`` [B, na] (checked as ``name``; None: zero)
        after the coordinates: the kernels' state, as their trajectory arrays hold it."""
        B, na = qpos.shape[0], self.model.na
        act = _zeros((B, na), qpos) if act is None else self._prep(act, name, (na,), B)
        return torch.cat([qpos, act], dim=-1)

    def _check_output(self, Q: torch.Tensor, V: torch.Tensor):
        ok = _finite_rows(Q) & _finite_rows(V)
        if not bool(ok.all()):
            worlds = [i for i, good in enumerate(ok.tolist()) if not good]
            steps_ok = (_finite_rows(Q[worlds[0]]) & _finite_rows(V[worlds[0]])).tolist()
            step = steps_ok.index(False) if False in steps_ok else -1
            raise NonFiniteError(
                f"simulation produced non-finite state in {len(worlds)} world(s) {worlds[:20]} "
                f"(world {worlds[0]} first at step {step}); check the timestep, gains and inputs",
                worlds, step)

    # ---- public API --------------------------------------------------------------------------
    def rollout(self, qpos0, qvel0, ctrls, qfrc_extra=None, qacc_extra=None, act0=None) -> Trajectory:
        """Simulate T = ctrls.shape[-2] steps from (qpos0, qvel0).

        qpos0 [B, nq], qvel0 [B, nv], ctrls [B, T, nu]; optional generalized forces
        ``qfrc_extra`` and accelerations ``qacc_extra`` [B, T, nv] added in each step; ``act0``
        [B, na]: the initial activations of actuators with activation dynamics (default zero, as
        MuJoCo's mj_resetData). Returns a Trajectory with qpos [B, T+1, nq], qvel [B, T+1, nv],
        qacc [B, T, nv], act [B, T+1, na]; gradients reach act0 too.
        """
        return self._rollout(qpos0, qvel0, ctrls, qfrc_extra, qacc_extra, act0=act0)

    def _rollout(self, qpos0, qvel0, ctrls, qfrc_extra=None, qacc_extra=None, eng=None, act0=None) -> Trajectory:
        """:meth:`rollout`; ``eng``: a looped engine with a residual (``hybridwam.looped.LoopedEngine(
        model, residual=...)``, as HybridModel makes), whose MLP runs inside the step (its
        weights get gradients)."""
        m = self.model
        qpos0 = qpos0 if isinstance(qpos0, torch.Tensor) else torch.as_tensor(qpos0)
        unbatched = qpos0.dim() == 1
        if unbatched:
            qpos0, qvel0, ctrls = qpos0[None], torch.as_tensor(qvel0)[None], torch.as_tensor(ctrls)[None]
            qfrc_extra = None if qfrc_extra is None else torch.as_tensor(qfrc_extra)[None]
            qacc_extra = None if qacc_extra is None else torch.as_tensor(qacc_extra)[None]
            act0 = None if act0 is None else torch.as_tensor(act0)[None]
        if qpos0.dim() != 2:
            raise ValueError(f"qpos0: expected shape [B, {m.nq}] or [{m.nq}], got {list(qpos0.shape)}")
        B = qpos0.shape[0]
        ctrls = torch.as_tensor(ctrls)
        if ctrls.dim() != 3:
            raise ValueError(f"ctrls: expected shape [B, T, {m.nu}], got {list(ctrls.shape)}")
        T = ctrls.shape[1]
        if T < 1:
            raise ValueError("ctrls: horizon T must be at least 1")
        qpos0 = self._prep(qpos0, "qpos0", (m.nq,), B)
        qvel0 = self._prep(qvel0, "qvel0", (m.nv,), B)
        ctrls = self._prep(ctrls, "ctrls", (T, m.nu), B)
        zeros = None
        if qfrc_extra is None or qacc_extra is None:
            zeros = _zeros((B, T, m.nv), qpos0)
        qfrc = zeros if qfrc_extra is None else self._prep(qfrc_extra, "qfrc_extra", (T, m.nv), B)
        qaccx = zeros if qacc_extra is None else self._prep(qacc_extra, "qacc_extra", (T, m.nv), B)
        if m.nu == 0:
            ctrls = _zeros((B, T, 1), qpos0)
        if m.na:
            qpos0 = self._with_act(qpos0, act0, "act0")
        elif act0 is not None:
            self._prep(act0, "act0", (0,), B)  # a shape error for a non-empty act0
        Q, V, A = _Rollout.apply(self, eng, qpos0.contiguous(), qvel0.contiguous(), ctrls.contiguous(),
                                 qfrc.contiguous(), qaccx.contiguous(), *m.parameters([n for n, _ in PARAM_SPEC]),
                                 *(() if eng is None else eng.net.tensors()))
        if self.check_finite:
            self._check_output(Q.detach(), V.detach())
        if unbatched:
            Q, V, A = Q[0], V[0], A[0]
        return _trajectory(m, Q, V, A)

    def capture(self, batch: int, horizon: int = 1, *, check_finite: bool | None = None,
                copy_outputs: bool = True, graph: bool = True) -> CapturedRollout:
        """A :class:`CapturedRollout` for ``batch`` worlds and ``horizon`` steps per call: the
        same numbers as :meth:`rollout`, replayed from a captured graph, without gradients."""
        return CapturedRollout(self, batch, horizon, check_finite=check_finite, copy_outputs=copy_outputs,
                               graph=graph)

    # ---- stage-level API (the looped engine's stage functions, whatever engine steps) ---------
    def _stage_engine(self, load: bool = True) -> looped.LoopedEngine:
        """The looped engine behind the stage API; ``load``: with its step kernels compiled (the
        kinematics kernel, a module of its own, is not among them)."""
        if self._stage_eng is None:
            # kinematics and the mass matrix need no collision stage: the contact-free step
            self._stage_eng = looped.LoopedEngine(self.model, contacts=False)
        if load and not self._stage_loaded:
            self._stage_eng.load(verbose=False)
            self._stage_loaded = True
        return self._stage_eng

    def _stages(self, qpos, qvel=None, ctrl=None, act=None):
        m = self.model
        qpos = qpos if isinstance(qpos, torch.Tensor) else torch.as_tensor(qpos)
        unbatched = qpos.dim() == 1
        if unbatched:
            qpos = qpos[None]
            qvel = None if qvel is None else torch.as_tensor(qvel)[None]
            ctrl = None if ctrl is None else torch.as_tensor(ctrl)[None]
            act = None if act is None else torch.as_tensor(act)[None]
        if qpos.dim() != 2:
            raise ValueError(f"qpos: expected shape [B, {m.nq}] or [{m.nq}], got {list(qpos.shape)}")
        B = qpos.shape[0]
        qpos = self._prep(qpos, "qpos", (m.nq,), B)
        qvel = _zeros((B, m.nv), qpos) if qvel is None else self._prep(qvel, "qvel", (m.nv,), B)
        ctrl = _zeros((B, m.nu), qpos) if ctrl is None else self._prep(ctrl, "ctrl", (m.nu,), B)
        if m.na:
            qpos = self._with_act(qpos, act, "act")
        out = looped._Stages.apply(self, qpos.contiguous(), qvel.contiguous(), ctrl.contiguous(),
                                   *m.parameters([n for n, _ in PARAM_SPEC]))
        return dict(zip(looped.STAGE_OUTPUTS, out, strict=True)), unbatched

    def kinematics(self, qpos) -> Kinematics:
        """Body and site poses at ``qpos`` [B, nq] (MuJoCo's mj_kinematics): xpos [B, nbody, 3],
        xquat [B, nbody, 4] (w, x, y, z), site_xpos [B, nsite, 3]; differentiable w.r.t. qpos and
        the parameters. Runs the kinematics stage alone (kernels.forward.build_kinematics)."""
        m = self.model
        qpos = qpos if isinstance(qpos, torch.Tensor) else torch.as_tensor(qpos)
        unbatched = qpos.dim() == 1
        if unbatched:
            qpos = qpos[None]
        if qpos.dim() != 2:
            raise ValueError(f"qpos: expected shape [B, {m.nq}] or [{m.nq}], got {list(qpos.shape)}")
        qpos = self._prep(qpos, "qpos", (m.nq,), qpos.shape[0])
        for n in looped.KIN_PARAMS:
            self._check_param(n, m.params[n])
        xpos, xq = looped.kinematics(self._stage_engine(load=False), qpos, m.params)
        xquat = torch.cat([xq[..., 3:], xq[..., :3]], dim=-1)
        site_xpos = looped.site_positions(m.mj, xpos, xq)
        if unbatched:
            xpos, xquat, site_xpos = xpos[0], xquat[0], site_xpos[0]
        return Kinematics(xpos, xquat, site_xpos)

    def mass_matrix(self, qpos) -> torch.Tensor:
        """The joint-space inertia matrix at ``qpos`` [B, nq] -> [B, nv, nv] (MuJoCo's mj_fullM of
        qM: armature included, implicit damping not), differentiable."""
        st, unbatched = self._stages(qpos)
        nv = self.model.nv
        low = st["M"].reshape(-1, nv, nv)
        full = low + low.transpose(1, 2) - torch.diag_embed(torch.diagonal(low, dim1=1, dim2=2))
        return full[0] if unbatched else full

    def forward(self, qpos, qvel, ctrl, act=None) -> Forward:
        """Accelerations and the force terms at one state (MuJoCo's mj_forward): qacc, qfrc_bias,
        qfrc_passive, qfrc_actuator, qfrc_constraint (joint limits; with limit_law "mujoco" also dry
        friction: the constraint solver's) [B, nv]; differentiable. ``act`` [B, na]: the
        activations of actuators with activation dynamics (default zero). Models with contacts, or with
        frictionloss under the compliant law, are refused: their forces depend on the step (the
        second solve's friction limit uses the end-of-step velocity), not on the state alone."""
        s = self.model.structure
        compliant = s.limit_law != "mujoco"
        missing = [w for w, used in ((f"{len(s.pairs)} contact pair(s)", bool(s.pairs)),
                                     ("dry friction (frictionloss)", compliant and any(s.dof_frictionloss))) if used]
        if missing:
            raise NotImplementedError(f"{self.model.source}: Physics.forward does not cover {', '.join(missing)} "
                                      "(kinematics and mass_matrix do; step and rollout simulate them)")
        st, unbatched = self._stages(qpos, qvel, ctrl, act)
        out = [st[n][..., 0] for n in ("qacc", "qfrc_bias", "qfrc_passive", "qfrc_actuator", "qfrc_constraint")]
        return Forward(*(o[0] if unbatched else o for o in out))

    def step(self, qpos, qvel, ctrl, qfrc_extra=None, qacc_extra=None, act=None):
        """One step: qpos [B, nq], qvel [B, nv], ctrl [B, nu] -> (qpos', qvel'); for a model with
        activation states (na > 0) also ``act`` [B, na] in (default zero) and out: (qpos', qvel', act')."""
        ctrl = torch.as_tensor(ctrl)

        def lift(x):
            return None if x is None else torch.as_tensor(x).unsqueeze(-2)

        tr = self.rollout(qpos, qvel, ctrl.unsqueeze(-2), lift(qfrc_extra), lift(qacc_extra), act0=act)
        if self.model.na:
            return tr.qpos[..., 1, :], tr.qvel[..., 1, :], tr.act[..., 1, :]
        return tr.qpos[..., 1, :], tr.qvel[..., 1, :]


class CapturedRollout:
    """Fixed-shape, forward-only rollouts replayed from a captured graph (``physics.capture``).

    The rollout launch is recorded once over buffers this object owns: a CUDA graph on GPUs,
    Warp's CPU graph on the CPU. Each call copies the inputs into those buffers and replays the
    graph, skipping the allocation, autograd and launch set-up of :meth:`Physics.rollout`, which
    dominate when a small batch is stepped one control step per call. The numbers are those of
    ``Physics.rollout`` bit for bit; there are no gradients (use ``Physics.rollout`` for those).

    ``rollout(qpos0 [B, nq], qvel0 [B, nv], ctrls [B, H, nu]) -> Trajectory`` and
    ``step(qpos, qvel, ctrl [B, nu]) -> (qpos', qvel')``, which holds ctrl for the H steps
    (a frame skip) and returns the final state. Optional ``qfrc_extra`` / ``qacc_extra``
    [B, H, nv] as in ``Physics.rollout``. ``copy_outputs=False`` returns views of the internal
    buffers, overwritten by the next call. Physical parameters edited in place are used by the
    next call; parameter tensors replaced by new ones trigger a new capture. ``graph=False``
    launches the kernel directly (same buffers, no capture). ``hybrid``: a HybridModel of this
    physics whose residual runs inside the step (``HybridModel.capture``); its weights are copied
    into buffers the capture owns whenever they changed, so training them between calls is seen.
    """

    def __init__(self, physics: Physics, batch: int, horizon: int = 1, *, check_finite: bool | None = None,
                 copy_outputs: bool = True, graph: bool = True, hybrid=None):
        for name, v in (("batch", batch), ("horizon", horizon)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        self.physics = physics
        self.batch, self.horizon = B, T = int(batch), int(horizon)
        self.check_finite = physics.check_finite if check_finite is None else bool(check_finite)
        self.copy_outputs = bool(copy_outputs)
        self.use_graph = bool(graph)
        m = physics.model
        like = torch.empty(0, dtype=m.dtype, device=m.device)
        self._Q = _zeros((B, T + 1, m.nq + m.na), like)  # the activations after the coordinates
        self._V = _zeros((B, T + 1, m.nv), like)
        self._C = _zeros((B, T, max(m.nu, 1)), like)
        self._F = _zeros((B, T, m.nv), like)
        self._X = _zeros((B, T, m.nv), like)
        self._A = _zeros((B, T, m.nv + m.na), like)
        # destinations of the inputs: (tensor view, its numpy view on the CPU, where copies and
        # checks go through numpy: no torch OpenMP threads and less per-call overhead)
        cpu = m.device == "cpu"
        self._dst = {k: (t, t.numpy() if cpu else None) for k, t in (
            ("q", self._Q[:, 0, :m.nq]), ("a", self._Q[:, 0, m.nq:]), ("v", self._V[:, 0]), ("u", self._C[..., :m.nu]),
            ("f", self._F), ("x", self._X))}
        self._outputs = (self._Q.numpy(), self._V.numpy()) if cpu else (self._Q, self._V)  # for the finite check
        self._param_names = [n for n, _ in PARAM_SPEC]
        self._extras_set = False
        self._params_key: tuple | None = None
        self.graph = None
        self._capture_stream = None
        #: CPU batches split across threads replay recorded launch commands instead of one graph
        self._split = m.device == "cpu" and len(parallel.slices(B, physics.threads, T)) > 1
        self.captures = 0  # how many times the launch was (re)recorded
        self._eng = self._net = self._refresh = None
        self._hybrid = hybrid
        if hybrid is not None:
            self._eng = hybrid.fused_engine()
            if self._eng is None:
                raise ValueError("HybridModel.capture needs a residual that runs inside the step (an hw.Residual); "
                                 "a module of your own steps through HybridModel.step / rollout")
            self._net, self._refresh = self._eng.net.owned_struct(self._eng.k["Net"], m.dtype, m.device)

    # ---- launch ------------------------------------------------------------------------------
    def _launch(self, params, stream=None):
        self.physics._launch_forward(self._Q, self._V, self._C, self._F, self._X, self._A, params, stream,
                                     eng=self._eng, net=self._net)

    def _run(self):
        m = self.physics.model
        params = m.parameters(self._param_names)
        held = ()
        if self._refresh is not None:
            self._refresh()  # the residual's current weights into the captured buffers
            # its buffers (standardisation, output scale) are read where they are: a replaced one
            # is recorded again, as a replaced parameter
            held = tuple(t.data_ptr() for t in self._eng.net.tensors()[2 * len(self._eng.net.linears):])
            if held != getattr(self, "_held", held):
                self._net, self._refresh = self._eng.net.owned_struct(self._eng.k["Net"], m.dtype, m.device)
                self.graph = None
            self._held = held
        if not self.use_graph:
            with _stream_scope(m.device):
                self._launch(params)
            return
        key = tuple(p.data_ptr() if isinstance(p, torch.Tensor) else id(p) for p in params) + held
        cuda = m.device.startswith("cuda")
        if self.graph is None or key != self._params_key:
            # graphs bake in array addresses: record again when a parameter tensor was replaced
            self.graph = None
            self.physics._wp_params(params)  # checks replaced parameters before anything is recorded
            if self._split:
                # several slices of worlds on the CPU's threads: a graph would run them one after
                # the other, so the launches are recorded as Warp commands and replayed concurrently
                self.graph = self.physics._forward_launches(self._Q, self._V, self._C, self._F, self._X, self._A,
                                                            params, record=True, eng=self._eng, net=self._net)
                self._params_key = key
                self.captures += 1
            else:
                self._capture(params, key, cuda)
        if self._split:
            parallel.run([c.launch for c in self.graph], self.physics.threads)
        elif cuda:
            wp.capture_launch(self.graph, stream=wp.stream_from_torch(torch.device(m.device)))
        else:
            wp.capture_launch(self.graph)

    def _capture(self, params, key, cuda: bool):
        m = self.physics.model
        stream = wp.Stream(m.device) if cuda else None
        if cuda:
            torch.cuda.synchronize(torch.device(m.device))
        try:
            with wp.ScopedCapture(device=m.device, stream=stream) as cap:
                self._launch(params, stream=stream)
        except RuntimeError as e:
            raise RuntimeError(f"graph capture of the rollout failed on {m.device} ({e}); "
                               "physics.capture(..., graph=False) launches without a graph") from e
        self.graph, self._params_key = cap.graph, key
        self._capture_stream = stream  # kept alive with the graph
        self.captures += 1

    # ---- inputs / outputs ----------------------------------------------------------------------
    def _load(self, dst: str, x, name: str, shape: tuple):
        """Check input ``x`` (tensor or array) and copy it into the buffer ``dst`` names."""
        dst_t, dst_n = self._dst[dst]
        if isinstance(x, torch.Tensor):
            if not (x.is_floating_point() or x.dtype in (torch.int32, torch.int64)):
                raise TypeError(f"{name}: expected a real tensor, got dtype {x.dtype}")
            if x.requires_grad and torch.is_grad_enabled():
                raise RuntimeError(f"{name} requires grad, but a captured rollout has no gradients; "
                                   "use physics.rollout (or detach the input)")
            x = x.detach()
            xn = x.numpy() if dst_n is not None and x.device.type == "cpu" else None
        else:
            xn = np.asarray(x)
            if not (np.issubdtype(xn.dtype, np.floating) or np.issubdtype(xn.dtype, np.integer)):
                raise TypeError(f"{name}: expected real numbers, got dtype {xn.dtype}")
            if dst_n is None:
                x, xn = torch.as_tensor(xn), None
        if tuple(x.shape if xn is None else xn.shape) != shape:
            got = list(x.shape if xn is None else xn.shape)
            raise ValueError(f"{name}: expected shape {list(shape)} (this capture is for batch={self.batch}, "
                             f"horizon={self.horizon}), got {got}")
        if not shape[-1]:
            return
        if self.check_finite and not _all_finite(x if xn is None else xn):
            raise _non_finite_input(name, _finite_rows(x if xn is None else xn))
        if xn is not None:
            np.copyto(dst_n, xn, casting="unsafe")
        else:
            dst_t.copy_(x)

    def _load_extras(self, qfrc_extra, qacc_extra):
        B, T, nv = self.batch, self.horizon, self.physics.model.nv
        given = qfrc_extra is not None or qacc_extra is not None
        if given or self._extras_set:
            for dst, x, name in (("f", qfrc_extra, "qfrc_extra"), ("x", qacc_extra, "qacc_extra")):
                if x is None:
                    self._dst[dst][0].zero_()
                else:
                    self._load(dst, x, name, (B, T, nv))
            self._extras_set = given

    def _check(self):
        if self.check_finite and not all(map(_all_finite, self._outputs)):
            self.physics._check_output(self._Q, self._V)  # names the worlds and the step

    def _out(self, t: torch.Tensor) -> torch.Tensor:
        return _copy(t) if self.copy_outputs else t

    def _load_act(self, act, name: str):
        m = self.physics.model
        if act is None:
            self._dst["a"][0].zero_()
        else:
            self._load("a", act, name, (self.batch, m.na))

    def rollout(self, qpos0, qvel0, ctrls, qfrc_extra=None, qacc_extra=None, act0=None) -> Trajectory:
        """qpos0 [B, nq], qvel0 [B, nv], ctrls [B, H, nu] (act0 [B, na], default zero) ->
        Trajectory (qpos [B, H+1, nq], ..., act [B, H+1, na])."""
        m, B, T = self.physics.model, self.batch, self.horizon
        self._load("q", qpos0, "qpos0", (B, m.nq))
        self._load_act(act0, "act0")
        self._load("v", qvel0, "qvel0", (B, m.nv))
        self._load("u", ctrls, "ctrls", (B, T, m.nu))
        self._load_extras(qfrc_extra, qacc_extra)
        self._run()
        self._check()
        Q, A = self._out(self._Q), self._out(self._A)
        return _trajectory(m, Q, self._out(self._V), A)

    def step(self, qpos, qvel, ctrl, qfrc_extra=None, qacc_extra=None, act=None):
        """qpos [B, nq], qvel [B, nv], ctrl [B, nu] held for the H steps -> final (qpos', qvel');
        with activation states (na > 0) also act [B, na] in (default zero) and out."""
        m, B, T = self.physics.model, self.batch, self.horizon
        self._load("q", qpos, "qpos", (B, m.nq))
        self._load_act(act, "act")
        self._load("v", qvel, "qvel", (B, m.nv))
        c = ctrl if isinstance(ctrl, torch.Tensor) else np.asarray(ctrl)
        if tuple(c.shape) != (B, m.nu):
            raise ValueError(f"ctrl: expected shape [{B}, {m.nu}] (this capture is for batch={B}), got {list(c.shape)}")
        if isinstance(c, torch.Tensor):
            held = c.unsqueeze(1).expand(B, T, m.nu)
        else:
            held = np.broadcast_to(c[:, None], (B, T, m.nu))
        self._load("u", held, "ctrl", (B, T, m.nu))
        self._load_extras(qfrc_extra, qacc_extra)
        self._run()
        self._check()
        q = self._out(self._Q[:, -1])
        if m.na:
            return q[:, :m.nq], self._out(self._V[:, -1]), q[:, m.nq:]
        return q, self._out(self._V[:, -1])

    def __repr__(self) -> str:
        dev, B, T = self.physics.model.device, self.batch, self.horizon
        kind = ("no graph" if not self.use_graph else "CUDA graph" if dev.startswith("cuda")
                else f"recorded launches on {len(parallel.slices(B, self.physics.threads, T))} threads"
                if self._split else "Warp CPU graph")
        return f"CapturedRollout(batch={self.batch}, horizon={self.horizon}, device={dev}, {kind})"
