"""``hybridwam demo`` and ``hybridwam optimize``: optimise a task, replay it in MuJoCo, write results.

``run_optimize(config)`` optimises the task's actions through hybridwam's differentiable physics,
replays them open-loop in MuJoCo itself (``mujoco.mj_step`` on the scene's own ``MjModel``),
prints whether the task succeeded there and the final errors, and writes into the output folder:
``<task>.png`` (cost curve, joint trajectories of hybridwam and MuJoCo, controls), ``<task>.gif``
(an animation of the MuJoCo replay: MuJoCo's offscreen renderer where an OpenGL backend works,
else drawn with matplotlib; at most ``MAX_GIF_FRAMES`` frames, still in real time) and
``<task>.npz`` (actions, both trajectories, cost history). ``<task>`` is the task's name, a plain
file name (``hw.tasks.safe_stem``): nothing is written outside the output folder.
``run_demo()`` is ``run_optimize("cartpole_swingup")``.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

DEFAULT_DEMO_OUT = os.path.join("hybridwam_out", "demo")
DEFAULT_OPTIMIZE_OUT = "hybridwam_out"
DEMO_TASK = "cartpole_swingup"
QUICK_ITERS = 80
#: most frames in a GIF: longer trajectories are subsampled evenly (each frame then lasts longer)
MAX_GIF_FRAMES = 300
#: seconds the final state stays on screen at the end of a GIF
GIF_HOLD_S = 0.5


def replay_mujoco(mj_model, qpos0, qvel0, ctrls) -> tuple[np.ndarray, np.ndarray]:
    """Open-loop replay in MuJoCo: ctrls [T, nu] per physics step -> qpos [T+1, nq], qvel [T+1, nv]."""
    import mujoco

    d = mujoco.MjData(mj_model)
    d.qpos[:] = np.asarray(qpos0, dtype=np.float64)
    d.qvel[:] = np.asarray(qvel0, dtype=np.float64)
    u = np.asarray(ctrls, dtype=np.float64)
    Q, V = [d.qpos.copy()], [d.qvel.copy()]
    for t in range(u.shape[0]):
        d.ctrl[:] = u[t]
        mujoco.mj_step(mj_model, d)
        Q.append(d.qpos.copy())
        V.append(d.qvel.copy())
    return np.array(Q), np.array(V)


def run_demo(out_dir: str = DEFAULT_DEMO_OUT, quick: bool = False, progress: bool = True) -> dict:
    """The README's demo: cartpole swing-up optimised through hybridwam, replayed in MuJoCo.

    ``quick``: {QUICK_ITERS} iterations and a shorter, coarser animation (for tests and CI; well
    under a minute on a 2-core CPU). Returns the dict of :func:`run_optimize`.
    """
    return run_optimize(DEMO_TASK, out_dir=out_dir, iters=QUICK_ITERS if quick else None, quick=quick,
                        progress=progress)


run_demo.__doc__ = run_demo.__doc__.replace("{QUICK_ITERS}", str(QUICK_ITERS))


def run_optimize(config: str, out_dir: str | None = None, iters: int | None = None, optimizer: str | None = None,
                 restarts: int | None = None, seed: int = 0, device: str | None = None, quick: bool = False,
                 animate: bool = True, progress: bool = True) -> dict:
    """Optimise any task (YAML path or shipped name), replay in MuJoCo, write plot / GIF / arrays.

    ``out_dir`` default: ``hybridwam_out/<task name>``. ``iters``, ``optimizer``, ``restarts``:
    as :func:`hw.optimize_trajectory` (default: the task's ``planner:`` section). Returns a dict:
    "success" (the task's test on MuJoCo's final state), "model_success", "errors" (final-state
    errors in MuJoCo, floats), "cost", "iters", "seconds", "deviation" (max |hybridwam - MuJoCo|
    over the trajectory), "plot", "animation" (or None), "animation_backend", "arrays", "out".
    """
    from .model import load_model
    from .physics import Physics
    from .planning.optimize import optimize_trajectory
    from .tasks import Task, output_path, safe_stem

    task = Task.from_yaml(config)
    name = safe_stem(task.name, f"{task.source}: name")  # it names the files (and the default folder)
    out_dir = out_dir or os.path.join(DEFAULT_OPTIMIZE_OUT, name)
    files = {ext: output_path(out_dir, name, ext, f"{task.source}: name") for ext in (".png", ".npz", ".gif")}
    model = load_model(task.scene_path, device=device)
    physics = Physics(model)
    print(f"hybridwam optimize: task {task.name} (scene {os.path.basename(task.scene_path)}, "
          f"{task.horizon} control steps of {task.dt:g} s = {task.duration:g} s, device {model.device})")
    res = optimize_trajectory(physics, task, iters=iters, optimizer=optimizer, restarts=restarts, seed=seed,
                              progress=progress)
    print(f"  optimised: {res.optimizer}, {res.iters} iterations in {res.wall_time:.1f} s, cost "
          f"{res.cost_history[0]:.4g} -> {res.cost:.4g}; success in hybridwam's model: {res.success}")

    # replay in MuJoCo itself
    ctrls = res.ctrls.detach().double().cpu().numpy()
    mq, mv = replay_mujoco(task.mj, task.qpos0.numpy(), task.qvel0.numpy(), ctrls)
    hq = res.rollout.qpos.detach().double().cpu().numpy()
    hv = res.rollout.qvel.detach().double().cpu().numpy()
    dev_q, dev_v = float(np.abs(hq - mq).max()), float(np.abs(hv - mv).max())
    deviation = max(dev_q, dev_v)
    q_end, v_end = torch.as_tensor(mq[-1]), torch.as_tensor(mv[-1])
    success = bool(task.success(q_end, v_end))
    errors = {k: v.double().numpy().tolist() if v.dim() else float(v) for k, v in task.errors(q_end, v_end).items()}
    print(f"  MuJoCo replay (open loop, {len(ctrls)} x mj_step): {'SUCCESS' if success else 'FAILED'}; final error: "
          f"{task.describe_errors(q_end, v_end)}")
    print(f"  max |hybridwam - MuJoCo| over the trajectory: qpos {dev_q:.2e}, qvel {dev_v:.2e}")

    os.makedirs(out_dir, exist_ok=True)
    plot = plot_result(task, res, mq, files[".png"], success=success)
    arrays = files[".npz"]
    np.savez_compressed(arrays, actions=res.actions.detach().cpu().numpy(), ctrls=ctrls, hybridwam_qpos=hq,
                        hybridwam_qvel=hv, mujoco_qpos=mq, mujoco_qvel=mv, cost_history=np.array(res.cost_history),
                        time=np.arange(len(mq)) * task.timestep)
    anim, backend = None, None
    if animate:
        anim, backend = write_animation(task.mj, task.scene_path, mq, files[".gif"], fps=12 if quick else 25,
                                        title=task.name)
    print(f"  plot:      {os.path.abspath(plot)}")
    if anim:
        print(f"  animation: {os.path.abspath(anim)} ({backend})")
    print(f"  arrays:    {os.path.abspath(arrays)}")
    print(f"output folder: {os.path.abspath(out_dir)}")
    return {"task": task.name, "success": success, "model_success": res.success, "errors": errors,
            "cost": res.cost, "iters": res.iters, "seconds": res.wall_time, "deviation": deviation, "plot": plot,
            "animation": anim, "animation_backend": backend, "arrays": arrays, "out": os.path.abspath(out_dir),
            "result": res}


# ---- plot ------------------------------------------------------------------------------------
def plot_result(task, res, mujoco_qpos, path: str, success: bool | None = None) -> str:
    """Cost curve, joint trajectories (hybridwam solid, MuJoCo replay dashed, goal dotted) and
    controls in one figure; returns ``path``."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from .viz import qpos_labels, qpos_units

    labels, units = qpos_labels(task), qpos_units(task)
    hq = res.rollout.qpos.detach().double().cpu().numpy()
    mq = np.asarray(mujoco_qpos)
    u = res.ctrls.detach().double().cpu().numpy()
    t = np.arange(hq.shape[0]) * task.timestep
    nq = task.nq
    fig, axes = plt.subplots(nq + 2, 1, figsize=(8, 2.0 * (nq + 2) + 0.6), squeeze=False)
    axes = axes[:, 0]
    ax = axes[0]
    it = np.arange(1, len(res.cost_history) + 1)
    ax.plot(it, res.cost_history, lw=1.0, alpha=0.6, label="this iteration")
    ax.plot(it, np.minimum.accumulate(res.cost_history), lw=1.4, label="best so far")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("cost (best restart)")
    ax.grid(alpha=0.3)
    goal = task.goal_qpos.numpy()
    for i in range(nq):
        ax = axes[i + 1]
        ax.plot(t, hq[:, i], lw=1.4, label="hybridwam plan")
        ax.plot(t, mq[:, i], "k--", lw=1.0, label="MuJoCo replay")
        if float(task.w_qpos[i]) > 0 or float(task.terminal_qpos[i]) > 0:
            g = goal[i]
            if bool(task.hinge_mask[i]):  # the equivalent goal angle nearest the final one
                g = g + 2 * np.pi * np.round((mq[-1, i] - g) / (2 * np.pi))
            ax.axhline(g, color="g", ls=":", lw=1.0, label="goal")
        ax.set_ylabel(labels[i] + (f" [{units[i]}]" if units[i] else ""))
        ax.grid(alpha=0.3)
    axes[1].legend(loc="best", fontsize=8)
    ax = axes[-1]
    act = task.names("actuator")
    for a in range(task.nu):
        ax.step(t[:-1], u[:, a], where="post", lw=1.0, label=act[a])
    ax.set_ylabel("ctrl")
    ax.set_xlabel("time [s]")
    ax.grid(alpha=0.3)
    if task.nu > 1:
        ax.legend(loc="best", fontsize=8)
    status = "" if success is None else (": success in MuJoCo" if success else ": NOT solved in MuJoCo")
    fig.suptitle(f"{task.name}, {res.optimizer} ({res.iters} iterations){status}")
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---- animation -------------------------------------------------------------------------------
_RENDER_SCRIPT = r"""
import sys, numpy as np, mujoco
from PIL import Image
scene, npz, out, W, H = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:6])
m = mujoco.MjModel.from_xml_path(scene)
d = mujoco.MjData(m)
data = np.load(npz)
qpos, durations = data["qpos"], [int(x) for x in data["durations"]]  # one state per frame
r = mujoco.Renderer(m, H, W)
cam = 0 if m.ncam else -1
frames = []
for q in qpos:
    d.qpos[:] = q
    mujoco.mj_forward(m, d)
    r.update_scene(d, camera=cam)
    frames.append(Image.fromarray(r.render()))
frames[0].save(out, save_all=True, append_images=frames[1:], duration=durations, loop=0)
r.close()
"""


def _gl_backends() -> list[str]:
    """MuJoCo GL backends to try, in order (each in a subprocess: a failing GL init can abort)."""
    env = os.environ.get("MUJOCO_GL", "").strip().lower()
    if env in ("disable", "disabled", "off", "false", "0"):
        return []
    if env:
        return [env]
    if sys.platform.startswith("linux"):
        return (["glfw"] if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") else []) + ["egl", "osmesa"]
    return ["glfw" if sys.platform == "win32" else "cgl"]


def _pillow() -> bool:
    try:
        import PIL  # noqa: F401
    except ImportError:
        return False
    return True


def gif_frames(n_states: int, timestep: float, fps: float = 25,
               max_frames: int | None = None) -> tuple[np.ndarray, list[int]]:
    """Which states of a trajectory a GIF shows, and for how long: (indices [F], durations in ms [F]).

    A state every ``round(1 / (fps * timestep))`` steps (frames at least 20 ms apart: GIF viewers
    slow faster frames down), the final state always last; where that makes more than
    ``max_frames`` (default ``MAX_GIF_FRAMES``) frames, ``max_frames`` states evenly spaced from
    the first to the last instead. Each frame lasts until the next one's time, so the GIF plays in
    real time however many frames it has (GIF durations are whole centiseconds: the frame times are
    rounded, not each duration, so the total stays the trajectory's duration); the last frame
    stays ``GIF_HOLD_S``.
    """
    max_frames = MAX_GIF_FRAMES if max_frames is None else max_frames
    if isinstance(max_frames, bool) or not isinstance(max_frames, (int, np.integer)) or max_frames < 2:
        raise ValueError(f"max_frames must be an integer >= 2, got {max_frames!r}")
    if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not (math.isfinite(timestep) and timestep > 0):
        raise ValueError(f"timestep must be positive, got {timestep!r}")
    n = int(n_states)
    if n < 1:
        raise ValueError(f"a GIF needs at least one state, got {n}")
    stride = max(1, round(1.0 / (fps * timestep)), math.ceil(0.02 / timestep - 1e-9))
    idx = np.arange(0, n, stride)
    if idx[-1] != n - 1:
        idx = np.append(idx, n - 1)
    if len(idx) > max_frames:
        idx = np.unique(np.round(np.linspace(0, n - 1, max_frames)).astype(np.int64))
    # frame times in centiseconds; drop frames less than 2 cs after the last one kept (the final
    # state stays, replacing the frame before it when that one is too close)
    t_cs = np.round(idx * timestep * 100).astype(np.int64)
    keep = [0]
    for k in range(1, len(idx) - 1):
        if t_cs[k] - t_cs[keep[-1]] >= 2:
            keep.append(k)
    if len(idx) > 1:
        if len(keep) > 1 and t_cs[-1] - t_cs[keep[-1]] < 2:
            keep.pop()
        keep.append(len(idx) - 1)
    idx, t_cs = idx[keep], t_cs[keep]
    durations = [10 * max(2, int(d)) for d in np.diff(t_cs)] + [10 * round(GIF_HOLD_S * 100)]
    return idx, durations


def write_animation(mj_model, scene_path: str, qpos: np.ndarray, path: str, fps: float = 25,
                    title: str = "", width: int = 320, height: int = 240, timeout: float = 120.0,
                    max_frames: int | None = None):
    """GIF of a trajectory qpos [T+1, nq] (sampled at ``fps``); returns (path or None, backend).

    At most ``max_frames`` frames (default ``MAX_GIF_FRAMES``): a long trajectory is subsampled
    evenly and still plays in real time (see :func:`gif_frames`). Tries MuJoCo's offscreen
    renderer (``mujoco.Renderer``) with each GL backend that may work here, each in a subprocess;
    falls back to a matplotlib drawing of the geoms. Without Pillow no GIF can be written: prints
    a note and returns (None, None).
    """
    if not _pillow():
        print("  animation skipped: Pillow is not installed (pip install pillow)")
        return None, None
    ts = float(mj_model.opt.timestep)
    qpos = np.asarray(qpos, dtype=np.float64)
    idx, durations = gif_frames(len(qpos), ts, fps, max_frames)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    backends = _gl_backends()
    if backends:
        with tempfile.TemporaryDirectory() as tmp:
            npz = os.path.join(tmp, "qpos.npz")
            np.savez(npz, qpos=qpos[idx], durations=np.asarray(durations))
            for be in backends:
                env = dict(os.environ, MUJOCO_GL=be)
                if be in ("egl", "osmesa"):
                    env["PYOPENGL_PLATFORM"] = be
                try:
                    p = subprocess.run([sys.executable, "-c", _RENDER_SCRIPT, scene_path, npz, path, str(width),
                                        str(height)], env=env, capture_output=True, text=True, timeout=timeout)
                except (OSError, subprocess.TimeoutExpired):
                    continue
                if p.returncode == 0 and os.path.isfile(path) and os.path.getsize(path) > 0:
                    return path, f"MuJoCo renderer, MUJOCO_GL={be}"
    _matplotlib_animation(mj_model, qpos, path, idx, durations, title)
    return path, "matplotlib (no working OpenGL backend for MuJoCo's renderer)"


def _matplotlib_animation(mj_model, qpos, path, idx, durations, title):
    """Draw the geoms (capsules, cylinders, spheres, boxes) and sites projected onto the first
    camera's image plane (x-z plane without a camera): one frame per state ``qpos[idx]``, shown
    for ``durations`` ms each."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt
    import mujoco
    from matplotlib.patches import Circle, Polygon
    from PIL import Image

    m = mj_model
    d = mujoco.MjData(m)
    if m.ncam:
        R = np.asarray(m.cam_mat0[0]).reshape(3, 3)
        ax_x, ax_y = R[:, 0], R[:, 1]
    else:
        ax_x, ax_y = np.array([1.0, 0, 0]), np.array([0, 0, 1.0])
    G = mujoco.mjtGeom

    def shapes(q):
        d.qpos[:] = q
        mujoco.mj_kinematics(m, d)
        out = []
        for g in range(m.ngeom):
            t, size, rgba = int(m.geom_type[g]), m.geom_size[g], m.geom_rgba[g]
            pos, mat = d.geom_xpos[g], d.geom_xmat[g].reshape(3, 3)
            if t in (int(G.mjGEOM_CAPSULE), int(G.mjGEOM_CYLINDER)):
                a, b = pos + mat[:, 2] * size[1], pos - mat[:, 2] * size[1]
                seg = [[a @ ax_x, a @ ax_y], [b @ ax_x, b @ ax_y]]
                if np.hypot(seg[0][0] - seg[1][0], seg[0][1] - seg[1][1]) < size[0]:  # seen end-on
                    out.append(("circle", [pos @ ax_x, pos @ ax_y], float(size[0]), rgba))
                else:
                    out.append(("line", seg, size[0], rgba))
            elif t in (int(G.mjGEOM_SPHERE), int(G.mjGEOM_ELLIPSOID)):
                out.append(("circle", [pos @ ax_x, pos @ ax_y], float(np.max(size[:3]) if t != int(G.mjGEOM_SPHERE)
                                                                        else size[0]), rgba))
            elif t == int(G.mjGEOM_BOX):
                c = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]) * size
                pts = pos + c @ mat.T
                out.append(("poly", _hull(np.stack([pts @ ax_x, pts @ ax_y], 1)), 0.0, rgba))
        for s in range(m.nsite):
            p = d.site_xpos[s]
            out.append(("site", [p @ ax_x, p @ ax_y], float(m.site_size[s, 0]), m.site_rgba[s]))
        return out

    frames = [shapes(qpos[i]) for i in idx]
    pts = np.array([p for fr in frames for kind, geo, _, _ in fr
                    for p in (geo if kind in ("line", "poly") else [geo])])
    lo, hi = pts.min(0), pts.max(0)
    span = max(float((hi - lo).max()), 0.5)
    mid = (lo + hi) / 2
    xl, yl = (mid[0] - 0.6 * span, mid[0] + 0.6 * span), (mid[1] - 0.6 * span, mid[1] + 0.6 * span)
    fig, ax = plt.subplots(figsize=(4.0, 4.0), dpi=80)
    ppu = 4.0 * 72 / (xl[1] - xl[0])  # points per scene unit
    ax.set_xlim(*xl)
    ax.set_ylim(*yl)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    images, drawn = [], []
    for k, fr in enumerate(frames):
        for a in drawn:  # remove the last frame's shapes (cheaper than clearing the axes)
            a.remove()
        drawn = []
        for kind, geo, r, rgba in fr:
            if kind == "line":
                g = np.array(geo)
                drawn += ax.plot(g[:, 0], g[:, 1], color=rgba[:3], lw=max(1.5, 2 * r * ppu), solid_capstyle="round")
            elif kind == "circle":
                drawn.append(ax.add_patch(Circle(geo, r, color=rgba[:3])))
            elif kind == "poly":
                drawn.append(ax.add_patch(Polygon(geo, closed=True, color=rgba[:3])))
            elif rgba[3] > 0:
                drawn.append(ax.add_patch(Circle(geo, max(r, 0.01), color=rgba[:3], alpha=float(rgba[3]), zorder=5)))
        t = int(idx[k]) * float(m.opt.timestep)
        ax.set_title(f"{title}  t = {t:.2f} s (MuJoCo replay)", fontsize=9)
        fig.canvas.draw()
        w, h = fig.canvas.get_width_height()
        images.append(Image.frombuffer("RGBA", (w, h), fig.canvas.buffer_rgba(), "raw", "RGBA", 0, 1).convert("RGB"))
    plt.close(fig)
    images[0].save(path, save_all=True, append_images=images[1:], duration=list(durations), loop=0)


def _cross2(a, b) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _hull(p: np.ndarray) -> np.ndarray:
    """Convex hull of 2-D points (monotone chain), counter-clockwise."""
    p = np.unique(np.round(p, 12), axis=0)
    if len(p) < 3:
        return p
    p = p[np.lexsort((p[:, 1], p[:, 0]))]

    def half(points):
        h = []
        for q in points:
            while len(h) >= 2 and _cross2(h[-1] - h[-2], q - h[-2]) <= 0:
                h.pop()
            h.append(q)
        return h

    lower, upper = half(p), half(p[::-1])
    return np.array(lower[:-1] + upper[:-1])


if __name__ == "__main__":  # python -m hybridwam.demo [--quick]
    t0 = time.perf_counter()
    r = run_demo(quick="--quick" in sys.argv[1:])
    print(f"({time.perf_counter() - t0:.1f} s)")
    sys.exit(0 if r["success"] else 1)
