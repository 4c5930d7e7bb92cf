"""``hybridwam bench compile``: cold first-run compile time against model size.

Each measurement runs in a new Python process with fresh, empty Warp and hybridwam kernel caches
(``WARP_CACHE_PATH``, ``HYBRIDWAM_CACHE`` in a temporary folder), so nothing compiled earlier is
reused: the figure is what a user waits for the first time they load that model on a new
machine. hybridwam's time is ``hw.Physics(model)`` (kernel generation and compile) plus its first
one-step rollout; a peer's is its set-up on the same MJCF plus its first step (its kernels
compile on first use). Models: shipped scenes, paths, and the written models of
:mod:`hybridwam.benchmodels` (``chain:N``, ``tree``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

#: Models the suite measures (hybridwam's automatic engine choice for each).
SUITE_MODELS = ("acrobot", "chain:8", "chain:24", "chain:48", "tree", "tree:contact")
#: Seconds a single cold compile may take before it is stopped (reported as "> limit").
TIMEOUT_S = 900

_CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
spec = json.loads(sys.argv[1])
import numpy as np
from hybridwam.benchmodels import model_xml
import hybridwam as hw
m = hw.load_model(model_xml(spec["model"]), device=spec["device"])
out = {"nv": m.nv, "nq": m.nq, "pairs": len(m.structure.pairs)}
if spec["who"] == "hybridwam":
    t1 = time.perf_counter()
    p = hw.Physics(m, verbose=False, engine=spec["engine"])
    q, v = m.default_state(1)
    import torch
    with torch.no_grad():
        p.rollout(q, v, torch.zeros(1, 1, m.nu, dtype=m.dtype, device=m.device))
    out.update(seconds=time.perf_counter() - t1, engine=p.engine, kernel_seconds=p.compile_seconds)
    if p.engine == "unrolled":
        out["source_kb"] = len(p._mod.__source__) / 1000.0
else:
    from hybridwam.peers import PEERS
    peer = PEERS[spec["who"]]
    why = peer.unsupported(m) if peer.version() is not None else "not installed"
    if why:
        out.update(skipped=why)
    else:
        qpos, qvel = np.asarray(m.mj.qpos0)[None], np.zeros((1, m.nv))
        t1 = time.perf_counter()
        r = peer.runner(m, qpos, qvel, np.zeros((1, 1, m.nu)), device=spec["device"])
        r.run()
        out.update(seconds=time.perf_counter() - t1)
print("HYBRIDWAM_COMPILE_RESULT " + json.dumps(out))
"""


def cold_compile(model: str, who: str = "hybridwam", engine: str = "auto", device: str = "cpu",
                 timeout: float = TIMEOUT_S) -> dict:
    """One cold first run of ``model`` by ``who`` ("hybridwam" or a peer name) in a fresh process
    with empty kernel caches: {"seconds", "nv", "pairs", ...}, or {"timeout": seconds}."""
    spec = {"model": model, "who": who, "engine": engine, "device": device}
    with tempfile.TemporaryDirectory(prefix="hybridwam-compile-") as tmp:
        env = dict(os.environ, WARP_CACHE_PATH=os.path.join(tmp, "warp"), HYBRIDWAM_CACHE=os.path.join(tmp, "hw"))
        try:
            r = subprocess.run([sys.executable, "-c", _CHILD, json.dumps(spec)], env=env, capture_output=True,
                               text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"timeout": timeout}
    for line in r.stdout.splitlines():
        if line.startswith("HYBRIDWAM_COMPILE_RESULT "):
            return json.loads(line.split(" ", 1)[1])
    tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
    raise RuntimeError(f"cold compile of {model} by {who} failed (exit {r.returncode}): " + " | ".join(tail))


def bench_compile(models, engine: str = "auto", peers=(), device: str = "cpu") -> list[dict]:
    """A row per model: hybridwam's cold compile (and the peers', each in its own process)."""
    rows = []
    for model in models:
        r = cold_compile(model, "hybridwam", engine, device)
        row = {"benchmark": "compile", "model": model, "device": device, **r}
        for name in peers:
            p = cold_compile(model, name, engine, device)
            row[name] = p.get("seconds", p.get("skipped", f"> {p.get('timeout', '?')} s"))
        rows.append(row)
        print(f"compile {model}: {_fmt(row)} (nv={row.get('nv', '?')}, {row.get('engine', '?')} engine)", flush=True)
    return rows


def _fmt(r: dict) -> str:
    if "timeout" in r:
        return f"> {r['timeout']:.0f} s"
    return f"{r['seconds']:.1f} s"


def compile_table(rows: list[dict]) -> str:
    from .peers import PEERS

    peers = [n for n in PEERS if any(n in r for r in rows)]
    head = "| model | nv | contact pairs | engine | hybridwam cold first run |" + "".join(
        f" {PEERS[n].label} cold first run |" for n in peers)
    lines = [head, "|---|---:|---:|---|---:|" + "---:|" * len(peers)]
    for r in rows:
        cells = [r["model"], str(r.get("nv", "")), str(r.get("pairs", "")), r.get("engine", ""), _fmt(r)]
        for n in peers:
            v = r.get(n, "")
            cells.append(f"{v:.1f} s" if isinstance(v, float) else f"not run: {v}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compile_args(p):
    p.add_argument("--model", nargs="+", default=list(SUITE_MODELS), metavar="M",
                   help="shipped scene, MJCF path, chain:N, tree or tree:contact; several may be given "
                        f"(default: {' '.join(SUITE_MODELS)})")
    p.add_argument("--engine", choices=("auto", "unrolled", "looped"), default="auto",
                   help="hybridwam engine (default: auto, as hw.Physics)")
    p.add_argument("--peers", nargs="*", default=None, metavar="NAME",
                   help="peers to time on the same models: newton, mjwarp (default: newton, plus mjwarp on "
                        "CUDA, as bench step)")


def compile_run(args) -> list[dict]:
    from .peers import PEERS, default_peers

    peers = default_peers(args.device) if args.peers is None else tuple(args.peers)
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; known: {', '.join(PEERS)}")
    return bench_compile(args.model, args.engine, peers, args.device)


def compile_suite(args):
    import argparse

    ns = argparse.Namespace(**vars(args))
    ns.model, ns.engine, ns.peers = list(SUITE_MODELS), "auto", None
    return compile_run(ns)
