"""hybridwam.logs: CSV / NPZ / HDF5 loading, column mapping, resampling, derived velocities, splits,
and errors that name file, column and row."""
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import hybridwam as hw
from hybridwam.logs import DOUBLE_PENDULUM_COLUMNS, LogError, Logs, data_path, data_root, derive_velocity, load_logs

DP_DIR = data_path("double_pendulum", must_exist=False)
needs_data = pytest.mark.skipif(not DP_DIR.is_dir(), reason=f"real double pendulum logs not found at {DP_DIR} (set "
                                "HYBRIDWAM_DATA to the folder holding double_pendulum/)")


def _irregular_times(rng, n=800, dt=0.002):
    """Measured-looking timestamps: mostly dt, some jitter, occasional longer gaps."""
    d = dt * (1 + 0.02 * rng.standard_normal(n - 1))
    d[rng.choice(n - 1, 8, replace=False)] *= 1.7
    return np.concatenate([[0.0], np.cumsum(d)])


def _write_csv(path, header, rows):
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(repr(float(x)) for x in r) + "\n")
    return str(path)


def _lab_csv(path, rng, n=800, phase=0.0):
    """A file in the lab's layout: time, pos_meas1/2, vel_meas1/2, tau_con1/2 (and an unused column)."""
    t = _irregular_times(rng, n)
    q1, q2 = 0.3 * np.sin(2 * t + phase), 0.5 * np.cos(3 * t + phase)
    v1, v2 = 0.6 * np.cos(2 * t + phase), -1.5 * np.sin(3 * t + phase)
    u1, u2 = np.round(np.sin(5 * t), 2), np.round(np.cos(4 * t), 2)
    rows = np.column_stack([t, q1, q2, v1, v2, u1, u2, np.zeros(n)])
    _write_csv(path, ["time", "pos_meas1", "pos_meas2", "vel_meas1", "vel_meas2", "tau_con1", "tau_con2", "junk"],
               rows)
    return str(path), t, rows


LAB = {"qpos": ["pos_meas1", "pos_meas2"], "qvel": ["vel_meas1", "vel_meas2"], "ctrl": ["tau_con1", "tau_con2"]}


@pytest.fixture(scope="module")
def dp_model():
    return hw.load_model("double_pendulum", device="cpu")


# ---- formats and mapping ---------------------------------------------------------------------------
def test_csv_with_column_mapping_and_resampling(tmp_path):
    rng = np.random.default_rng(0)
    f, t, rows = _lab_csv(tmp_path / "run.csv", rng)
    logs = load_logs(f, **LAB, dt=0.002)
    assert (logs.n_traj, logs.nq, logs.nv, logs.nu) == (1, 2, 2, 2)
    assert logs.dt == 0.002 and logs.names == ["run"] and logs.sources == [os.path.abspath(f)]
    assert np.allclose(np.diff(logs.t), 0.002)
    # linear interpolation of a smooth signal sampled every ~2 ms: error ~ dt^2 |q''| / 8
    assert np.max(np.abs(logs.qpos[:, 0] - 0.3 * np.sin(2 * logs.t))) < 2e-6
    assert np.max(np.abs(logs.qvel[:, 1] + 1.5 * np.sin(3 * logs.t))) < 1e-4
    # controls: zero-order hold, the last command sent at or before each grid time
    idx = np.searchsorted(t, logs.t + 1e-12, side="right") - 1
    assert np.array_equal(logs.ctrl, rows[idx][:, 5:7])


def test_resample_false_keeps_the_logged_rows(tmp_path):
    rng = np.random.default_rng(1)
    f, t, rows = _lab_csv(tmp_path / "run.csv", rng, n=300)
    logs = load_logs(f, **LAB, resample=False)
    assert logs.dt is None and np.array_equal(logs.t, t) and np.array_equal(logs.qpos, rows[:, 1:3])


def test_npz_and_hdf5_layouts(tmp_path):
    h5py = pytest.importorskip("h5py")
    t = np.arange(500) * 0.002
    Q = np.column_stack([np.sin(t), np.cos(t)])
    V = np.column_stack([np.cos(t), -np.sin(t)])
    U = np.column_stack([np.ones_like(t), -np.ones_like(t)])
    np.savez(tmp_path / "a.npz", stamp=t, q=Q, dq=V, tau=U)              # 2-D arrays named freely
    np.savez(tmp_path / "b.npz", stamp=t, q1=Q[:, 0], q2=Q[:, 1], dq=V, tau=U)
    with h5py.File(tmp_path / "c.h5", "w") as h:
        g = h.create_group("robot")
        g["t"], g["joints/pos"], g["joints/vel"], g["cmd"] = t, Q, V, U
    a = load_logs(tmp_path / "a.npz", qpos="q", qvel="dq", ctrl="tau", time="stamp")
    b = load_logs(str(tmp_path / "b.npz"), qpos=["q1", "q2"], qvel=["dq[0]", "dq[1]"], ctrl="tau", time="stamp")
    c = load_logs(tmp_path / "c.h5", qpos="joints/pos", qvel="joints/vel", ctrl="cmd", time="t", group="robot")
    for L in (a, b, c):
        assert L.qpos.shape == (500, 2) and np.allclose(L.qpos, Q) and np.allclose(L.qvel, V)
        assert np.allclose(L.ctrl, U) and abs(L.dt - 0.002) < 1e-12


def test_many_files_glob_folder_list_and_save_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    d = tmp_path / "runs"
    d.mkdir()
    files = [_lab_csv(d / f"run{i}.csv", rng, n=200 + 50 * i, phase=i)[0] for i in range(3)]
    by_glob = load_logs(str(d / "run*.csv"), **LAB, dt=0.002)
    by_dir = load_logs(d, **LAB, dt=0.002)
    by_list = load_logs(files[::-1], **LAB, dt=0.002)
    assert by_glob.names == by_dir.names == ["run0", "run1", "run2"] and by_list.names == ["run2", "run1", "run0"]
    assert by_glob.n_traj == 3 and len(by_glob) == sum(len(by_glob.trajectory(i)) for i in range(3))
    for i in range(3):
        a, b = by_glob.bounds(i)
        assert np.all(by_glob.traj[a:b] == i) and by_glob.t[a] == 0.0
    for fmt in ("csv", "npz"):
        paths = by_glob.save(tmp_path / f"saved_{fmt}", fmt=fmt)
        back = load_logs(paths, dt=0.002)                              # default columns qpos*/qvel*/ctrl*
        assert back.names == by_glob.names and np.allclose(back.qpos, by_glob.qpos)
        assert np.allclose(back.qvel, by_glob.qvel) and np.allclose(back.ctrl, by_glob.ctrl)


# ---- derived velocities ------------------------------------------------------------------------------
def test_derived_velocity_beats_differences_on_quantised_positions():
    rng = np.random.default_rng(3)
    t = _irregular_times(rng, 3000)
    q = np.sin(3 * t) + 0.3 * np.sin(7 * t)
    lsb = 2 * np.pi / 32768                                           # a 15-bit encoder
    qm = np.round(q / lsb) * lsb
    truth = 3 * np.cos(3 * t) + 2.1 * np.cos(7 * t)
    v = derive_velocity(t, qm, window=0.02, order=2)
    diff = np.gradient(qm, t)
    err_sg, err_fd = np.sqrt(np.mean((v - truth) ** 2)), np.sqrt(np.mean((diff - truth) ** 2))
    assert err_sg < 0.02 and err_sg < 0.3 * err_fd
    assert np.max(np.abs(v[:5] - truth[:5])) < 0.1                    # one-sided at the ends, still sane


def test_qvel_derive_option(tmp_path):
    rng = np.random.default_rng(4)
    f, _, _ = _lab_csv(tmp_path / "run.csv", rng, n=2000)
    derived = load_logs(f, qpos=LAB["qpos"], qvel="derive", ctrl=LAB["ctrl"], dt=0.002)
    both = load_logs(f, **LAB, dt=0.002, derive_velocity=True)
    assert np.allclose(derived.qvel, both.qvel) and "qvel_measured" in both.extra
    assert "derived" in derived.info["qvel"]
    truth = np.column_stack([0.6 * np.cos(2 * derived.t), -1.5 * np.sin(3 * derived.t)])
    assert np.sqrt(np.mean((derived.qvel - truth) ** 2)) < 5e-3


def test_unwrap(tmp_path):
    t = np.arange(1000) * 0.002
    q = 4.0 * t                                                       # spins through +-pi
    wrapped = (q + np.pi) % (2 * np.pi) - np.pi
    np.savez(tmp_path / "w.npz", time=t, qpos=wrapped[:, None], qvel=np.full((1000, 1), 4.0), ctrl=np.zeros((1000, 1)))
    assert np.allclose(load_logs(tmp_path / "w.npz", unwrap=True).qpos[:, 0], q)


# ---- splits --------------------------------------------------------------------------------------------
def _six(tmp_path):
    rng = np.random.default_rng(5)
    for i in range(6):
        _lab_csv(tmp_path / f"traj{i:02d}.csv", rng, n=150, phase=i)
    return load_logs(tmp_path, **LAB, dt=0.002)


def test_split_by_trajectory(tmp_path):
    logs = _six(tmp_path)
    tr, va, te = logs.split(val=0.2, test=0.2, seed=0)
    assert (tr.n_traj, va.n_traj, te.n_traj) == (4, 1, 1)
    names = tr.names + va.names + te.names
    assert sorted(names) == sorted(logs.names)                         # disjoint, complete
    assert len(tr) + len(va) + len(te) == len(logs)
    assert logs.split(seed=0)[2].names == te.names                     # deterministic
    assert any(logs.split(seed=s)[2].names != te.names for s in range(1, 6))
    tr, va, te = logs.split(val=["traj03"], test=["traj00", "traj05"])
    assert va.names == ["traj03"] and te.names == ["traj00", "traj05"] and tr.n_traj == 3
    tr, va, te = logs.split(val=1, test=0, shuffle=False)
    assert tr.names == [f"traj{i:02d}" for i in range(5)] and va.names == ["traj05"] and te.n_traj == 0
    with pytest.raises(ValueError, match="no trajectory for training"):
        logs.split(val=3, test=3)
    chunks = logs.trajectory("traj01").chunk(0.1)
    assert chunks.n_traj == 3 and chunks.names[0] == "traj01#0" and len(chunks) == len(logs.trajectory(1))


# ---- bad logs --------------------------------------------------------------------------------------------
def test_missing_column_names_file_and_column(tmp_path):
    f, _, _ = _lab_csv(tmp_path / "run.csv", np.random.default_rng(6), n=50)
    with pytest.raises(LogError) as e:
        load_logs(f, qpos=["pos_meas1", "pos_meas3"], qvel=LAB["qvel"], ctrl=LAB["ctrl"])
    assert "run.csv" in str(e.value) and "'pos_meas3'" in str(e.value) and "qpos[1]" in str(e.value)
    assert e.value.column == "pos_meas3" and "pos_meas2" in str(e.value)  # lists what is there


def test_nan_row_names_file_column_and_row(tmp_path):
    rng = np.random.default_rng(7)
    f, _, rows = _lab_csv(tmp_path / "run.csv", rng, n=60)
    lines = open(f).read().splitlines()
    cells = lines[1 + 17].split(",")
    cells[4] = "nan"                                                    # vel_meas2 on data row 17
    lines[1 + 17] = ",".join(cells)
    cells = lines[1 + 40].split(",")
    cells[1] = ""                                                       # an empty pos_meas1 cell on row 40
    lines[1 + 40] = ",".join(cells)
    open(f, "w").write("\n".join(lines) + "\n")
    with pytest.raises(LogError) as e:
        load_logs(f, **LAB)
    msg = str(e.value)                                                  # the first bad row is named
    assert "run.csv" in msg and "'vel_meas2'" in msg and "row 17" in msg and "line 19" in msg
    assert "1 more bad row" in msg and (e.value.column, e.value.row) == ("vel_meas2", 17)
    with pytest.warns(UserWarning, match="rows dropped"):
        logs = load_logs(f, **LAB, drop_bad="rows", resample=False)
    assert len(logs) == 58 and np.isfinite(logs.qpos).all() and np.isfinite(logs.qvel).all()


def test_non_monotonic_time(tmp_path):
    rng = np.random.default_rng(8)
    f, t, rows = _lab_csv(tmp_path / "run.csv", rng, n=60)
    rows[25, 0] = rows[23, 0]
    _write_csv(f, ["time", "pos_meas1", "pos_meas2", "vel_meas1", "vel_meas2", "tau_con1", "tau_con2", "junk"], rows)
    with pytest.raises(LogError) as e:
        load_logs(f, **LAB)
    assert "run.csv" in str(e.value) and "'time'" in str(e.value) and "row 25" in str(e.value)
    assert e.value.row == 25
    with pytest.warns(UserWarning, match="do not advance time"):
        logs = load_logs(f, **LAB, drop_bad="rows", resample=False)
    assert np.all(np.diff(logs.t) > 0)


def test_wrong_joint_count_against_a_model(tmp_path, dp_model):
    t = np.arange(100) * 0.002
    np.savez(tmp_path / "three.npz", time=t, qpos=np.zeros((100, 3)), qvel=np.zeros((100, 3)), ctrl=np.zeros((100, 2)))
    with pytest.raises(LogError) as e:
        load_logs(tmp_path / "three.npz", model=dp_model)
    assert "three.npz" in str(e.value) and "qpos" in str(e.value) and "nq=2" in str(e.value)
    assert e.value.column == "qpos"


def test_drop_bad_files_with_a_warning(tmp_path):
    rng = np.random.default_rng(9)
    _lab_csv(tmp_path / "good.csv", rng, n=100)
    with open(tmp_path / "bad.csv", "w") as f:
        f.write("time,pos_meas1\n0,0\n0.002,0\n")
    with pytest.raises(LogError, match="bad.csv"):
        load_logs(tmp_path, **LAB)
    with pytest.warns(UserWarning, match="bad.csv.*file dropped"):
        logs = load_logs(tmp_path, **LAB, drop_bad=True)
    assert logs.names == ["good"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(LogError, match="no usable log"):
            load_logs(tmp_path / "bad.csv", **LAB, drop_bad=True)


# ---- data location --------------------------------------------------------------------------------------
def test_data_root_default_and_env_override(monkeypatch, tmp_path):
    monkeypatch.delenv("HYBRIDWAM_DATA", raising=False)
    assert data_root() == Path(hw.__file__).resolve().parents[2] / "shared" / "data"
    monkeypatch.setenv("HYBRIDWAM_DATA", str(tmp_path))
    assert data_root() == tmp_path
    with pytest.raises(FileNotFoundError, match="HYBRIDWAM_DATA"):
        data_path("double_pendulum")


# ---- the real double pendulum logs ----------------------------------------------------------------------------
@needs_data
def test_real_double_pendulum_logs(dp_model):
    logs = load_logs(DP_DIR / "*.csv", **DOUBLE_PENDULUM_COLUMNS, model=dp_model)
    assert isinstance(logs, Logs) and logs.n_traj == 6 and logs.dt == dp_model.timestep
    assert [n[-6:] for n in logs.names] == [f"traj{i:02d}" for i in range(6)]
    for i in range(6):
        assert 9.9 < logs.duration(i) < 10.1
    assert np.isfinite(logs.qpos).all() and np.isfinite(logs.qvel).all() and np.isfinite(logs.ctrl).all()
    both = load_logs(DP_DIR / "*.csv", qpos=DOUBLE_PENDULUM_COLUMNS["qpos"], qvel=["vel_meas1", "vel_meas2"],
                     ctrl=DOUBLE_PENDULUM_COLUMNS["ctrl"], derive_velocity=True, model=dp_model)
    assert np.allclose(both.qvel, logs.qvel)
    rms = np.sqrt(np.mean((both.qvel - both.extra["qvel_measured"]) ** 2, axis=0))
    assert np.all(rms < 0.15)                                         # agree up to the coarse quantisation


def test_layout_detected_or_matched_and_calibrate_takes_its_settings(tmp_path, dp_model):
    """load_logs finds the lab's layout from the files' columns (default column arguments) or
    from columns given as the layout's; ``logs.info["layout"]`` carries it through split, and
    hw.calibrate applies its settings (per-run angle offsets) unless told otherwise: the API and
    the CLI calibrate alike."""
    from hybridwam.calibration.core import CalibrationConfig
    from hybridwam.logs import DOUBLE_PENDULUM_COLUMNS, LAYOUTS

    rng = np.random.default_rng(3)
    for i in range(3):
        _lab_csv(tmp_path / f"run{i}.csv", rng, n=400, phase=i)
    detected = load_logs(tmp_path, model=dp_model)
    given = load_logs(tmp_path, **DOUBLE_PENDULUM_COLUMNS, model=dp_model)
    assert detected.info["layout"] == given.info["layout"] == "dfki_double_pendulum"
    np.testing.assert_array_equal(detected.qpos, given.qpos)
    assert load_logs(tmp_path, **DOUBLE_PENDULUM_COLUMNS, layout=None).info["layout"] is None
    with pytest.raises(ValueError, match="unknown log layout"):
        load_logs(tmp_path, layout="no_such_layout")
    train, val, _ = given.split(val=1, seed=0)
    assert train.info["layout"] == "dfki_double_pendulum"
    assert LAYOUTS["dfki_double_pendulum"]["settings"] == {"trajectory_offsets": "qpos"}
    world = hw.HybridModel(hw.Physics(dp_model, verbose=False), hw.Residual(dp_model, hidden=(8,)))
    for logs, want in ((train, "qpos"), (train, None)):
        kw = {} if want == "qpos" else {"trajectory_offsets": None}
        report = hw.calibrate(world, logs, val=val, epochs=1, stages=("identify",), progress=False, plots=False,
                              **kw)
        assert report.config["trajectory_offsets"] == want
    assert CalibrationConfig().trajectory_offsets is None  # the layout's setting, not a global default
