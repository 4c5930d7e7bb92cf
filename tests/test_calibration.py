"""hybridwam.calibration: parameter identification with a known answer (logs made by MuJoCo from a
scene with altered masses and damping), the must-show result on held-out real double pendulum
trajectories, and resuming an interrupted run to the same final metrics.
"""
import json
import math
import os

import mujoco
import numpy as np
import pytest
import torch

import hybridwam as hw
from hybridwam.calibration import PhysicalParameters, calibrate, load_neural_baseline, make_segments
from hybridwam.calibration.cli import run_calibrate_cli
from hybridwam.logs import DOUBLE_PENDULUM_COLUMNS, data_path, load_logs

DP_DIR = data_path("double_pendulum", must_exist=False)
needs_data = pytest.mark.skipif(not DP_DIR.is_dir(), reason=f"real double pendulum logs not found at {DP_DIR} (set "
                                "HYBRIDWAM_DATA to the folder holding double_pendulum/)")

TRUE_MASS_SCALE = (1.25, 0.8)
TRUE_DAMPING = (0.05, 0.03)


def mujoco_logs(folder, n_traj=5, seconds=2.0, seed=0, mass_scale=TRUE_MASS_SCALE, damping=TRUE_DAMPING):
    """CSV logs of the double pendulum simulated by MuJoCo itself (mj_step) with altered masses and
    damping, random starts and smooth random torques; row k = (state k, ctrl applied in step k)."""
    m = mujoco.MjModel.from_xml_path(hw.model.resolve_scene("double_pendulum"))
    m.body_mass[1:3] *= np.asarray(mass_scale)
    m.dof_damping[:] = damping
    d = mujoco.MjData(m)
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    n = int(round(seconds / m.opt.timestep))
    t = np.arange(n) * m.opt.timestep
    files = []
    for i in range(n_traj):
        mujoco.mj_resetData(m, d)
        d.qpos[:] = rng.uniform(-1.5, 1.5, 2)
        d.qvel[:] = rng.normal(0, 2, 2)
        f, a, ph = rng.uniform(0.3, 3.0, (3, 2)), rng.uniform(0.1, 0.5, (3, 2)), rng.uniform(0, 2 * np.pi, (3, 2))
        u = sum(a[k] * np.sin(2 * np.pi * f[k] * t[:, None] + ph[k]) for k in range(3))
        rows = np.zeros((n, 7))
        for k in range(n):
            d.ctrl[:] = u[k]
            rows[k] = [t[k], *d.qpos, *d.qvel, *u[k]]
            mujoco.mj_step(m, d)
        path = os.path.join(folder, f"sim{i}.csv")
        np.savetxt(path, rows, delimiter=",", header="t,q1,q2,dq1,dq2,u1,u2", comments="", fmt="%.17g")
        files.append(path)
    return files


SIM_COLUMNS = dict(qpos=["q1", "q2"], qvel=["dq1", "dq2"], ctrl=["u1", "u2"], time="t")


@pytest.fixture(scope="module")
def sim_logs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mujoco_logs")
    mujoco_logs(folder)
    return load_logs(folder, **SIM_COLUMNS)


def _world(hidden=(16, 16), mode="force", dtype="float32"):
    model = hw.load_model("double_pendulum", device="cpu", dtype=dtype)
    return hw.HybridModel(hw.Physics(model, verbose=False), hw.Residual(model, hidden=hidden, mode=mode))


# ---- parametrisation ---------------------------------------------------------------------------------
def test_parameter_gradients_match_finite_differences():
    """d(rollout loss)/d(theta), chained through model.params, against central differences (float64)."""
    world = _world(dtype="float64")
    model = world.model
    pp = PhysicalParameters(model, init={"coulomb": 0.05, "motor_offset": 0.02})
    rng = np.random.default_rng(0)
    q0 = torch.as_tensor(rng.uniform(-1, 1, (3, 2)))
    v0 = torch.as_tensor(rng.normal(0, 1, (3, 2)))
    u = torch.as_tensor(rng.uniform(-0.5, 0.5, (3, 20, 2)))

    def loss(theta):
        pp.write(theta)
        return world.physics.rollout(q0, v0, u).qpos[:, -1].pow(2).sum()

    theta = pp.theta0.clone().requires_grad_(True)
    pp.requires_grad(True)
    loss(theta).backward()
    pp.backward_to_theta(theta)
    pp.requires_grad(False)
    eps = 1e-6
    fd = []
    for i in range(len(theta)):
        e = torch.zeros_like(theta)
        e[i] = eps
        with torch.no_grad():
            fd.append((loss(theta.detach() + e) - loss(theta.detach() - e)) / (2 * eps))
    np.testing.assert_allclose(theta.grad.numpy(), torch.stack(fd).numpy(), rtol=1e-5, atol=1e-8)
    assert pp.labels[:2] == ["mass[link1]", "mass[link2]"] and "motor_offset[elbow_motor]" in pp.labels
    vals = pp.physical(pp.theta0)
    assert vals["coulomb[shoulder]"] == pytest.approx(0.05) and vals["damping[elbow]"] == pytest.approx(0.001)


# ---- known answer ------------------------------------------------------------------------------------------
def test_identification_recovers_altered_masses_and_damping(sim_logs, tmp_path):
    world = _world()
    nominal = world.model.params["body_mass"][1:3].clone()
    train, val, _ = sim_logs.split(val=1, test=0, seed=0)
    report = calibrate(world, train, val=val, stages=("identify",), params=("mass", "damping"), identify_epochs=40,
                       identify_lr=0.05, batch_size=64, patience=40, progress=False, out=str(tmp_path / "id"))
    got = report.identified_params
    want = {"mass[link1]": float(nominal[0]) * TRUE_MASS_SCALE[0],
            "mass[link2]": float(nominal[1]) * TRUE_MASS_SCALE[1],
            "damping[shoulder]": TRUE_DAMPING[0], "damping[elbow]": TRUE_DAMPING[1]}
    errors = {k: abs(got[k] - v) / v for k, v in want.items()}
    print("\nsynthetic identification, relative errors:", {k: f"{100 * e:.2f} %" for k, e in errors.items()})
    assert all(e < 0.05 for e in errors.values()), errors
    # the world now carries the identified parameters, and so does the checkpoint
    assert float(world.model.params["dof_damping"][0]) == pytest.approx(got["damping[shoulder]"], rel=1e-5)
    loaded = hw.HybridModel.load(str(tmp_path / "id"))
    assert torch.allclose(loaded.model.params["body_mass"], world.model.params["body_mass"])


def test_confidence_intervals_contain_the_truth_and_name_what_the_logs_cannot_identify(tmp_path):
    """Gauss-Newton intervals (95 %, calibration.uncertainty) on MuJoCo logs with known masses and
    damping and measurement noise (1 mrad, 0.05 rad/s): they contain the true masses, damping, the
    second link's inertia scale and the elbow's armature (both left at their nominal values), and
    the one exact ambiguity of these groups is flagged by name: the first link's inertia and the
    shoulder's armature only act as a sum (the shoulder turns about a fixed axis)."""
    folder = tmp_path / "noisy"
    mujoco_logs(folder)
    logs = load_logs(folder, **SIM_COLUMNS)
    rng = np.random.default_rng(1)
    logs.qpos = logs.qpos + rng.normal(0, 1e-3, logs.qpos.shape)
    logs.qvel = logs.qvel + rng.normal(0, 0.05, logs.qvel.shape)
    world = _world()
    nominal = {k: v.clone() for k, v in world.model.params.items()}
    train, val, _ = logs.split(val=1, test=0, seed=0)
    report = calibrate(world, train, val=val, stages=("identify",), params=("mass", "damping", "inertia", "armature"),
                       identify_epochs=40, identify_lr=0.05, batch_size=64, patience=40, progress=False,
                       out=str(tmp_path / "id"))
    u = report.uncertainty["parameters"]
    truth = {"mass[link1]": float(nominal["body_mass"][1]) * TRUE_MASS_SCALE[0],
             "mass[link2]": float(nominal["body_mass"][2]) * TRUE_MASS_SCALE[1],
             "damping[shoulder]": TRUE_DAMPING[0], "damping[elbow]": TRUE_DAMPING[1], "inertia_scale[link2]": 1.0,
             "armature[elbow]": float(nominal["dof_armature"][1])}
    for k, v in truth.items():
        lo, hi = u[k]["interval"]
        assert u[k]["identifiable"] and lo < v < hi, (k, v, lo, hi)
        assert hi - lo < 0.6 * v, (k, lo, hi)  # informative, not vacuous
    flagged = {k for k, e in u.items() if not e["identifiable"]}
    assert flagged == {"inertia_scale[link1]", "armature[shoulder]"}, flagged
    assert "armature[shoulder]" in u["inertia_scale[link1]"]["why"] and u["armature[shoulder]"]["interval"][1] is None
    assert "95 % interval" in report.table() and "no: not identifiable apart from" in report.table()
    saved = json.loads((tmp_path / "id" / "metrics.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    assert saved["uncertainty"]["parameters"]["mass[link1]"]["interval"] == list(u["mass[link1]"]["interval"])


def test_default_parameter_set_is_well_posed():
    """All ten default parameters (masses, armatures, damping, smooth Coulomb friction, motor offsets)
    come back from noise-free logs. MuJoCo has no smooth Coulomb friction or motor offsets, so these
    logs come from hybridwam's own physics (float64) with every parameter altered."""
    from hybridwam.logs import Logs

    gen = hw.load_model("double_pendulum", device="cpu", dtype="float64")
    P = gen.params
    with torch.no_grad():
        P["body_mass"][1:3] *= torch.tensor([1.15, 0.9], dtype=torch.float64)
        P["dof_armature"][:] *= torch.tensor([1.5, 0.7], dtype=torch.float64)
        P["dof_damping"][:] = torch.tensor([0.02, 0.01])
        P["dof_coulomb"][:] = torch.tensor([0.08, 0.05])
        P["actuator_bias"][:, 0] = torch.tensor([0.03, -0.02])
    truth = {"mass[link1]": float(P["body_mass"][1]), "mass[link2]": float(P["body_mass"][2]),
             "armature[shoulder]": float(P["dof_armature"][0]), "armature[elbow]": float(P["dof_armature"][1]),
             "damping[shoulder]": 0.02, "damping[elbow]": 0.01, "coulomb[shoulder]": 0.08, "coulomb[elbow]": 0.05,
             "motor_offset[shoulder_motor]": 0.03, "motor_offset[elbow_motor]": -0.02}
    rng = np.random.default_rng(0)
    B, T = 5, 1000
    t = np.arange(T) * gen.timestep
    f, a, ph = rng.uniform(0.3, 3.0, (3, B, 2)), rng.uniform(0.1, 0.5, (3, B, 2)), rng.uniform(0, 2 * np.pi, (3, B, 2))
    u = sum(a[k][:, None] * np.sin(2 * np.pi * f[k][:, None] * t[None, :, None] + ph[k][:, None]) for k in range(3))
    q0, v0 = rng.uniform(-1.5, 1.5, (B, 2)), rng.normal(0, 2, (B, 2))
    with torch.no_grad():
        tr = hw.Physics(gen, verbose=False).rollout(torch.tensor(q0), torch.tensor(v0), torch.tensor(u))
    logs = Logs(np.tile(t, B), tr.qpos[:, :-1].reshape(-1, 2).numpy(), tr.qvel[:, :-1].reshape(-1, 2).numpy(),
                u.reshape(-1, 2), np.repeat(np.arange(B), T), [f"sim{i}" for i in range(B)], [""] * B, gen.timestep)
    train, val, _ = logs.split(val=1, test=0, seed=0)
    report = calibrate(_world(), train, val=val, stages=("identify",), identify_epochs=120, identify_lr=0.05,
                       batch_size=64, patience=120, progress=False)
    errors = {k: abs(report.identified_params[k] - v) / abs(v) for k, v in truth.items()}
    print("\ndefault parameter set, relative errors:", {k: f"{100 * e:.2f} %" for k, e in errors.items()})
    assert all(e < 0.05 for e in errors.values()), errors


# ---- resume -------------------------------------------------------------------------------------------------
SMALL = dict(identify_epochs=3, residual_epochs=3, neural_epochs=2, identify_horizon=0.1, horizon=0.1,
             eval_horizon=0.2, identify_stride=0.05, stride=0.1, batch_size=32, neural_hidden=(16, 16),
             eval_stride=0.2, progress=False, seed=3)


class Interrupt(Exception):
    pass


def test_resume_after_interruption_gives_the_same_metrics(sim_logs, tmp_path):
    train, val, test = sim_logs.split(val=1, test=1, seed=0)
    ref = calibrate(_world(), train, val=val, test=test, out=str(tmp_path / "ref"), **SMALL)
    assert ref.complete and set(ref.metrics["test"]) == {"nominal", "identified", "hybrid", "neural"}

    def stop_in_residual(info):
        if info["stage"] == "residual" and info["epoch"] == 1:
            raise Interrupt

    out = str(tmp_path / "run")
    with pytest.raises(Interrupt):
        calibrate(_world(), train, val=val, test=test, out=out, callback=stop_in_residual, **SMALL)
    state_files = sorted(os.listdir(out))
    assert "train_state.safetensors" in state_files and "weights.safetensors" in state_files
    assert not any(f.startswith(".tmp-") for f in state_files)           # atomic writes leave no debris
    resumed = calibrate(_world(), train, val=val, test=test, out=out, resume=True, **SMALL)
    assert resumed.metrics == ref.metrics
    assert resumed.identified_params == ref.identified_params
    assert resumed.history == ref.history

    # max-epochs-then-resume: stop inside identification, then again inside the neural stage
    out2 = str(tmp_path / "run2")
    part = calibrate(_world(), train, val=val, test=test, out=out2, max_epochs=2, **SMALL)
    assert not part.complete and part.metrics == {}
    part = calibrate(_world(), train, val=val, test=test, out=out2, max_epochs=5, resume=True, **SMALL)
    assert not part.complete
    final = calibrate(_world(), train, val=val, test=test, out=out2, resume=True, **SMALL)
    assert final.complete and final.metrics == ref.metrics

    # the checkpoint folder is a loadable world that predicts like the calibrated one
    world = hw.HybridModel.load(out2)
    seg = make_segments(test, 50, 50)
    with torch.no_grad():
        a = world.rollout(seg.q0, seg.v0, seg.ctrl).qpos
        b = hw.HybridModel.load(str(tmp_path / "ref")).rollout(seg.q0, seg.v0, seg.ctrl).qpos
    assert torch.equal(a, b)
    net = load_neural_baseline(out2, world.model)
    assert net.step(seg.q0, seg.v0, seg.ctrl[:, 0])[0].shape == seg.q0.shape

    # a resume with other settings is refused, naming the difference
    with pytest.raises(ValueError, match="residual_epochs"):
        calibrate(_world(), train, val=val, test=test, out=out2, resume=True, **{**SMALL, "residual_epochs": 9})


def test_bad_inputs_are_refused(sim_logs):
    train, val, _ = sim_logs.split(val=1, test=0)
    pendulum = hw.load_model("pendulum", device="cpu")                  # one joint, the logs have two
    with pytest.raises(ValueError, match="qpos has 2 columns .* nq=1"):
        calibrate(hw.HybridModel(hw.Physics(pendulum, verbose=False)), train, val=val, progress=False)
    with pytest.raises(TypeError, match="unknown setting"):
        calibrate(_world(), train, val=val, progres=False)
    with pytest.raises(ValueError, match="unknown parameter group"):
        calibrate(_world(), train, val=val, params=("mass", "colour"), progress=False)


def test_cli_entry_point(sim_logs, tmp_path, capsys):
    folder = tmp_path / "logs"
    sim_logs.select([0, 1, 2]).save(folder)                            # default column names qpos*/qvel*/ctrl*
    out = tmp_path / "cli_out"
    report = run_calibrate_cli(str(folder), "double_pendulum", str(out), epochs=1, identify_horizon=0.05,
                               horizon=0.05, eval_horizon=0.1, val="1", test="1", progress=False)
    assert report.complete and os.path.isfile(out / "config.json") and os.path.isfile(out / "metrics.json")
    assert "one-step" in capsys.readouterr().out
    for f in ("predictions.png", "rmse_vs_horizon.png", "training.png", "report.md"):
        assert os.path.isfile(out / f), f


# ---- the must-show result on real data ---------------------------------------------------------------------------
REAL_FAST = dict(identify_epochs=20, residual_epochs=8, neural_epochs=5)
REAL_FULL = dict(identify_epochs=40, residual_epochs=30, neural_epochs=30)


def _real_run(out, settings):
    model = hw.load_model("double_pendulum", device="cpu")
    logs = load_logs(DP_DIR / "*.csv", **DOUBLE_PENDULUM_COLUMNS, model=model)
    train, val, test = logs.split(val=1, test=1, seed=0)
    world = hw.HybridModel(hw.Physics(model, verbose=False), hw.Residual(model, hidden=(64, 64), mode="force"))
    report = calibrate(world, train, val=val, test=test, out=str(out), trajectory_offsets="qpos", progress=False,
                       seed=0, **settings)
    return report, train, val, test


def _check_must_show(report, train, test):
    assert not set(test.names) & set(train.names + report.splits["val"])  # held out: never used in fitting
    m = {k: v["rmse_k"] for k, v in report.metrics["test"].items()}
    print(f"\nheld-out {test.names}: 0.5 s open-loop RMSE of joint angles [rad]: "
          + ", ".join(f"{k} {v:.4f}" for k, v in m.items()) + f"  ({report.seconds:.0f} s)")
    assert report.metrics["test"]["hybrid"]["horizon_steps"] == 250    # 0.5 s at 2 ms
    assert m["hybrid"] < m["identified"] < m["nominal"]
    g = report.residual_guard  # the residual beat the identified physics on validation: kept
    assert g["kept"] and g["val_hybrid"] < g["val_identified"], g
    assert m["hybrid"] < m["neural"]
    assert m["hybrid"] <= 0.5 * m["nominal"]
    return m


@needs_data
def test_real_double_pendulum_held_out_prediction(tmp_path):
    report, train, val, test = _real_run(tmp_path / "real", REAL_FAST)
    _check_must_show(report, train, test)
    metrics = json.load(open(tmp_path / "real" / "metrics.json"))
    assert metrics["metrics"]["test"]["hybrid"]["rmse_k"] == report.metrics["test"]["hybrid"]["rmse_k"]
    for f in ("predictions.png", "rmse_vs_horizon.png", "training.png", "report.md", "neural_baseline.safetensors"):
        assert os.path.isfile(tmp_path / "real" / f), f
    # identified friction is physical and of the published magnitude (cf atan(100 qd) -> cf pi/2 at speed)
    cf = [report.identified_params[f"coulomb[{j}]"] for j in ("shoulder", "elbow")]
    assert all(0.03 < c < 0.3 for c in cf) and math.isfinite(sum(report.identified_params.values()))


@pytest.mark.slow
@needs_data
def test_real_double_pendulum_held_out_prediction_full(tmp_path):
    report, train, val, test = _real_run(tmp_path / "real_full", REAL_FULL)
    _check_must_show(report, train, test)


def test_residual_guard_zeroes_a_residual_that_does_not_beat_the_physics_on_validation(sim_logs):
    """MuJoCo's own logs, where identified physics is right: a residual that only adds a wrong
    torque (its last layer set by hand, no residual training, so the stage keeps it) is worse
    on the validation run, and the guard sets it to zero, after which the hybrid predicts what
    the identified physics does (to float32 rounding: the fused engine against the plain one);
    with the guard off the same residual stays and the hybrid is worse on the held-out run."""
    train, val, test = sim_logs.split(val=1, test=1, seed=0)
    reports = {}
    for guard in (True, False):
        world = _world()
        with torch.no_grad():
            world.residual.net[-1].bias.copy_(torch.tensor([2.0, -1.5]))
        reports[guard] = calibrate(world, train, val=val, test=test, residual_guard=guard, reset_residual=False,
                                   **{**SMALL, "residual_epochs": 0, "stages": ("identify", "residual")})
    g = reports[True].residual_guard
    assert not g["kept"] and g["val_hybrid"] > 1.5 * g["val_identified"], g
    assert "set to zero" in reports[True].table()
    for split in ("val", "test"):
        r = {k: reports[True].rmse(k, split) for k in ("identified", "hybrid")}
        assert abs(r["hybrid"] - r["identified"]) <= 1e-4 * r["identified"] + 1e-7, (split, r)
    off = {k: reports[False].rmse(k, "test") for k in ("identified", "hybrid")}
    assert not reports[False].residual_guard and off["hybrid"] > 1.5 * off["identified"], off
