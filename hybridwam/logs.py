"""``hw.load_logs``: robot logs (CSV / NPZ / HDF5) -> ``hw.Logs`` (t, qpos, qvel, ctrl per trajectory).

One file is one trajectory; a ``Logs`` holds any number of them, concatenated along the rows with
``traj`` [N] naming the trajectory of each row. Real layouts load without editing the files through a
column mapping (``qpos=["pos_meas1", "pos_meas2"]``, ...).

Resampling (on by default) puts each trajectory on a uniform grid ``t0 + n * dt`` (``dt``: the
model's timestep when a model is given). Positions, velocities and extra columns are interpolated
linearly between the two neighbouring samples; joint angles must therefore be continuous (unwrapped;
``unwrap=True`` unwraps them first). Controls use a zero-order hold: the grid point at time t gets
the last command sent at or before t, which keeps the pairing x[k+1] = f(x[k], ctrl[k]).

Velocities can be derived from the positions (``qvel="derive"``, or ``derive_velocity=True`` to keep
the logged ones in ``extra["qvel_measured"]``): a local polynomial (Savitzky-Golay) fit of order
``velocity_order`` over a centred window of ``velocity_window`` seconds (shifted inwards at the ends),
differentiated at each sample. Quantised encoders give far better velocities this way than by
differencing, and it works on irregular timestamps too.

Checks (each a :class:`LogError` naming the file and the column or line): CSV rows with another number
of fields than the header, header-only files, NPZ / HDF5 files that are not what their suffix says,
columns of unequal length, and timestamps that are not plausibly seconds: a median sample interval
outside 1e-5..1 s, or more than 50x coarser / 100x finer than the resampling step (the model's
timestep), as logs in milliseconds or microseconds give.
"""
from __future__ import annotations

import csv
import glob as _glob
import math
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["DOUBLE_PENDULUM_COLUMNS", "LogError", "Logs", "data_root", "data_path", "load_logs", "derive_velocity"]

LOG_SUFFIXES = (".csv", ".tsv", ".txt", ".npz", ".h5", ".hdf5")
#: column mapping of the DFKI double pendulum logs (data_path("double_pendulum")): measured angles,
#: velocities derived from them (the logged ones are coarsely quantised), commanded torques
DOUBLE_PENDULUM_COLUMNS = {"qpos": ["pos_meas1", "pos_meas2"], "qvel": "derive", "ctrl": ["tau_con1", "tau_con2"]}
#: known log layouts: column mapping plus the calibration settings that suit them, which
#: ``hw.calibrate`` (and so ``hybridwam calibrate``) applies to logs of that layout unless told
#: otherwise (``Logs.info["layout"]``, set by :func:`load_logs`)
LAYOUTS = {
    "dfki_double_pendulum": {
        "columns": DOUBLE_PENDULUM_COLUMNS,
        # the runs differ by encoder zero offsets of up to 0.1 rad: absorb them per training run
        "settings": {"trajectory_offsets": "qpos"},
    },
}


def _layout_columns(p: dict) -> list[str]:
    cols = p["columns"]
    return [c for k in ("qpos", "qvel", "ctrl") for c in (cols[k] if isinstance(cols[k], list) else [])]


def detect_layout(files: list[str]) -> str | None:
    """The layout (LAYOUTS) of log files, from every file's column names (not only the first's):
    the layout whose columns most files have, counting files that have at least half of them (so a
    file that lacks one is then reported by load_logs with the column really missing); None when no
    file has even half of a layout's columns."""
    score: dict[str, tuple[int, int]] = {}
    for f in files:
        try:
            names = set(log_columns(f))
        except (LogError, OSError, ValueError):  # unreadable here: load_logs reports it properly
            continue
        for name, p in LAYOUTS.items():
            need = _layout_columns(p)
            have = sum(c in names for c in need)
            if need and 2 * have >= len(need):
                full, part = score.get(name, (0, 0))
                score[name] = (full + (have == len(need)), part + 1)
    if not score:
        return None
    return max(score, key=lambda n: score[n])


def layout_of(qpos, qvel, ctrl) -> str | None:
    """The layout (LAYOUTS) whose column mapping (qpos, qvel, ctrl) is, or None."""
    for name, p in LAYOUTS.items():
        if {"qpos": qpos, "qvel": qvel, "ctrl": ctrl} == p["columns"]:
            return name
    return None


#: plausible median sample interval of a log, in seconds (outside: the time column is in other units)
DT_RANGE = (1e-5, 1.0)
#: refuse resampling logs whose median interval is more than this many times the step (upsampling) ...
MAX_UPSAMPLE = 50.0
#: ... or less than the step divided by this (downsampling)
MAX_DOWNSAMPLE = 100.0


# ---- data location --------------------------------------------------------------------------------
def data_root() -> Path:
    """Root folder of the example data sets: ``$HYBRIDWAM_DATA`` if set, else ``../shared/data``
    beside the repository root of this (editable) checkout. The folder may not exist."""
    env = os.environ.get("HYBRIDWAM_DATA")
    if env:
        return Path(env).expanduser()
    import hybridwam

    return Path(hybridwam.__file__).resolve().parents[2] / "shared" / "data"


def data_path(*parts: str, must_exist: bool = True) -> Path:
    """``data_root() / parts``; raises FileNotFoundError with a hint when absent (``must_exist``)."""
    p = data_root().joinpath(*parts)
    if must_exist and not p.exists():
        raise FileNotFoundError(f"{p}: data not found (set HYBRIDWAM_DATA to the folder that holds "
                                f"{os.path.join(*parts) if parts else 'the data sets'})")
    return p


# ---- errors ---------------------------------------------------------------------------------------
class LogError(ValueError):
    """A log file that cannot be used: ``.file``, ``.column`` and ``.row`` (0-based data row) say where."""

    def __init__(self, msg: str, file: str | None = None, column: str | None = None, row: int | None = None):
        super().__init__(msg)
        self.file, self.column, self.row = file, column, row


class TrajectoryNotFoundError(LogError, KeyError, IndexError):
    """A trajectory named or indexed (``--val NAME``, ``Logs.select``) that the logs do not hold;
    a LogError (so the CLI reports it in one line) and still a KeyError / IndexError."""

    __str__ = ValueError.__str__  # KeyError's would quote the message


# ---- the container --------------------------------------------------------------------------------
@dataclass
class Logs:
    """Trajectories of a robot, concatenated along rows.

    t [N] seconds, qpos [N, nq], qvel [N, nv], ctrl [N, nu] (float64 numpy), traj [N] (int, index into
    ``names``). ``dt``: the uniform sample interval when resampled, else None. ``sources``: the file
    of each trajectory. ``extra``: further per-row columns (e.g. ``qvel_measured``). ``info``: how the
    data were processed (resampling, velocity estimate).
    """

    t: np.ndarray
    qpos: np.ndarray
    qvel: np.ndarray
    ctrl: np.ndarray
    traj: np.ndarray
    names: list[str]
    sources: list[str] = field(default_factory=list)
    dt: float | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    # sizes
    nq = property(lambda self: self.qpos.shape[1])
    nv = property(lambda self: self.qvel.shape[1])
    nu = property(lambda self: self.ctrl.shape[1])

    @property
    def n_traj(self) -> int:
        return len(self.names)

    def __len__(self) -> int:
        return len(self.t)

    def __repr__(self) -> str:
        dur = sum(self.duration(i) for i in range(self.n_traj))
        dt = f"dt={self.dt:g} s" if self.dt else "irregular"
        return (f"Logs({self.n_traj} trajectories, {len(self)} rows, {dur:.1f} s, {dt}, "
                f"nq={self.nq} nv={self.nv} nu={self.nu})")

    def bounds(self, i: int) -> tuple[int, int]:
        """Row range [start, stop) of trajectory i (rows of a trajectory are contiguous)."""
        rows = np.flatnonzero(self.traj == i)
        if not len(rows):
            raise IndexError(f"trajectory {i} has no rows")
        return int(rows[0]), int(rows[-1]) + 1

    def duration(self, i: int) -> float:
        a, b = self.bounds(i)
        return float(self.t[b - 1] - self.t[a])

    def _index(self, key) -> int:
        if isinstance(key, (int, np.integer)):
            if not 0 <= key < self.n_traj:
                raise TrajectoryNotFoundError(f"trajectory index {key} out of range (0..{self.n_traj - 1})")
            return int(key)
        hits = [i for i, n in enumerate(self.names) if n == key] or \
               [i for i, n in enumerate(self.names) if str(key) in n]
        if len(hits) != 1:
            raise TrajectoryNotFoundError(
                f"trajectory {key!r}: {'ambiguous' if hits else 'not found'} among {self.names}")
        return hits[0]

    def select(self, keys) -> Logs:
        """The trajectories named (or indexed) by ``keys``, renumbered 0..len(keys)-1 in that order."""
        idx = [self._index(k) for k in keys]
        parts = []
        for new, i in enumerate(idx):
            a, b = self.bounds(i)
            parts.append((new, slice(a, b)))
        def cat(x):
            return np.concatenate([x[s] for _, s in parts]) if parts else x[:0]

        traj = np.concatenate([np.full(s.stop - s.start, n) for n, s in parts]) if parts else self.traj[:0]
        return Logs(cat(self.t), cat(self.qpos), cat(self.qvel), cat(self.ctrl), traj.astype(np.int64),
                    [self.names[i] for i in idx], [self.sources[i] for i in idx] if self.sources else [],
                    self.dt, {k: cat(v) for k, v in self.extra.items()}, dict(self.info))

    def trajectory(self, key) -> Logs:
        return self.select([key])

    def split(self, val=0.2, test=0.2, seed: int = 0, shuffle: bool = True, train=None) -> tuple[Logs, Logs, Logs]:
        """(train, val, test) split by whole trajectories.

        ``val`` / ``test``: a fraction (< 1) or a count of trajectories, or an explicit list of
        names / indices. Fractions round to at least one trajectory when nonzero and leave at least
        one for training. Trajectories are shuffled with ``seed`` (``shuffle=False`` keeps order:
        training first, then validation, then test). ``train``: explicit list, default the rest.
        """
        n = self.n_traj
        order = list(range(n))
        if shuffle:
            order = [int(i) for i in np.random.default_rng(seed).permutation(n)]

        def count(x):
            if isinstance(x, float) and x < 1:
                return 0 if x <= 0 else max(1, int(round(x * n)))
            return int(x)

        explicit = {}
        for name, x in (("val", val), ("test", test), ("train", train)):
            if x is not None and not isinstance(x, (int, float)):
                explicit[name] = [self._index(k) for k in x]
        used = {i for v in explicit.values() for i in v}
        pool = [i for i in order if i not in used]
        sets = {k: v for k, v in explicit.items()}
        for name, x in (("test", test), ("val", val)):
            if name in sets:
                continue
            c = count(x or 0)
            if c > len(pool) - (0 if "train" in sets else 1):
                raise ValueError(f"split: {name}={x!r} leaves no trajectory for training ({n} trajectories; "
                                 f"cut long logs into pieces with logs.chunk(seconds))")
            sets[name], pool = (pool[-c:], pool[:-c]) if c else ([], pool)
        if "train" not in sets:
            sets["train"] = pool
        all_ids = sets["train"] + sets["val"] + sets["test"]
        if len(set(all_ids)) != len(all_ids):
            raise ValueError("split: a trajectory is in more than one of train/val/test")
        if not sets["train"]:
            raise ValueError("split: no trajectory left for training")
        srt = (lambda v: v) if shuffle else sorted
        return self.select(srt(sets["train"])), self.select(srt(sets["val"])), self.select(srt(sets["test"]))

    def chunk(self, seconds: float) -> Logs:
        """Cut every trajectory into pieces of ``seconds`` (the last piece may be shorter; pieces
        shorter than half of ``seconds`` are merged into the previous one), named ``name#k``."""
        keys, names, sources = np.zeros(len(self), dtype=np.int64), [], []
        for i in range(self.n_traj):
            a, b = self.bounds(i)
            tt = self.t[a:b] - self.t[a]
            piece = np.floor(tt / seconds).astype(np.int64)
            last = int(piece[-1])
            if last > 0 and tt[-1] - last * seconds < seconds / 2:
                piece[piece == last] = last - 1
            for k in np.unique(piece):
                keys[a:b][piece == k] = len(names)
                names.append(f"{self.names[i]}#{k}")
                sources.append(self.sources[i] if self.sources else "")
        return Logs(self.t.copy(), self.qpos.copy(), self.qvel.copy(), self.ctrl.copy(), keys, names, sources,
                    self.dt, {k: v.copy() for k, v in self.extra.items()}, dict(self.info))

    def resample(self, dt: float) -> Logs:
        """Every trajectory on the grid t0 + n dt (linear interpolation; zero-order hold for ctrl).
        Raises ValueError for a dt that is not a positive number of seconds, LogError for a
        trajectory sampled more than MAX_UPSAMPLE times coarser than dt."""
        dt = _check_dt(dt, "resample: dt")
        parts = []
        for i in range(self.n_traj):
            a, b = self.bounds(i)
            if b - a > 1:
                med = float(np.median(np.diff(self.t[a:b])))
                if med > MAX_UPSAMPLE * dt:
                    src = (self.sources[i] if self.sources else "") or self.names[i]
                    raise LogError(f"{src}: resample: the median sample interval {med:.6g} s is {med / dt:.0f}x the "
                                   f"requested dt={dt:g} s (more than {MAX_UPSAMPLE:g}x; are the timestamps in "
                                   "seconds?)", src, "time")
            tg, cols = _resample(self.t[a:b], dt, {"qpos": self.qpos[a:b], "qvel": self.qvel[a:b],
                                                   **{k: v[a:b] for k, v in self.extra.items()}},
                                 {"ctrl": self.ctrl[a:b]})
            parts.append((tg, cols))
        out = _concat([(tg, c["qpos"], c["qvel"], c["ctrl"], {k: c[k] for k in self.extra}) for tg, c in parts],
                      self.names, self.sources, dt)
        out.info = {**self.info, "resample": f"linear (ctrl: zero-order hold) onto dt={dt:g}"}
        return out

    def concat(self, other: Logs) -> Logs:
        """Both sets of trajectories in one Logs."""
        if (self.nq, self.nv, self.nu) != (other.nq, other.nv, other.nu):
            raise ValueError("concat: the logs have different nq/nv/nu")
        dt = self.dt if self.dt == other.dt else None
        ex = {k: np.concatenate([self.extra[k], other.extra[k]]) for k in self.extra if k in other.extra}
        return Logs(np.concatenate([self.t, other.t]), np.concatenate([self.qpos, other.qpos]),
                    np.concatenate([self.qvel, other.qvel]), np.concatenate([self.ctrl, other.ctrl]),
                    np.concatenate([self.traj, other.traj + self.n_traj]), self.names + other.names,
                    (self.sources or [""] * self.n_traj) + (other.sources or [""] * other.n_traj), dt, ex,
                    dict(self.info))

    def check_model(self, model) -> None:
        """Raise LogError when the joint / actuator counts differ from ``model``'s."""
        for what, key, n, want in (("qpos", "nq", self.nq, model.nq), ("qvel", "nv", self.nv, model.nv),
                                   ("ctrl", "nu", self.nu, model.nu)):
            if n != want:
                src = self.sources[0] if self.sources else "<logs>"
                raise LogError(f"{src}: {what} has {n} columns but the model {getattr(model, 'source', '')!r} "
                               f"has {key}={want} (wrong joint count)", src, what)

    def save(self, folder: str, fmt: str = "csv") -> list[str]:
        """One file per trajectory in ``folder`` (``name.csv`` with columns time, qpos0.., qvel0..,
        ctrl0..; or ``name.npz`` with arrays time, qpos, qvel, ctrl), readable by ``load_logs(folder)``
        with the default column names. Returns the paths."""
        if fmt not in ("csv", "npz"):
            raise ValueError(f"fmt must be 'csv' or 'npz', got {fmt!r}")
        p = Path(folder)
        p.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(self.n_traj):
            a, b = self.bounds(i)
            f = p / f"{re.sub(r'[^A-Za-z0-9_.#-]', '_', self.names[i])}.{fmt}"
            if fmt == "npz":
                np.savez(f, time=self.t[a:b], qpos=self.qpos[a:b], qvel=self.qvel[a:b], ctrl=self.ctrl[a:b])
            else:
                cols = ["time"] + [f"qpos{j}" for j in range(self.nq)] + [f"qvel{j}" for j in range(self.nv)] + \
                       [f"ctrl{j}" for j in range(self.nu)]
                arr = np.column_stack([self.t[a:b], self.qpos[a:b], self.qvel[a:b], self.ctrl[a:b]])
                np.savetxt(f, arr, delimiter=",", header=",".join(cols), comments="", fmt="%.17g")
            paths.append(str(f))
        return paths

    def to_torch(self, device="cpu", dtype=None):
        """(t, qpos, qvel, ctrl) as torch tensors."""
        import torch

        dtype = dtype or torch.float32
        return tuple(torch.as_tensor(x, dtype=dtype, device=device) for x in (self.t, self.qpos, self.qvel, self.ctrl))


def _concat(parts, names, sources, dt) -> Logs:
    t = np.concatenate([p[0] for p in parts])
    traj = np.concatenate([np.full(len(p[0]), i, dtype=np.int64) for i, p in enumerate(parts)])
    extra = {k: np.concatenate([p[4][k] for p in parts]) for k in (parts[0][4] if parts else {})}
    return Logs(t, np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts]),
                np.concatenate([p[3] for p in parts]), traj, list(names), list(sources), dt, extra)


# ---- numerics ---------------------------------------------------------------------------------------
def _check_dt(dt, what: str = "dt") -> float:
    """``dt`` as a float when it is a plausible positive step in seconds, else ValueError."""
    try:
        x = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a positive number of seconds, got {dt!r}") from None
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{what} must be a positive number of seconds, got {dt!r}")
    if not DT_RANGE[0] <= x <= DT_RANGE[1]:
        lo, hi = DT_RANGE
        raise ValueError(f"{what}={x:g} s is implausible for a sample interval (expected {lo:g}..{hi:g} s; the "
                         "step is in seconds)")
    return x


def _unit_hint(interval: float, target: float | None = None) -> str:
    """' (milliseconds? ...)' when ``interval`` read in ms / us / ns gives a plausible interval."""
    for unit, f, fs in (("milliseconds", 1e3, "1000"), ("microseconds", 1e6, "1e6"), ("nanoseconds", 1e9, "1e9")):
        x = interval / f
        near = target is None or target / MAX_DOWNSAMPLE <= x <= target * MAX_UPSAMPLE
        if DT_RANGE[0] <= x <= DT_RANGE[1] and near:
            return f"; in {unit}? then divide the column by {fs}"
    return ""


def _check_time(path: str, col: str, T: np.ndarray, step: float | None, step_name: str) -> None:
    """LogError when the timestamps T [N] (increasing) are not plausibly seconds, or far from ``step``."""
    med = float(np.median(np.diff(T)))
    lo, hi = DT_RANGE
    if not lo <= med <= hi:
        raise LogError(f"{path}: column {col!r} (time) has a median sample interval of {med:.6g}, implausible for "
                       f"seconds (expected {lo:g}..{hi:g} s){_unit_hint(med, step)}", path, col)
    if step is None:
        return
    r = med / step
    if r > MAX_UPSAMPLE:
        raise LogError(f"{path}: column {col!r} (time) has a median sample interval of {med:.6g} s, {r:.0f}x the "
                       f"{step_name} {step:g} s: resampling would interpolate {r:.0f} rows per logged row"
                       f"{_unit_hint(med, step) or '; are the timestamps in seconds?'}", path, col)
    if r < 1 / MAX_DOWNSAMPLE:
        raise LogError(f"{path}: column {col!r} (time) has a median sample interval of {med:.3g} s, {1 / r:.0f}x "
                       f"finer than the {step_name} {step:g} s: resampling would keep one logged row in "
                       f"{1 / r:.0f}; are the timestamps in seconds?", path, col)


def _resample(t: np.ndarray, dt: float, linear: dict, hold: dict):
    n = int(np.floor((t[-1] - t[0]) / dt + 1e-6)) + 1
    tg = t[0] + dt * np.arange(n)
    out = {}
    for k, x in linear.items():
        x2 = x.reshape(len(t), -1)
        out[k] = np.stack([np.interp(tg, t, x2[:, j]) for j in range(x2.shape[1])], 1).reshape((n,) + x.shape[1:]) \
            if x2.shape[1] else np.zeros((n,) + x.shape[1:])
    idx = np.clip(np.searchsorted(t, tg + 1e-9 * dt, side="right") - 1, 0, len(t) - 1)
    for k, x in hold.items():
        out[k] = x[idx]
    return tg, out


def derive_velocity(t: np.ndarray, x: np.ndarray, window: float = 0.02, order: int = 2) -> np.ndarray:
    """Savitzky-Golay velocity of x [N, d] sampled at (possibly irregular) times t [N].

    Each sample gets the derivative, at its own time, of the least-squares polynomial of degree
    ``order`` through the samples of a window of ``window`` seconds centred on it (shifted inwards at
    the ends, so the ends are extrapolated one-sidedly).
    """
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    squeeze = x.ndim == 1
    x = x.reshape(len(t), -1)
    N = len(t)
    if N < 2:
        return np.zeros_like(x[:, 0] if squeeze else x)
    h_dt = float(np.median(np.diff(t)))
    half = max(1, int(round(window / 2 / h_dt)))
    W = min(2 * half + 1, N)
    order = min(order, W - 1)
    lo = np.clip(np.arange(N) - half, 0, N - W)
    idx = lo[:, None] + np.arange(W)[None, :]                          # [N, W]
    scale = max(half * h_dt, 1e-12)
    s = (t[idx] - t[:, None]) / scale                                   # [N, W]
    A = s[..., None] ** np.arange(order + 1)                            # [N, W, p+1]
    AtA = np.einsum("nwi,nwj->nij", A, A)
    Atx = np.einsum("nwi,nwd->nid", A, x[idx])                          # [N, p+1, d]
    c = np.linalg.solve(AtA, Atx)
    v = c[:, 1, :] / scale
    return v[:, 0] if squeeze else v


# ---- readers ----------------------------------------------------------------------------------------
class _Table:
    """Named columns of one file: ``get(name)`` -> float64 array [N] or [N, k]."""

    def __init__(self, path: str, group: str | None = None, delimiter: str | None = None,
                 drop_ragged: bool = False):
        self.path = path
        self.csv = False
        self.lines = None
        suffix = Path(path).suffix.lower()
        if suffix in (".npz",):
            self.cols = _read_npz(path)
        elif suffix in (".h5", ".hdf5"):
            self.cols = _read_h5(path, group)
        else:
            self.csv = True
            self.cols, self.lines = _read_csv(path, delimiter, drop_ragged)

    def names(self) -> list[str]:
        return list(self.cols)

    def resolve(self, spec, role: str, n_expected: int | None = None) -> tuple[np.ndarray, list[str]]:
        """Array [N, k] and the column names for ``spec`` (name, list of names, or 'name[i]')."""
        if isinstance(spec, (list, tuple)):
            arrs, names = [], []
            for i, s in enumerate(spec):
                a, nm = self._one(s, f"{role}[{i}]")
                if a.ndim != 1:
                    raise LogError(f"{self.path}: column {s!r} ({role}[{i}]) is {a.ndim}-D; name one column "
                                   f"(e.g. '{s}[0]')", self.path, str(s))
                arrs.append(a)
                names.append(nm)
            if not arrs:
                return np.zeros((self.nrows(), 0)), []
            lens = [len(a) for a in arrs]
            if len(set(lens)) > 1:
                raise LogError(f"{self.path}: the {role} columns have different lengths: "
                               + ", ".join(f"{n!r} {k}" for n, k in zip(names, lens, strict=True)), self.path,
                               names[lens.index(min(lens))])
            return np.stack(arrs, 1), names
        if spec in self.cols or re.match(r"^(.*)\[(\d+)\]$", str(spec)):
            a, nm = self._one(spec, role)
            a = a.reshape(len(a), -1)
            return a, [nm] if a.shape[1] == 1 else [f"{nm}[{j}]" for j in range(a.shape[1])]
        # prefix expansion: 'qpos' -> qpos0, qpos1, ... (or qpos_0, qpos[0])
        for pat in (r"^{}(\d+)$", r"^{}_(\d+)$", r"^{}\[(\d+)\]$"):
            rx = re.compile(pat.format(re.escape(str(spec))))
            hits = sorted((int(m.group(1)), k) for k in self.cols if (m := rx.match(k)))
            if hits:
                return self.resolve([k for _, k in hits], role)
        raise self._missing(spec, role)

    def nrows(self) -> int:
        return len(next(iter(self.cols.values()))) if self.cols else 0

    def _missing(self, spec, role):
        avail = ", ".join(self.names()[:40]) + (" ..." if len(self.cols) > 40 else "")
        return LogError(f"{self.path}: column {spec!r} ({role}) not found; available: {avail}", self.path, str(spec))

    def _one(self, s, role) -> tuple[np.ndarray, str]:
        if s in self.cols:
            return self._num(self.cols[s], s, role), str(s)
        m = re.match(r"^(.*)\[(\d+)\]$", str(s))
        if m and m.group(1) in self.cols:
            a = self._num(self.cols[m.group(1)], m.group(1), role)
            j = int(m.group(2))
            if a.ndim == 2 and j < a.shape[1]:
                return a[:, j], str(s)
        raise self._missing(s, role)

    def _num(self, a, name, role) -> np.ndarray:
        try:
            a = np.asarray(a, dtype=np.float64)
        except (TypeError, ValueError):
            raise LogError(f"{self.path}: column {name!r} ({role}) is not numeric (dtype {np.asarray(a).dtype})",
                           self.path, str(name)) from None
        if a.ndim == 0 or a.ndim > 2:
            raise LogError(f"{self.path}: column {name!r} ({role}) has shape {list(a.shape)}; a column is 1-D [N] "
                           "or 2-D [N, k]", self.path, str(name))
        return a

    def where(self, row: int) -> str:
        return f"row {row} (line {int(self.lines[row])})" if self.lines is not None else f"row {row}"


def _read_text(path: str) -> str:
    with open(path, "rb") as f:
        raw = f.read()
    if b"\x00" in raw[:8192]:
        raise LogError(f"{path}: not a text file (binary data; a CSV log is text with one row per line)", path)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _csv_header(first: str, delimiter: str | None) -> tuple[list[str], str | None]:
    if delimiter is None:
        delimiter = next((d for d in (",", ";", "\t") if d in first), None)
    header = [h.strip() for h in (next(csv.reader([first], delimiter=delimiter)) if delimiter else first.split())]
    return header, delimiter


def _read_csv(path: str, delimiter: str | None, drop_ragged: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({column: values [N]}, file line number (1-based) of each row). Blank lines and lines starting
    with '#' are skipped; a row with another number of fields than the header is a LogError naming
    its line (``drop_ragged``: dropped with a warning instead)."""
    lines = _read_text(path).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    head = next((i for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")), None)
    if head is None:
        raise LogError(f"{path}: empty file (no header line)", path)
    header, delimiter = _csv_header(lines[head], delimiter)
    keep = [i for i in range(head + 1, len(lines)) if lines[i].strip() and not lines[i].lstrip().startswith("#")]
    if not keep:
        raise LogError(f"{path}: no data rows below the header ({len(header)} column(s): "
                       f"{', '.join(header[:8])}{' ...' if len(header) > 8 else ''})", path)
    text = [lines[i] for i in keep]
    rows = list(csv.reader(text, delimiter=delimiter)) if delimiter else [ln.split() for ln in text]
    line_no = np.asarray(keep, dtype=np.int64) + 1
    n = len(header)
    ragged = [k for k, r in enumerate(rows) if len(r) != n]
    if ragged:
        k = ragged[0]
        msg = (f"{path}: line {int(line_no[k])} has {len(rows[k])} field(s) but the header has {n}"
               + (f"; {len(ragged) - 1} more such line(s)" if len(ragged) > 1 else "")
               + " (a truncated or ragged row)")
        if not drop_ragged:
            raise LogError(msg, path, row=k)
        warnings.warn(msg + "; those lines dropped", stacklevel=4)
        good = np.ones(len(rows), dtype=bool)
        good[ragged] = False
        rows = [r for r, g in zip(rows, good, strict=True) if g]
        line_no = line_no[good]
        if not rows:
            raise LogError(f"{path}: no data row has the header's {n} fields", path)
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError:  # empty or non-numeric cells: NaN, reported per row by the caller
        data = np.array([[_float(x) for x in r] for r in rows], dtype=np.float64)
    data = data.reshape(len(rows), n)
    return {h: data[:, j] for j, h in enumerate(header)}, line_no


def _float(x: str) -> float:
    try:
        return float(x)
    except ValueError:
        return float("nan")


def _check_npz(path: str) -> None:
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x93NUMPY"):
        raise LogError(f"{path}: a single .npy array, not an .npz archive of named columns (write one with "
                       "numpy.savez(path, time=..., qpos=..., ...))", path)
    if not magic.startswith(b"PK"):
        raise LogError(f"{path}: not an NPZ archive (no zip signature; a text or other file named .npz?); an NPZ "
                       "log is written by numpy.savez(path, time=..., qpos=..., ...)", path)


def _read_npz(path: str, names_only: bool = False) -> dict[str, np.ndarray | None]:
    _check_npz(path)
    cols: dict[str, np.ndarray | None] = {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if names_only:
                return dict.fromkeys(z.files)
            for k in z.files:
                try:
                    cols[k] = z[k]
                except ValueError:
                    raise LogError(f"{path}: array {k!r} holds Python objects (pickled), not numbers; store numeric "
                                   "arrays only", path, k) from None
    except LogError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise LogError(f"{path}: unreadable NPZ archive ({e}); truncated or damaged?", path) from None
    return cols


def _read_h5(path: str, group: str | None, names_only: bool = False) -> dict[str, np.ndarray | None]:
    import h5py

    out: dict[str, np.ndarray | None] = {}
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise LogError(f"{path}: not a readable HDF5 file ({e})", path) from None
    with f:
        if group and group not in f:
            raise LogError(f"{path}: no group {group!r} in this HDF5 file; top level: {', '.join(list(f)[:20])}", path,
                           group)
        root = f[group] if group else f

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "fiu" and obj.ndim in (1, 2):
                out[name] = None if names_only else np.asarray(obj[()], dtype=np.float64)

        root.visititems(visit)
    return out


def log_columns(path: str, group: str | None = None, delimiter: str | None = None) -> list[str]:
    """Column names of a log file without reading its data (CSV header, NPZ array names, HDF5
    dataset paths); LogError when the file is not a readable log."""
    suffix = Path(path).suffix.lower()
    if suffix == ".npz":
        return list(_read_npz(path, names_only=True))
    if suffix in (".h5", ".hdf5"):
        return list(_read_h5(path, group, names_only=True))
    with open(path, "rb") as f:
        first = f.read(65536)
    text = first.decode("utf-8-sig", errors="replace")
    for ln in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if ln.strip() and not ln.lstrip().startswith("#"):
            return _csv_header(ln, delimiter)[0]
    raise LogError(f"{path}: empty file (no header line)", path)


def _expand_paths(path) -> list[str]:
    items = path if isinstance(path, (list, tuple)) else [path]
    files: list[str] = []
    for it in items:
        s = os.fspath(it)
        if os.path.isdir(s):
            found = sorted(p for p in _glob.glob(os.path.join(s, "*")) if p.lower().endswith(LOG_SUFFIXES))
            if not found:
                raise FileNotFoundError(f"{s}: no log files ({', '.join(LOG_SUFFIXES)}) in this folder")
            files += found
        elif any(c in s for c in "*?["):
            found = sorted(_glob.glob(s))
            if not found:
                raise FileNotFoundError(f"{s}: no file matches this pattern")
            files += found
        elif os.path.isfile(s):
            files.append(s)
        else:
            raise FileNotFoundError(f"{s}: no such file")
    return files


def _load_one(path, qpos, qvel, ctrl, time, dt, resample, derive, window, order, unwrap, model, drop_rows,
              group, delimiter):
    tab = _Table(path, group, delimiter, drop_ragged=drop_rows)
    Q, qn = tab.resolve(qpos, "qpos")
    V, vn = (None, []) if qvel is None else tab.resolve(qvel, "qvel")
    U, un = tab.resolve(ctrl, "ctrl") if ctrl is not None else (np.zeros((len(Q), 0)), [])
    if time is not None:
        T, tn = tab.resolve(time, "time")
        if T.shape[1] != 1:
            raise LogError(f"{path}: time column {time!r} must be a single column", path, str(time))
        T = T[:, 0]
    else:
        if not dt:
            raise LogError(f"{path}: time=None needs dt= (rows are then spaced dt apart)", path)
        T, tn = dt * np.arange(len(Q)), ["<row * dt>"]
    if model is not None:
        for what, arr, names, want, key in (("qpos", Q, qn, model.nq, "nq"), ("ctrl", U, un, model.nu, "nu")) + \
                ((("qvel", V, vn, model.nv, "nv"),) if V is not None and not derive else ()):
            if arr.shape[1] != want:
                raise LogError(f"{path}: {what} maps to {arr.shape[1]} column(s) {names} but the model "
                               f"{model.source!r} has {key}={want} (wrong joint count)", path, what)
        if derive and model.nq != model.nv:
            raise LogError(f"{path}: derived velocities need nq == nv (hinge / slide joints only)", path, "qvel")
    if derive and V is None and Q.shape[1] == 0:
        raise LogError(f"{path}: no qpos columns", path, "qpos")
    n = len(T)
    for what, arr in (("qpos", Q), ("qvel", V), ("ctrl", U)):
        if arr is not None and len(arr) != n:
            raise LogError(f"{path}: {what} has {len(arr)} rows but time has {n}", path, what)
    keep = np.ones(n, dtype=bool)
    blocks = [(role, arr, names) for role, arr, names in
              (("time", T[:, None], tn), ("qpos", Q, qn), ("qvel", V, vn), ("ctrl", U, un)) if arr is not None]
    bad = np.zeros(n, dtype=bool)
    for _, arr, _ in blocks:
        bad |= ~np.isfinite(arr).all(1)
    if bad.any():
        rows = np.flatnonzero(bad)
        r0 = int(rows[0])
        role, arr, names = next(b for b in blocks if not np.isfinite(b[1][r0]).all())
        col = names[int(np.flatnonzero(~np.isfinite(arr[r0]))[0])] if names else role
        msg = (f"{path}: column {col!r} ({role}) is NaN/inf/non-numeric at {tab.where(r0)}"
               + (f"; {len(rows) - 1} more bad row(s)" if len(rows) > 1 else ""))
        if not drop_rows:
            raise LogError(msg, path, col, r0)
        warnings.warn(msg + "; those rows dropped", stacklevel=3)
        keep = ~bad
    if not keep.all():
        T, Q, U = T[keep], Q[keep], U[keep]
        V = None if V is None else V[keep]
        rowmap = np.flatnonzero(keep)
    else:
        rowmap = np.arange(n)
    dT = np.diff(T)
    if (dT <= 0).any():
        k = int(np.flatnonzero(dT <= 0)[0]) + 1
        msg = (f"{path}: column {tn[0]!r} (time) is not strictly increasing at {tab.where(int(rowmap[k]))} "
               f"(t={T[k - 1]:.9g} then {T[k]:.9g})")
        if not drop_rows:
            raise LogError(msg, path, tn[0], int(rowmap[k]))
        warnings.warn(msg + "; rows that do not advance time dropped", stacklevel=3)
        keep = np.concatenate([[True], T[1:] > np.maximum.accumulate(T)[:-1]])
        T, Q, U = T[keep], Q[keep], U[keep]
        V = None if V is None else V[keep]
    if len(T) < 2:
        raise LogError(f"{path}: fewer than 2 usable rows", path)
    if time is not None:
        target = dt or (model.timestep if model is not None else None)
        _check_time(path, tn[0], T, target if resample else None, "resampling dt" if dt else "model timestep")
    if unwrap:
        cols = range(Q.shape[1]) if unwrap is True else [qn.index(c) for c in unwrap]
        Q = Q.copy()
        for j in cols:
            Q[:, j] = np.unwrap(Q[:, j])
    extra = {}
    if derive and V is not None:
        extra["qvel_measured"] = V
    if resample:
        step = dt or (model.timestep if model is not None else float(np.median(np.diff(T))))
        gap = float(np.max(np.diff(T)))
        if gap > 50 * step:
            warnings.warn(f"{path}: a gap of {gap:.3g} s in {tn[0]!r} is bridged by interpolation", stacklevel=3)
        lin = {"qpos": Q, **({"qvel": V} if V is not None and not derive else {}), **extra}
        T, cols = _resample(T, step, lin, {"ctrl": U})
        Q, U = cols["qpos"], cols["ctrl"]
        V = cols.get("qvel")
        extra = {k: cols[k] for k in extra}
    else:
        step = None
    if derive:
        V = derive_velocity(T, Q, window, order)
    return T, Q, V, U, extra, step


def load_logs(path, qpos="qpos", qvel="qvel", ctrl="ctrl", time="time", dt: float | None = None,
              resample: bool = True, drop_bad: bool | str = False, derive_velocity: bool | None = None,
              velocity_window: float = 0.02, velocity_order: int = 2, unwrap=False, model=None,
              group: str | None = None, delimiter: str | None = None, names=None,
              layout: str | None = "auto") -> Logs:
    """Load one or more log files (one trajectory each) into a :class:`Logs`.

    ``path``: a file, a folder (all .csv/.npz/.h5 files in it), a glob pattern or a list of these.
    Column mapping: ``qpos`` / ``qvel`` / ``ctrl`` are lists of column names, or one name of a 2-D
    NPZ/HDF5 array, or a prefix that expands to ``name0, name1, ...``; ``'name[i]'`` picks column i of
    a 2-D array; HDF5 names are dataset paths (below ``group``). ``time``: the timestamp column
    (seconds), or None for rows spaced ``dt`` apart. ``qvel="derive"`` (or ``derive_velocity=True``)
    derives velocities from positions (see the module docstring). ``model``: checks joint / actuator
    counts and gives the default ``dt`` (its timestep). ``resample``: onto a uniform ``dt`` grid
    (default dt: the model's timestep, else the median interval of each file).

    Bad files (missing column, NaN / non-numeric values, time not increasing, wrong joint count)
    raise :class:`LogError` naming file, column and row; ``drop_bad=True`` drops such files with a
    warning instead, and ``drop_bad="rows"`` drops only the offending rows (bad files still dropped).

    ``layout``: a known log layout (LAYOUTS): ``"auto"`` (default) detects it from the files'
    columns when the column arguments are left at their defaults (and uses its columns), a name
    takes that layout's columns (other column arguments override them), None detects nothing. The
    layout the columns match goes into ``logs.info["layout"]``, from which ``hw.calibrate`` takes
    the layout's settings (e.g. per-run angle offsets for the DFKI double pendulum).
    """
    if dt is not None:
        dt = _check_dt(dt)
    files = _expand_paths(path)
    chosen = None
    if layout == "auto":
        if (qpos, qvel, ctrl) == ("qpos", "qvel", "ctrl"):
            chosen = detect_layout(files)
    elif layout is not None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown log layout {layout!r}; known: {', '.join(LAYOUTS)}")
        chosen = layout
    if chosen is not None:
        given = {k: v for k, v in (("qpos", qpos), ("qvel", qvel), ("ctrl", ctrl)) if v != k}
        cols = {**LAYOUTS[chosen]["columns"], **given}
        qpos, qvel, ctrl = cols["qpos"], cols["qvel"], cols["ctrl"]
    matched = layout_of(qpos, qvel, ctrl) if layout is not None else None
    if isinstance(qvel, str) and qvel == "derive":
        qvel, derive = None, True
    else:
        derive = bool(derive_velocity)
    if qvel is None and not derive:
        raise ValueError("qvel=None: give velocity columns, or qvel='derive' to derive them from positions")
    parts, kept_names, kept_sources, steps = [], [], [], []
    for k, f in enumerate(files):
        try:
            T, Q, V, U, extra, step = _load_one(f, qpos, qvel, ctrl, time, dt, resample, derive, velocity_window,
                                                velocity_order, unwrap, model, drop_bad == "rows", group,
                                                delimiter)
        except LogError as e:
            if not drop_bad:
                raise
            warnings.warn(f"{e}; file dropped", stacklevel=2)
            continue
        if parts and (Q.shape[1], V.shape[1], U.shape[1]) != (parts[0][1].shape[1], parts[0][2].shape[1],
                                                             parts[0][3].shape[1]):
            e = LogError(f"{f}: nq/nv/nu = {Q.shape[1]}/{V.shape[1]}/{U.shape[1]} differ from the first file's "
                         f"({files[0]})", f)
            if not drop_bad:
                raise e
            warnings.warn(f"{e}; file dropped", stacklevel=2)
            continue
        parts.append((T, Q, V, U, extra))
        kept_names.append(names[k] if names is not None else Path(f).stem)
        kept_sources.append(os.path.abspath(f))
        steps.append(step)
    if not parts:
        raise LogError(f"no usable log among {len(files)} file(s): {', '.join(files[:5])}")
    same = all(s is not None and abs(s - steps[0]) < 1e-12 for s in steps)
    logs = _concat(parts, kept_names, kept_sources, steps[0] if same else None)
    logs.info = {"resample": (f"linear (ctrl: zero-order hold) onto dt={logs.dt:g}" if resample and same
                              else "per-file dt" if resample else "none"),
                 "qvel": (f"derived: Savitzky-Golay order {velocity_order}, window {velocity_window:g} s"
                          if derive else "logged"),
                 "columns": {"qpos": qpos, "qvel": "derive" if derive and qvel is None else qvel, "ctrl": ctrl,
                             "time": time},
                 "layout": matched}
    if model is not None:
        logs.check_model(model)
    return logs
