"""What ``hybridwam calibrate LOGS --scene S --out DIR`` runs: :func:`run_calibrate_cli`."""
from __future__ import annotations

import os

from ..logs import LAYOUTS, _expand_paths, load_logs

#: the log layouts the CLI knows (hybridwam.logs.LAYOUTS: load_logs detects them, hw.calibrate
#: applies their settings; the CLI does nothing of its own, so both give the same model)
PRESETS = LAYOUTS


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
                      print_fn=print, limit_law: str = "compliant", **settings):
    """Load logs, build the world for ``scene``, calibrate, write everything to ``out``; returns the
    CalibrationReport (and prints its table with ``print_fn``).

    ``logs``: file, folder, glob or list. ``qpos`` / ``qvel`` / ``ctrl``: column lists (or
    comma-separated strings; ``qvel="derive"`` derives velocities); when none is given, a known
    layout is detected (``preset="auto"``; see hybridwam.logs.LAYOUTS: load_logs detects it and
    hw.calibrate applies its settings, exactly as for a caller of the API) or the default names
    qpos*/qvel*/ctrl* are used. ``val`` / ``test``: trajectory names (comma-separated), counts or fractions for
    ``Logs.split``. Remaining keyword arguments are calibrate settings (``CalibrationConfig``), e.g.
    ``identify_epochs``, ``trajectory_offsets``, ``params``, ``export`` (see :func:`calibrate`).
    ``limit_law``: hw.load_model's (joint limits and dry friction). ``resume`` / ``overwrite``: see :func:`calibrate`
    (a folder that is not empty needs one of them). Errors about the input (missing files or columns,
    bad logs, unknown scene, an output folder in use, a damaged training state) are raised as
    ValueError / OSError subclasses.

    Under ``torchrun --nproc_per_node=N`` every process runs this with the same arguments
    (data-parallel, see :func:`calibrate`): ``device="cuda"`` means one GPU per process
    (``cuda:LOCAL_RANK``), only rank 0 prints and writes, and an attempt that torchrun restarts after
    a process died resumes from the last epoch saved in ``out``.
    """
    from ..hybrid import HybridModel
    from ..model import load_model
    from ..physics import Physics
    from ..residual import Residual
    from .core import calibrate, check_output_folder
    from .distributed import elastic_resume, env_world_size, local_device

    resume, overwrite = elastic_resume(out, resume, overwrite)   # a restarted torchrun attempt continues
    check_output_folder(out, resume, overwrite)       # before the minutes of loading and compiling
    device = local_device(device)
    if env_world_size() > 1 and os.environ.get("RANK", "0") != "0":
        print_fn = None                               # one process reports
    files = _expand_paths(logs)
    columns = {k: _cols(v) for k, v in (("qpos", qpos), ("qvel", qvel), ("ctrl", ctrl)) if v is not None}
    model = load_model(scene, device=device, dtype=dtype, limit_law=limit_law)
    data = load_logs(files, **columns, time=time, model=model, layout=preset)
    chosen = data.info.get("layout")
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
