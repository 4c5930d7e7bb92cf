"""``hybridwam`` command line: info, simulate, demo, optimize, calibrate, bench.

``main(argv)`` returns the exit code (0 ok, 1 failed check or simulation error, 2 user error) and
never shows a traceback for a user error (bad scene, bad number, unsupported model element).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

from . import __version__
from .bench import _fmt_rate, _sync  # one definition each for the CLI and the benchmarks
from .bench import positive_int as _positive_int

DEFAULT_OUT = "hybridwam_out"


class UserError(Exception):
    """A problem with what the user asked for; printed as one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``PROG: error: WHAT (see 'PROG --help')``), exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ---- argument types --------------------------------------------------------------------------

def _device(s: str) -> str:
    d = s.strip().lower()
    if d == "cuda":
        d = "cuda:0"
    if d == "cpu" or (d.startswith("cuda:") and d[5:].isdigit()):
        return d
    raise argparse.ArgumentTypeError(f"expected 'cpu', 'cuda' or 'cuda:N', got {s!r}")


# ---- helpers ---------------------------------------------------------------------------------
def _quiet_warp():
    """Keep Warp's per-module load lines out of the output (HYBRIDWAM_WARP_VERBOSE=1 shows them)."""
    if os.environ.get("HYBRIDWAM_WARP_VERBOSE"):
        return
    import warp as wp

    if hasattr(wp.config, "log_level") and hasattr(wp, "LOG_WARNING"):
        wp.config.log_level = wp.LOG_WARNING
    else:  # older Warp
        wp.config.quiet = True


def _load(scene: str, device: str | None = None, dtype: str = "float32"):
    from .model import ModelLoadError, UnsupportedFeatureError, load_model

    try:
        return load_model(scene, device=device, dtype=dtype)
    except (ModelLoadError, UnsupportedFeatureError):
        raise
    except ValueError as e:  # bad device / dtype
        raise UserError(str(e)) from None


def _check_memory(model, batch: int, steps: int):
    """Refuse a rollout whose trajectory tensors would not fit in available memory."""
    esize = torch.finfo(model.dtype).bits // 8
    need = esize * batch * ((steps + 1) * (model.nq + model.nv) + steps * (3 * model.nv + max(model.nu, 1)))
    avail = None
    if model.device == "cpu":
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        avail = int(line.split()[1]) * 1024
        except OSError:
            pass
    elif torch.cuda.is_available():
        avail = torch.cuda.mem_get_info(torch.device(model.device))[0]
    if avail is not None and need > 0.8 * avail:
        raise UserError(f"a rollout of {batch} worlds x {steps} steps needs about {need / 2**30:.1f} GiB "
                        f"for its trajectory, more than the {avail / 2**30:.1f} GiB available; "
                        "reduce --batch or --steps")


def _timed_rollout(physics, qpos, qvel, ctrls, max_runs: int = 5, budget_s: float = 0.5):
    """No-grad rollout after a one-step warm-up, timed up to ``max_runs`` times (stopping once
    ``budget_s`` is spent); returns (trajectory, best seconds, runs). Best-of, because a busy
    machine only ever makes a run slower."""
    dev = physics.model.device
    times = []
    with torch.no_grad():
        physics.rollout(qpos, qvel, ctrls[:, :1])
        _sync(dev)
        while len(times) < max_runs and sum(times) < budget_s:
            t0 = time.perf_counter()
            traj = physics.rollout(qpos, qvel, ctrls)
            _sync(dev)
            times.append(time.perf_counter() - t0)
    return traj, min(times), len(times)


def _inputs(model, batch: int, steps: int, seed: int):
    from .bench import random_inputs

    q, v, u = random_inputs(model, batch, steps, seed)
    return tuple(torch.as_tensor(x, dtype=model.dtype, device=model.device) for x in (q, v, u))


# ---- info ------------------------------------------------------------------------------------
def cmd_info(args) -> int:
    from .model import list_scenes

    if args.scene is None:
        print("shipped scenes: " + ", ".join(list_scenes()))
        print("usage: hybridwam info SCENE   (a shipped scene name or an MJCF/URDF path)")
        return 0
    from .looped import unsupported
    from .parallel import resolve_threads, usable_cores
    from .physics import choose_engine

    model = _load(args.scene, device="cpu")
    print(model.describe())
    print(f"threads  {resolve_threads(None, 'cpu')} CPU threads per batched launch (all {usable_cores()} usable "
          "cores; hw.Physics(model, threads=N) sets it; GPUs run one thread per world)")
    missing = unsupported(model.structure)
    print(f"engine   {choose_engine(model)} (hw.Physics(model, engine=...); the looped engine "
          + (f"does not simulate {', '.join(missing)} yet)" if missing else "can run this model)"))
    return 0


# ---- simulate --------------------------------------------------------------------------------
def cmd_simulate(args) -> int:
    from .physics import Physics

    model = _load(args.scene, args.device, args.dtype)
    _check_memory(model, args.batch, args.steps)
    physics = Physics(model, threads=args.threads)
    qpos, qvel, ctrls = _inputs(model, args.batch, args.steps, args.seed)
    traj, secs, runs = _timed_rollout(physics, qpos, qvel, ctrls)
    rate = args.batch * args.steps / secs
    print(f"scene     {model.source} (nq={model.nq} nv={model.nv} nu={model.nu}), "
          f"device {model.device}, {str(model.dtype).replace('torch.', '')}, {physics.threads} thread(s), "
          f"{physics.engine} engine")
    print(f"rollout   {args.batch} worlds x {args.steps} steps ({args.steps * model.timestep:g} s simulated each) "
          f"in {secs:.4f} s (best of {runs}): {_fmt_rate(rate)} world-steps/s")
    print(f"compile   {physics.compile_seconds:.2f} s (kernel load/compile, not included above; "
          "cached on disk after the first run)")
    q_end = traj.qpos[0, -1].cpu().numpy()
    print(f"final     world 0 qpos = {np.array2string(q_end, precision=4, separator=', ')}")
    if args.plot:
        from .viz import plot_trajectories

        path = plot_trajectories(model, traj.qpos, args.plot, worlds=args.plot_worlds, ctrls=ctrls)
        print(f"plot      {os.path.abspath(path)}")
    return 0


# ---- bench -----------------------------------------------------------------------------------
def cmd_bench(args) -> int:
    from .bench import BENCHMARKS, check_readme, machine_info, readme_key, report_body, update_readme, write_report

    names = [args.bench_name] if args.bench_name else list(BENCHMARKS)
    device = args.device or "cpu"
    args.device = device
    readme = getattr(args, "readme", None)
    if readme:
        try:
            check_readme(readme, [readme_key(n, device) for n in names])
        except (OSError, ValueError) as e:
            print(f"hybridwam: error: --readme: {e}", file=sys.stderr)
            return 2
    try:  # before benchmarking: a long run must not end in a folder it cannot write
        os.makedirs(args.out, exist_ok=True)
    except (OSError, ValueError) as e:
        raise UserError(f"--out {args.out!r}: cannot make the report folder: {e}") from None
    info = machine_info(device)
    print(f"machine: {info['cpu']}, {info['cores']} cores; device {device}; torch {info['torch']}, "
          f"warp {info['warp']}, mujoco {info['mujoco']}", flush=True)
    load = info.get("load_average_1min")
    if load is not None and load > 0.5 * info["usable_cores"]:
        print(f"warning: the machine is busy (load average {load} on {info['usable_cores']} cores); "
              "figures will be low and noisy", flush=True)
    for name in names:
        bm = BENCHMARKS[name]
        rows = bm.run(args) if args.bench_name else bm.suite(args)
        md_path, csv_path, md = write_report(name, rows, info, args.out, bm.table, bm.note)
        print()
        print(md)
        print(f"written: {os.path.abspath(md_path)}, {os.path.abspath(csv_path)}")
        if readme:
            update_readme(readme, readme_key(name, device), report_body(rows, info, bm.table, bm.note))
            print(f"updated: {os.path.abspath(readme)} (section {readme_key(name, device)})")
    return 0


# ---- demo / optimize ---------------------------------------------------------------------------
def cmd_demo(args) -> int:
    """The README's main job: cartpole swing-up optimised, replayed in MuJoCo, plotted, animated."""
    from .demo import run_demo

    try:
        result = run_demo(out_dir=args.out, quick=args.quick)
    except ValueError as e:  # an output path that would leave --out
        raise UserError(str(e)) from None
    return 0 if result["success"] else 1


def cmd_optimize(args) -> int:
    from .demo import run_optimize
    from .model import UnsupportedFeatureError

    try:
        result = run_optimize(args.config, out_dir=args.out, iters=args.iters, optimizer=args.optimizer)
    except UnsupportedFeatureError:  # the task's scene: main lists the elements
        raise
    except (FileNotFoundError, ValueError) as e:  # missing or invalid task file, named in the message
        print(f"hybridwam: error: {e}", file=sys.stderr)
        return 2
    return 0 if result["success"] else 1


def cmd_calibrate(args) -> int:
    """Fit physical parameters and a residual to logs; report, plots and checkpoint in --out."""
    from .calibration import run_calibrate_cli

    extra = {}
    if args.trajectory_offsets is not None:
        extra["trajectory_offsets"] = None if args.trajectory_offsets == "none" else args.trajectory_offsets
    if args.params is not None:
        extra["params"] = tuple(g.strip() for g in args.params.split(",") if g.strip())
    if args.export is not None:
        extra["export"] = args.export
    try:
        run_calibrate_cli(args.logs, args.scene, args.out, qpos=args.qpos, qvel=args.qvel, ctrl=args.ctrl,
                          time=args.time, epochs=args.epochs, val=args.val, test=args.test, seed=args.seed,
                          resume=args.resume, overwrite=args.overwrite, device=args.device or "cpu",
                          limit_law=args.limit_law, **extra)
    except (OSError, ValueError) as e:  # bad logs, scene, output folder or saved state, named in the message
        print(f"hybridwam: error: {e}", file=sys.stderr)
        return 2
    return 0


# ---- parser ----------------------------------------------------------------------------------
def _versions() -> str:
    import mujoco
    import warp as wp

    return f"hybridwam {__version__} (torch {torch.__version__}, warp {wp.config.version}, mujoco {mujoco.__version__})"


def build_parser() -> argparse.ArgumentParser:
    from .bench import BENCHMARKS
    from .bench import DEFAULT_OUT as BENCH_OUT

    p = _Parser(prog="hybridwam", description="Differentiable hybrid world model: "
                "Warp rigid-body physics + PyTorch residual.")
    p.add_argument("--version", action="version", version=_versions())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    s = sub.add_parser("info", help="describe a model (sizes, joints, actuators, unsupported elements)")
    s.add_argument("scene", nargs="?", metavar="SCENE", help="shipped scene name (e.g. cartpole) or MJCF/URDF path")
    s.set_defaults(func=cmd_info)

    s = sub.add_parser("simulate", help="batched rollout with random controls; throughput and optional plot")
    s.add_argument("scene", metavar="SCENE", help="shipped scene name or MJCF/URDF path")
    s.add_argument("--steps", type=_positive_int, default=200, metavar="N", help="steps (default: 200)")
    s.add_argument("--batch", type=_positive_int, default=64, metavar="B", help="worlds (default: 64)")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.add_argument("--device", type=_device, default=None, help="cpu or cuda[:N] (default: cuda:0 if available)")
    s.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    s.add_argument("--plot", metavar="PNG", help="write a plot of qpos vs time to this file")
    s.add_argument("--plot-worlds", type=_positive_int, default=4, metavar="K", help="worlds to plot (default: 4)")
    s.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                   help="CPU threads the worlds are split across (default: all usable cores)")
    s.set_defaults(func=cmd_simulate)

    # bench: common options accepted before or after the benchmark name
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--device", type=_device, default=None, help="cpu or cuda[:N] (default: cpu)")
    common.add_argument("--out", default=BENCH_OUT, metavar="DIR", help=f"report folder (default: {BENCH_OUT})")
    common.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    common.add_argument("--readme", default=None, metavar="MD",
                        help="also write each benchmark's table into this Markdown file, between its markers "
                             "<!-- bench:NAME:DEV --> and <!-- /bench:NAME:DEV --> (DEV: cpu or cuda)")
    common_sub = argparse.ArgumentParser(add_help=False)
    for a in common._actions:
        common_sub.add_argument(*a.option_strings, type=a.type, default=argparse.SUPPRESS, help=a.help,
                                metavar=a.metavar)
    s = sub.add_parser("bench", parents=[common], help="benchmarks against MuJoCo (no NAME: the whole suite)",
                       description="Without NAME, runs every benchmark's default suite.")
    bsub = s.add_subparsers(dest="bench_name", metavar="NAME")
    for name, bm in BENCHMARKS.items():
        b = bsub.add_parser(name, parents=[common_sub], help=bm.help, description=bm.help)
        bm.add_args(b)
    s.set_defaults(func=cmd_bench)

    from .demo import DEFAULT_DEMO_OUT

    s = sub.add_parser("demo", help="cartpole swing-up: optimise, replay in MuJoCo, plot and animate")
    s.add_argument("--out", default=DEFAULT_DEMO_OUT, metavar="DIR",
                   help=f"output folder (default: {DEFAULT_DEMO_OUT})")
    s.add_argument("--quick", action="store_true", help="fewer iterations (for tests and CI)")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("calibrate", help="fit physical parameters and a residual to robot logs (CSV/NPZ/HDF5)")
    s.add_argument("logs", nargs="+", metavar="LOGS", help="log files, folders or globs")
    s.add_argument("--scene", required=True, metavar="S", help="shipped scene name or MJCF/URDF path")
    s.add_argument("--out", default=os.path.join(DEFAULT_OUT, "calibration"), metavar="DIR",
                   help="report, plots and checkpoint folder (default: hybridwam_out/calibration)")
    s.add_argument("--qpos", default=None, metavar="COLS", help="comma-separated qpos columns (default: detected)")
    s.add_argument("--qvel", default=None, metavar="COLS", help="qvel columns, or 'derive' from positions")
    s.add_argument("--ctrl", default=None, metavar="COLS", help="ctrl columns")
    s.add_argument("--time", default="time", metavar="COL", help="time column (default: time)")
    s.add_argument("--epochs", type=_positive_int, default=None, metavar="N", help="epochs per stage")
    s.add_argument("--val", default=None, help="validation trajectories: names, a count or a fraction")
    s.add_argument("--test", default=None, help="held-out test trajectories: names, a count or a fraction")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    s.add_argument("--overwrite", action="store_true", help="replace an earlier run's outputs in --out")
    s.add_argument("--trajectory-offsets", default=None, choices=("qpos", "none"),
                   help="fit a constant joint-angle offset per training run (default: detected)")
    s.add_argument("--device", type=_device, default=None, help="cpu or cuda[:N] (default: cpu)")
    s.add_argument("--params", default=None, metavar="GROUPS",
                   help="comma-separated parameter groups to identify (default: mass,armature,damping,coulomb,"
                        "motor_offset; also inertia, frictionloss, gain)")
    s.add_argument("--limit-law", default="compliant", choices=("compliant", "mujoco"),
                   help="law of joint limits and dry friction (hw.load_model's limit_law; default: compliant)")
    s.add_argument("--export", default=None, metavar="FILE.xml",
                   help="write the identified physics into a copy of the scene's MJCF (MuJoCo runs it; the "
                        "parameter groups must have MuJoCo counterparts: frictionloss, not coulomb)")
    s.set_defaults(func=cmd_calibrate)

    s = sub.add_parser("optimize", help="optimise a task's actions (YAML config or shipped task name)")
    s.add_argument("config", metavar="CONFIG", help="task YAML path or shipped task name (e.g. acrobot_swingup)")
    s.add_argument("--out", default=None, metavar="DIR", help="output folder (default: hybridwam_out/TASK)")
    s.add_argument("--iters", type=_positive_int, default=None, metavar="N", help="iterations (default: the task's)")
    s.add_argument("--optimizer", choices=("adam", "lbfgs", "cem"), default=None, help="default: the task's")
    s.set_defaults(func=cmd_optimize)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (also used as ``sys.exit`` status)."""
    from .model import ModelLoadError, UnsupportedFeatureError
    from .physics import NonFiniteError

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version, or a usage error argparse already printed
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    if args.command is None:
        parser.print_help()
        return 2
    _quiet_warp()
    try:
        return int(args.func(args) or 0)
    except UnsupportedFeatureError as e:
        print(f"hybridwam: error: {e.source}: {len(e.features)} element(s) not supported by hybridwam:",
              file=sys.stderr)
        for f in e.features:
            print(f"  - {f}", file=sys.stderr)
        return 2
    except (ModelLoadError, UserError) as e:
        print(f"hybridwam: error: {str(e).strip()}", file=sys.stderr)
        return 2
    except NonFiniteError as e:
        print(f"hybridwam: simulation error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"hybridwam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hybridwam: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
