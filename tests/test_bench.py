"""The step benchmark: both simulators run, and they simulate the same thing."""
import argparse

import pytest

from hybridwam.bench import BENCHMARKS, bench_step, machine_info, markdown_table, write_report


def test_bench_step_pendulum_agrees_with_mujoco(tmp_path):
    r = bench_step("pendulum", batch=16, steps=50, repeat=2, device="cpu", seed=3)
    assert r["hybridwam_steps_per_s"] > 0 and r["mujoco_steps_per_s"] > 0
    assert r["ratio"] > 0
    # the real check: the final states of hybridwam (float32) and mujoco.rollout (float64) agree
    assert r["max_abs_dq"] < 1e-3, r
    assert r["max_abs_dv"] < 1e-3, r
    info = machine_info("cpu")
    assert info["cores"] >= 1 and info["mujoco"] and info["warp"]
    md_path, csv_path, md = write_report("step", [r], info, str(tmp_path))
    assert "| pendulum (unrolled) | 16 | 50 |" in md  # the engine that ran it, beside the scene
    assert open(csv_path).read().count("\n") == 2  # header + one row


def test_bench_step_acrobot_agrees_with_mujoco():
    r = bench_step("acrobot", batch=8, steps=100, repeat=1, device="cpu", seed=0, nthread=1)
    assert r["max_abs_dq"] < 1e-3 and r["max_abs_dv"] < 1e-3, r
    assert r["mujoco_threads"] == 1


def test_bench_step_counts_diverged_worlds_instead_of_stopping():
    """A model that blows up (a stiff spring integrated explicitly with a 1 s step) still gives a
    row: its diverged worlds are counted and named in the table, not hidden in the difference."""
    xml = ('<mujoco><option timestep="1"/><worldbody><body><joint name="j" type="hinge" stiffness="1e6"/>'
           '<geom size="0.1" mass="1"/></body></worldbody></mujoco>')
    r = bench_step(xml, batch=4, steps=100, repeat=1, device="cpu", peers=())
    assert r["diverged_worlds"] == 4, r
    assert "4 of 4 worlds diverged" in markdown_table([r])
    r = bench_step("pendulum", batch=4, steps=10, repeat=1, device="cpu", peers=())
    assert r["diverged_worlds"] == 0 and "diverged" not in markdown_table([r])


def test_registry_has_step_with_runner():
    bm = BENCHMARKS["step"]
    p = argparse.ArgumentParser()
    bm.add_args(p)
    args = p.parse_args(["--scene", "pendulum", "--batch", "4", "--steps", "10", "--repeat", "1"])
    args.device, args.seed = "cpu", 0
    rows = bm.run(args)
    assert len(rows) == 1 and rows[0]["scene"] == "pendulum"
    assert "pendulum" in markdown_table(rows)


def test_bench_grad_gradients_agree_with_mujoco_finite_differences():
    """The grad benchmark computes the same gradient both ways; no timing assertion."""
    from hybridwam.bench import bench_grad

    r = bench_grad("acrobot", batch=4, horizon=15, repeat=1, dtype="float64")
    assert r["mujoco_fd_worlds_measured"] == 4
    assert r["max_rel_diff_vs_mujoco_fd"] < 1e-5
    assert r["forward_s"] > 0 and r["forward_backward_s"] > 0 and r["mujoco_fd_s"] > 0
    # free and ball joints (the 31-dof tree, looped engine): MuJoCo's gradient in its position tangent
    r = bench_grad("tree", batch=2, horizon=10, repeat=1, dtype="float64")
    assert r["max_rel_diff_vs_mujoco_fd"] < 1e-5


def test_newton_peer_simulates_the_same_pendulum_as_mujoco():
    """Newton's Featherstone solver, fed the same MJCF, states and motor torques, ends where MuJoCo
    ends (up to the integrators' different treatment of damping): the peer races the same system."""
    pytest.importorskip("newton")
    r = bench_step("pendulum", batch=16, steps=50, repeat=1, device="cpu", seed=3, peers=("newton",))
    assert r["newton"].startswith("Newton Featherstone ")
    assert r["newton_steps_per_s"] > 0 and r["ratio_newton"] > 0
    assert r["newton_max_abs_dq"] < 1e-2 and r["newton_max_abs_dv"] < 1e-2, r
    md = markdown_table([r])
    assert "Newton Featherstone world-steps/s" in md and f"{r['ratio_newton']:.1f}x" in md


def test_peers_say_why_they_did_not_run(monkeypatch):
    import hybridwam as hw
    from hybridwam import peers

    assert "contacts" in peers.newton_unsupported(hw.load_model("pusher", device="cpu"))
    assert "ball or free" in peers.newton_unsupported(hw.load_model("spinning_box", device="cpu"))
    assert peers.newton_unsupported(hw.load_model("acrobot", device="cpu")) is None
    assert peers.default_peers("cpu") == ("newton",) and peers.default_peers("cuda:0") == ("newton", "mjwarp")
    monkeypatch.setitem(peers.PEERS, "newton", peers.PEERS["newton"].__class__(
        "Newton Featherstone", lambda: None, peers.newton_unsupported, peers.NewtonFeatherstone, ("cpu",)))
    r = bench_step("pendulum", batch=4, steps=5, repeat=1, device="cpu")
    assert r["newton"] == "not installed" and "newton_steps_per_s" not in r
    assert "not run: not installed" in markdown_table([r])
    r = bench_step("pendulum", batch=4, steps=5, repeat=1, device="cpu", peers=())
    assert "newton" not in r and "Newton" not in markdown_table([r])
    with pytest.raises(ValueError, match="unknown peer"):
        bench_step("pendulum", batch=4, steps=5, repeat=1, device="cpu", peers=("brax",))

    def builds_another_model(*args, **kwargs):  # as Newton does with a closed linkage's MJCF
        raise ValueError("Newton peer: Newton built 12 coordinates and 11 dofs per world, MuJoCo 8 and 8")

    monkeypatch.setitem(peers.PEERS, "newton", peers.PEERS["newton"].__class__(
        "Newton Featherstone", lambda: "1.0", lambda model: None, builds_another_model, ("cpu",)))
    r = bench_step("pendulum", batch=4, steps=5, repeat=1, device="cpu")
    assert r["newton"].startswith("its model differs (Newton peer: Newton built 12") and "newton_steps_per_s" not in r
    assert "not run: its model differs" in markdown_table([r])


def test_mujoco_warp_peer_simulates_what_mujoco_simulates():
    """MuJoCo Warp (MuJoCo's algorithms in Warp, float32) from the same states and controls ends
    where mujoco.rollout (float64) ends, on a contact-free model and on the pusher's contacts."""
    pytest.importorskip("mujoco_warp")
    r = bench_step("pendulum", batch=8, steps=50, repeat=1, device="cpu", seed=3, peers=("mjwarp",))
    assert r["mjwarp"].startswith("MuJoCo Warp ")
    assert r["mjwarp_max_abs_dq"] < 1e-4 and r["mjwarp_max_abs_dv"] < 1e-3, r
    # contacts (box on the table, paddle on the box, servo targets at random): MuJoCo's contact
    # model in both, so the states agree too (measured: 2e-6 / 1e-4 after 100 steps)
    r = bench_step("pusher", batch=4, steps=20, repeat=1, device="cpu", seed=3, peers=("mjwarp",))
    assert r["mjwarp_max_abs_dq"] < 1e-4 and r["mjwarp_max_abs_dv"] < 1e-2, r


def test_bench_calls_three_ways_simulate_the_same_steps(tmp_path):
    """Per-call stepping: the captured graph gives exactly Physics.step's states, and both follow
    MuJoCo's one-step-per-call rollout; no timing assertion."""
    from hybridwam.bench import _calls_table, bench_calls

    r = bench_calls("acrobot", batch=4, calls=30, repeat=1, device="cpu")
    assert r["captured_equals_step"] is True
    assert r["max_abs_diff_vs_mujoco"] < 1e-4, r
    assert min(r["step_us_per_call"], r["captured_us_per_call"], r["mujoco_us_per_call"]) > 0
    assert "| acrobot | 4 |" in _calls_table([r]) and "Warp CPU graph" in r["graph"]


def test_bench_hybrid_rows_time_the_fused_residual():
    """bench step --hybrid and the hybrid grad row run the hybrid model (its residual inside the
    step; no timing assertion): the fused gradient equals the stepwise definition's."""
    from hybridwam.bench import _grad_table, bench_grad_hybrid

    r = bench_step("acrobot", batch=4, steps=10, repeat=1, device="cpu", hybrid=(8, 8))
    assert r["engine"] == "hybrid: looped + 8x8 residual" and "8x8 residual" in markdown_table([r])
    g = bench_grad_hybrid("acrobot", batch=2, horizon=10, repeat=1, hidden=(8, 8))
    assert g["max_rel_diff_vs_stepwise"] < 1e-4 and g["forward_backward_s"] > 0
    assert "| acrobot | 8x8 | 2 | 10 |" in _grad_table([g])
    from hybridwam.bench import bench_calls

    c = bench_calls("acrobot", batch=2, calls=5, repeat=1, hybrid=(8, 8))
    assert c["captured_equals_step"] and c["engine"] == "hybrid: looped + 8x8 residual"


def test_leave_one_run_out_benchmark_rows(tmp_path):
    """`hybridwam bench loo` on two held-out runs at a few epochs (the figures need the suite's
    settings: README): each row's ratio is its RMSEs', a zeroed residual leaves the hybrid equal
    to the identified physics, the table counts the rows."""
    from hybridwam.calibration.bench import bench_loo, loo_table
    from hybridwam.logs import data_path

    if not data_path("double_pendulum").is_dir():
        pytest.skip("the DFKI logs are not at HYBRIDWAM_DATA")
    rows = bench_loo(identify_epochs=1, residual_epochs=1, eval_horizon=0.1, runs=2, verbose=False)
    assert [r["held_out"] for r in rows] == ["sysid_20220815_traj00", "sysid_20220815_traj01"]
    for r in rows:
        assert r["validation"] != r["held_out"] and r["guard"] in ("kept", "zeroed")
        assert abs(r["ratio"] - r["hybrid_rmse"] / r["identified_rmse"]) < 1e-12
        if r["guard"] == "zeroed":
            assert abs(r["hybrid_rmse"] - r["identified_rmse"]) <= 1e-5 * r["identified_rmse"]
        else:
            assert r["val_hybrid"] < r["val_identified"]
    assert "of 2 held-out runs" in loo_table(rows)


def test_bench_sysid_without_its_extras_is_skipped_in_the_suite_and_refused_alone(monkeypatch, capsys):
    """``hybridwam bench`` runs the other suites where mujoco.sysid's optional imports are missing;
    ``hybridwam bench sysid`` says what to install."""
    import argparse

    from hybridwam.calibration import sysid_bench
    from hybridwam.cli import UserError

    def missing():
        raise RuntimeError("hybridwam bench sysid needs mujoco.sysid's optional dependencies")

    monkeypatch.setattr(sysid_bench, "_require_sysid", missing)
    monkeypatch.setattr(sysid_bench, "bench_sysid", lambda *a, **k: pytest.fail("must not run"))
    args = argparse.Namespace(seed=0, device="cpu", identify_epochs=1, horizon=0.25, runs=1)
    assert sysid_bench.sysid_suite(args) == []
    assert "bench sysid: skipped" in capsys.readouterr().out
    with pytest.raises(UserError, match="optional dependencies"):
        sysid_bench.sysid_run(args)
    assert "sysid" in BENCHMARKS
