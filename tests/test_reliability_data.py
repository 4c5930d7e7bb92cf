"""Reliability of the data side (issue 17): log validation, checkpoint loading, resuming and the
calibration output folder. Every error here names the file and the column, key or line, and the
command line answers it with exit code 2 and one line, never a traceback.

Logs are small synthetic files in tmp_path; the calibration runs use the double pendulum
(float32, as tests/test_calibration.py) with one epoch per stage.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings

import mujoco
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import hybridwam as hw
from hybridwam.calibration import calibrate
from hybridwam.calibration.checkpoint import STATE_FILE, ResumeError
from hybridwam.calibration.cli import run_calibrate_cli
from hybridwam.calibration.core import OutputExistsError
from hybridwam.cli import build_parser, main
from hybridwam.hybrid import CheckpointError, ResidualOutputError, _atomic_write, clean_stale_temp
from hybridwam.logs import LogError, load_logs

DT = 0.002                                     # the double pendulum's timestep
LAB = ["time", "pos_meas1", "pos_meas2", "vel_meas1", "vel_meas2", "tau_con1", "tau_con2"]
SMALL = dict(epochs=1, identify_horizon=0.05, horizon=0.05, eval_horizon=0.1, identify_stride=0.05, stride=0.1,
             eval_stride=0.2, batch_size=32, neural_hidden=(8, 8), progress=False, seed=1)


def _rows(n=200, dt=DT, phase=0.0, time_scale=1.0):
    t = np.arange(n) * dt
    q = np.column_stack([0.3 * np.sin(2 * t + phase), 0.5 * np.cos(3 * t + phase)])
    v = np.column_stack([0.6 * np.cos(2 * t + phase), -1.5 * np.sin(3 * t + phase)])
    u = np.column_stack([np.sin(5 * t), np.cos(4 * t)])
    return np.column_stack([t * time_scale, q, v, u])


def _csv(path, rows, header=LAB):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(repr(float(x)) for x in r) + "\n")
    return str(path)


COLS = dict(qpos=LAB[1:3], qvel=LAB[3:5], ctrl=LAB[5:7])


def _cli(argv, capsys):
    """(exit code, stderr) of ``hybridwam ARGV``; asserts one line and no traceback on failure."""
    code = main(argv)
    err = capsys.readouterr().err
    if code:
        assert "Traceback" not in err, err
        assert len(err.strip().splitlines()) == 1, err
    return code, err


# ---- 9. ragged CSV rows ----------------------------------------------------------------------------
def test_ragged_csv_row_is_refused_naming_file_and_line(tmp_path):
    f = _csv(tmp_path / "run.csv", _rows(50))
    lines = open(f).read().splitlines()
    lines[5] = ",".join(lines[5].split(",")[:4])                     # file line 6: 4 of 7 fields
    cells = lines[20].split(",")
    cells[1] = "nan"                                                  # file line 21: a NaN pos_meas1
    lines[20] = ",".join(cells)
    open(f, "w").write("\n".join(lines) + "\n")
    with pytest.raises(LogError) as e:
        load_logs(f, **COLS)
    assert "run.csv" in str(e.value) and "line 6" in str(e.value) and "4 field(s)" in str(e.value), str(e.value)
    # dropping bad rows drops the ragged line with a warning, and later positions are not shifted
    with pytest.warns(UserWarning) as rec:
        logs = load_logs(f, **COLS, drop_bad="rows", resample=False)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "run.csv: line 6 has 4 field(s)" in msgs and "'pos_meas1'" in msgs and "row 18 (line 21)" in msgs, msgs
    assert len(logs) == 48 and np.isfinite(logs.qpos).all()


# ---- 8. time units -----------------------------------------------------------------------------------
def test_time_in_milli_or_microseconds_is_refused_naming_file_and_column(tmp_path):
    us = _csv(tmp_path / "micro.csv", _rows(100, time_scale=1e6))
    with pytest.raises(LogError) as e:                               # was: a 4.5 GiB MemoryError
        load_logs(us, **COLS)
    msg = str(e.value)
    assert "micro.csv" in msg and "'time'" in msg and "microseconds" in msg and e.value.column == "time", msg
    # 1 kHz logged in milliseconds: intervals of 1.0 "s", 500x the model's timestep
    ms = _csv(tmp_path / "milli.csv", _rows(100, dt=0.001, time_scale=1e3))
    model = hw.load_model("double_pendulum", device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                # refused, not "gap bridged"
        with pytest.raises(LogError) as e:
            load_logs(ms, **COLS, model=model)
    msg = str(e.value)
    assert "milli.csv" in msg and "'time'" in msg and "500x" in msg and "milliseconds" in msg, msg
    with pytest.raises(LogError, match="milli.csv.*'time'"):
        load_logs(ms, **COLS, dt=0.001)
    # seconds load as before
    assert load_logs(_csv(tmp_path / "ok.csv", _rows(100)), **COLS, model=model).dt == pytest.approx(DT)


# ---- 14. errors that name the file -------------------------------------------------------------------
def test_log_errors_name_the_file(tmp_path):
    head = tmp_path / "head.csv"
    head.write_text(",".join(LAB) + "\n")
    with pytest.raises(LogError, match=r"head.csv: no data rows below the header"):
        load_logs(head, **COLS)
    t = np.arange(10) * DT
    np.savez(tmp_path / "uneven.npz", time=t, q1=np.zeros(10), q2=np.zeros(9), qvel=np.zeros((10, 2)),
             ctrl=np.zeros((10, 2)))
    with pytest.raises(LogError, match=r"uneven.npz: the qpos columns have different lengths: 'q1' 10, 'q2' 9"):
        load_logs(tmp_path / "uneven.npz", qpos=["q1", "q2"])
    text_npz = tmp_path / "text.npz"
    shutil.copy(_csv(tmp_path / "t.csv", _rows(10)), text_npz)
    with pytest.raises(LogError) as e:
        load_logs(text_npz, **COLS)
    assert "text.npz: not an NPZ archive" in str(e.value) and "pickle" not in str(e.value)
    np.save(tmp_path / "arr.npy", np.zeros((10, 3)))
    os.replace(tmp_path / "arr.npy", tmp_path / "arr.npz")
    with pytest.raises(LogError, match=r"arr.npz: a single .npy array"):
        load_logs(tmp_path / "arr.npz")
    pytest.importorskip("h5py")
    fake_h5 = tmp_path / "fake.h5"
    shutil.copy(tmp_path / "t.csv", fake_h5)
    with pytest.raises(LogError, match=r"fake.h5: not a readable HDF5 file"):
        load_logs(fake_h5, **COLS)
    good = load_logs(tmp_path / "t.csv", **COLS)
    for bad in (-0.002, 0.0, float("nan")):
        with pytest.raises(ValueError, match="dt must be a positive number of seconds"):
            load_logs(tmp_path / "t.csv", **COLS, dt=bad)
        with pytest.raises(ValueError, match="resample: dt must be a positive number of seconds"):
            good.resample(bad)
    with pytest.raises(LogError, match=r"t.csv: resample: .* 100x the requested dt"):
        good.resample(2e-5)


# ---- 10. log layout detected from every file -------------------------------------------------------
def test_cli_layout_detection_reports_the_column_really_missing(tmp_path, capsys):
    folder = tmp_path / "logs"
    folder.mkdir()
    _csv(folder / "a_bad.csv", _rows(100), header=LAB[:-1] + ["tau_cmd2"])   # sorted first
    for i in range(2):
        _csv(folder / f"run{i}.csv", _rows(100, phase=i))
    code, err = _cli(["calibrate", str(folder), "--scene", "double_pendulum", "--out", str(tmp_path / "out")], capsys)
    assert code == 2
    assert "a_bad.csv" in err and "'tau_con2'" in err and "column 'qpos'" not in err, err


def test_cli_unknown_validation_run_is_one_line(tmp_path, capsys):
    folder = tmp_path / "logs"
    folder.mkdir()
    for i in range(3):
        _csv(folder / f"run{i}.csv", _rows(100, phase=i))
    code, err = _cli(["calibrate", str(folder), "--scene", "double_pendulum", "--out", str(tmp_path / "out"),
                      "--val", "no_such_run"], capsys)
    assert code == 2 and "'no_such_run': not found" in err and "run0" in err, err


# ---- checkpoints (4, 14) -------------------------------------------------------------------------------
def _world(model=None):
    model = model or hw.load_model("double_pendulum", device="cpu")
    return hw.HybridModel(hw.Physics(model, verbose=False), hw.Residual(model, hidden=(16, 16), mode="force"))


@pytest.fixture(scope="module")
def plus_body_scene(tmp_path_factory):
    """The double pendulum plus one static body (a camera mount): same joints and actuators."""
    xml = open(hw.model.resolve_scene("double_pendulum")).read()
    mount = ('<body name="camera_mount" pos="0 0.5 0.2"><geom type="sphere" size="0.02" contype="0" '
             'conaffinity="0"/></body>')
    path = tmp_path_factory.mktemp("scenes") / "double_pendulum_plus_mount.xml"
    path.write_text(xml.replace("</worldbody>", mount + "</worldbody>"))
    return str(path)


def test_checkpoint_for_a_scene_with_another_body_is_refused_or_loaded_by_name(tmp_path, plus_body_scene):
    world = _world()
    with torch.no_grad():
        world.model.params["body_mass"][1:3] *= 1.3                  # "identified" values
        world.model.params["dof_damping"][:] = torch.tensor([0.05, 0.03])
    path = world.save(str(tmp_path / "ckpt"))
    plus = hw.load_model(plus_body_scene, device="cpu")
    nominal_mass = plus.params["body_mass"].clone()
    with pytest.raises(CheckpointError) as e:                          # was: nominal masses, no word
        hw.HybridModel.load(path, model=plus)
    msg = str(e.value)
    assert "weights.safetensors" in msg and "body_mass (saved [3], model [4])" in msg and "strict=False" in msg, msg
    with pytest.warns(UserWarning, match=r"parameters not loaded .*body_mass") as rec:
        loaded = hw.HybridModel.load(path, model=plus, strict=False)
    assert "dof_damping" not in str(rec[0].message)
    assert torch.allclose(loaded.model.params["dof_damping"], torch.tensor([0.05, 0.03]))
    assert torch.equal(loaded.model.params["body_mass"], nominal_mass)
    assert hw.HybridModel.load(path).model.params["body_mass"][1] == world.model.params["body_mass"][1]


def test_checkpoint_of_an_earlier_release_loads(tmp_path):
    """A checkpoint written before parameters joined the schema (pair_friction and the
    activation / affine-gain actuator parameters) loads, those keeping the model's values; one
    holding a retired parameter (geom_friction) warns that it is not used."""
    from safetensors.torch import load_file, save_file

    from hybridwam.hybrid import LATER_PARAMS

    world = _world()
    with torch.no_grad():
        world.model.params["dof_damping"][:] = torch.tensor([0.05, 0.03])
    path = world.save(str(tmp_path / "ckpt"))
    wfile = os.path.join(path, "weights.safetensors")
    tensors = {k: v for k, v in load_file(wfile).items() if k[len("params."):] not in LATER_PARAMS}
    assert len(tensors) < len(load_file(wfile))
    tensors["params.geom_friction"] = torch.ones(4, 3)
    save_file(tensors, wfile)
    with pytest.warns(UserWarning, match="geom_friction is no longer part"):
        loaded = hw.HybridModel.load(path)
    assert torch.allclose(loaded.model.params["dof_damping"], torch.tensor([0.05, 0.03]))
    fresh = hw.load_model("double_pendulum", device="cpu")
    for k in LATER_PARAMS:
        assert torch.equal(loaded.model.params[k], fresh.params[k].to(loaded.model.params[k]))


def test_damaged_checkpoint_files_are_named(tmp_path):
    path = _world().save(str(tmp_path / "ckpt"))
    cfg_file, w_file = os.path.join(path, "config.json"), os.path.join(path, "weights.safetensors")
    cfg_text, weights = open(cfg_file).read(), open(w_file, "rb").read()
    cfg = json.loads(cfg_text)
    cases = [
        (lambda: open(cfg_file, "w").write(cfg_text[: len(cfg_text) // 2]), r"config.json: not valid JSON"),
        (lambda: open(cfg_file, "w").write("[1, 2]"), r"config.json: not a hybridwam checkpoint \(a JSON list"),
        (lambda: open(cfg_file, "w").write(json.dumps({k: v for k, v in cfg.items() if k != "model"})),
         r"config.json: key 'model' is missing"),
        (lambda: open(cfg_file, "w").write(json.dumps({**cfg, "model": {**cfg["model"], "fingerprint": 3}})),
         r"config.json: key model.'fingerprint' is a int"),
        (lambda: open(cfg_file, "w").write(json.dumps({**cfg, "residual": {"hidden": [16, 16], "colour": 1}})),
         r"config.json: key 'residual' does not describe a residual"),
        (lambda: open(w_file, "wb").write(weights[: len(weights) // 2]),
         r"weights.safetensors: cannot read the checkpoint weights.*truncated"),
        (lambda: open(cfg_file, "w").write(json.dumps({**cfg, "residual": {**cfg["residual"], "hidden": [8]}})),
         r"weights.safetensors: the residual weights do not match"),
    ]
    for damage, match in cases:
        open(cfg_file, "w").write(cfg_text)
        open(w_file, "wb").write(weights)
        damage()
        with pytest.raises(CheckpointError, match=match):
            hw.HybridModel.load(path)
    open(cfg_file, "w").write(cfg_text)
    open(w_file, "wb").write(weights)
    assert hw.HybridModel.load(path).residual is not None


def test_residual_nan_output_and_zero_horizon_are_reported_as_such():
    world = _world()
    model = world.model
    q, v = model.default_state(3)
    u = torch.zeros(3, model.nu)
    with pytest.raises(ValueError, match="horizon T must be at least 1") as a:
        world.physics.rollout(q, v, torch.zeros(3, 0, model.nu))
    with pytest.raises(ValueError, match="horizon T must be at least 1") as b:   # was: accepted
        world.rollout(q, v, torch.zeros(3, 0, model.nu))
    assert str(a.value) == str(b.value)
    with torch.no_grad():
        world.residual.net[-1].bias[0] = float("nan")
    with pytest.raises(ResidualOutputError) as e:                      # was: "qfrc_extra: contains NaN"
        world.step(q, v, u)
    msg = str(e.value)
    assert "residual's output" in msg and "weights" in msg and "qfrc_extra" not in msg, msg
    assert isinstance(e.value, FloatingPointError) and e.value.worlds == [0, 1, 2]


# ---- calibration runs: 5, 6, 7, 15 ---------------------------------------------------------------------
def _sim_logs(folder, n_traj=3, seconds=1.0, seed=0):
    """CSV logs of the double pendulum simulated by MuJoCo (default column names), as Logs."""
    m = mujoco.MjModel.from_xml_path(hw.model.resolve_scene("double_pendulum"))
    d = mujoco.MjData(m)
    rng = np.random.default_rng(seed)
    n = int(round(seconds / m.opt.timestep))
    os.makedirs(folder, exist_ok=True)
    for i in range(n_traj):
        mujoco.mj_resetData(m, d)
        d.qpos[:] = rng.uniform(-1, 1, 2)
        rows = np.zeros((n, 7))
        for k in range(n):
            d.ctrl[:] = 0.3 * np.sin(2 * np.pi * np.array([0.7, 1.3]) * k * m.opt.timestep + i)
            rows[k] = [k * m.opt.timestep, *d.qpos, *d.qvel, *d.ctrl]
            mujoco.mj_step(m, d)
        np.savetxt(os.path.join(folder, f"sim{i}.csv"), rows, delimiter=",", comments="", fmt="%.17g",
                   header="time,qpos0,qpos1,qvel0,qvel1,ctrl0,ctrl1")
    return load_logs(folder)


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sim_logs")
    _sim_logs(folder)
    return str(folder)


@pytest.fixture(scope="module")
def finished(logs_dir, tmp_path_factory):
    """(logs, splits, folder of a complete calibration run)."""
    logs = load_logs(logs_dir)
    train, val, test = logs.split(val=1, test=1, seed=0)
    out = str(tmp_path_factory.mktemp("runs") / "done")
    report = calibrate(_world(), train, val=val, test=test, out=out, **SMALL)
    assert report.complete and len(report.plots) == 3
    return (train, val, test), out


def _copy(src, tmp_path, name="run"):
    dst = str(tmp_path / name)
    shutil.copytree(src, dst)
    return dst


def test_resume_of_a_damaged_or_foreign_state_names_the_problem(finished, tmp_path, plus_body_scene, logs_dir,
                                                                capsys):
    (train, val, test), done = finished
    state = os.path.join(done, STATE_FILE)
    tensors = load_file(state)
    raw = open(state, "rb").read()

    def resume(out, world=None):
        return calibrate(world or _world(), train, val=val, test=test, out=out, resume=True, **SMALL)

    out = _copy(done, tmp_path, "truncated")                           # was: SafetensorError
    open(os.path.join(out, STATE_FILE), "wb").write(raw[: len(raw) // 2])
    with pytest.raises(ResumeError) as e:
        resume(out)
    msg = str(e.value)
    assert STATE_FILE in msg and "truncated" in msg and "overwrite=True" in msg and "--overwrite" in msg, msg
    code, err = _cli(["calibrate", logs_dir, "--scene", "double_pendulum", "--out", out, "--resume"], capsys)
    assert code == 2 and "truncated" in err and STATE_FILE in err, err

    out = _copy(done, tmp_path, "no_meta")                             # was: KeyError
    save_file(tensors, os.path.join(out, STATE_FILE))
    with pytest.raises(ResumeError, match=r"no 'hybridwam_train_state' metadata.*--overwrite"):
        resume(out)

    out = _copy(done, tmp_path, "other_scene")                         # was: IndexError
    with pytest.raises(ResumeError) as e:
        resume(out, _world(hw.load_model(plus_body_scene, device="cpu")))
    msg = str(e.value)
    assert "another scene" in msg and "body_mass (saved [3], model [4])" in msg and "overwrite" in msg, msg


def test_resume_writes_the_final_outputs_a_kill_left_missing(finished, tmp_path):
    (train, val, test), done = finished
    out = _copy(done, tmp_path)
    finals = ("predictions.png", "rmse_vs_horizon.png", "training.png", "metrics.json", "report.md")
    for f in finals:                    # killed right after the final state save: nothing else written
        os.remove(os.path.join(out, f))
    report = calibrate(_world(), train, val=val, test=test, out=out, resume=True, **SMALL)
    assert report.complete
    for f in finals:
        assert os.path.getsize(os.path.join(out, f)) > 0, f
    assert sorted(os.path.basename(p) for p in report.plots) == sorted(finals[:3])
    assert report.metrics == json.load(open(os.path.join(done, "metrics.json")))["metrics"]


def test_a_second_run_into_the_same_folder_needs_resume_or_overwrite(finished, tmp_path, logs_dir, capsys):
    (train, val, test), done = finished
    out = _copy(done, tmp_path)
    state = open(os.path.join(out, STATE_FILE), "rb").read()
    with pytest.raises(OutputExistsError) as e:                        # was: the state deleted silently
        calibrate(_world(), train, val=val, test=test, out=out, **SMALL)
    assert isinstance(e.value, FileExistsError) and "--resume" in str(e.value) and "--overwrite" in str(e.value)
    assert open(os.path.join(out, STATE_FILE), "rb").read() == state
    code, err = _cli(["calibrate", logs_dir, "--scene", "double_pendulum", "--out", out], capsys)
    assert code == 2 and out in err and "training state of an earlier run" in err, err
    assert open(os.path.join(out, STATE_FILE), "rb").read() == state
    assert build_parser().parse_args(["calibrate", logs_dir, "--scene", "s", "--overwrite"]).overwrite
    # a folder with other files is not written into either; overwrite replaces the run, keeps those files
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="is not empty .*notes.txt"):
        calibrate(_world(), train, val=val, test=test, out=str(other), **SMALL)
    with pytest.raises(ValueError, match="exclude each other"):
        calibrate(_world(), train, val=val, test=test, out=out, resume=True, overwrite=True, **SMALL)
    (tmp_path / "run" / "notes.txt").write_text("mine")
    report = run_calibrate_cli(logs_dir, "double_pendulum", out, val="1", test="1", overwrite=True, print_fn=None,
                               stages=("identify",), **SMALL)
    assert report.complete and report.config["stages"] == ["identify"]
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"
    names = set(os.listdir(out))
    assert "neural_baseline.safetensors" not in names, names          # the old run's outputs are gone
    assert open(os.path.join(out, STATE_FILE), "rb").read() != state


def test_stale_temp_files_are_removed_and_failed_writes_leave_none(finished, tmp_path):
    (train, val, test), done = finished
    out = _copy(done, tmp_path)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [f".tmp-{dead.pid}-k3j2h1train_state.safetensors", f".tmp-{dead.pid}-x9predictions.png"]
    legacy, mine = ".tmp-ab12cdweights.safetensors", f".tmp-{os.getpid()}-zz9weights.safetensors"
    for f in [*stale, legacy, mine]:
        open(os.path.join(out, f), "wb").close()                      # 0 bytes, as after kill -9
    old = time.time() - 7200
    os.utime(os.path.join(out, legacy), (old, old))
    report = calibrate(_world(), train, val=val, test=test, out=out, resume=True, **SMALL)
    assert report.complete
    left = sorted(f for f in os.listdir(out) if f.startswith(".tmp-"))
    assert left == [mine], left                   # dead writers' and old files gone; a live writer's kept
    assert clean_stale_temp(out) == [] and os.path.exists(os.path.join(out, mine))
    # a write that fails leaves neither a temporary file nor a changed target
    target = os.path.join(out, "report.md")
    before = open(target).read()

    def fails(p):
        with open(p, "w") as f:
            f.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        _atomic_write(target, fails)
    assert open(target).read() == before
    assert sorted(f for f in os.listdir(out) if f.startswith(".tmp-")) == [mine]
