"""What ``hybridwam calibrate LOGS --scene S --out DIR`` runs: :func:`run_calibrate_cli`."""
from __future__ import annotations

import os

from ..logs import DOUBLE_PENDULUM_COLUMNS, LogError, _expand_paths, load_logs, log_columns

#: known log layouts: column mapping plus recommended calibration settings
PRESETS = {
    "dfki_double_pendulum": {
        "columns": DOUBLE_PENDULUM_COLUMNS,
        # the runs differ by encoder zero offsets of up to 0.1 rad: absorb them per training run
        "settings": {"trajectory_offsets": "qpos"},
    },
}


def _preset_columns(p: dict) -> list[str]:
    cols = p["columns"]
    return [c for k in ("qpos", "qvel", "ctrl") for c in (cols[k] if isinstance(cols[k], list) else [])]


def detect_preset(files: list[str]) -> str | None:
    """The preset of the logs' layout, from every file's column names (not only the first's): the
    preset whose columns most files have, counting files that have at least half of them (so a file
    that lacks one is then reported by load_logs with the column really missing); None when no file
    has even half of a preset's columns."""
    score: dict[str, tuple[int, int]] = {}
    for f in files:
        try:
            names = set(log_columns(f))
        except (LogError, OSError, ValueError):  # unreadable here: load_logs reports it properly
            continue
        for name, p in PRESETS.items():
            need = _preset_columns(p)
            have = sum(c in names for c in need)
            if need and 2 * have >= len(need):
                full, part = score.get(name, (0, 0))
                score[name] = (full + (have == len(need)), part + 1)
    if not score:
        return None
    return max(score, key=lambda n: score[n])


def _cols(x):
    if x is None or isinstance(x, (list, tuple)):
        return x
    return "derive" if x == "derive" else [c.strip() for c in str(x).split(",") if c.strip()] \
        if "," in str(x) else str(x)


def _split_arg(x):
    if x is None:
        return None
    if isinstance(x, (int, float, list, tuple)):
        return x
    s = str(x).strip()
    try:
        return float(s) if "." in s else int(s)
    except ValueError:
        return [t.strip() for t in s.split(",") if t.strip()]


def run_calibrate_cli(logs, scene: str, out: str, *, qpos=None, qvel=None, ctrl=None, time: str | None = "time",
                      preset: str | None = "auto", val=None, test=None, epochs: int | None = None,
                      device: str | None = "cpu", dtype: str = "float32", seed: int = 0, resume: bool = False,
                      overwrite: bool = False, hidden=(64, 64), mode: str = "force", progress: bool = True,
                      print_fn=print, **settings):
    """Load logs, build the world for ``scene``, calibrate, write everything to ``out``; returns the
    CalibrationReport (and prints its table with ``print_fn``).

    ``logs``: file, folder, glob or list. ``qpos`` / ``qvel`` / ``ctrl``: column lists (or
    comma-separated strings; ``qvel="derive"`` derives velocities); when none is given, a known
    layout is detected (``preset="auto"``; see PRESETS) or the default names qpos*/qvel*/ctrl* are
    used. ``val`` / ``test``: trajectory names (comma-separated), counts or fractions for
    ``Logs.split``. Remaining keyword arguments are calibrate settings (``CalibrationConfig``), e.g.
    ``identify_epochs``, ``trajectory_offsets``. ``resume`` / ``overwrite``: see :func:`calibrate`
    (a folder that is not empty needs one of them). Errors about the input (missing files or columns,
    bad logs, unknown scene, an output folder in use, a damaged training state) are raised as
    ValueError / OSError subclasses.
    """
    from ..hybrid import HybridModel
    from ..model import load_model
    from ..physics import Physics
    from ..residual import Residual
    from .core import calibrate, check_output_folder

    check_output_folder(out, resume, overwrite)       # before the minutes of loading and compiling
    files = _expand_paths(logs)
    chosen = None
    if preset == "auto":
        chosen = detect_preset(files) if qpos is None and qvel is None and ctrl is None else None
    elif preset:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        chosen = preset
    columns = dict(PRESETS[chosen]["columns"]) if chosen else {"qpos": "qpos", "qvel": "qvel", "ctrl": "ctrl"}
    for k, v in (("qpos", qpos), ("qvel", qvel), ("ctrl", ctrl)):
        if v is not None:
            columns[k] = _cols(v)
    if chosen:
        for k, v in PRESETS[chosen]["settings"].items():
            settings.setdefault(k, v)
    model = load_model(scene, device=device, dtype=dtype)
    data = load_logs(files, **columns, time=time, model=model)
    world = HybridModel(Physics(model), Residual(model, hidden=tuple(hidden), mode=mode))
    split = {k: v for k, v in (("val", _split_arg(val)), ("test", _split_arg(test))) if v is not None}
    if print_fn:
        print_fn(f"logs      {data}" + (f" (layout: {chosen})" if chosen else ""))
        print_fn(f"scene     {model.source}")
    report = calibrate(world, data, out=out, resume=resume, overwrite=overwrite, epochs=epochs, seed=seed,
                       split=split or None, progress=progress, **settings)
    if print_fn:
        print_fn(report.table())
        print_fn(f"checkpoint {os.path.abspath(out)} (hybridwam.HybridModel.load); report, metrics and plots beside it")
    return report
