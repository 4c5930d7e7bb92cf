"""Data-parallel calibration (``torch.distributed``, gloo on the CPU, 2 processes under torchrun).

- ``hybridwam calibrate`` run by ``torchrun --nproc_per_node=2 -m hybridwam.cli`` gives the
  one-process result up to float32 rounding: identified parameters, residual and neural baseline
  weights and the metrics within a relative 1e-4 (measured: ~1e-6 and below; the ranks only add the
  gradients of their halves of each minibatch in another order).
- A run that loses a rank resumes to exactly the uninterrupted 2-process run's result: rank 1
  killed (SIGKILL) in the residual stage and the workers restarted by torchrun (``--max-restarts``),
  and rank 0 killed in the identification stage and the run relaunched with ``resume=True``.

Logs: the MuJoCo-simulated double pendulum of test_calibration (5 runs of 2 s: 3 train, 1 val,
1 test). Each torchrun launch costs ~5 s of start-up (torch, Warp, kernel load per process).
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_calibration import SIM_COLUMNS, mujoco_logs

import hybridwam as hw
from hybridwam.calibration import CalibrationConfig
from hybridwam.calibration.core import _Run
from hybridwam.calibration.distributed import Dist
from hybridwam.cli import main
from hybridwam.logs import load_logs

EPOCHS = 3
WORKER = os.path.join(os.path.dirname(__file__), "ddp_worker.py")
#: the arguments of every run here (ddp_worker.py passes the same to run_calibrate_cli)
CLI_ARGS = ["--scene", "double_pendulum", "--epochs", str(EPOCHS), "--val", "1", "--test", "1",
            "--trajectory-offsets", "qpos"]
RTOL = 1e-4   # 1 vs 2 processes


def _torchrun(args: list[str], tmp, name: str, max_restarts: int = 0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR",
                                                            "MASTER_PORT", "TORCHELASTIC_RESTART_COUNT")}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           f"--max-restarts={max_restarts}", "--monitor-interval=0.2", *args]
    # its own session, so that a hung launch is killed with all its workers, not only torchrun
    p = subprocess.Popen(cmd, env=env, cwd=str(tmp), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=150)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        stdout, stderr = p.communicate()
        stderr += "\n[test] torchrun killed after 150 s"
    r = subprocess.CompletedProcess(cmd, p.returncode, stdout, stderr)
    with open(os.path.join(str(tmp), f"{name}.log"), "w") as f:     # for a failing test's post-mortem
        f.write(r.stdout + r.stderr)
    return r


@pytest.fixture(scope="module")
def logs_dir(tmp_path_factory):
    raw = tmp_path_factory.mktemp("ddp_raw")
    mujoco_logs(raw)
    folder = tmp_path_factory.mktemp("ddp_logs")
    load_logs(raw, **SIM_COLUMNS).save(folder)                 # default column names qpos*/qvel*/ctrl*
    return str(folder)


@pytest.fixture(scope="module")
def two_processes(logs_dir, tmp_path_factory):
    """The uninterrupted 2-process run, through the command line under torchrun."""
    tmp = tmp_path_factory.mktemp("ddp_two")
    out = str(tmp / "out")
    r = _torchrun(["-m", "hybridwam.cli", "calibrate", logs_dir, *CLI_ARGS, "--out", out], tmp, "two")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def _outputs(out: str) -> dict:
    m = json.load(open(os.path.join(out, "metrics.json")))
    w = load_file(os.path.join(out, "weights.safetensors"))
    n = load_file(os.path.join(out, "neural_baseline.safetensors"))
    return {"report": m, "weights": {k: v.double().numpy() for k, v in w.items()},
            "neural": {k: v.double().numpy() for k, v in n.items()}}


def _rmse_table(m: dict) -> dict:
    return {(s, k): v["rmse_k"] for s, d in m["metrics"].items() for k, v in d.items()}


def test_two_gloo_processes_give_the_one_process_result(logs_dir, two_processes, tmp_path, capsys):
    one = str(tmp_path / "one")
    assert main(["calibrate", logs_dir, *CLI_ARGS, "--out", one]) == 0
    capsys.readouterr()
    a, b = _outputs(one), _outputs(two_processes)
    assert a["report"]["processes"] == 1 and b["report"]["processes"] == 2    # really two processes
    assert b["report"]["complete"] and set(b["report"]["history"]) == {"identify", "residual", "neural"}
    diffs = {}
    ia, ib = a["report"]["identified_params"], b["report"]["identified_params"]
    assert ia.keys() == ib.keys() and len(ia) == 10
    for k in ia:
        diffs[k] = abs(ia[k] - ib[k]) / abs(ia[k])
        assert ib[k] == pytest.approx(ia[k], rel=RTOL), k
    # the identification moved the parameters (so that agreeing means something)
    nominal = a["report"]["nominal_params"]
    assert max(abs(ia[k] - nominal[k]) for k in ia) > 1e-3
    for part in ("weights", "neural"):
        assert a[part].keys() == b[part].keys()
        for k, x in a[part].items():
            y = b[part][k]
            scale = max(float(np.abs(x).max()), 1e-12)
            diffs[f"{part}:{k}"] = float(np.abs(x - y).max()) / scale
            np.testing.assert_allclose(y, x, rtol=RTOL, atol=RTOL * scale, err_msg=f"{part}: {k}")
    assert float(np.abs(a["weights"]["residual.net.4.weight"]).max()) > 0   # the residual was trained
    ra, rb = _rmse_table(a["report"]), _rmse_table(b["report"])
    assert ra.keys() == rb.keys()
    for k in ra:
        assert rb[k] == pytest.approx(ra[k], rel=RTOL), k
    for stage, h in a["report"]["history"].items():
        hb = b["report"]["history"][stage]
        assert [e["epoch"] for e in h] == [e["epoch"] for e in hb]
        np.testing.assert_allclose([e["val"] for e in hb], [e["val"] for e in h], rtol=RTOL)
    worst = max(diffs, key=diffs.get)
    print(f"\n1 vs 2 processes: largest relative difference {diffs[worst]:.2e} ({worst}); identified parameters "
          f"{max(v for k, v in diffs.items() if ':' not in k):.2e}")


KILLS = {
    # rank 1 dies in the residual stage; torchrun restarts both workers, which resume by themselves
    # (rank 0 restarts 5 s late: the restarted rank 1 must wait for it, not read what the dead attempt
    # left in torchrun's store)
    "rank1-torchrun-restart": dict(kill={"rank": 1, "stage": "residual", "epoch": 0}, max_restarts=1,
                                   delay_restart={"rank": 0, "seconds": 5}),
    # rank 0 (the writer) dies in the identification stage; torchrun gives up; relaunched with resume
    "rank0-relaunch-resume": dict(kill={"rank": 0, "stage": "identify", "epoch": 1}, max_restarts=0),
}


@pytest.mark.parametrize("case", list(KILLS))
def test_a_killed_rank_resumes_to_the_uninterrupted_result(case, logs_dir, two_processes, tmp_path):
    kill, max_restarts = KILLS[case]["kill"], KILLS[case]["max_restarts"]
    out, record, result = str(tmp_path / "out"), str(tmp_path / "epochs.jsonl"), str(tmp_path / "result")
    spec = dict(logs=logs_dir, out=out, epochs=EPOCHS, record=record, result=result, kill=kill,
                delay_restart=KILLS[case].get("delay_restart"))
    with open(tmp_path / "spec.json", "w") as f:
        json.dump(spec, f)
    r = _torchrun([WORKER, str(tmp_path / "spec.json")], tmp_path, "killed", max_restarts=max_restarts)
    if max_restarts:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert "resuming the run saved in" in r.stderr
    else:
        assert r.returncode != 0 and "SIGKILL" in r.stderr, r.stderr[-3000:]
        assert os.path.isfile(os.path.join(out, "train_state.safetensors"))
        assert not os.path.exists(result + ".rank0.json")                # it did not finish
        with open(tmp_path / "spec.json", "w") as f:
            json.dump({**spec, "kill": None, "resume": True, "attempt": 1}, f)
        r = _torchrun([WORKER, str(tmp_path / "spec.json")], tmp_path, "relaunched")
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    epochs = [json.loads(x) for x in open(record)]
    first = [e for e in epochs if e["restart"] == 0 and e["attempt"] == 0]
    later = [e for e in epochs if e["restart"] > 0 or e["attempt"] > 0]
    killed = [e for e in first if e["rank"] == kill["rank"]]
    assert (killed[-1]["stage"], killed[-1]["epoch"]) == (kill["stage"], kill["epoch"])   # it died there
    assert later and {e["world_size"] for e in epochs} == {2}
    # the second attempt continued the saved run: no epoch before the last completed one again
    if kill["stage"] == "residual":
        assert all(e["stage"] != "identify" for e in later)
    else:
        assert (later[0]["stage"], later[0]["epoch"]) == ("identify", kill["epoch"] + 1)
    # every rank ends with the same model, and it is the uninterrupted run's
    per_rank = [json.load(open(f"{result}.rank{i}.json")) for i in (0, 1)]
    assert per_rank[0]["complete"] and per_rank[0]["identified"] == per_rank[1]["identified"]
    assert per_rank[0]["neural"] == per_rank[1]["neural"]
    got, want = _outputs(out), _outputs(two_processes)
    assert got["report"]["identified_params"] == want["report"]["identified_params"]
    assert _rmse_table(got["report"]) == _rmse_table(want["report"])
    assert [(e["epoch"], e["val"]) for h in got["report"]["history"].values() for e in h] == \
        [(e["epoch"], e["val"]) for h in want["report"]["history"].values() for e in h]
    for part in ("weights", "neural"):
        for k, x in want[part].items():
            np.testing.assert_array_equal(got[part][k], x, err_msg=f"{part}: {k}")
    assert not any(f.startswith(".tmp-") for f in os.listdir(out))       # no half-written files left


def test_ranks_given_different_settings_are_refused_on_every_rank(logs_dir, tmp_path):
    out = str(tmp_path / "out")
    spec = dict(logs=logs_dir, out=out, epochs=1, record=str(tmp_path / "epochs.jsonl"), result=str(tmp_path / "r"),
                rank_settings={"1": {"lr": 2e-3}})
    with open(tmp_path / "spec.json", "w") as f:
        json.dump(spec, f)
    r = _torchrun([WORKER, str(tmp_path / "spec.json")], tmp_path, "mismatch")
    assert r.returncode != 0
    assert r.stderr.count("the 2 processes were not given the same logs, settings and world") >= 2, r.stderr[-3000:]
    assert not os.path.exists(tmp_path / "epochs.jsonl") and not os.path.exists(out)   # refused before training


def test_shards_cover_every_segment_once():
    for n in range(0, 12):
        for w in (1, 2, 3, 5):
            ranges = [Dist(r, w).shard_range(n) for r in range(w)]
            pieces = [Dist(r, w).shard(torch.arange(n)).tolist() for r in range(w)]
            assert [i for g in ranges for i in g] == list(range(n)) == [i for p in pieces for i in p]
            assert max(map(len, pieces)) - min(map(len, pieces)) <= 1 and len(pieces[0]) == max(map(len, pieces))


def test_more_processes_than_training_segments_is_refused(logs_dir):
    """Checked before any collective, on every rank alike, so no rank waits for one that gave up."""
    model = hw.load_model("double_pendulum", device="cpu")
    world = hw.HybridModel(hw.Physics(model, verbose=False), hw.Residual(model, hidden=(16, 16)))
    logs = load_logs(logs_dir)
    train, val = logs.select([0]), logs.select([1])
    few = CalibrationConfig(identify_horizon=1.5, horizon=1.5, identify_stride=1, stride=1, batch_size=8)  # 1 per run
    with pytest.raises(ValueError, match="2 processes but only 1 training segment.*at most 1 process"):
        _Run(world, train, val, None, few, None, False, None, None, Dist(0, 2))
    _Run(world, train, val, None, few, None, False, None, None, Dist(0, 1))          # one process: fine
    with pytest.raises(ValueError, match="4 processes but batch_size=2"):
        _Run(world, train, val, None, CalibrationConfig(batch_size=2), None, False, None, None, Dist(0, 4))
