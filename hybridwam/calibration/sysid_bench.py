"""``hybridwam bench sysid``: hybridwam's identification against MuJoCo's own toolbox
(``mujoco.sysid``, Gauss-Newton on rollouts) on the same leave-one-run-out splits of the shipped
DFKI double pendulum logs, with the same parameter groups, both stepping MuJoCo's physics.

The groups are the ones MuJoCo can express: body masses, joint armature, joint damping, MuJoCo's
dry friction (``frictionloss``, nominal 0.05 N m on both joints, the scene having none) and a
constant torque offset per motor (MuJoCo: ``biastype="affine"``, ``biasprm[0]``). hybridwam loads
the scene with ``limit_law="mujoco"`` (its dry friction is then MuJoCo's) and runs ``hw.calibrate``'s
identification stage without per-run offsets (mujoco.sysid has none); mujoco.sysid fits the same
training runs cut into windows of the identification horizon, each starting from the logged
state, with its ``mujoco`` optimizer and the logged angles as joint-position sensors. Both
results are scored by one function on the held-out run: the RMSE of the joint angles over
open-loop windows of the evaluation horizon, rolled out by hybridwam's physics in float64 with
the identified parameters (mujoco.sysid's read off the MjModel its result compiles to).

Needs ``mujoco[sysid]``'s optional imports (plotly, tabulate, narwhals, colorama,
imageio-ffmpeg): run it from a benchmark environment, never in CI.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

#: the scene's dry friction before identification (N m), both joints
FRICTIONLOSS0 = 0.05
GROUPS = ("mass", "armature", "damping", "frictionloss", "motor_offset")
SUITE = dict(identify_epochs=40, horizon=0.25)


def _scene_xml() -> str:
    """The shipped double pendulum with MuJoCo's dry friction on both joints and position sensors."""
    import mujoco

    from ..model import resolve_scene

    spec = mujoco.MjSpec.from_file(resolve_scene("double_pendulum"))
    for j in spec.joints:
        j.frictionloss = FRICTIONLOSS0
        spec.add_sensor(type=mujoco.mjtSensor.mjSENS_JOINTPOS, objtype=mujoco.mjtObj.mjOBJ_JOINT, objname=j.name,
                        name=f"{j.name}_pos")
    spec.compile()
    return spec.to_xml()


def _require_sysid():
    try:
        from mujoco import sysid
        sysid.optimize  # noqa: B018 - mujoco.sysid imports its parts only when its extras are installed
    except (ImportError, AttributeError):
        raise RuntimeError("hybridwam bench sysid needs mujoco.sysid's optional dependencies: "
                           "pip install 'mujoco[sysid]'") from None
    return sysid


def _sysid_identify(xml: str, train, horizon_steps: int, verbose: bool):
    """mujoco.sysid's identification of GROUPS on windows of ``horizon_steps`` of the training
    logs; returns the identified MjModel and the optimizer's seconds."""
    import mujoco

    sysid = _require_sysid()
    spec = mujoco.MjSpec.from_string(xml)
    m0 = spec.compile()
    dt = m0.opt.timestep
    params = sysid.ParameterDict()

    def setter(kind, name):
        def apply(s, p):
            if kind == "mass":
                s.body(name).mass = float(p.value[0])
            elif kind == "offset":
                a = s.actuator(name)
                a.biastype = mujoco.mjtBias.mjBIAS_AFFINE
                a.biasprm[0] = float(p.value[0])
            else:  # some joint fields are arrays in MjSpec (damping: its polynomial too)
                j = s.joint(name)
                cur = np.array(getattr(j, kind), dtype=np.float64)
                if cur.ndim:
                    cur[0] = float(p.value[0])
                    setattr(j, kind, cur)
                else:
                    setattr(j, kind, float(p.value[0]))
        return apply

    for b in range(1, m0.nbody):
        n = m0.body(b).name
        mass = float(m0.body_mass[b])
        params.add(sysid.Parameter(f"mass_{n}", nominal=mass, min_value=0.2 * mass, max_value=5 * mass,
                                   modifier=setter("mass", n)))
    for j in range(m0.njnt):
        n = m0.joint(j).name
        d = int(m0.jnt_dofadr[j])
        for kind, v, hi in (("armature", m0.dof_armature[d], 0.1), ("damping", m0.dof_damping[d], 1.0),
                            ("frictionloss", m0.dof_frictionloss[d], 1.0)):
            params.add(sysid.Parameter(f"{kind}_{n}", nominal=float(v), min_value=0.0, max_value=hi,
                                       modifier=setter(kind, n)))
    for a in range(m0.nu):
        n = m0.actuator(a).name
        params.add(sysid.Parameter(f"offset_{n}", nominal=0.0, min_value=-1.0, max_value=1.0,
                                   modifier=setter("offset", n)))
    names, states, ctrls, sensors = [], [], [], []
    data = mujoco.MjData(m0)
    t = np.arange(horizon_steps) * dt
    for i in range(train.n_traj):
        a, b = train.bounds(i)
        for r in range(a, b - horizon_steps, horizon_steps):
            names.append(f"{train.names[i]}@{r - a}")
            states.append(sysid.create_initial_state(m0, train.qpos[r], train.qvel[r], data.act))
            ctrls.append(sysid.TimeSeries(t, np.asarray(train.ctrl[r:r + horizon_steps], dtype=np.float64)))
            # mujoco.rollout reports a step's sensors at the state it starts from, at the time it ends
            sensors.append(sysid.TimeSeries.from_names(t + dt, np.asarray(train.qpos[r:r + horizon_steps],
                                                                            dtype=np.float64), m0))
    ms = sysid.ModelSequences("double_pendulum", spec, names, states, ctrls, sensors)
    t0 = time.perf_counter()
    opt, _ = sysid.optimize(initial_params=params, residual_fn=sysid.build_residual_fn(models_sequences=[ms]),
                            optimizer="mujoco", verbose=verbose)
    seconds = time.perf_counter() - t0
    s = mujoco.MjSpec.from_string(xml)
    for p in opt.parameters.values():
        p.modifier(s, p)
    return s.compile(), seconds, len(names)


def _rmse(model, logs, k: int, stride: int) -> float:
    """Open-loop RMSE of the joint angles over windows of k steps of ``logs`` (hybridwam's
    physics, the model's parameters)."""
    import torch

    import hybridwam as hw

    from .core import make_segments

    seg = make_segments(logs, k, stride, model.device, model.dtype, None)
    with torch.no_grad():
        Q = hw.Physics(model, verbose=False).rollout(seg.q0, seg.v0, seg.ctrl).qpos
    return float(((Q[:, 1:] - seg.qpos[:, 1:]) ** 2).mean().sqrt())


def _physics(model) -> str:
    """The identified groups' values of a model, one string (masses, armature, damping,
    frictionloss, motor offsets)."""
    p = {k: model.params[k].detach().cpu().double().numpy() for k in
         ("body_mass", "dof_armature", "dof_damping", "dof_frictionloss", "actuator_bias")}
    f = lambda a: "/".join(f"{x:.4g}" for x in a)  # noqa: E731
    return (f"mass {f(p['body_mass'][1:])}, armature {f(p['dof_armature'])}, damping {f(p['dof_damping'])}, "
            f"frictionloss {f(p['dof_frictionloss'])}, offset {f(p['actuator_bias'][:, 0])}")


def bench_sysid(identify_epochs: int = 40, horizon: float = 0.25, runs: int | None = None, seed: int = 0,
                device: str = "cpu", verbose: bool = True) -> list[dict]:
    """One row per held-out run (the first ``runs``): the nominal, hybridwam-identified and
    mujoco.sysid-identified physics' RMSE on it, their ratio, and each side's seconds."""
    import torch

    import hybridwam as hw
    from hybridwam.calibration import calibrate
    from hybridwam.logs import DOUBLE_PENDULUM_COLUMNS, data_path, load_logs

    _require_sysid()
    xml = _scene_xml()
    base = hw.load_model(xml, device=device, limit_law="mujoco")
    logs = load_logs(data_path("double_pendulum") / "*.csv", **DOUBLE_PENDULUM_COLUMNS, model=base)
    names = logs.names
    dt = float(base.mj.opt.timestep)
    k_id = max(1, round(0.2 / dt))        # CalibrationConfig.identify_horizon
    k_eval, stride = max(1, round(horizon / dt)), max(1, round(0.05 / dt))
    rows = []
    for i, held in enumerate(names[:runs]):
        val = names[(i + 1) % len(names)]
        train, v, test = logs.split(val=[val], test=[held], shuffle=False)
        model = hw.load_model(xml, device=device, limit_law="mujoco")
        world = hw.HybridModel(hw.Physics(model, verbose=False), None)
        t0 = time.perf_counter()
        calibrate(world, train, val=v, test=test, seed=seed, progress=False, plots=False, stages=("identify",),
                  params=GROUPS, trajectory_offsets=None, identify_epochs=identify_epochs, eval_horizon=horizon)
        hw_s = time.perf_counter() - t0
        mj_sysid, sysid_s, nseg = _sysid_identify(xml, train, k_id, verbose=False)
        f64 = dict(device="cpu", dtype=torch.float64, limit_law="mujoco")
        ident = hw.load_model(xml, **f64)
        for key, t in model.params.items():
            ident.params[key] = t.detach().cpu().double().clone()
        nominal = hw.load_model(xml, **f64)
        theirs = hw.load_model(mj_sysid, **f64)
        row = {"held_out": held, "horizon_s": horizon,
               "nominal_rmse": _rmse(nominal, test, k_eval, stride),
               "hybridwam_rmse": _rmse(ident, test, k_eval, stride),
               "sysid_rmse": _rmse(theirs, test, k_eval, stride),
               # the fit itself: both on the training runs' windows of the identification horizon
               "hybridwam_train_rmse": _rmse(ident, train, k_id, k_id),
               "sysid_train_rmse": _rmse(theirs, train, k_id, k_id),
               "hybridwam_s": hw_s, "sysid_s": sysid_s, "sysid_windows": nseg,
               "hybridwam_params": _physics(ident), "sysid_params": _physics(theirs)}
        row["ratio"] = row["hybridwam_rmse"] / row["sysid_rmse"]
        rows.append(row)
        if verbose:
            print(f"sysid {held}: nominal {row['nominal_rmse']:.4f}, hybridwam {row['hybridwam_rmse']:.4f} "
                  f"({hw_s:.0f} s), mujoco.sysid {row['sysid_rmse']:.4f} ({sysid_s:.0f} s, {nseg} windows) rad, "
                  f"ratio {row['ratio']:.3f}", flush=True)
    return rows


def sysid_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--identify-epochs", type=int, default=SUITE["identify_epochs"], metavar="N")
    p.add_argument("--horizon", type=float, default=SUITE["horizon"], metavar="S",
                   help="open-loop evaluation horizon in seconds (default: %(default)s)")
    p.add_argument("--runs", type=int, default=None, metavar="N", help="hold out only the first N runs")


def sysid_run(args: argparse.Namespace) -> list[dict]:
    from ..cli import UserError

    try:
        _require_sysid()
    except RuntimeError as e:
        raise UserError(str(e)) from None
    return bench_sysid(args.identify_epochs, args.horizon, args.runs, seed=args.seed, device=args.device)


def sysid_suite(args: argparse.Namespace) -> list[dict]:
    """The suite's settings; no rows (and a line saying why) without mujoco.sysid's extras, so
    that ``hybridwam bench`` runs the other suites in an environment without them."""
    try:
        _require_sysid()
    except RuntimeError as e:
        print(f"bench sysid: skipped: {e}", flush=True)
        return []
    return bench_sysid(**SUITE, seed=args.seed, device=args.device)


def sysid_table(rows: list[dict]) -> str:
    lines = ["| held-out run | horizon | nominal RMSE (rad) | hybridwam identified | mujoco.sysid identified | "
             "hybridwam / sysid | training fit, 0.2 s (hybridwam / sysid) | hybridwam s | sysid s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['held_out']} | {r['horizon_s']:g} s | {r['nominal_rmse']:.4f} | {r['hybridwam_rmse']:.4f} "
                     f"| {r['sysid_rmse']:.4f} | {r['ratio']:.3f} | {r['hybridwam_train_rmse']:.4f} / "
                     f"{r['sysid_train_rmse']:.4f} | {r['hybridwam_s']:.0f} | {r['sysid_s']:.0f} |")
    for r in rows:
        lines.append(f"\n{r['held_out']} held out: hybridwam {r['hybridwam_params']}; mujoco.sysid {r['sysid_params']}")
    if rows:
        ratios = [r["ratio"] for r in rows]
        lines.append(f"\nhybridwam's identified physics no worse than mujoco.sysid's (ratio <= 1) on "
                     f"{sum(x <= 1.0 for x in ratios)} of {len(ratios)} held-out runs, worst {max(ratios):.3f}x.")
    return "\n".join(lines)
