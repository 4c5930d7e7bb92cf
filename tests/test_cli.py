"""The command line, run in-process through ``hybridwam.cli.main``."""

import pytest

from hybridwam.cli import main

TENDON_XML = """
<mujoco model="with_tendon">
  <worldbody>
    <body name="link">
      <joint name="j1" type="hinge" axis="0 1 0"/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.02" mass="1"/>
    </body>
  </worldbody>
  <tendon>
    <fixed name="my_tendon" frictionloss="0.5"><joint joint="j1" coef="1"/></fixed>
  </tendon>
</mujoco>
"""


def test_info_shipped_scene(capsys):
    assert main(["info", "cartpole"]) == 0
    out = capsys.readouterr().out
    assert "nq=2 nv=2 nu=1" in out
    assert "cart_slide" in out and "pole_hinge" in out and "cart_motor" in out
    assert "contact law" not in out  # no contact pairs
    assert "engine   unrolled" in out and "the looped engine can run this model" in out


def test_info_names_the_engine_of_a_large_model(tmp_path, capsys):
    from hybridwam.benchmodels import chain_xml

    path = tmp_path / "chain40.xml"
    path.write_text(chain_xml(40))
    assert main(["info", str(path)]) == 0
    assert "engine   looped" in capsys.readouterr().out


def test_info_shows_the_contact_law_and_a_scene_override(capsys):
    assert main(["info", "pusher"]) == 0
    out = capsys.readouterr().out
    assert ("contact law  friction slip scale 0.02 m/s, onset length 0.0005 m "
            "(the scene sets hybridwam_contact_eps)") in out
    assert main(["info", "ball_toss"]) == 0
    out = capsys.readouterr().out
    assert "friction slip scale 0.001 m/s" in out and "the scene sets" not in out


def test_info_without_scene_lists_shipped_scenes(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "cartpole" in out and "acrobot" in out


def test_info_unsupported_tendon_exits_2_and_names_it(tmp_path, capsys):
    path = tmp_path / "tendon.xml"
    path.write_text(TENDON_XML)
    assert main(["info", str(path)]) == 2
    cap = capsys.readouterr()
    err = cap.out + cap.err
    assert "tendon 'my_tendon'" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["info", "no_such_scene"],
    ["simulate", "no_such_scene", "--steps", "5"],
    ["simulate", "pendulum", "--batch", "0"],
    ["simulate", "pendulum", "--steps", "-3"],
    ["simulate", "pendulum", "--batch", "many"],
    ["simulate", "pendulum", "--device", "gpu"],
    ["bench", "step", "--scene", "no_such_scene", "--batch", "4"],
    ["bench", "step", "--batch", "0"],
])
def test_user_errors_exit_nonzero_without_traceback(argv, capsys):
    code = main(argv)
    cap = capsys.readouterr()
    assert code != 0
    assert "Traceback" not in cap.out + cap.err
    assert "error" in cap.err


def test_malformed_xml_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.xml"
    path.write_text("<mujoco><worldbody><body></worldbody>")
    assert main(["info", str(path)]) == 2
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err


def test_version(capsys):
    assert main(["--version"]) == 0
    assert "hybridwam" in capsys.readouterr().out


def test_simulate_writes_plot(tmp_path, capsys):
    png = tmp_path / "traj.png"
    assert main(["simulate", "acrobot", "--steps", "50", "--batch", "8", "--seed", "1",
                 "--device", "cpu", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "world-steps/s" in out
    assert png.is_file() and png.stat().st_size > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo_quick_solves_and_writes_outputs(tmp_path, capsys):
    """The README's main job, reduced: exit 0 means the swing-up succeeded when replayed in MuJoCo."""
    out_dir = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert str(out_dir) in out
    pngs = list(out_dir.glob("*.png"))
    assert pngs and all(p.stat().st_size > 0 for p in pngs)


def test_optimize_missing_config_exits_2(tmp_path, capsys):
    assert main(["optimize", str(tmp_path / "nope.yaml")]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_calibrate_bad_logs_exit_2_without_traceback(tmp_path, capsys):
    bad = tmp_path / "run.csv"
    bad.write_text("time,pos_a\n0.0,1.0\n0.1,nan\n")
    assert main(["calibrate", str(bad), "--scene", "double_pendulum", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" in err


def test_calibrate_real_logs_writes_checkpoint_and_report(tmp_path, capsys):
    """One epoch per stage on the real double pendulum logs: the command runs end to end."""
    from hybridwam.logs import data_root

    logs = data_root() / "double_pendulum"
    if not logs.is_dir():
        pytest.skip(f"real logs not found at {logs} (set HYBRIDWAM_DATA)")
    out = tmp_path / "cal"
    assert main(["calibrate", str(logs), "--scene", "double_pendulum", "--epochs", "1", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "weights.safetensors", "report.md", "predictions.png"} <= names
    import hybridwam as hw

    world = hw.HybridModel.load(str(out))
    assert world.residual is not None and world.nv == 2


def test_bench_writes_its_table_into_the_readme_between_markers(tmp_path, capsys):
    """--readme replaces only the benchmark's own section; prose around it stays. Without the
    markers the command stops before it benchmarks anything, naming the markers it needs."""
    readme = tmp_path / "README.md"
    before = "# Title\n\nprose above\n<!-- bench:calls:cpu -->\nold table\n<!-- /bench:calls:cpu -->\nprose below\n"
    readme.write_text(before)
    argv = ["bench", "calls", "--scene", "pendulum", "--batch", "2", "--calls", "5", "--repeat", "1",
            "--device", "cpu", "--out", str(tmp_path / "out"), "--readme", str(readme)]
    assert main(argv) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nprose above\n<!-- bench:calls:cpu -->\n- date: ")
    assert text.endswith("<!-- /bench:calls:cpu -->\nprose below\n") and "old table" not in text
    section = text.split("<!-- bench:calls:cpu -->")[1].split("<!-- /bench:calls:cpu -->")[0]
    assert "| pendulum | 2 |" in section and "- machine: " in section and "peers: " in section
    # the section is the report the benchmark wrote, minus its title
    report = (tmp_path / "out" / "calls.md").read_text()
    assert section.strip() == report.split("\n", 2)[2].strip()
    capsys.readouterr()
    stamp = (tmp_path / "out" / "calls.md").stat().st_mtime_ns
    readme.write_text("# no markers\n")
    assert main([*argv[:-2], "--readme", str(readme)]) == 2
    err = capsys.readouterr().err
    assert "<!-- bench:calls:cpu -->" in err and "Traceback" not in err
    assert (tmp_path / "out" / "calls.md").stat().st_mtime_ns == stamp  # nothing ran
    assert readme.read_text() == "# no markers\n"
