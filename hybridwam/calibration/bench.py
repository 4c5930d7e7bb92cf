"""``hybridwam bench loo``: leave-one-run-out calibration on the shipped DFKI double pendulum logs.

Each run in turn is held out: the calibration (identification, then the residual) trains on the
others but one, validates on the run after the held-out one, and is scored on the held-out run,
open loop over the evaluation horizon. A row per held-out run: the identified physics' and the
hybrid's RMSE of the joint angles, their ratio, and the residual guard's decision
(CalibrationConfig.residual_guard). Rows are flat dicts for ``hybridwam.bench.write_report``.
"""
from __future__ import annotations

import argparse
import time

#: The suite's settings (the notebook's epochs; the hybrid issue's 0.25 s open-loop horizon).
SUITE = dict(identify_epochs=40, residual_epochs=30, eval_horizon=0.25)


def bench_loo(identify_epochs: int = 40, residual_epochs: int = 30, eval_horizon: float = 0.25, guard: bool = True,
              runs: int | None = None, seed: int = 0, device: str = "cpu", verbose: bool = True) -> list[dict]:
    """Leave-one-run-out over the DFKI logs (``hybridwam.logs.data_path("double_pendulum")``):
    one row per held-out run (the first ``runs`` of them, all by default) with keys held_out,
    validation, identified_rmse, hybrid_rmse, ratio, guard (``kept``, ``zeroed`` or ``off``),
    val_identified, val_hybrid, seconds."""
    import hybridwam as hw
    from hybridwam.calibration import calibrate
    from hybridwam.logs import DOUBLE_PENDULUM_COLUMNS, data_path, load_logs

    model = hw.load_model("double_pendulum", device=device)
    logs = load_logs(data_path("double_pendulum") / "*.csv", **DOUBLE_PENDULUM_COLUMNS, model=model)
    names = logs.names
    if len(names) < 3:
        raise ValueError(f"leave-one-run-out needs at least 3 runs (train, validation, test), found {len(names)}")
    rows = []
    for i, held in enumerate(names[:runs]):
        val = names[(i + 1) % len(names)]
        train, v, test = logs.split(val=[val], test=[held], shuffle=False)
        world = hw.HybridModel(hw.Physics(model, verbose=False), hw.Residual(model, hidden=(64, 64), mode="force"))
        t0 = time.perf_counter()
        rep = calibrate(world, train, val=v, test=test, seed=seed, progress=False, plots=False,
                        stages=("identify", "residual"), identify_epochs=identify_epochs,
                        residual_epochs=residual_epochs, eval_horizon=eval_horizon, residual_guard=guard)
        g = rep.residual_guard
        ident, hyb = rep.rmse("identified", "test"), rep.rmse("hybrid", "test")
        row = {"held_out": held, "validation": val, "horizon_s": eval_horizon, "identified_rmse": ident,
               "hybrid_rmse": hyb, "ratio": hyb / ident,
               "guard": ("kept" if g["kept"] else "zeroed") if g else "off",
               "val_identified": rep.rmse("identified", "val"), "val_hybrid": rep.rmse("hybrid", "val"),
               "seconds": time.perf_counter() - t0}
        rows.append(row)
        if verbose:
            print(f"loo {held} (validation {val}): identified {ident:.4f}, hybrid {hyb:.4f} rad, "
                  f"ratio {row['ratio']:.3f}, guard {row['guard']} ({row['seconds']:.0f} s)", flush=True)
    return rows


def loo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--identify-epochs", type=int, default=SUITE["identify_epochs"], metavar="N")
    p.add_argument("--residual-epochs", type=int, default=SUITE["residual_epochs"], metavar="N")
    p.add_argument("--horizon", type=float, default=SUITE["eval_horizon"], metavar="S",
                   help="open-loop evaluation horizon in seconds (default: %(default)s)")
    p.add_argument("--no-guard", action="store_true", help="train without the residual guard")
    p.add_argument("--runs", type=int, default=None, metavar="N", help="hold out only the first N runs")


def loo_run(args: argparse.Namespace) -> list[dict]:
    return bench_loo(args.identify_epochs, args.residual_epochs, args.horizon, not args.no_guard, args.runs,
                     seed=args.seed, device=args.device)


def loo_suite(args: argparse.Namespace) -> list[dict]:
    """With and without the residual guard, the suite's settings."""
    return [r for guard in (True, False) for r in bench_loo(**SUITE, guard=guard, seed=args.seed, device=args.device)]


def loo_table(rows: list[dict]) -> str:
    lines = ["| held-out run | validation run | horizon | identified RMSE (rad) | hybrid RMSE (rad) | "
             "hybrid / identified | residual guard |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['held_out']} | {r['validation']} | {r['horizon_s']:g} s | {r['identified_rmse']:.4f} | "
                     f"{r['hybrid_rmse']:.4f} | {r['ratio']:.3f} | {r['guard']} |")
    for guard in dict.fromkeys(r["guard"] != "off" for r in rows):
        ratios = [r["ratio"] for r in rows if (r["guard"] != "off") == guard]
        lines.append(f"\n{'With' if guard else 'Without'} the guard: hybrid <= 0.8x identified on "
                     f"{sum(x <= 0.8 for x in ratios)} of {len(ratios)} held-out runs, worst {max(ratios):.3f}x.")
    return "\n".join(lines)
