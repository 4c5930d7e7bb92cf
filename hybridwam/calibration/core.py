"""``hw.calibrate``: logs -> identified physical parameters + trained residual, with a report.

Stages, in order (``stages=`` picks a subset):

1. ``identify``: gradient descent through the physics on multi-step rollouts. Training samples are
   segments of ``identify_horizon`` seconds starting from logged states; all segments of a minibatch
   are one batched ``Physics.rollout`` (segments as worlds). The parameters are the groups of
   :mod:`hybridwam.calibration.params` (log-scale where they must stay positive).
2. ``residual``: the physical parameters stay at their identified values; the world's residual is
   trained on the remaining error with a ``horizon``-second rollout loss through physics + residual
   (backpropagation truncated at the segment start, and every ``tbptt`` steps if set).

With ``trajectory_offsets="qpos"`` (or ``"ctrl"``) every training trajectory also gets its own
constant offset of the joint positions (or of the controls) as a nuisance parameter, fitted in the
identification stage and kept for the residual and neural stages: run-to-run offsets (an encoder
zero set anew at every start, a torque-sensor bias) are then not explained away by the physical
parameters or learnt by the residual as spurious functions of the state. Validation, test and
prediction use no offset.
3. ``neural``: the baseline, a pure MLP of the state change (:class:`NeuralModel`), trained with the
   same loss, data and epochs.

Every stage keeps the best epoch on the validation split (the start counts as epoch -1, so a stage
never ends worse on validation than it began) and stops after ``patience`` epochs without
improvement. After each epoch the whole training state (parameters, weights, optimiser, best
weights, epoch and stage, history) is written atomically to ``out/train_state.safetensors`` and the
current world to ``out/`` (``HybridModel.save``); ``resume=True`` continues from there (and writes
whatever final output, report or plot, an earlier run was killed before writing). A folder that is
not empty is only written into with ``resume=True`` or ``overwrite=True``. Minibatch
order is drawn from a generator seeded by (seed, stage, epoch), so the RNG state is the epoch
counter and a resumed run reproduces an uninterrupted one exactly.

Metrics (``CalibrationReport.metrics[split][model]``): one-step RMSE of qpos (from every logged
state) and k-step RMSE, the RMSE over all steps of open-loop rollouts of ``eval_horizon`` seconds
started from logged states every ``eval_stride`` seconds, for the physics with nominal parameters,
the identified physics, the hybrid model and the neural baseline.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from safetensors.torch import save_file

from ..hybrid import (
    TEMP_PREFIX,
    HybridModel,
    _atomic_write,
    _atomic_write_text,
    _mismatch_text,
    _param_mismatch,
    clean_stale_temp,
    load_safetensors,
    model_fingerprint,
    step_rollout,
)
from ..logs import Logs
from ..planning.optimize import cosine_lr
from ..residual import Residual
from . import checkpoint as ckpt
from .data import Segments, make_segments
from .distributed import Dist, elastic_resume, grad_sync
from .neural import NeuralModel
from .params import DEFAULT_GROUPS, PhysicalParameters

STAGES = ("identify", "residual", "neural")
#: the residual guard keeps a residual only where it lowers the validation RMSE by more than this
#: fraction (CalibrationConfig.residual_guard)
GUARD_MARGIN = 1e-6
MODELS = ("nominal", "identified", "hybrid", "neural")
NEURAL_FILE = "neural_baseline.safetensors"
PLOT_FILES = ("predictions.png", "rmse_vs_horizon.png", "training.png")
#: everything a run writes into its folder (what ``overwrite=True`` replaces; other files stay)
OUTPUT_FILES = (ckpt.STATE_FILE, "config.json", "weights.safetensors", NEURAL_FILE, "metrics.json", "report.md",
                *PLOT_FILES)


class OutputExistsError(FileExistsError):
    """The output folder holds files and neither ``resume`` nor ``overwrite`` was asked for."""


def check_output_folder(out: str | None, resume: bool = False, overwrite: bool = False) -> None:
    """Raise OutputExistsError (a FileExistsError) unless ``calibrate`` may write into ``out``: a new or
    empty folder, ``resume=True`` on a folder with a training state, or ``overwrite=True``."""
    if not out:
        return
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other: resume continues the run saved in the "
                         "folder, overwrite replaces it")
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"{out}: exists and is not a folder")
    if overwrite or not os.path.isdir(out):
        return
    entries = sorted(e for e in os.listdir(out) if not e.startswith(TEMP_PREFIX))
    if not entries or (resume and ckpt.exists(out)):
        return
    listing = ", ".join(entries[:6]) + (", ..." if len(entries) > 6 else "")
    if resume:
        raise OutputExistsError(f"{out}: nothing to resume (no {ckpt.STATE_FILE}), and the folder is not empty "
                                f"({listing}); start afresh there with overwrite=True (command line: --overwrite), "
                                "or choose a new folder")
    what = ("holds the training state of an earlier run" if ckpt.exists(out) else f"is not empty ({listing})")
    raise OutputExistsError(f"{out}: the output folder {what}; continue that run with resume=True (command line: "
                            "--resume), replace it with overwrite=True (--overwrite), or choose a new folder")


def _prepare_output_folder(out: str, resume: bool, overwrite: bool) -> None:
    """Check ``out`` (see check_output_folder), create it, remove what killed runs left half-written,
    and with ``overwrite`` the outputs of the earlier run."""
    check_output_folder(out, resume, overwrite)
    os.makedirs(out, exist_ok=True)
    clean_stale_temp(out)
    if overwrite:
        for f in OUTPUT_FILES:
            p = os.path.join(out, f)
            if os.path.isfile(p):
                os.remove(p)


@dataclass
class CalibrationConfig:
    """Everything that decides the result (saved with the checkpoint; a resume must match it)."""

    stages: tuple = STAGES
    params: tuple = DEFAULT_GROUPS
    init: dict = field(default_factory=dict)
    identify_epochs: int = 30
    residual_epochs: int = 30
    neural_epochs: int = 30
    identify_horizon: float = 0.2      # s, identification rollouts
    horizon: float = 0.5               # s, residual and neural training rollouts
    eval_horizon: float = 0.5          # s
    identify_stride: float = 0.02      # s between identification segment starts
    stride: float = 0.05               # s between residual / neural training segment starts
    eval_stride: float = 0.05          # s between evaluation segment starts
    batch_size: int = 256
    identify_lr: float = 0.03
    lr: float = 1e-3
    neural_lr: float | None = None
    weight_decay: float = 0.0
    vel_weight: float = 0.0
    tbptt: int | None = None           # steps between detaches inside a training rollout
    patience: int = 8
    trajectory_offsets: str | None = None  # "qpos" or "ctrl": per-training-trajectory nuisance offsets
    offset_lr: float = 0.005
    offset_reg: float = 1e-4
    grad_clip: float = 10.0
    max_train_segments: int | None = None
    max_val_segments: int | None = 512
    max_eval_segments: int | None = None
    neural_hidden: tuple = (128, 128)
    residual_hidden: tuple = (64, 64)  # used when the world has no residual yet
    residual_mode: str = "force"       # idem
    reset_residual: bool = True
    #: after the residual stage: where the hybrid does not beat the identified physics on the
    #: validation runs at the evaluation horizon, the residual is set to zero (the hybrid is then
    #: the identified physics); the report shows both figures (CalibrationReport.residual_guard)
    residual_guard: bool = True
    seed: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        return json.loads(json.dumps(d))


@dataclass
class CalibrationReport:
    """Result of :func:`calibrate` (also written to ``out/metrics.json`` and ``out/report.md``)."""

    metrics: dict
    nominal_params: dict
    identified_params: dict
    history: dict
    splits: dict
    config: dict
    complete: bool = True
    out: str | None = None
    seconds: float = 0.0
    curves: dict = field(default_factory=dict)
    timestep: float = 0.0
    plots: list = field(default_factory=list)
    trajectory_offsets: dict = field(default_factory=dict)   # nuisance offsets per training trajectory
    #: confidence intervals of the identified parameters and the unidentifiable ones
    #: (calibration.uncertainty.ParameterUncertainty.to_dict())
    uncertainty: dict = field(default_factory=dict)
    processes: int = 1        # data-parallel processes (torch.distributed world size) of the last call
    export: str | None = None  # the MJCF the identified physics was exported to (calibrate(export=...))
    #: the residual guard's decision (CalibrationConfig.residual_guard): validation RMSE at the
    #: evaluation horizon of the identified physics and of the hybrid, and whether the residual was kept
    residual_guard: dict = field(default_factory=dict)
    neural: object = None     # the trained NeuralModel baseline (not serialised)

    def rmse(self, model: str, split: str = "test", kind: str = "rmse_k") -> float:
        return float(self.metrics[split][model][kind])

    def table(self, split: str | None = None) -> str:
        lines = []
        for s in ([split] if split else [k for k in ("test", "val", "train") if k in self.metrics]):
            m = self.metrics[s]
            H = self.config["eval_horizon"]
            lines += [f"{s} ({', '.join(self.splits.get(s, []))}): RMSE of qpos [rad]",
                      f"| model | one-step | {H:g} s open loop | per joint ({H:g} s) |", "|---|---|---|---|"]
            for name in MODELS:
                if name in m:
                    r = m[name]
                    lines.append(f"| {name} | {r['rmse_1']:.5f} | {r['rmse_k']:.4f} | "
                                 f"{', '.join(f'{x:.4f}' for x in r['rmse_k_joint'])} |")
            lines.append("")
        g = self.residual_guard
        if g:
            lines.append(f"residual guard: validation RMSE at {g['horizon']:g} s, identified "
                         f"{g['val_identified']:.4f}, hybrid {g['val_hybrid']:.4f}: "
                         + ("residual kept" if g["kept"] else "the residual did not beat the identified physics "
                            "and was set to zero (the hybrid is the identified physics)"))
            lines.append("")
        if self.trajectory_offsets:
            lines.append(f"per-run nuisance offsets ({self.config.get('trajectory_offsets')}), training trajectories: "
                         + "; ".join(f"{k}: {', '.join(f'{x:+.4f}' for x in v)}"
                                     for k, v in self.trajectory_offsets.items()))
            lines.append("")
        if self.identified_params:
            u = (self.uncertainty or {}).get("parameters", {})
            level = f"{int(round(100 * self.uncertainty['level']))} % interval" if u else ""
            lines.append("| parameter | nominal | identified |" + (f" {level} | identifiable |" if u else ""))
            lines.append("|---|---|---|" + ("---|---|" if u else ""))
            for k, v in self.identified_params.items():
                row = f"| {k} | {self.nominal_params.get(k, float('nan')):.6g} | {v:.6g} |"
                if k in u:
                    lo, hi = (x if x is not None else float("inf") for x in u[k]["interval"])
                    row += f" [{lo:.6g}, {hi:.6g}] | {'yes' if u[k]['identifiable'] else 'no: ' + u[k]['why']} |"
                lines.append(row)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("curves", "neural")}


# ---- helpers ------------------------------------------------------------------------------------------
def _steps(seconds: float, dt: float) -> int:
    return max(1, int(round(seconds / dt)))


def _seed(seed: int, *tag) -> int:
    h = hashlib.sha256(json.dumps([seed, *tag]).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 62) - 1)


def seg_loss(Q: torch.Tensor, V: torch.Tensor, seg: Segments, vel_weight: float) -> torch.Tensor:
    """Mean squared qpos error over steps 1..k (+ vel_weight * mean squared qvel error)."""
    loss = ((Q[:, 1:] - seg.qpos[:, 1:]) ** 2).mean()
    if vel_weight:
        loss = loss + vel_weight * ((V[:, 1:] - seg.qvel[:, 1:]) ** 2).mean()
    return loss


def predict(world, q0, v0, ctrl, tbptt: int | None = None):
    """(Q, V) [S, k+1, .] of a world model over ctrl [S, k, nu], detached every ``tbptt`` steps: a
    HybridModel whose residual runs inside the step rolls out in one launch per ``tbptt`` steps,
    anything else steps through :func:`step_rollout`."""
    fused = getattr(world, "fused_engine", None)
    if fused is None or fused() is None:
        return step_rollout(world.step, q0, v0, ctrl, tbptt)
    k = ctrl.shape[1]
    n = tbptt or k
    Qs, Vs = [q0[:, None]], [v0[:, None]]
    q, v = q0, v0
    for a in range(0, k, n):
        if a:
            q, v = q.detach(), v.detach()
        tr = world.rollout(q, v, ctrl[:, a:a + n])
        Qs.append(tr.qpos[:, 1:])
        Vs.append(tr.qvel[:, 1:])
        q, v = tr.qpos[:, -1], tr.qvel[:, -1]
    return torch.cat(Qs, 1), torch.cat(Vs, 1)


def _batched(fn, seg: Segments, batch: int = 1024):
    Qs, Vs = [], []
    for i in range(0, len(seg), batch):
        Q, V = fn(seg.take(np.arange(i, min(i + batch, len(seg)))))
        Qs.append(Q)
        Vs.append(V)
    return torch.cat(Qs), torch.cat(Vs)


def _tqdm():
    """tqdm's notebook bar when ipywidgets is there, else the text bar (also fine in notebooks)."""
    try:
        import ipywidgets  # noqa: F401
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm import tqdm
    return tqdm


def _check_logs(logs: Logs, model, what: str) -> Logs:
    logs.check_model(model)
    ts = model.timestep
    if logs.dt is None or abs(logs.dt - ts) > 1e-9 * max(ts, 1.0):
        warnings.warn(f"{what} logs sampled at {logs.dt} s, the model steps {ts:g} s: resampling them",
                      stacklevel=3)
        logs = logs.resample(ts)
    return logs


# ---- the calibration run ----------------------------------------------------------------------------
class _Run:
    def __init__(self, world: HybridModel, train: Logs, val: Logs, test: Logs | None, cfg: CalibrationConfig,
                 out: str | None, progress: bool, callback, max_epochs: int | None, dist: Dist | None = None):
        self.dist = dist = dist or Dist()
        self.world, self.model, self.phys = world, world.model, world.physics
        self.cfg, self.out, self.progress, self.callback, self.max_epochs = cfg, out, progress, callback, max_epochs
        self.train, self.val, self.test = train, val, test
        m = self.model
        dt = m.timestep
        self.k_id, self.k = _steps(cfg.identify_horizon, dt), _steps(cfg.horizon, dt)
        self.k_eval, stride = _steps(cfg.eval_horizon, dt), _steps(cfg.stride, dt)

        def mk(logs, k, s, mx):
            return make_segments(logs, k, s, m.device, m.dtype, mx)

        self.seg = {}
        if "identify" in cfg.stages:
            id_stride = _steps(cfg.identify_stride, dt)
            self.seg["id_train"] = mk(train, self.k_id, id_stride, cfg.max_train_segments)
            self.seg["id_val"] = mk(val, self.k_id, id_stride, cfg.max_val_segments)
        if {"residual", "neural"} & set(cfg.stages):
            self.seg["train"] = mk(train, self.k, stride, cfg.max_train_segments)
            self.seg["val"] = mk(val, self.k, stride, cfg.max_val_segments)
        if dist.active:
            W = dist.world_size
            if cfg.batch_size < W:
                raise ValueError(f"calibrate: {W} processes but batch_size={cfg.batch_size}: every process needs "
                                 f"a segment of each minibatch; use batch_size >= {W} or fewer processes")
            for key, stage in (("id_train", "identify"), ("train", "residual / neural")):
                if key in self.seg and len(self.seg[key]) < W:
                    raise ValueError(f"calibrate: {W} processes but only {len(self.seg[key])} training segment(s) "
                                     f"for the {stage} stage: every process needs at least one; use at most "
                                     f"{len(self.seg[key])} processes, or more or longer logs (or a smaller "
                                     "stride / horizon)")
        self.epochs_run = 0
        self.t0 = time.time()

    # -- state ------------------------------------------------------------------------------------
    def new_state(self):
        self.pp = PhysicalParameters(self.model, self.cfg.params, init=self.cfg.init)
        self.theta = self.pp.theta0.clone()
        width = self.model.nu if self.cfg.trajectory_offsets == "ctrl" else self.model.nq
        self.offsets = torch.zeros(self.train.n_traj, width, dtype=self.model.dtype, device=self.model.device)
        self.best = {}
        self.meta = {"version": 1, "config": self.cfg.to_json(), "done": [], "stages": {}, "complete": False,
                     "model": {"source": self.model.source, "fingerprint": model_fingerprint(self.model)},
                     "splits": {"train": self.train.names, "val": self.val.names,
                                "test": self.test.names if self.test is not None else []}}
        self.opt_state = None

    def tensors(self) -> dict:
        t = {f"nominal.{k}": v for k, v in self.pp.nominal.items()}
        t["theta"] = self.theta.detach()
        t["offsets"] = self.offsets.detach()
        for stage, b in self.best.items():
            for k, v in b.items():
                t[f"best.{stage}.{k}"] = v
        if self.world.residual is not None:
            t.update({f"residual.{k}": v for k, v in self.world.residual.state_dict().items()})
        if getattr(self, "neural", None) is not None:
            t.update({f"neural.{k}": v for k, v in self.neural.state_dict().items()})
        if getattr(self, "opt", None) is not None:
            ot, om = ckpt.optimizer_to_flat(self.opt, "opt")
            t.update(ot)
            self.meta["optimizer"] = om
        else:
            self.meta.pop("optimizer", None)
        return t

    def save(self):
        if not self.out or not self.dist.is_main:      # rank 0 writes; every rank resumes from its files
            return
        ckpt.save_state(os.path.join(self.out, ckpt.STATE_FILE), self.tensors(), self.meta)
        self.world.save(self.out)

    def load(self):
        path = os.path.join(self.out, ckpt.STATE_FILE)
        tensors, meta = ckpt.load_state(path)
        saved, now = meta["config"], self.cfg.to_json()
        diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if diff:
            raise ckpt.ResumeError(f"{self.out}: cannot resume, the settings differ from the interrupted run's: "
                                   + "; ".join(f"{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in diff)
                                   + "; resume with the same settings, or start afresh with overwrite=True "
                                   "(command line: --overwrite)", path)
        self._check_state(path, tensors, meta)
        nominal = {k[len("nominal."):]: v.to(self.model.params[k[len("nominal."):]])
                   for k, v in tensors.items() if k.startswith("nominal.")}
        self.pp = PhysicalParameters(self.model, self.cfg.params, nominal=nominal, init=self.cfg.init)
        if tuple(tensors["theta"].shape) != (len(self.pp),):
            raise ckpt.resume_error(path, f"the state has {tensors['theta'].numel()} physical parameters, this run "
                                          f"{len(self.pp)} (another scene)")
        self.theta = tensors["theta"].clone()
        self.offsets = tensors["offsets"].to(device=self.model.device, dtype=self.model.dtype).clone()
        self.best = {}
        for k, v in tensors.items():
            if k.startswith("best."):
                _, stage, name = k.split(".", 2)
                self.best.setdefault(stage, {})[name] = v
        for stage in meta["stages"]:
            if stage in self.cfg.stages and stage not in self.best:
                raise ckpt.resume_error(path, f"the state has no best weights of stage {stage!r} (damaged)")
        self.meta = meta
        self.loaded = tensors
        return tensors

    def _check_state(self, path: str, tensors: dict, meta: dict) -> None:
        """ResumeError when the saved state does not belong to this model / run."""
        m = self.model
        fp = (meta.get("model") or {}).get("fingerprint") if isinstance(meta.get("model"), dict) else None
        now = model_fingerprint(m)
        if fp is not None and fp != now:
            diff = [k for k in now if now[k] != fp.get(k)]
            raise ckpt.resume_error(path, f"the training state was made for another model (differs in "
                                          f"{', '.join(diff)}: saved {[fp.get(k) for k in diff]}, now "
                                          f"{[now[k] for k in diff]}); resume with the interrupted run's scene")
        nominal = {k[len("nominal."):]: v for k, v in tensors.items() if k.startswith("nominal.")}
        missing, wrong, unknown = _param_mismatch(nominal, m.params)
        if missing or wrong or unknown:
            what = _mismatch_text(missing, wrong, unknown, "unknown")
            raise ckpt.resume_error(path, f"the training state was made for another scene, its physical parameters "
                                          f"do not fit {m.source!r} ({what}); resume with the interrupted run's "
                                          "scene")
        width = m.nu if self.cfg.trajectory_offsets == "ctrl" else m.nq
        for k, shape in (("theta", None), ("offsets", (self.train.n_traj, width))):
            if k not in tensors:
                raise ckpt.resume_error(path, f"the state lacks the tensor {k!r} (damaged)")
            if shape is not None and tuple(tensors[k].shape) != shape:
                raise ckpt.resume_error(path, f"tensor {k!r} has shape {list(tensors[k].shape)}, this run needs "
                                              f"{list(shape)}")
        res = self.world.residual
        for prefix in ("residual.", "best.residual."):
            part = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            if part and res is not None:
                want = res.state_dict()
                bad = [f"{k} (saved {list(v.shape)}, world {list(want[k].shape)})" if k in want else f"{k} (unknown)"
                       for k, v in part.items() if k not in want or tuple(v.shape) != tuple(want[k].shape)]
                bad += [f"{k} (not saved)" for k in want if k not in part]
                if bad:
                    raise ckpt.resume_error(path, f"the saved residual does not fit the world's residual "
                                                  f"({', '.join(bad[:6])}); build the world as in the interrupted "
                                                  "run")

    # -- the generic epoch loop --------------------------------------------------------------------
    def loop(self, stage: str, n_epochs: int, params: list, lr: float, weight_decay: float, n_train: int,
             train_step, validate, snapshot, restore) -> None:
        cfg = self.cfg
        st = self.meta["stages"].setdefault(stage, {"epoch": 0, "history": [], "stopped": False})
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        groups = [{**g, "base_lr": g.get("lr", lr)} for g in groups]
        self.opt = torch.optim.Adam(groups, lr=lr, weight_decay=weight_decay)
        if "best_val" not in st:                        # stage start: the untrained state is epoch -1
            st["best_val"] = float(validate())
            st["best_epoch"] = -1
            st["bad"] = 0
            snapshot()
            self.save()
        elif self.meta.get("optimizer") and st["epoch"] > 0:
            try:
                ckpt.optimizer_from_flat(self.opt, self.loaded, self.meta["optimizer"], "opt")
            except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
                raise ckpt.resume_error(os.path.join(self.out, ckpt.STATE_FILE),
                                        f"the saved optimiser state of stage {stage!r} does not fit "
                                        f"({type(e).__name__}: {e})") from None
        bar = _tqdm()(total=n_epochs, initial=st["epoch"], desc=f"calibrate: {stage}",
                      disable=not (self.progress and self.dist.is_main), leave=True, dynamic_ncols=True)
        try:
            while st["epoch"] < n_epochs and not st["stopped"]:
                if self.max_epochs is not None and self.epochs_run >= self.max_epochs:
                    return
                e = st["epoch"]
                for g in self.opt.param_groups:
                    g["lr"] = cosine_lr(g["base_lr"], 0.1, e / max(n_epochs, 1))
                gen = torch.Generator().manual_seed(_seed(cfg.seed, stage, e))
                perm = torch.randperm(n_train, generator=gen)
                losses = []
                for i in range(0, n_train, cfg.batch_size):
                    idx = perm[i:i + cfg.batch_size]
                    try:
                        losses.append(float(train_step(idx)))
                    except FloatingPointError:           # a diverging rollout: skip this minibatch
                        self.opt.zero_grad(set_to_none=True)
                        losses.append(float("nan"))
                v = float(validate())
                improved = v < st["best_val"]
                if improved:
                    st["best_val"], st["best_epoch"], st["bad"] = v, e, 0
                    snapshot()
                else:
                    st["bad"] += 1
                finite = [x for x in losses if math.isfinite(x)]
                tl = float(np.mean(finite)) if finite else float("nan")
                st["history"].append({"epoch": e, "train": tl, "val": v, "lr": self.opt.param_groups[0]["lr"]})
                st["epoch"] = e + 1
                if st["bad"] >= cfg.patience:
                    st["stopped"] = True
                self.epochs_run += 1
                self.save()
                bar.update(1)
                bar.set_postfix(train=f"{tl:.3g}", val=f"{v:.3g}", best=f"{st['best_val']:.3g}")
                if self.callback is not None:
                    self.callback({"stage": stage, "epoch": e, "train_loss": tl, "val_loss": v,
                                   "best_val": st["best_val"], "improved": improved, "rank": self.dist.rank,
                                   "world_size": self.dist.world_size})
        finally:
            bar.close()
        restore()
        self.meta["done"].append(stage)
        self.opt = None
        self.save()

    def uncertainty(self) -> dict:
        """Confidence intervals of the identified parameters on non-overlapping training segments
        of the identification horizon, with the per-run offsets applied (held fixed: their own
        uncertainty is not propagated); calibration.uncertainty."""
        from .uncertainty import parameter_uncertainty, segments_for_uncertainty

        cfg = self.cfg
        kind = cfg.trajectory_offsets
        offsets = self.offsets.detach().to("cpu", torch.float64)

        def predict(phys, s):
            q0, v0, u = s.qpos[:, 0], s.qvel[:, 0], s.ctrl
            o = offsets[torch.as_tensor(s.traj, dtype=torch.long)] if kind and offsets.shape[1] else None
            if o is not None and kind == "ctrl":
                u = u + o[:, None, :]
            elif o is not None:
                q0 = q0 + o
            tr = phys.rollout(q0, v0, u)
            Q = tr.qpos - o[:, None, :] if o is not None and kind == "qpos" else tr.qpos
            return Q, tr.qvel

        seg = segments_for_uncertainty(self.train, self.k_id)
        return parameter_uncertainty(self.pp, self.theta, seg, predict=predict, vel_weight=cfg.vel_weight).to_dict()

    def finished(self) -> bool:
        return all(s in self.meta["done"] for s in self.cfg.stages)

    # -- stages -----------------------------------------------------------------------------------
    def run_segments(self, rollout, seg: Segments, train: bool):
        """``rollout(q0, v0, ctrl) -> (Q, V)`` on segments. For training segments with
        ``trajectory_offsets``, each trajectory's nuisance offset is applied: added to ctrl, or
        (``"qpos"``) the true position is the logged one plus the offset (an encoder zero that differs
        from run to run), so the rollout starts at q0 + o and predicts the logged Q = q - o."""
        kind = self.cfg.trajectory_offsets if train else None
        if not kind:
            return rollout(seg.q0, seg.v0, seg.ctrl)
        o = self.offsets[torch.as_tensor(seg.traj, dtype=torch.long, device=seg.ctrl.device)]
        if kind == "ctrl":
            return rollout(seg.q0, seg.v0, seg.ctrl + o[:, None, :])
        Q, V = rollout(seg.q0 + o, seg.v0, seg.ctrl)
        return Q - o[:, None, :], V

    def identify(self):
        cfg, pp, phys = self.cfg, self.pp, self.phys
        self.theta = self.theta.clone().requires_grad_(True)
        use_off = bool(cfg.trajectory_offsets) and self.offsets.shape[1] > 0
        self.offsets = self.offsets.clone().requires_grad_(use_off)
        tr, va = self.seg["id_train"], self.seg["id_val"]

        def physics(q0, v0, ctrl):
            r = phys.rollout(q0, v0, ctrl)
            return r.qpos, r.qvel

        def physics_loss(seg, train):
            return seg_loss(*self.run_segments(physics, seg, train), seg, cfg.vel_weight)

        dist = self.dist
        ps = [self.theta] + ([self.offsets] if use_off else [])

        def train_step(idx):
            # this rank's piece of the minibatch, its loss the piece's share of the minibatch mean
            # (distributed module docstring); rank 0 adds the offsets' regularisation once
            mine = dist.shard(idx)
            pp.write(self.theta)
            self.theta.grad = None
            loss, bad = None, False
            if len(mine):
                pp.requires_grad(True)
                try:
                    loss = physics_loss(tr.take(mine), True)
                    if dist.active:
                        loss = loss * (len(mine) / len(idx))
                    if use_off and dist.is_main:
                        loss = loss + cfg.offset_reg * self.offsets.pow(2).mean()
                    if torch.isfinite(loss):
                        loss.backward()
                        pp.backward_to_theta(self.theta)
                    else:
                        bad = True
                except FloatingPointError:               # a diverging rollout: every rank skips the step
                    bad = True
                finally:
                    pp.requires_grad(False)
            total = grad_sync(dist, ps, loss, bad)
            if total is None:
                self.opt.zero_grad(set_to_none=True)
                return float("nan")
            if all(p.grad is None or torch.isfinite(p.grad).all() for p in ps):
                torch.nn.utils.clip_grad_norm_(ps, cfg.grad_clip)
                self.opt.step()
            self.opt.zero_grad(set_to_none=True)
            return total

        @torch.no_grad()
        def validate():
            pp.write(self.theta)
            rows = dist.shard_range(len(va))
            tot = 0.0
            try:
                for i in range(rows.start, rows.stop, 1024):
                    seg = va.take(np.arange(i, min(i + 1024, rows.stop)))
                    tot += float(physics_loss(seg, False)) * len(seg)
            except FloatingPointError:
                tot = float("inf")
            if not math.isfinite(tot):
                tot = float("inf")
            (tot,) = dist.sum_floats(tot)                # every rank: the same loss, the same decision
            return tot / len(va)

        def snapshot():
            self.best["identify"] = {"theta": self.theta.detach().clone(), "offsets": self.offsets.detach().clone()}

        def restore():
            with torch.no_grad():
                self.theta = self.best["identify"]["theta"].clone()
                self.offsets = self.best["identify"]["offsets"].to(self.offsets).clone()
            pp.write(self.theta)

        groups = [{"params": [self.theta]}] + ([{"params": [self.offsets], "lr": cfg.offset_lr}] if use_off else [])
        self.loop("identify", cfg.identify_epochs, groups, cfg.identify_lr, 0.0, len(tr), train_step,
                  validate, snapshot, restore)
        self.theta = self.theta.detach()
        self.offsets = self.offsets.detach()

    def _fit_residual_normalization(self, residual: Residual, n: int = 10):
        """Input statistics from the training rows; output scale from the error of the identified
        physics over ``n`` steps, as a mean acceleration (v_logged[n] - v_physics[n]) / (n dt); for a
        force residual, times the mass matrix (``Physics.mass_matrix``) at each row's state."""
        m, phys, logs = self.model, self.phys, self.train
        n = max(1, min(n, self.k))
        rows = np.concatenate([np.arange(*logs.bounds(i))[:-n] for i in range(logs.n_traj)])
        if len(rows) > 4000:
            rows = rows[np.linspace(0, len(rows) - 1, 4000).round().astype(np.int64)]
        T = lambda x: torch.as_tensor(x, dtype=m.dtype, device=m.device)  # noqa: E731
        q, v, u = T(logs.qpos[rows]), T(logs.qvel[rows]), T(logs.ctrl[rows])
        U = T(logs.ctrl[rows[:, None] + np.arange(n)[None, :]])
        with torch.no_grad():
            vn = phys.rollout(q, v, U).qvel[:, -1]
            err = (T(logs.qvel[rows + n]) - vn) / (n * m.timestep)
            if residual.mode == "force":
                err = (phys.mass_matrix(q) @ err.unsqueeze(-1)).squeeze(-1)  # M [N, nv, nv] (mj_fullM)
        residual.fit_normalization(q, v, u, err)

    def _train_net(self, stage: str, net: torch.nn.Module, world, n_epochs: int, lr: float):
        cfg = self.cfg
        tr, va = self.seg["train"], self.seg["val"]

        def run(seg, grad=True):
            return self.run_segments(lambda q, v, u: predict(world, q, v, u, cfg.tbptt if grad else None),
                                     seg, grad)

        dist = self.dist
        params = list(net.parameters())

        def train_step(idx):
            mine = dist.shard(idx)                      # as in identify: this rank's share of the minibatch
            self.opt.zero_grad(set_to_none=True)
            loss, bad = None, False
            if len(mine):
                try:
                    seg = tr.take(mine)
                    Q, V = run(seg)
                    loss = seg_loss(Q, V, seg, cfg.vel_weight)
                    if dist.active:
                        loss = loss * (len(mine) / len(idx))
                    if torch.isfinite(loss):
                        loss.backward()
                    else:
                        bad = True
                except FloatingPointError:
                    bad = True
            total = grad_sync(dist, params, loss, bad)
            if total is None:
                self.opt.zero_grad(set_to_none=True)
                return float("nan")
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            self.opt.step()
            return total

        @torch.no_grad()
        def validate():
            if not dist.active:
                try:
                    Q, V = _batched(lambda s: run(s, grad=False), va)
                except FloatingPointError:
                    return float("inf")
                loss = float(seg_loss(Q, V, va, cfg.vel_weight))
                return loss if math.isfinite(loss) else float("inf")
            rows = dist.shard_range(len(va))
            part = 0.0
            if len(rows):
                mine = va.take(np.arange(rows.start, rows.stop))
                try:
                    Q, V = _batched(lambda s: run(s, grad=False), mine)
                    part = float(seg_loss(Q, V, mine, cfg.vel_weight)) * len(rows)
                except FloatingPointError:
                    part = float("inf")
            (tot,) = dist.sum_floats(part if math.isfinite(part) else float("inf"))
            loss = tot / len(va)
            return loss if math.isfinite(loss) else float("inf")

        def snapshot():
            self.best[stage] = {k: v.detach().clone() for k, v in net.state_dict().items()}

        def restore():
            net.load_state_dict(self.best[stage])

        if stage in self.meta["stages"]:
            net.load_state_dict({k[len(stage) + 1:]: v for k, v in self.loaded.items()
                                 if k.startswith(stage + ".")})
        self.loop(stage, n_epochs, list(net.parameters()), lr, cfg.weight_decay, len(tr), train_step, validate,
                  snapshot, restore)

    def init_residual(self):
        cfg = self.cfg
        res = self.world.residual
        if cfg.reset_residual:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_seed(cfg.seed, "residual-init") % (2 ** 31))
                for mod in res.net:
                    if isinstance(mod, torch.nn.Linear):
                        mod.reset_parameters()
                torch.nn.init.zeros_(res.net[-1].weight)
                torch.nn.init.zeros_(res.net[-1].bias)
        self._fit_residual_normalization(res)

    def residual(self):
        if "residual" not in self.meta["stages"]:
            self.init_residual()
        self._train_net("residual", self.world.residual, self.world, self.cfg.residual_epochs, self.cfg.lr)

    @torch.no_grad()
    def guard_residual(self) -> dict:
        """The residual guard (CalibrationConfig.residual_guard): the validation runs' RMSE of the
        joint angles at the evaluation horizon, identified physics against the hybrid with the
        trained residual; where the hybrid is not better (by more than GUARD_MARGIN: an untrained,
        zero residual differs from the physics by rounding only) the residual's last layer is set to zero,
        so the hybrid is the identified physics. Every rank computes the same (the whole validation
        set, the same weights)."""
        cfg, m = self.cfg, self.model
        seg = make_segments(self.val, self.k_eval, _steps(cfg.eval_stride, m.timestep), m.device, m.dtype,
                            cfg.max_eval_segments)
        preds = self.predictors()

        def rmse(f):
            try:
                Q, _ = _batched(f, seg, 1024)
            except FloatingPointError:
                return float("inf")
            e = float((Q[:, 1:] - seg.qpos[:, 1:]).double().pow(2).mean().sqrt())
            return e if math.isfinite(e) else float("inf")

        ident, hyb = rmse(preds["identified"]), rmse(preds["hybrid"])
        keep = hyb < ident * (1.0 - GUARD_MARGIN)
        if not keep:
            last = self.world.residual.net[-1]
            torch.nn.init.zeros_(last.weight)
            torch.nn.init.zeros_(last.bias)
        self._physics_ready()
        return {"horizon": cfg.eval_horizon, "val_identified": ident, "val_hybrid": hyb, "kept": bool(keep)}

    def make_neural(self):
        cfg, m = self.cfg, self.model
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_seed(cfg.seed, "neural-init") % (2 ** 31))
            net = NeuralModel(m, hidden=cfg.neural_hidden)
        logs = self.train
        rows = np.concatenate([np.arange(*logs.bounds(i))[:-1] for i in range(logs.n_traj)])
        T = lambda x: torch.as_tensor(x, dtype=m.dtype, device=m.device)  # noqa: E731
        net.fit_normalization(T(logs.qpos[rows]), T(logs.qvel[rows]), T(logs.ctrl[rows]),
                              T(logs.qpos[rows + 1] - logs.qpos[rows]), T(logs.qvel[rows + 1] - logs.qvel[rows]))
        return net

    def neural_stage(self):
        self.neural = self.make_neural()
        self._train_net("neural", self.neural, self.neural, self.cfg.neural_epochs,
                        self.cfg.neural_lr or self.cfg.lr)

    # -- evaluation -------------------------------------------------------------------------------
    def predictors(self) -> dict:
        """{model name: f(Segments) -> (qpos [S, k+1, nq], qvel)} for every model trained so far."""
        pp, phys = self.pp, self.phys
        identified = "identify" in self.meta["done"]

        def physics_pred(use_theta):
            def f(seg):
                if use_theta:
                    pp.write(self.theta)
                else:
                    pp.write_nominal()
                r = phys.rollout(seg.q0, seg.v0, seg.ctrl)
                return r.qpos, r.qvel
            return f

        def hybrid(seg):
            self._physics_ready()
            return predict(self.world, seg.q0, seg.v0, seg.ctrl)

        out = {"nominal": physics_pred(False), "identified": physics_pred(identified)}
        if "residual" in self.meta["done"]:
            out["hybrid"] = hybrid
        if "neural" in self.meta["done"]:
            out["neural"] = lambda seg: step_rollout(self.neural.step, seg.q0, seg.v0, seg.ctrl)
        return out

    @torch.no_grad()
    def evaluate(self) -> tuple[dict, dict]:
        cfg, m = self.cfg, self.model
        es = _steps(cfg.eval_stride, m.timestep)
        predictors = self.predictors()
        metrics, curves = {}, {}
        splits = [("test", self.test), ("val", self.val), ("train", self.train)]
        for name, logs in splits:
            if logs is None or logs.n_traj == 0:
                continue
            try:
                segk = make_segments(logs, self.k_eval, es, m.device, m.dtype, cfg.max_eval_segments)
            except ValueError:
                continue
            seg1 = make_segments(logs, 1, 1, m.device, m.dtype, None if cfg.max_eval_segments is None
                                 else 20 * cfg.max_eval_segments)
            metrics[name], curves[name] = {}, {}
            for mname, f in predictors.items():
                try:
                    Q1, _ = _batched(f, seg1, 4096)
                    Qk, _ = _batched(f, segk, 1024)
                except FloatingPointError:                 # diverged: infinitely bad, not a crash
                    Q1 = torch.full_like(seg1.qpos, float("inf"))
                    Qk = torch.full_like(segk.qpos, float("inf"))
                e1 = (Q1[:, 1:] - seg1.qpos[:, 1:]).double()
                ek = (Qk[:, 1:] - segk.qpos[:, 1:]).double()
                ok = torch.isfinite(ek).all()
                metrics[name][mname] = {
                    "rmse_1": float(e1.pow(2).mean().sqrt()),
                    "rmse_k": float(ek.pow(2).mean().sqrt()) if ok else float("inf"),
                    "rmse_k_joint": [float(x) for x in ek.pow(2).mean((0, 1)).sqrt()],
                    "rmse_final": float(ek[:, -1].pow(2).mean().sqrt()),
                    "segments": len(segk), "horizon_steps": self.k_eval}
                curves[name][mname] = ek.pow(2).mean((0, 2)).sqrt().cpu().numpy()
        self._physics_ready()
        return metrics, curves

    def _physics_ready(self):
        if "identify" in self.meta["done"]:
            self.pp.write(self.theta)
        else:
            self.pp.write_nominal()


def calibrate(world: HybridModel, logs: Logs, *, val: Logs | None = None, test: Logs | None = None,
              out: str | None = None, resume: bool = False, overwrite: bool = False, epochs: int | None = None,
              seed: int = 0, split: dict | None = None, progress: bool = True, callback=None,
              max_epochs: int | None = None, plots: bool = True, num_threads: int | None = 1,
              distributed: bool | None = None, export: str | None = None, **settings) -> CalibrationReport:
    """Fit ``world``'s physical parameters and residual to ``logs``; returns a CalibrationReport.

    ``logs``: the training logs when ``val`` (and optionally ``test``) are given, else all logs, split
    by trajectory with ``logs.split(**split)`` (default 20 % validation, 20 % test, shuffled with
    ``seed``). ``world``: a HybridModel (its residual is created from ``residual_hidden`` /
    ``residual_mode`` when missing); it is modified in place and ends with the identified parameters
    and the best residual. ``epochs``: epochs of every stage (or ``identify_epochs``,
    ``residual_epochs``, ``neural_epochs``). ``out``: folder for the checkpoint (``HybridModel.load(out)``),
    the resumable state, ``neural_baseline.safetensors``, ``metrics.json``, ``report.md`` and the plots.
    ``resume``: continue the run saved in ``out`` (a damaged or foreign state raises
    ``ResumeError``; final outputs missing there are written). ``overwrite``: replace the outputs of
    an earlier run in ``out``; without it or ``resume`` a non-empty ``out`` raises
    ``OutputExistsError`` (a FileExistsError). ``callback(info)``: called after every epoch (an
    exception raised there interrupts the run; the epoch is already saved). ``max_epochs``: stop after
    this many epochs in this call (the report then has ``complete=False``). ``num_threads``: torch
    CPU threads during the run (restored afterwards; 1 is fastest for these small networks and keeps
    runs bit-reproducible; None leaves torch's setting). Further settings: the fields of
    :class:`CalibrationConfig`.

    Data-parallel (``hybridwam.calibration.distributed``): under ``torchrun --nproc_per_node=N``
    (WORLD_SIZE > 1), or in a process group the caller initialised, every rank calls ``calibrate``
    with the same world, logs and settings; each rolls out its share of every minibatch and of the
    validation segments, gradients and losses are summed over the ranks (gloo for CPU models, nccl
    for CUDA ones), and every rank ends with the same parameters and report, equal to one process's
    up to the order of floating-point sums. Only rank 0 writes ``out`` (a folder every rank can
    read); a restarted torchrun attempt resumes from it. ``distributed``: None (that), True (the
    same, but one process is an error) or False (one process, ignoring torchrun's environment).
    ``callback`` runs on every rank (``info["rank"]``).

    ``export``: a file path: the identified physics (the world's Physics parameters, without the
    residual) written into a copy of the model's MJCF when the run completes
    (calibration/export.export_mjcf, through mujoco.MjSpec; rank 0 writes), in ``report.export``.
    It raises before any training when a chosen parameter group has no MuJoCo counterpart
    (``coulomb``: identify ``frictionloss`` instead).
    """
    from .distributed import setup

    if export is not None:
        groups = settings.get("params", DEFAULT_GROUPS)
        if "coulomb" in groups:
            raise ValueError("calibrate(export=...): the parameter group 'coulomb' (hybridwam's smooth tanh friction) "
                             "has no MuJoCo counterpart; choose params without it, e.g. with 'frictionloss' "
                             "(MuJoCo's dry friction; load the model with limit_law='mujoco')")

    threads = torch.get_num_threads()
    if num_threads:
        torch.set_num_threads(num_threads)
    dist = setup(distributed, world.model.device)
    try:
        report = _calibrate(world, logs, val=val, test=test, out=out, resume=resume, overwrite=overwrite,
                            epochs=epochs, seed=seed, split=split, progress=progress, callback=callback,
                            max_epochs=max_epochs, plots=plots, dist=dist, **settings)
        if export is not None and report.complete:
            from .export import export_mjcf

            report.export = dist.on_main(export_mjcf, world.model, export) or export
        return report
    finally:
        dist.close()
        torch.set_num_threads(threads)


def _calibrate(world, logs, *, val, test, out, resume, overwrite, epochs, seed, split, progress, callback, max_epochs,
               plots, dist: Dist, **settings) -> CalibrationReport:
    t_start = time.time()
    model = world.model
    unknown = set(settings) - set(CalibrationConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"calibrate: unknown setting(s) {sorted(unknown)}; see CalibrationConfig")
    if epochs is not None:
        for k in ("identify_epochs", "residual_epochs", "neural_epochs"):
            settings.setdefault(k, epochs)
    # the settings that suit the logs' layout (logs.LAYOUTS, detected by load_logs), unless given
    from ..logs import LAYOUTS

    for k, v in LAYOUTS.get((getattr(logs, "info", None) or {}).get("layout"), {}).get("settings", {}).items():
        settings.setdefault(k, v)
    for k in ("stages", "params", "neural_hidden", "residual_hidden"):
        if k in settings:
            settings[k] = tuple(settings[k])
    resume, overwrite = elastic_resume(out, resume, overwrite)
    check_output_folder(out, resume, overwrite)
    cfg = CalibrationConfig(seed=seed, **settings)
    bad = [s for s in cfg.stages if s not in STAGES]
    if bad:
        raise ValueError(f"unknown stage(s) {bad}; stages are {STAGES}")
    cfg.stages = tuple(s for s in STAGES if s in cfg.stages)
    if val is None:
        train, val, test2 = logs.split(seed=seed, **(split or {}))
        test = test if test is not None else test2
    else:
        train = logs
    if cfg.trajectory_offsets not in (None, "qpos", "ctrl"):
        raise ValueError(f"trajectory_offsets must be None, 'qpos' or 'ctrl', got {cfg.trajectory_offsets!r}")
    if cfg.trajectory_offsets == "qpos" and model.nq != model.nv:
        raise ValueError("trajectory_offsets='qpos' needs hinge / slide joints only (nq == nv)")
    if model.na:
        raise ValueError(f"{model.source}: {model.na} actuator activation state(s) (dyntype filter, filterexact, "
                         "integrator): robot logs carry no activations to start each segment from, so calibrate "
                         "does not fit such models yet; Physics.rollout(..., act0=) simulates them")
    if val.n_traj == 0:
        raise ValueError("calibrate needs a validation split (early stopping): give val= or split={'val': ...}")
    train = _check_logs(train, model, "training")
    val = _check_logs(val, model, "validation")
    if test is not None and test.n_traj:
        test = _check_logs(test, model, "test")
    if world.residual is None and "residual" in cfg.stages:
        world.residual = Residual(model, hidden=cfg.residual_hidden, mode=cfg.residual_mode)
    run = _Run(world, train, val, test, cfg, out, progress, callback, max_epochs, dist)
    if dist.active:
        # every rank was given the same run (else the ranks would silently train different models)
        res = world.residual
        dist.check_same("logs, settings and world", {
            "config": cfg.to_json(), "train": train.names, "val": val.names,
            "test": test.names if test is not None else [], "segments": {k: len(v) for k, v in run.seg.items()},
            "logs": _digest(train.qpos, train.qvel, train.ctrl, val.qpos, val.qvel, val.ctrl),
            "model": model_fingerprint(model), "params": _digest(*model.params.values()),
            "residual": (_digest(*res.state_dict().values()) if res is not None and not cfg.reset_residual
                         else None)})
    # the output folder: checked by every rank before rank 0 writes anything (agree is a collective),
    # then prepared by rank 0 before any rank reads a saved state from it
    dist.agree(check_output_folder, out, resume, overwrite)
    if out:
        dist.on_main(_prepare_output_folder, out, resume, overwrite)
    have_state = bool(resume) and ckpt.exists(out)
    if dist.active:
        seen = dist.gather(have_state)
        if len(set(seen)) > 1:
            blind = [r for r, x in enumerate(seen) if x != seen[0]]
            raise RuntimeError(f"calibrate: {out}: rank 0 {'sees' if seen[0] else 'does not see'} a training state "
                               f"there but rank(s) {blind} {'do not' if seen[0] else 'do'}; the output folder must be "
                               "one folder that every process reads (one machine, or a shared file system)")
    if have_state:
        dist.agree(_resume_state, run, out, train, val)
    else:
        if resume and dist.is_main:
            warnings.warn(f"resume=True but {out!r} holds no training state: starting afresh", stacklevel=2)
        run.new_state()
        run.loaded = {}
        run.pp.write_nominal()
    run.neural = getattr(run, "neural", None)
    for stage in cfg.stages:
        if stage in run.meta["done"]:
            continue
        if max_epochs is not None and run.epochs_run >= max_epochs:
            break
        if stage == "identify":
            run.identify()
        elif stage == "residual":
            run._physics_ready()
            run.residual()
        else:
            run._physics_ready()
            run.neural_stage()
        if stage not in run.meta["done"]:
            break
    if cfg.residual_guard and "residual" in run.meta["done"] and "residual_guard" not in run.meta:
        run.meta["residual_guard"] = run.guard_residual()
        run.save()
    run._physics_ready()
    complete = run.finished()
    fresh = complete and run.meta.get("metrics") is None
    if fresh:
        def final_evaluation():     # rank 0 evaluates, every rank gets its numbers
            metrics, curves = run.evaluate()
            return metrics, curves, (run.uncertainty() if "identify" in run.meta["done"] else None)

        metrics, curves, unc = dist.on_main(final_evaluation)
        run.meta["metrics"] = metrics
        run.meta["curves"] = {s: {k: [float(x) for x in c] for k, c in d.items()} for s, d in curves.items()}
        run.meta["complete"] = True
        run.curves = curves
        if unc is not None:
            run.meta["uncertainty"] = unc
    else:
        metrics = run.meta.get("metrics") or {}
        saved_curves = run.meta.get("curves")
        run.curves = ({s: {k: np.asarray(c, dtype=np.float64) for k, c in d.items()} for s, d in saved_curves.items()}
                      if complete and isinstance(saved_curves, dict) else None)
        if complete and out and plots and run.curves is None and dist.is_main and _missing(out, PLOT_FILES):
            _, run.curves = run.evaluate()      # a state of an older version: the curves for the plots
    nominal_params = {e.label: (e.nominal if e.group != "inertia" else 1.0) for e in run.pp.entries}
    report = CalibrationReport(
        metrics=metrics, nominal_params=nominal_params,
        identified_params=run.pp.physical(run.theta) if "identify" in run.meta["done"] else {},
        history={s: run.meta["stages"].get(s, {}).get("history", []) for s in cfg.stages},
        splits=run.meta["splits"], config=cfg.to_json(), complete=complete, out=out,
        seconds=time.time() - t_start, curves=run.curves or {}, timestep=model.timestep,
        trajectory_offsets=({n: [float(x) for x in run.offsets[i]] for i, n in enumerate(run.meta["splits"]["train"])}
                            if cfg.trajectory_offsets and "identify" in run.meta["done"] else {}),
        uncertainty=run.meta.get("uncertainty") or {}, processes=dist.world_size,
        residual_guard=run.meta.get("residual_guard") or {})
    if out:
        report.plots = dist.on_main(_write_outputs, run, report, out, cfg, complete, fresh, plots) or []
    report.neural = run.neural
    return report


def _write_outputs(run: _Run, report: CalibrationReport, out: str, cfg: CalibrationConfig, complete: bool,
                   fresh: bool, plots: bool) -> list:
    """Rank 0's final writes: state, world, neural baseline, metrics, report and plots; returns the plots."""
    run.save()
    if run.neural is not None and "neural" in run.meta["done"]:
        _atomic_write(os.path.join(out, NEURAL_FILE), lambda p: save_file(
            {k: v.detach().contiguous().cpu() for k, v in run.neural.state_dict().items()}, p,
            metadata={"hidden": json.dumps(list(cfg.neural_hidden))}))
    if complete:
        _atomic_write_text(os.path.join(out, "metrics.json"), json.dumps(report.to_dict(), indent=2))
        _atomic_write_text(os.path.join(out, "report.md"), f"# hybridwam calibration\n\n{report.table()}\n")
        if plots and run.curves and (fresh or _missing(out, PLOT_FILES)):
            from .plots import save_plots

            try:
                return save_plots(run, report, out)
            except Exception as e:  # plots never sink a finished calibration
                warnings.warn(f"plotting failed: {e}", stacklevel=2)
        elif plots:
            return [os.path.join(out, f) for f in PLOT_FILES if os.path.isfile(os.path.join(out, f))]
    return []


def _digest(*tensors) -> str:
    """sha256 of the bytes of some arrays / tensors (to check that every rank was given the same)."""
    h = hashlib.sha256()
    for t in tensors:
        a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
        h.update(str((a.dtype, a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _resume_state(run: _Run, out: str, train: Logs, val: Logs) -> None:
    """Load the training state saved in ``out`` into ``run`` (and the world); ResumeError when it
    does not belong to this run."""
    world = run.world
    state_path = os.path.join(out, ckpt.STATE_FILE)
    try:
        tensors = run.load()
        if run.meta["splits"]["train"] != train.names or run.meta["splits"]["val"] != val.names:
            raise ckpt.ResumeError(f"{out}: cannot resume, the training/validation trajectories differ "
                                   f"(saved {run.meta['splits']['train']} / {run.meta['splits']['val']}, now "
                                   f"{train.names} / {val.names}); resume with the same logs and split, or "
                                   "start afresh with overwrite=True (command line: --overwrite)", state_path)
        run._physics_ready() if "identify" in run.meta["done"] else run.pp.write_nominal()
        if world.residual is not None and any(k.startswith("residual.") for k in tensors):
            world.residual.load_state_dict({k[9:]: v for k, v in tensors.items() if k.startswith("residual.")})
        if "neural" in run.meta["stages"]:
            run.neural = run.make_neural()
            run.neural.load_state_dict({k[7:]: v for k, v in tensors.items() if k.startswith("neural.")})
    except (KeyError, IndexError, TypeError, AttributeError, RuntimeError) as e:  # what the checks missed
        raise ckpt.resume_error(state_path, f"the training state does not fit this run ({type(e).__name__}: "
                                            f"{e})") from None


def _missing(out: str, names) -> list[str]:
    return [f for f in names if not os.path.isfile(os.path.join(out, f))]


def load_neural_baseline(path: str, model) -> NeuralModel:
    """The neural baseline saved by :func:`calibrate` in ``path`` (a folder or the file itself);
    CheckpointError (a ValueError) when the file is damaged or does not fit ``model``."""
    from safetensors import safe_open

    from ..hybrid import CheckpointError

    f = os.path.join(path, NEURAL_FILE) if os.path.isdir(path) else path
    weights = load_safetensors(f, "neural baseline")
    with safe_open(f, framework="pt") as h:
        raw = (h.metadata() or {}).get("hidden", "[128, 128]")
    try:
        hidden = json.loads(raw)
        if not (isinstance(hidden, list) and all(isinstance(x, int) and x > 0 for x in hidden)):
            raise ValueError(f"expected a list of layer widths, got {raw!r}")
        net = NeuralModel(model, hidden=hidden)
    except ValueError as e:
        raise CheckpointError(f"{f}: metadata 'hidden' is not usable ({e})", f, "hidden") from None
    try:
        net.load_state_dict(weights)
    except RuntimeError as e:
        first = " ".join(x.strip() for x in str(e).strip().splitlines()[:3])
        raise CheckpointError(f"{f}: the weights do not fit a neural baseline of this model ({first})", f) from None
    return net
