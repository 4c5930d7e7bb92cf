"""Benchmarks: hybridwam against MuJoCo on the same model, inputs and machine.

``BENCHMARKS`` is the registry the ``hybridwam bench`` command is built from: each entry names a
function that adds its command-line options, one that runs it from parsed arguments, and one
that runs its default set for the whole suite (``hybridwam bench`` with no subcommand). Every
benchmark returns result rows (flat dicts) that ``write_report`` turns into Markdown and CSV.
To add one (``grad``, ``plan``): write ``bench_x`` plus the three small adapters and register a
``Benchmark`` under its name.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .benchmodels import model_options, model_xml
from .parallel import resolve_threads
from .peers import PEERS, default_peers

#: Scenes the suite's ``step`` benchmark runs on (the pusher with contacts, the others without;
#: chain:24, tree, hand (tendons) and linkage (MuJoCo's limits, dry friction and equality constraints) are
#: written models of hybridwam.benchmodels, run by the looped engine).
SUITE_STEP_SCENES = ("acrobot", "cartpole", "pendulum", "pusher", "chain:24", "tree", "tree:contact", "hand",
                     "linkage")
DEFAULT_OUT = os.path.join("hybridwam_out", "bench")
#: Untimed pause before each timed run, so idle worker threads of the other side (torch's OpenMP
#: pool spins for a while after each parallel op) have gone to sleep and do not steal its cores.
PAUSE_S = 0.05


def _steady(fn):
    """(seconds, result) of one steady-state run of ``fn``: after the pause (the other side's idle
    threads go to sleep) an untimed run of ``fn`` itself, so that the timed run finds the cores
    busy and clocked up as in a loop of calls. Without it, a run of ~10 ms right after the pause
    measured the machine waking up: hybridwam's 2-thread acrobot rollout (1024 x 100) took 14-21 ms
    after a 50 ms idle pause against 11-12 ms in a loop (2-core VM, 2026-12-02)."""
    time.sleep(PAUSE_S)
    fn()
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


# ---- shared inputs ---------------------------------------------------------------------------
def random_inputs(model, batch: int, steps: int, seed: int = 0, scale: float = 0.1):
    """Random initial states near the reset state and random controls, as float64 numpy arrays.

    qpos: hinge/slide coordinates and free-joint positions get N(0, scale^2) noise (quaternions are
    kept, so every state is valid), except free joints of models with contacts, which keep their
    resting pose (a box on a table must not start inside it); qvel: N(0, scale^2) on every dof. ctrls: uniform in each
    actuator's ctrlrange ([-1, 1] for an unlimited actuator). Values are rounded to the model's
    dtype, so a float32 hybridwam and a float64 MuJoCo start from exactly the same numbers.
    Returns (qpos0 [B, nq], qvel0 [B, nv], ctrls [B, T, nu]).
    """
    from .types import BALL, FREE

    m = model.mj
    rng = np.random.default_rng(seed)
    qpos = np.tile(np.asarray(m.qpos0, dtype=np.float64), (batch, 1))
    contact = bool(model.structure.pairs)
    for j in range(m.njnt):
        a, t = int(m.jnt_qposadr[j]), int(m.jnt_type[j])
        n = (0 if contact else 3) if t == FREE else 0 if t == BALL else 1
        qpos[:, a:a + n] += scale * rng.standard_normal((batch, n))
    qvel = scale * rng.standard_normal((batch, m.nv))
    lo = np.where(m.actuator_ctrllimited, m.actuator_ctrlrange[:, 0], -1.0) if m.nu else np.zeros(0)
    hi = np.where(m.actuator_ctrllimited, m.actuator_ctrlrange[:, 1], 1.0) if m.nu else np.zeros(0)
    ctrls = rng.uniform(lo, hi, size=(batch, steps, m.nu))
    np_dtype = np.float32 if model.dtype == torch.float32 else np.float64
    return tuple(x.astype(np_dtype).astype(np.float64) for x in (qpos, qvel, ctrls))


def _sync(device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize(torch.device(device))


# ---- machine description ---------------------------------------------------------------------
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(device: str = "cpu") -> dict:
    """CPU model, cores, library versions, device and date (UTC) of a benchmark run."""
    import mujoco
    import warp as wp

    cores = os.cpu_count() or 1
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = cores
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": cores,
        "usable_cores": usable,
        "hybridwam_threads": resolve_threads(None, device),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "warp": wp.config.version,
        "mujoco": mujoco.__version__,
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    peers = {n: p.version() for n, p in PEERS.items()}
    info["peers"] = ", ".join(f"{PEERS[n].label} {v}" for n, v in peers.items() if v) or "none installed"
    return info


# ---- step benchmark --------------------------------------------------------------------------
def _mujoco_rollout_setup(m, qpos, qvel, nthread: int):
    import mujoco

    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS.value
    d = mujoco.MjData(m)
    s0 = np.empty(mujoco.mj_stateSize(m, spec))
    mujoco.mj_getState(m, d, s0, spec)
    state0 = np.tile(s0, (qpos.shape[0], 1))
    iq = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_TIME.value)
    iv = iq + m.nq
    state0[:, iq:iv] = qpos
    state0[:, iv:iv + m.nv] = qvel
    datas = [mujoco.MjData(m) for _ in range(max(nthread, 1))]
    return np.ascontiguousarray(state0), datas, iq, iv


def hybrid_world(physics, hidden: tuple[int, ...], seed: int = 0):
    """A HybridModel of ``physics`` with an hw.Residual of ``hidden`` layers (force mode) whose
    weights are random and non-zero (a fresh one is zero in its last layer, which would not be
    a fair workload) and whose output is scaled to 1e-3 N m, a correction that leaves the
    dynamics close to the physics'."""
    from .hybrid import HybridModel
    from .residual import Residual

    res = Residual(physics.model, hidden=hidden, mode="force")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in res.parameters():
            p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float64) / max(p.shape[-1], 1) ** 0.5).to(p))
        res.output_scale.fill_(1e-3)
    return HybridModel(physics, res)


def _hybrid_label(hidden) -> str:
    """A hybrid row's engine column: the looped engine with the residual of ``hidden`` layers."""
    return f"hybrid: looped + {'x'.join(map(str, hidden))} residual"


def bench_step(scene: str = "acrobot", batch: int = 1024, steps: int = 100, repeat: int = 5,
               device: str | None = "cpu", seed: int = 0, nthread: int | None = None,
               peers: tuple[str, ...] | None = None, threads: int | None = None,
               hybrid: tuple[int, ...] | None = None) -> dict:
    """World-steps per second of a no-grad batched rollout, hybridwam vs ``mujoco.rollout``.

    hybridwam runs on ``threads`` CPU threads (default: all usable cores, as ``Physics``).
    ``hybrid``: hidden layer sizes; hybridwam then runs the hybrid model (:func:`hybrid_world`:
    physics plus that residual, inside the step) and MuJoCo the physics alone, no peers.

    Both simulate the same MjModel (``model.mj``) from the same initial states with the same
    controls ([batch, steps, nu]); MuJoCo runs on ``nthread`` threads (default: all cores).
    Each side is warmed up once (hybridwam's kernel compile is reported separately, never
    timed), then both are timed ``repeat`` times, interleaved; the median is the figure, the
    best is kept too.
    The final states are compared (``max_abs_dq``, ``max_abs_dv``) so the race is honest.
    ``peers``: names from ``hybridwam.peers.PEERS`` to time on the same model and inputs,
    interleaved with the other two (default: ``default_peers(device)``, i.e. Newton, plus MuJoCo
    Warp on CUDA; ``()``: none). Each peer's rate, hybridwam / peer and final-state difference to
    MuJoCo go in the row under its name, or the reason it did not run (not installed, model).
    """
    import mujoco
    from mujoco import rollout as mj_rollout

    from .model import load_model
    from .physics import Physics

    if batch < 1 or steps < 1 or repeat < 1:
        raise ValueError("batch, steps and repeat must be positive")
    model = load_model(model_xml(scene), device=device, **model_options(scene))
    # no finite check: a world that diverges is counted and reported in the row (diverged_worlds)
    # instead of stopping the benchmark; MuJoCo's rollout does not check either
    physics = Physics(model, verbose=False, threads=threads, check_finite=False)
    world = physics if hybrid is None else hybrid_world(physics, tuple(hybrid), seed)
    if hybrid is not None:
        peers = ()
    nthread = (os.cpu_count() or 1) if nthread is None else nthread
    qpos, qvel, ctrls = random_inputs(model, batch, steps, seed)
    dev, dt = model.device, model.dtype
    tq, tv, tc = (torch.as_tensor(x, dtype=dt, device=dev) for x in (qpos, qvel, ctrls))

    m = model.mj
    state0, datas, iq, iv = _mujoco_rollout_setup(m, qpos, qvel, nthread)
    out = np.empty((batch, steps, state0.shape[1]))
    sens = np.empty((batch, steps, m.nsensordata))
    control = np.ascontiguousarray(ctrls)

    def run_hw():
        with torch.no_grad():
            tr = world.rollout(tq, tv, tc)
        _sync(dev)
        return tr

    peers = default_peers(dev) if peers is None else tuple(peers)
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; known: {', '.join(PEERS)}")
    runners, notes = {}, {}
    for name in peers:
        p = PEERS[name]
        notes[name] = "not installed" if p.version() is None else p.unsupported(model)
        if notes[name] is None:
            try:
                runners[name] = p.runner(model, qpos, qvel, ctrls, device=dev)
            except ValueError as e:  # the peer built another model from the file (a closed linkage)
                notes[name] = f"its model differs ({e})"
                continue
            runners[name].run()  # warm-up: the peer's kernels compile on first use
    peer_times = {name: [] for name in runners}
    peer_final = {}
    hw_times, mj_times = [], []
    with mj_rollout.Rollout(nthread=nthread if nthread > 1 else 0) as pool:

        def run_mj():
            pool.rollout(m, datas, state0, control, state=out, sensordata=sens)

        traj = run_hw()  # warm-ups: first launch, allocator, thread pool
        run_mj()
        for _ in range(repeat):  # interleaved, so a change in machine load hits both sides alike
            dt, traj = _steady(run_hw)
            hw_times.append(dt)
            mj_times.append(_steady(run_mj)[0])
            for name, runner in runners.items():
                dt, peer_final[name] = _steady(runner.run)
                peer_times[name].append(dt)
    hw_q = traj.qpos[:, -1].double().cpu().numpy()
    hw_v = traj.qvel[:, -1].double().cpu().numpy()
    finite = np.isfinite(hw_q).all(1) & np.isfinite(hw_v).all(1)
    mj_q, mj_v = out[:, -1, iq:iv], out[:, -1, iv:iv + m.nv]

    work = batch * steps
    hw_rate, mj_rate = work / statistics.median(hw_times), work / statistics.median(mj_times)
    peer_cols = {}
    for name in peers:
        if name in runners:
            q, v = peer_final[name]
            peer_cols.update(_peer_columns(name, work, peer_times[name], hw_rate, q - mj_q, v - mj_v))
        else:
            peer_cols[name] = notes[name]
    return {**_law_counts(model),
        "benchmark": "step",
        "scene": scene,
        "nq": m.nq, "nv": m.nv, "nu": m.nu,
        "batch": batch,
        "steps": steps,
        "repeat": repeat,
        "device": dev,
        "dtype": str(dt).replace("torch.", ""),
        "hybridwam_steps_per_s": hw_rate,
        "hybridwam_best_steps_per_s": work / min(hw_times),
        "mujoco_steps_per_s": mj_rate,
        "mujoco_best_steps_per_s": work / min(mj_times),
        "mujoco_threads": max(nthread, 1),
        "hybridwam_threads": physics.threads,
        "ratio": hw_rate / mj_rate,
        # over the worlds that stayed finite (all of them unless diverged_worlds says otherwise)
        "max_abs_dq": float(np.max(np.abs(hw_q - mj_q)[finite], initial=0.0)),
        "max_abs_dv": float(np.max(np.abs(hw_v - mj_v)[finite], initial=0.0)),
        "diverged_worlds": int((~finite).sum()),
        "compile_seconds": physics.compile_seconds,
        "engine": physics.engine if hybrid is None else _hybrid_label(hybrid),
        "mujoco_integrator": mujoco.mjtIntegrator(m.opt.integrator).name,
        **peer_cols,
    }


def _peer_columns(name: str, work: int, times: list[float], hw_rate: float, dq: np.ndarray, dv: np.ndarray) -> dict:
    """A step row's columns for peer ``name``: what ran, its rate, hybridwam / peer, and its
    final-state difference to MuJoCo (dq, dv: peer minus MuJoCo)."""
    p = PEERS[name]
    rate = work / statistics.median(times)
    return {name: f"{p.label} {p.version()}", f"{name}_steps_per_s": rate,
            f"{name}_best_steps_per_s": work / min(times), f"ratio_{name}": hw_rate / rate,
            f"{name}_max_abs_dq": float(np.max(np.abs(dq))), f"{name}_max_abs_dv": float(np.max(np.abs(dv)))}


# ---- per-call stepping --------------------------------------------------------------------------
def bench_calls(scene: str = "acrobot", batch: int = 64, calls: int = 200, repeat: int = 3,
                device: str | None = "cpu", seed: int = 0, nthread: int = 1,
                hybrid: tuple[int, ...] | None = None) -> dict:
    """Cost of one control step per call, as an environment or an MPC plant steps: ``calls``
    consecutive calls, each advancing ``batch`` worlds by one step from the previous call's state.

    Three ways: ``Physics.step`` (validation, allocation, autograd wrapper, one launch),
    ``Physics.capture(batch).step`` (the launch replayed from a captured graph: CUDA graph on GPUs,
    Warp's CPU graph on the CPU; with its default finite checks and output copies) and
    ``mujoco.rollout`` called with one step per call on ``nthread`` threads (default 1: for small
    batches MuJoCo's thread hand-off costs more than it saves). Times are the median over
    ``repeat`` interleaved runs; all three start from the same states and controls, and their final
    states are compared (captured vs ``Physics.step`` must agree exactly). ``hybrid``: hidden
    sizes; the hybrid model (:func:`hybrid_world`) then steps, ``HybridModel.step`` against
    ``HybridModel.capture``, and MuJoCo the physics alone.
    """
    from mujoco import rollout as mj_rollout

    from .model import load_model
    from .physics import Physics

    if batch < 1 or calls < 1 or repeat < 1:
        raise ValueError("batch, calls and repeat must be positive")
    model = load_model(model_xml(scene), device=device, **model_options(scene))
    physics = Physics(model, verbose=False)
    world = physics if hybrid is None else hybrid_world(physics, tuple(hybrid), seed)
    captured = world.capture(batch, 1)
    qpos, qvel, ctrls = random_inputs(model, batch, calls, seed)
    dev, dt = model.device, model.dtype
    tq, tv, tc = (torch.as_tensor(x, dtype=dt, device=dev) for x in (qpos, qvel, ctrls))
    u = [tc[:, t].contiguous() for t in range(calls)]

    def loop(step):
        def run():
            q, v = tq, tv
            with torch.no_grad():
                for t in range(calls):
                    q, v = step(q, v, u[t])
            _sync(dev)
            return q, v
        return run

    m = model.mj
    state, datas, iq, iv = _mujoco_rollout_setup(m, qpos, qvel, nthread)
    ctrl_mj = [np.ascontiguousarray(ctrls[:, t:t + 1]) for t in range(calls)]
    out = np.empty((batch, 1, state.shape[1]))
    runs = {"step": loop(world.step), "captured": loop(captured.step)}
    times = {k: [] for k in (*runs, "mujoco")}
    finals = {}
    with mj_rollout.Rollout(nthread=nthread if nthread > 1 else 0) as pool:

        def run_mj():
            s = state
            for t in range(calls):
                pool.rollout(m, datas, s, ctrl_mj[t], state=out)
                s = np.ascontiguousarray(out[:, -1])
            return s

        runs["mujoco"] = run_mj
        for fn in runs.values():  # warm-ups: first launch, capture, thread pool
            fn()
        for _ in range(repeat):
            for k, fn in runs.items():
                time.sleep(PAUSE_S)
                t0 = time.perf_counter()
                finals[k] = fn()
                times[k].append(time.perf_counter() - t0)
    per_call = {k: statistics.median(v) / calls for k, v in times.items()}
    (sq, sv), (cq, cv), s_mj = finals["step"], finals["captured"], finals["mujoco"]
    mq, mv = s_mj[:, iq:iv], s_mj[:, iv:iv + m.nv]
    hq, hv = sq.double().cpu().numpy(), sv.double().cpu().numpy()
    return {"benchmark": "calls", "scene": scene, **_law_counts(model),
            "batch": batch, "calls": calls, "repeat": repeat, "device": dev, "dtype": str(dt).replace("torch.", ""),
            "step_us_per_call": per_call["step"] * 1e6, "captured_us_per_call": per_call["captured"] * 1e6,
            "mujoco_us_per_call": per_call["mujoco"] * 1e6, "mujoco_threads": max(nthread, 1),
            "captured_speedup_vs_step": per_call["step"] / per_call["captured"],
            "captured_vs_mujoco": per_call["mujoco"] / per_call["captured"],
            "captured_equals_step": bool(torch.equal(sq, cq) and torch.equal(sv, cv)),
            "max_abs_diff_vs_mujoco": float(max(np.abs(hq - mq).max(), np.abs(hv - mv).max())),
            "graph": repr(captured),
            **({} if hybrid is None else {"engine": _hybrid_label(hybrid)})}


# ---- reports ---------------------------------------------------------------------------------
def _fmt_rate(x: float) -> str:
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.1f} k"


_LAWS = (("contact", "contact_pairs"), ("joint limits", "limited_joints"), ("frictionloss", "frictionloss_dofs"))


def _law_counts(model) -> dict:
    """How many contact pairs, limited joints and dry-friction dofs a model has whose law is not
    MuJoCo's (see _law_note: with limit_law "mujoco" limits and dry friction are MuJoCo's)."""
    st = model.structure
    own = st.limit_law != "mujoco"
    return dict(zip([key for _, key in _LAWS],
                    (len(st.pairs), sum(st.jnt_limited) * own, sum(st.dof_frictionloss) * own), strict=True))


def _law_note(row: dict, tail: str = "") -> str:
    """Why a row's difference to MuJoCo is not a precision figure: contacts, joint limits and dry
    joint friction follow hybridwam's compliant laws, MuJoCo's soft constraints."""
    what = [w for w, key in _LAWS if row.get(key)]
    if not what:
        return ""
    return f" ({', '.join(what)}: different laws{', ' + tail if tail else ''})"


def markdown_table(rows: list[dict]) -> str:
    """Step-benchmark rows as a Markdown table (rates: median world-steps per second); with
    three columns per peer the rows name (its rate, or why it did not run)."""
    peers = [n for n in PEERS if any(n in r for r in rows)]
    head = ("| scene (engine) | batch | steps | hybridwam world-steps/s (threads) | MuJoCo world-steps/s (threads) | "
            "hybridwam / MuJoCo | max abs final-state diff |")
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    for n in peers:
        label = PEERS[n].label
        head += f" {label} world-steps/s | hybridwam / {label} | {label}: max abs diff to MuJoCo |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for r in rows:
        diff = f"{max(r['max_abs_dq'], r['max_abs_dv']):.1e}" + _law_note(r, "not comparable")
        if r.get("diverged_worlds"):
            diff += f"; {r['diverged_worlds']} of {r['batch']} worlds diverged (non-finite final state)"
        scene = r["scene"] + (f" ({r['engine']})" if "engine" in r else "")
        line = (f"| {scene} | {r['batch']} | {r['steps']} | {_fmt_rate(r['hybridwam_steps_per_s'])} "
                f"({r.get('hybridwam_threads', 1)}) | "
                f"{_fmt_rate(r['mujoco_steps_per_s'])} ({r['mujoco_threads']}) | {r['ratio']:.1f}x | {diff} |")
        for n in peers:
            if f"{n}_steps_per_s" in r:
                line += (f" {_fmt_rate(r[f'{n}_steps_per_s'])} | {r[f'ratio_{n}']:.1f}x | "
                         f"{max(r[f'{n}_max_abs_dq'], r[f'{n}_max_abs_dv']):.1e} |")
            else:
                line += f" not run: {r.get(n, 'not requested')} | | |"
        lines.append(line)
    return "\n".join(lines)


def machine_lines(info: dict) -> list[str]:
    dev = info["device"] + (f" ({info['gpu']})" if "gpu" in info else "")
    return [f"- date: {info['date']}",
            f"- machine: {info['cpu']}, {info['cores']} cores ({info['usable_cores']} usable); "
            f"hybridwam threads: {info.get('hybridwam_threads', 'not recorded')}",
            f"- device: {dev}",
            f"- versions: python {info['python']}, torch {info['torch']}, warp {info['warp']}, "
            f"mujoco {info['mujoco']}; peers: {info.get('peers', 'not recorded')}",
            f"- load average (1 min) at start: {info.get('load_average_1min')}"]


def write_report(name: str, rows: list[dict], info: dict, out_dir: str,
                 table: Callable[[list[dict]], str] = markdown_table, note: str = "") -> tuple[str, str, str]:
    """Write ``<out_dir>/<name>.md`` and ``<name>.csv``; returns (md_path, csv_path, markdown).
    ``name`` must be a plain file name (``hw.tasks.safe_stem``): the reports stay inside ``out_dir``."""
    from .tasks import output_path

    md_path = output_path(out_dir, name, ".md", "benchmark name")
    csv_path = output_path(out_dir, name, ".csv", "benchmark name")
    os.makedirs(out_dir, exist_ok=True)
    md = "\n".join([f"# hybridwam benchmark: {name}", "", report_body(rows, info, table, note), ""])
    with open(md_path, "w") as f:
        f.write(md)
    keys = list(dict.fromkeys([*(k for r in rows for k in r), *info]))
    with open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({**r, **info})
    return md_path, csv_path, md


def readme_key(name: str, device: str) -> str:
    """Marker key of a benchmark's README section: ``step:cpu``, ``grad:cuda``, ..."""
    return f"{name}:{'cuda' if device.startswith('cuda') else 'cpu'}"


def readme_markers(key: str) -> tuple[str, str]:
    return f"<!-- bench:{key} -->", f"<!-- /bench:{key} -->"


def check_readme(path: str, keys: list[str]) -> str:
    """The README's text, after checking that it has both markers of every section in ``keys``
    (so a long benchmark run cannot end in a README it cannot update)."""
    with open(path) as f:
        text = f.read()
    missing = [m for k in keys for m in readme_markers(k) if text.count(m) != 1]
    if missing:
        raise ValueError(f"{path}: needs each of these markers exactly once (the benchmark's table goes "
                         f"between a pair): {', '.join(missing)}")
    return text


def update_readme(path: str, key: str, markdown: str) -> None:
    """Replace what lies between the README's markers of ``key`` with ``markdown``."""
    text = check_readme(path, [key])
    start, end = readme_markers(key)
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    with open(path, "w") as f:
        f.write(f"{head}{start}\n{markdown.strip()}\n{end}{tail}")


def report_body(rows: list[dict], info: dict, table: Callable[[list[dict]], str], note: str) -> str:
    """A report without its title: machine lines, what the figures mean, the table."""
    return "\n".join([*machine_lines(info), "", note, "", table(rows)])


# ---- grad -----------------------------------------------------------------------------------
def _sq_norm_tangent_grad(m, qpos):
    """d sum(qpos^2) / d (MuJoCo's position tangent, nv: mj_integratePos' velocities): 2 qpos for
    hinge, slide and a free joint's position; zero for a unit quaternion, whose squared norm no
    rotation changes."""
    import numpy as np

    g = np.zeros(m.nv)
    for j in range(m.njnt):
        t, qa, da = int(m.jnt_type[j]), int(m.jnt_qposadr[j]), int(m.jnt_dofadr[j])
        if t == 0:  # free
            g[da:da + 3] = 2 * qpos[qa:qa + 3]
        elif t in (2, 3):  # slide, hinge
            g[da] = 2 * qpos[qa]
    return g


def bench_grad(scene: str = "acrobot", batch: int = 256, horizon: int = 100, repeat: int = 3,
               fd_worlds: int | None = None, device: str | None = None, seed: int = 0, dtype: str = "float32") -> dict:
    """Time of the gradient of a scalar rollout loss w.r.t. all controls [B, T, nu]:
    hybridwam forward alone, hybridwam forward + backward, and MuJoCo finite differences
    (mujoco.mjd_transitionFD per step, centred, chained backwards through the Jacobians) for the
    same gradient. ``fd_worlds``: MuJoCo runs on that many worlds and is scaled linearly to
    ``batch`` (it is a loop of independent per-world work); default: all worlds."""
    import mujoco
    import numpy as np
    import torch

    import hybridwam as hw

    model = hw.load_model(model_xml(scene), device=device, dtype=dtype, **model_options(scene))
    phys = hw.Physics(model, verbose=False)
    m = model.mj
    fdt = model.dtype
    g = torch.Generator().manual_seed(seed)
    q0, v0 = model.default_state(batch)
    q0 = q0 + 0.1 * torch.randn(q0.shape, generator=g, dtype=torch.float64).to(fdt)
    lo, hi = (torch.as_tensor(m.actuator_ctrlrange[:, i], dtype=torch.float64) for i in (0, 1))
    noise = 2 * torch.rand(batch, horizon, m.nu, generator=g, dtype=torch.float64) - 1
    u = (lo + hi) / 2 + (hi - lo) / 2 * 0.5 * noise
    q0, v0, u = (x.to(device=model.device, dtype=fdt) for x in (q0, v0, u))

    def loss_of(tr):
        return (tr.qpos[:, -1] ** 2).sum()

    def forward():
        with torch.no_grad():
            phys.rollout(q0, v0, u)

    def forward_backward():
        uu = u.clone().requires_grad_(True)
        loss_of(phys.rollout(q0, v0, uu)).backward()
        return uu.grad

    # one torch intra-op thread, as hybridwam's planners use on the CPU: torch's OpenMP threads
    # (the loss and its backward are torch ops) otherwise spin and compete with Warp's kernel
    threads = torch.get_num_threads()
    if model.device == "cpu":
        torch.set_num_threads(1)
    try:
        forward()
        grad = forward_backward()
        t_fwd = min(_time(forward) for _ in range(repeat))
        t_fb = min(_time(forward_backward) for _ in range(repeat))
    finally:
        torch.set_num_threads(threads)

    # MuJoCo: per world, roll out, then chain transition Jacobians backwards
    nw = batch if fd_worlds is None else min(fd_worlds, batch)
    d = mujoco.MjData(m)
    nx = 2 * m.nv + m.na
    A = np.zeros((nx, nx))
    B = np.zeros((nx, m.nu))
    U = u.double().cpu().numpy()
    grads = np.zeros((nw, horizon, m.nu))

    def mujoco_fd():
        for w in range(nw):
            mujoco.mj_resetData(m, d)
            d.qpos[:] = q0[w].double().cpu().numpy()
            d.qvel[:] = v0[w].double().cpu().numpy()
            As, Bs = [], []
            for t in range(horizon):
                d.ctrl[:] = U[w, t]
                mujoco.mjd_transitionFD(m, d, 1e-6, 1, A, B, None, None)
                As.append(A.copy())
                Bs.append(B.copy())
                mujoco.mj_step(m, d)
            lam = np.zeros(nx)
            lam[: m.nv] = _sq_norm_tangent_grad(m, d.qpos)
            for t in range(horizon - 1, -1, -1):
                grads[w, t] = Bs[t].T @ lam
                lam = As[t].T @ lam

    t_fd = _time(mujoco_fd) * batch / nw
    ours = grad[:nw].double().cpu().numpy()
    agree = float(np.abs(ours - grads).max() / max(np.abs(grads).max(), 1e-12))
    return {
        "benchmark": "grad", "scene": scene, "engine": phys.engine, "batch": batch, "horizon": horizon,
        "device": model.device, "dtype": dtype,
        "forward_s": t_fwd, "forward_backward_s": t_fb, "backward_over_forward": (t_fb - t_fwd) / t_fwd,
        "mujoco_fd_s": t_fd, "mujoco_fd_worlds_measured": nw, "speedup_vs_mujoco_fd": t_fd / t_fb,
        "max_rel_diff_vs_mujoco_fd": agree,
    }


def bench_grad_hybrid(scene: str = "double_pendulum", batch: int = 1, horizon: int = 100, repeat: int = 5,
                      hidden: tuple[int, ...] = (64, 64), device: str | None = None, seed: int = 0) -> dict:
    """Gradient of sum(qpos_T^2) w.r.t. every control through the hybrid model (physics plus a
    residual of ``hidden`` layers inside the step, :func:`hybrid_world`), timed against the same
    gradient through the physics alone and through the stepwise definition (torch autograd over
    a loop of Physics.step with the residual's force), whose gradient the fused one must equal."""
    import torch

    import hybridwam as hw

    from .hybrid import step_rollout

    model = hw.load_model(model_xml(scene), device=device, **model_options(scene))
    phys = hw.Physics(model, verbose=False)
    world = hybrid_world(phys, tuple(hidden), seed)
    g = torch.Generator().manual_seed(seed)
    q0, v0 = model.default_state(batch)
    q0 = q0 + (0.1 * torch.randn(q0.shape, generator=g, dtype=torch.float64)).to(q0)
    u = (0.5 * torch.randn(batch, horizon, model.nu, generator=g, dtype=torch.float64)).to(q0)
    res = world.residual

    def stepwise(q, v, c):
        return phys.step(q, v, c, qfrc_extra=res(q, v, c))

    def grad_of(rollout):
        def run():
            uu = u.clone().requires_grad_(True)
            (rollout(uu)[:, -1] ** 2).sum().backward()
            return uu.grad
        return run

    runs = {"hybrid": grad_of(lambda c: world.rollout(q0, v0, c).qpos),
            "physics": grad_of(lambda c: phys.rollout(q0, v0, c).qpos),
            "stepwise": grad_of(lambda c: step_rollout(stepwise, q0, v0, c)[0])}

    def fwd():
        with torch.no_grad():
            world.rollout(q0, v0, u)

    threads = torch.get_num_threads()
    if model.device == "cpu":
        torch.set_num_threads(1)
    try:
        grads = {k: f() for k, f in runs.items()}
        times = {k: min(_time(f) for _ in range(repeat if k != "stepwise" else max(1, repeat // 2)))
                 for k, f in runs.items()}
        fwd()
        t_fwd = min(_time(fwd) for _ in range(repeat))
    finally:
        torch.set_num_threads(threads)
    diff = (grads["hybrid"] - grads["stepwise"]).abs().max() / grads["stepwise"].abs().max().clamp_min(1e-12)
    return {"benchmark": "grad", "hybrid": "x".join(map(str, hidden)), "scene": scene, "batch": batch,
            "horizon": horizon, "device": model.device, "dtype": str(model.dtype).replace("torch.", ""),
            "engine": _hybrid_label(hidden), "physics_engine": phys.engine,
            "forward_s": t_fwd, "forward_backward_s": times["hybrid"],
            "physics_forward_backward_s": times["physics"], "stepwise_forward_backward_s": times["stepwise"],
            "hybrid_over_physics": times["hybrid"] / times["physics"],
            "max_rel_diff_vs_stepwise": float(diff)}


def _time(fn) -> float:
    import time

    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---- registry --------------------------------------------------------------------------------
@dataclass
class Benchmark:
    """One entry of ``hybridwam bench``.

    ``add_args(parser)`` adds the subcommand's options; ``run(args) -> rows`` runs it from parsed
    arguments; ``suite(args) -> rows`` runs its default set for ``hybridwam bench`` (args then
    holds only the common options: device, out, seed); ``table(rows) -> str`` renders Markdown.
    """

    help: str
    add_args: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], list[dict]]
    suite: Callable[[argparse.Namespace], list[dict]]
    table: Callable[[list[dict]], str] = field(default=markdown_table)
    #: what the figures mean, printed above the table
    note: str = ""


def positive_float(s: str) -> float:
    """argparse type: a finite number > 0, with a one-line error otherwise."""
    try:
        v = float(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}") from None
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s}")
    return v


def positive_int(s: str) -> int:
    """argparse type: an integer >= 1, with a one-line error otherwise."""
    try:
        v = int(s)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _step_args(p: argparse.ArgumentParser):
    p.add_argument("--scene", nargs="+", default=["acrobot"], metavar="S",
                   help="shipped scene name, MJCF path, chain:N, tree or tree:contact; several may be given "
                        "(default: acrobot)")
    p.add_argument("--batch", type=positive_int, default=1024, metavar="B", help="worlds (default: 1024)")
    p.add_argument("--steps", type=positive_int, default=100, metavar="T", help="steps per rollout (default: 100)")
    p.add_argument("--repeat", type=positive_int, default=5, metavar="R", help="timed runs (default: 5)")
    p.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                   help="peers to time beside MuJoCo: newton, mjwarp, or none at all with no name "
                        "(default: newton, plus mjwarp on CUDA; each only when installed)")
    p.add_argument("--threads", type=positive_int, nargs="+", default=None, metavar="N",
                   help="hybridwam CPU threads; several give one row each (default: all usable cores)")
    p.add_argument("--hybrid", type=_hidden, default=None, metavar="HxH",
                   help="run the hybrid model instead: physics plus a residual of these hidden sizes "
                        "(e.g. 64x64; MuJoCo runs the physics alone)")


def _hidden(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.lower().split("x"))
    except ValueError:
        out = ()
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected hidden sizes like 64x64, got {text!r}")
    return out


def _step_run(args) -> list[dict]:
    rows = []
    for scene in args.scene:
        for threads in getattr(args, "threads", None) or [None]:
            rows.append(bench_step(scene, args.batch, args.steps, args.repeat, device=args.device, seed=args.seed,
                                   peers=getattr(args, "peers", None), threads=threads,
                                   hybrid=getattr(args, "hybrid", None)))
            r = rows[-1]
            peer = "".join(f"; {p.label} {_fmt_rate(r[f'{n}_steps_per_s'])} ({r[f'ratio_{n}']:.1f}x)"
                           if f"{n}_steps_per_s" in r else f"; {p.label} not run: {r[n]}"
                           for n, p in PEERS.items() if n in r)
            print(f"step {scene} B={r['batch']} T={r['steps']}: hybridwam {_fmt_rate(r['hybridwam_steps_per_s'])} "
                  f"({r['hybridwam_threads']} threads), MuJoCo {_fmt_rate(r['mujoco_steps_per_s'])} world-steps/s "
                  f"({r['mujoco_threads']} threads), ratio {r['ratio']:.1f}x, "
                  f"final-state diff {max(r['max_abs_dq'], r['max_abs_dv']):.1e}{peer}"
                  + (f"; {r['diverged_worlds']} worlds diverged" if r["diverged_worlds"] else ""), flush=True)
    return rows


#: Suite scenes also timed as hybrid models (physics plus a residual of SUITE_HYBRID_HIDDEN).
SUITE_STEP_HYBRID = ("acrobot", "double_pendulum")
SUITE_HYBRID_HIDDEN = (64, 64)
#: Suite scenes timed without peers: Newton's CPU Featherstone takes many minutes on them.
SUITE_STEP_NO_PEERS = ("chain:24", "tree", "tree:contact", "hand", "linkage")


def _step_suite(args) -> list[dict]:
    ns = argparse.Namespace(**vars(args))
    ns.batch, ns.steps, ns.repeat = 1024, 100, 5
    ns.scene = [s for s in SUITE_STEP_SCENES if s not in SUITE_STEP_NO_PEERS]
    rows = _step_run(ns)
    ns.scene, ns.peers = [s for s in SUITE_STEP_SCENES if s in SUITE_STEP_NO_PEERS], []
    rows += _step_run(ns)
    ns.scene, ns.hybrid = list(SUITE_STEP_HYBRID), SUITE_HYBRID_HIDDEN
    return rows + _step_run(ns)


def _grad_args(p: argparse.ArgumentParser):
    p.add_argument("--scene", default="acrobot", metavar="S",
                   help="hinge/slide scene: shipped, a path, or chain:N (default: acrobot)")
    p.add_argument("--batch", type=positive_int, default=256, metavar="B", help="worlds (default: 256)")
    p.add_argument("--horizon", type=positive_int, default=100, metavar="T", help="steps (default: 100)")
    p.add_argument("--repeat", type=positive_int, default=3, metavar="R", help="timed runs (default: 3)")
    p.add_argument("--fd-worlds", type=positive_int, default=None, metavar="K",
                   help="worlds MuJoCo finite differences run on, scaled to B (default: all)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")


def _grad_run(args) -> list[dict]:
    r = bench_grad(args.scene, args.batch, args.horizon, args.repeat, fd_worlds=args.fd_worlds,
                   device=args.device, seed=args.seed, dtype=args.dtype)
    print(f"grad {r['scene']} B={r['batch']} T={r['horizon']} {r['dtype']}: forward {r['forward_s'] * 1e3:.1f} ms, "
          f"forward+backward {r['forward_backward_s'] * 1e3:.1f} ms (backward/forward "
          f"{r['backward_over_forward']:.2f}), MuJoCo FD {r['mujoco_fd_s'] * 1e3:.0f} ms "
          f"({r['speedup_vs_mujoco_fd']:.1f}x slower), gradients agree to {r['max_rel_diff_vs_mujoco_fd']:.1e}",
          flush=True)
    return [r]


#: The grad suite: (scene, worlds MuJoCo's finite differences run on): a shipped scene (the
#: unrolled engine) and the 24-link chain (the looped engine; MuJoCo's FD take ~9 s per world there).
SUITE_GRAD = (("acrobot", 64), ("chain:24", 2), ("tree", 2))


def _grad_suite(args) -> list[dict]:
    rows = []
    for scene, fd in SUITE_GRAD:
        ns = argparse.Namespace(**vars(args))
        ns.scene, ns.batch, ns.horizon, ns.repeat, ns.fd_worlds, ns.dtype = scene, 256, 100, 3, fd, "float32"
        rows += _grad_run(ns)
    for scene in SUITE_STEP_HYBRID:
        r = bench_grad_hybrid(scene, 1, 100, hidden=SUITE_HYBRID_HIDDEN, device=args.device, seed=args.seed)
        print(f"grad {scene} hybrid {r['hybrid']} B=1 T=100: forward+backward {r['forward_backward_s'] * 1e3:.2f} ms, "
              f"physics alone {r['physics_forward_backward_s'] * 1e3:.2f} ms ({r['hybrid_over_physics']:.1f}x), "
              f"stepwise {r['stepwise_forward_backward_s'] * 1e3:.1f} ms; gradients agree to "
              f"{r['max_rel_diff_vs_stepwise']:.1e}", flush=True)
        rows.append(r)
    return rows


def _grad_table(rows: list[dict]) -> str:
    lines = ["| scene (engine) | B | T | dtype | forward | forward+backward | backward / forward "
             "| MuJoCo FD (mjd_transitionFD) | hybridwam speed-up | max rel. gradient diff |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in [r for r in rows if "hybrid" not in r]:
        scene = r["scene"] + (f" ({r['engine']})" if "engine" in r else "")
        lines.append(f"| {scene} | {r['batch']} | {r['horizon']} | {r['dtype']} | {r['forward_s'] * 1e3:.1f} ms "
                     f"| {r['forward_backward_s'] * 1e3:.1f} ms | {r['backward_over_forward']:.2f} "
                     f"| {r['mujoco_fd_s'] * 1e3:.0f} ms ({r['mujoco_fd_worlds_measured']} worlds, scaled) "
                     f"| {r['speedup_vs_mujoco_fd']:.1f}x | {r['max_rel_diff_vs_mujoco_fd']:.1e} |")
    hyb = [r for r in rows if "hybrid" in r]
    if hyb:
        lines += ["", "Through the hybrid model (the residual inside the step; physics alone: the default engine, the "
                  "stepwise path: torch autograd over Physics.step with the residual's force):", "",
                  "| scene | residual | B | T | hybrid forward | hybrid forward+backward "
                  "| physics alone forward+backward | hybrid / physics | stepwise forward+backward "
                  "| max rel. gradient diff to stepwise |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in hyb:
            lines.append(f"| {r['scene']} | {r['hybrid']} | {r['batch']} | {r['horizon']} "
                         f"| {r['forward_s'] * 1e3:.2f} ms | {r['forward_backward_s'] * 1e3:.2f} ms "
                         f"| {r['physics_forward_backward_s'] * 1e3:.2f} ms "
                         f"({r['physics_engine']}) | {r['hybrid_over_physics']:.1f}x "
                         f"| {r['stepwise_forward_backward_s'] * 1e3:.1f} ms | {r['max_rel_diff_vs_stepwise']:.1e} |")
    return "\n".join(lines)


def _calls_args(p: argparse.ArgumentParser):
    p.add_argument("--scene", nargs="+", default=["acrobot"], metavar="S",
                   help="shipped scene name or MJCF path; several may be given (default: acrobot)")
    p.add_argument("--batch", type=positive_int, nargs="+", default=[64], metavar="B",
                   help="worlds per call; several may be given (default: 64)")
    p.add_argument("--calls", type=positive_int, default=200, metavar="N", help="consecutive calls (default: 200)")
    p.add_argument("--repeat", type=positive_int, default=3, metavar="R", help="timed runs (default: 3)")
    p.add_argument("--hybrid", type=_hidden, default=None, metavar="HxH",
                   help="step the hybrid model instead (HybridModel.step vs .capture; MuJoCo: the physics alone)")


def _calls_run(args) -> list[dict]:
    rows = []
    for scene in args.scene:
        for batch in args.batch:
            r = bench_calls(scene, batch, args.calls, args.repeat, device=args.device, seed=args.seed,
                            hybrid=getattr(args, "hybrid", None))
            rows.append(r)
            print(f"calls {scene} B={batch}: Physics.step {r['step_us_per_call']:.0f} us, captured "
                  f"{r['captured_us_per_call']:.0f} us ({r['captured_speedup_vs_step']:.1f}x), MuJoCo "
                  f"{r['mujoco_us_per_call']:.0f} us per call; captured == step: {r['captured_equals_step']}",
                  flush=True)
    return rows


def _calls_suite(args) -> list[dict]:
    ns = argparse.Namespace(**vars(args))
    ns.scene, ns.batch, ns.calls, ns.repeat = ["acrobot", "pusher"], [1, 64, 1024], 200, 3
    rows = _calls_run(ns)
    ns.scene, ns.batch, ns.hybrid = ["double_pendulum"], [1, 64], SUITE_HYBRID_HIDDEN
    return rows + _calls_run(ns)


def _calls_table(rows: list[dict]) -> str:
    lines = ["| scene | batch | Physics.step per call | captured step per call | captured speed-up "
             "| MuJoCo per call (threads) | MuJoCo / captured | captured == step | max abs diff to MuJoCo |",
             "|---|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        diff = f"{r['max_abs_diff_vs_mujoco']:.1e}" + _law_note(r)
        scene = r["scene"] + (f" ({r['engine']})" if "engine" in r else "")
        lines.append(f"| {scene} | {r['batch']} | {r['step_us_per_call']:.0f} us | "
                     f"{r['captured_us_per_call']:.0f} us | {r['captured_speedup_vs_step']:.1f}x | "
                     f"{r['mujoco_us_per_call']:.0f} us ({r['mujoco_threads']}) | {r['captured_vs_mujoco']:.1f}x | "
                     f"{'yes' if r['captured_equals_step'] else 'NO'} | {diff} |")
    return "\n".join(lines)


def _plan_benchmark() -> Benchmark:
    from .planning.bench import plan_args, plan_run, plan_suite, plan_table

    return Benchmark(help="trajectory optimisation: Adam / L-BFGS vs CEM at equal wall time",
                     add_args=plan_args, run=plan_run, suite=plan_suite, table=plan_table,
                     note="Each method gets the same wall-clock budget on the same task; the final cost is the "
                          "task's own cost of the best plan, and 'solved' replays it in MuJoCo.")


def _compile_benchmark() -> Benchmark:
    from .benchcompile import compile_args, compile_run, compile_suite, compile_table

    return Benchmark(help="cold first-run compile seconds against model size (fresh caches, a new process each)",
                     add_args=compile_args, run=compile_run, suite=compile_suite, table=compile_table,
                     note="Wall seconds from `hw.Physics(model)` to the end of its first one-step rollout, in a new "
                          "process with empty Warp and hybridwam kernel caches (a peer: its set-up on the same MJCF "
                          "and its first step). chain:N is a chain of N hinges, tree a 31-dof humanoid-like tree, "
                          "tree:contact the same tree on a floor with every geom colliding (hybridwam.benchmodels).")


def _loo_benchmark() -> Benchmark:
    from .calibration.bench import loo_args, loo_run, loo_suite, loo_table

    return Benchmark(help="leave-one-run-out calibration on the DFKI logs: hybrid vs identified physics on unseen runs",
                     add_args=loo_args, run=loo_run, suite=loo_suite, table=loo_table,
                     note="Each of the shipped double pendulum runs is held out in turn: `hw.calibrate` "
                          "(identification, then a 64x64 force residual; seed 0) trains on the others but the "
                          "next run, which validates, and the held-out run scores: RMSE of the joint angles over "
                          "open-loop windows of the horizon. The suite runs with and without the residual guard.")


def _sysid_benchmark() -> Benchmark:
    from .calibration.sysid_bench import sysid_args, sysid_run, sysid_suite, sysid_table

    return Benchmark(help="identification on held-out DFKI runs: hw.calibrate vs mujoco.sysid, same groups and splits",
                     add_args=sysid_args, run=sysid_run, suite=sysid_suite, table=sysid_table,
                     note="Each shipped double pendulum run is held out in turn; both identify body masses, "
                          "armature, damping, MuJoCo's dry friction and motor offsets on the other runs "
                          "(hybridwam with limit_law='mujoco', no per-run offsets; mujoco.sysid on windows of "
                          "0.2 s from logged states, its 'mujoco' optimizer), and one function scores both: "
                          "RMSE of the joint angles over open-loop windows of the horizon on the held-out run. "
                          "Needs mujoco[sysid]'s optional dependencies.")


#: name -> Benchmark; ``hybridwam bench NAME`` runs one, ``hybridwam bench`` runs every suite.
BENCHMARKS: dict[str, Benchmark] = {
    "step": Benchmark(
        help="forward rollout throughput (world-steps/s), hybridwam vs mujoco.rollout",
        add_args=_step_args, run=_step_run, suite=_step_suite,
        note="Rates are the median of the timed runs (warm-up and kernel compile excluded), each run timed in "
             "steady state (right after an untimed run of the same side, as in a loop of calls); MuJoCo is "
             "`mujoco.rollout` on the same MjModel, initial states and controls, with all cores."),
    "grad": Benchmark(
        help="gradient of a rollout loss w.r.t. all controls: backward vs forward, vs MuJoCo finite differences",
        add_args=_grad_args, run=_grad_run, suite=_grad_suite, table=_grad_table,
        note="Gradient of sum(qpos_T^2) w.r.t. every control. Times are the best of the timed runs; MuJoCo "
             "finite differences are `mjd_transitionFD` (centred) at every step of every world, chained "
             "backwards through the transition Jacobians (one core). hybridwam runs with one torch "
             "intra-op thread on the CPU (its loss and autograd bookkeeping are torch ops)."),
    "calls": Benchmark(
        help="one control step per call (environments, MPC plants): Physics.step vs a captured graph vs MuJoCo",
        add_args=_calls_args, run=_calls_run, suite=_calls_suite, table=_calls_table,
        note="Microseconds per call of one step for the whole batch, each call continuing from the last "
             "one's state (a timed run's time over its calls, the median of the runs; the suite makes 200 "
             "calls per run). 'captured' is "
             "`Physics.capture(B).step` (a graph of the launch, replayed; CUDA graph on GPUs, Warp's CPU "
             "graph on the CPU), with its default finite checks and output copies; MuJoCo is "
             "`mujoco.rollout` called with one step per call."),
    "plan": _plan_benchmark(),
    "compile": _compile_benchmark(),
    "loo": _loo_benchmark(),
    "sysid": _sysid_benchmark(),
}
