"""``hw.HybridModel`` = Physics ∘ Residual, and the ``hw.WorldModel`` protocol.

Checkpoints are a folder with ``config.json`` (model identity and residual settings) and
``weights.safetensors`` (residual weights and buffers, and the model's physical parameters).
No pickle anywhere; files are written atomically.
"""
from __future__ import annotations

import json
import os
import warnings
from typing import Protocol, runtime_checkable

import torch
from safetensors.torch import load_file, save_file
from torch.utils.checkpoint import checkpoint

from . import looped
from .fsutil import TEMP_PREFIX, atomic_write, atomic_write_text, clean_stale_temp  # noqa: F401 - re-exported
from .model import JOINT_TYPE_NAMES, Model, load_model
from .physics import NonFiniteError, Physics, Trajectory
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


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded (damaged, truncated, foreign or made for another model):
    ``.file`` and ``.key`` say where."""

    def __init__(self, msg: str, file: str | None = None, key: str | None = None):
        super().__init__(msg)
        self.file, self.key = file, key


class ResidualOutputError(NonFiniteError):
    """The residual network returned NaN or inf (its weights or inputs are not finite)."""


# crash-safe writes live in fsutil (shared with the kernel cache); the old names stay importable
_atomic_write, _atomic_write_text = atomic_write, atomic_write_text


def load_safetensors(path: str, what: str) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` with errors that name the file: FileNotFoundError when it is
    missing, :class:`CheckpointError` when it cannot be read (SafetensorError is neither a
    ValueError nor an OSError)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: missing ({what})")
    try:
        return load_file(path)
    except OSError:
        raise
    except Exception as e:  # SafetensorError, and whatever a damaged header gives
        raise CheckpointError(f"{path}: cannot read the {what}: {str(e).strip() or type(e).__name__} (the file "
                              "is truncated, damaged or not a safetensors file)", path) from None


def _read_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e}); the file is truncated or not a hybridwam "
                              "checkpoint", path) from None
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: not a hybridwam checkpoint (a JSON {type(cfg).__name__}, not an object)",
                              path)
    return cfg


def _require(d: dict, key: str, kind, file: str, where: str = ""):
    """``d[key]`` when it is a ``kind``, else a CheckpointError naming the key."""
    v = d.get(key)
    if not isinstance(v, kind):
        got = "missing" if key not in d else f"a {type(v).__name__}"
        name = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise CheckpointError(f"{file}: key {where}{key!r} is {got}, expected a {name} (damaged or foreign "
                              "checkpoint)", file, where + key)
    return v


#: parameters added to the schema after checkpoints were first written (format version 1): a
#: checkpoint without them keeps the model's own values (read from its MJCF like every parameter
#: at load), so that checkpoints of earlier releases still load
LATER_PARAMS = ("pair_friction", "actuator_gain_affine", "actuator_dynprm", "actuator_actrange")
#: parameters earlier checkpoints hold that the schema no longer has, and what replaced them:
#: not loaded, with a warning
RETIRED_PARAMS = {"geom_friction": "pair_friction (per candidate pair, mixed as MuJoCo mixes it)"}


def _param_mismatch(saved: dict, params: dict) -> tuple[list[str], list[str], list[str]]:
    """(missing from ``saved``, other shape, unknown to ``params``), each as readable entries;
    LATER_PARAMS are not missing and RETIRED_PARAMS not unknown (they warn)."""
    missing = [k for k in params if k not in saved and k not in LATER_PARAMS]
    wrong = [f"{k} (saved {list(saved[k].shape)}, model {list(v.shape)})" for k, v in params.items()
             if k in saved and tuple(saved[k].shape) != tuple(v.shape)]
    unknown = [k for k in saved if k not in params and k not in RETIRED_PARAMS]
    for k in saved:
        if k in RETIRED_PARAMS and k not in params:
            warnings.warn(f"saved parameter {k} is no longer part of the model's parameters (replaced by "
                          f"{RETIRED_PARAMS[k]}); its values are not loaded, the model's own are kept", stacklevel=3)
    return missing, wrong, unknown


def _mismatch_text(missing: list[str], wrong: list[str], unknown: list[str], unknown_label: str) -> str:
    """One line of what :func:`_param_mismatch` found ("" when the parameters fit)."""
    return "; ".join(x for x in (f"other shape: {', '.join(wrong)}" if wrong else "",
                                 f"not saved: {', '.join(missing)}" if missing else "",
                                 f"{unknown_label}: {', '.join(unknown)}" if unknown else "") if x)


def step_rollout(step, q0, v0, ctrl, tbptt: int | None = None, a0=None):
    """(Q, V) [..., T+1, .] of a one-step predictor ``step(q, v, u)`` rolled over ctrl [..., T, nu],
    detached every ``tbptt`` steps: the one stepwise loop (a HybridModel with a residual the kernel
    cannot run, calibration's neural baseline). With activation states ``a0`` [..., na] the
    predictor is ``step(q, v, u, a) -> (q, v, a)`` and the loop returns (Q, V, Act)."""
    qs, vs, acts = [q0], [v0], [a0]
    q, v, a = q0, v0, a0
    for t in range(ctrl.shape[-2]):
        if tbptt and t and t % tbptt == 0:
            q, v = q.detach(), v.detach()
            a = None if a is None else a.detach()
        if a is None:
            q, v = step(q, v, ctrl[..., t, :])
        else:
            q, v, a = step(q, v, ctrl[..., t, :], a)
        qs.append(q)
        vs.append(v)
        acts.append(a)
    if a0 is None:
        return torch.stack(qs, -2), torch.stack(vs, -2)
    return torch.stack(qs, -2), torch.stack(vs, -2), torch.stack(acts, -2)


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
        #: the looped engine running an hw.Residual inside the step (made on first use)
        self._fused: looped.LoopedEngine | None = None
        self._fused_key: tuple | None = None

    model = property(lambda self: self.physics.model)
    nq = property(lambda self: self.physics.nq)
    nv = property(lambda self: self.physics.nv)
    nu = property(lambda self: self.physics.nu)

    def _correction(self, qpos, qvel, ctrl):
        if self.residual is None:
            return {}
        r = self.residual(qpos, qvel, ctrl)
        return {"qfrc_extra": r} if self.residual.mode == "force" else {"qacc_extra": r}

    def _residual_error(self, e: ValueError) -> ResidualOutputError:
        """The physics' non-finite-input error for the residual's correction, said as what it is."""
        why = ("its weights or normalisation buffers contain NaN/inf"
               if not all(bool(torch.isfinite(t).all()) for t in self.residual.state_dict().values())
               else "it overflowed on these inputs")
        return ResidualOutputError(f"the residual's output (its {self.residual.mode} correction) is NaN or inf in "
                                   f"world(s) {e.worlds[:20]}: {why}", e.worlds, -1)

    def fused_engine(self) -> looped.LoopedEngine | None:
        """The looped engine that evaluates the residual inside the step (kernels/residual.py),
        compiled on first use (one module set per dtype, contact features and residual mode, for
        every width and depth); None for a residual it cannot run (a user's own module, or a
        Residual subclass that changes its features or forward), which keeps the stepwise path."""
        r = self.residual
        fusable = (isinstance(r, Residual) and type(r).forward is Residual.forward
                   and type(r).features is Residual.features)
        if not fusable:
            return None
        lin = [x for x in r.net if isinstance(x, torch.nn.Linear)]
        key = (id(r), r.mode, r.activation, tuple(x.in_features for x in lin[:1]) + tuple(x.out_features for x in lin))
        eng = self._fused
        if eng is None or self._fused_key != key:
            eng = looped.LoopedEngine(self.model, residual=r)
            m = self.model
            eng.load(verbose=True, label=f"{os.path.basename(m.source) or 'the model'} with its residual "
                                         f"({m.dtype}, {m.device})".replace("torch.", ""))
            self._fused, self._fused_key = eng, key
        return eng

    def capture(self, batch: int, horizon: int = 1, *, check_finite: bool | None = None, copy_outputs: bool = True,
                graph: bool = True):
        """``Physics.capture`` of the hybrid model: fixed-shape, forward-only steps and rollouts of
        physics plus residual replayed from a captured graph (a CapturedRollout; the residual's
        weights are copied into the capture's own buffers whenever they changed, so training them
        between calls is seen). Needs a residual that runs inside the step (an hw.Residual)."""
        from .physics import CapturedRollout

        if self.residual is None:
            return self.physics.capture(batch, horizon, check_finite=check_finite, copy_outputs=copy_outputs,
                                        graph=graph)
        return CapturedRollout(self.physics, batch, horizon, check_finite=check_finite, copy_outputs=copy_outputs,
                               graph=graph, hybrid=self)

    def _fused_rollout(self, eng, qpos0, qvel0, ctrls, act0=None) -> Trajectory:
        try:
            return self.physics._rollout(qpos0, qvel0, ctrls, eng=eng, act0=act0)
        except NonFiniteError as e:
            # a non-finite state from finite inputs: say so when the residual's numbers are the cause
            if not all(bool(torch.isfinite(t).all()) for t in self.residual.state_dict().values()):
                raise self._residual_error(e) from None
            raise

    def step(self, qpos, qvel, ctrl, act=None):
        """qpos [B, nq], qvel [B, nv], ctrl [B, nu] -> (qpos', qvel'), residual applied; for a model
        with activation states (na > 0) also ``act`` [B, na] in (default zero) and out, as
        Physics.step."""
        m = self.model
        qpos, qvel, ctrl = (torch.as_tensor(x).to(device=m.device, dtype=m.dtype) for x in (qpos, qvel, ctrl))
        eng = self.fused_engine()
        if eng is not None:
            tr = self._fused_rollout(eng, qpos, qvel, ctrl.unsqueeze(-2), act0=act)
            if m.na:
                return tr.qpos[..., 1, :], tr.qvel[..., 1, :], tr.act[..., 1, :]
            return tr.qpos[..., 1, :], tr.qvel[..., 1, :]
        extra = self._correction(qpos, qvel, ctrl)
        try:
            return self.physics.step(qpos, qvel, ctrl, **extra, act=act)
        except ValueError as e:
            # the physics checks the correction like any input (after qpos, qvel and ctrl, so a
            # non-finite state is still reported by its own name); name it as the residual's output
            if getattr(e, "input", None) in extra:
                raise self._residual_error(e) from None
            raise

    def _segment(self, qpos, qvel, ctrls, act=None):
        return step_rollout(self.step, qpos, qvel, ctrls, a0=act)

    def rollout(self, qpos0, qvel0, ctrls, checkpoint_every: int | None = None, act0=None) -> Trajectory:
        """Roll out T = ctrls.shape[-2] steps; returns Trajectory (qacc: the integrated acceleration,
        residual included).

        An hw.Residual runs inside the step (:meth:`fused_engine`): one rollout launch, its
        gradients from the backward pass, memory O(T (nq + nv)) per world. Any other residual
        steps through the stepwise loop (qacc from the velocity differences, the same numbers for
        the semi-implicit Euler step), where ``checkpoint_every=K`` keeps only every K-th state
        during the forward pass and recomputes the segments in backward: memory O(T/K + K)
        residual activations per world instead of O(T), at the price of one extra forward pass
        (the fused path needs none and ignores it). ``act0`` [B, na]: the initial activations of a
        model with activation dynamics (default zero), as Physics.rollout.
        """
        if self.residual is None:
            return self.physics.rollout(qpos0, qvel0, ctrls, act0=act0)
        m = self.model
        qpos0, qvel0, ctrls = (torch.as_tensor(x).to(device=m.device, dtype=m.dtype) for x in (qpos0, qvel0, ctrls))
        eng = self.fused_engine()
        if eng is not None:
            return self._fused_rollout(eng, qpos0, qvel0, ctrls, act0=act0)
        if ctrls.dim() != qpos0.dim() + 1:
            raise ValueError(f"ctrls: expected shape [B, T, {m.nu}], got {list(ctrls.shape)}")
        T = ctrls.shape[-2]
        if T < 1:
            raise ValueError("ctrls: horizon T must be at least 1")  # as Physics.rollout
        if m.na:  # the stepwise loop carries the activations (no checkpointing for them)
            act0 = torch.zeros(*qpos0.shape[:-1], m.na, dtype=m.dtype, device=m.device) if act0 is None else \
                torch.as_tensor(act0).to(device=m.device, dtype=m.dtype)
            Q, V, Act = self._segment(qpos0, qvel0, ctrls, act0)
            return Trajectory(Q, V, (V[..., 1:, :] - V[..., :-1, :]) / m.timestep, Act)
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
    def load(cls, path: str, model: Model | None = None, device: str | None = None,
             strict: bool = True) -> HybridModel:
        """Load a checkpoint folder. ``model``: the Model to attach it to (default: rebuilt from
        the saved scene). Raises ValueError when the checkpoint was made for another model, and
        :class:`CheckpointError` (a ValueError) when a file is damaged or a saved physical parameter
        is missing or has another shape than the model's (e.g. the same robot plus a static body).
        ``strict=False`` loads the parameters that match by name and shape, warns listing the
        others, and leaves those at the model's values."""
        cfg_path = os.path.join(path, "config.json")
        if not os.path.isfile(cfg_path):
            raise FileNotFoundError(f"{path}: not a hybridwam checkpoint (no config.json)")
        cfg = _read_config(cfg_path)
        if cfg.get("format") != FORMAT:
            raise ValueError(f"{cfg_path}: not a hybridwam checkpoint (format {cfg.get('format')!r})")
        version = _require(cfg, "version", int, cfg_path)
        if version > VERSION:
            raise ValueError(f"{cfg_path}: checkpoint version {version} is newer than this hybridwam")
        mc = _require(cfg, "model", dict, cfg_path)
        saved_fp = _require(mc, "fingerprint", dict, cfg_path, "model.")
        if model is None:
            srcs = [mc.get(k) for k in ("source", "xml")]
            if not all(x is None or isinstance(x, str) for x in srcs):
                raise CheckpointError(f"{cfg_path}: keys 'model.source' / 'model.xml' must be strings", cfg_path,
                                      "model.source")
            src = mc["source"] if os.path.exists(mc.get("source") or "") else mc.get("xml")
            if not src:
                raise ValueError(f"{path}: the saved scene {mc.get('source')!r} is gone; pass model=")
            dtype = mc.get("dtype", "float32")
            if dtype not in ("float32", "float64"):
                raise CheckpointError(f"{cfg_path}: key 'model.dtype' is {dtype!r}, expected 'float32' or 'float64'",
                                      cfg_path, "model.dtype")
            model = load_model(src, device=device, dtype=dtype)
        fp = model_fingerprint(model)
        if fp != saved_fp:
            diff = [k for k in fp if fp[k] != saved_fp.get(k)]
            raise ValueError(f"{path}: checkpoint was made for another model (differs in {', '.join(diff)}: "
                             f"saved {[saved_fp.get(k) for k in diff]}, given {[fp[k] for k in diff]})")
        rcfg = cfg.get("residual")
        if rcfg is not None and not isinstance(rcfg, dict):
            raise CheckpointError(f"{cfg_path}: key 'residual' is a {type(rcfg).__name__}, expected an object or "
                                  "null", cfg_path, "residual")
        wpath = os.path.join(path, "weights.safetensors")
        weights = load_safetensors(wpath, "checkpoint weights")
        saved = {k[len("params."):]: v for k, v in weights.items() if k.startswith("params.")}
        missing, wrong, unknown = _param_mismatch(saved, model.params)
        if missing or wrong or unknown:
            what = _mismatch_text(missing, wrong, unknown, "not in the model")
            if strict:
                raise CheckpointError(f"{wpath}: the saved physical parameters do not fit the model "
                                      f"{model.source!r} ({what}); was the scene edited (a body or geom added)? "
                                      "Pass strict=False to load the parameters that match by name and shape",
                                      wpath, (wrong or missing or unknown)[0].split(" ")[0])
            warnings.warn(f"{wpath}: parameters not loaded ({what}); they keep the model's values", stacklevel=2)
        with torch.no_grad():
            for k, v in model.params.items():
                s = saved.get(k)
                if s is not None and s.shape == v.shape:
                    v.copy_(s.to(v))
        residual = None
        if rcfg is not None:
            try:
                residual = Residual(model, **rcfg)
            except (TypeError, ValueError) as e:
                raise CheckpointError(f"{cfg_path}: key 'residual' does not describe a residual ({e})", cfg_path,
                                      "residual") from None
            state = {k[len("residual."):]: v for k, v in weights.items() if k.startswith("residual.")}
            try:
                residual.load_state_dict(state)
            except RuntimeError as e:
                first = str(e).strip().splitlines()
                raise CheckpointError(f"{wpath}: the residual weights do not match the residual of config.json "
                                      f"({' '.join(x.strip() for x in first[:3])})", wpath, "residual") from None
            residual.to(device=model.device, dtype=model.dtype)
        return cls(Physics(model), residual)
