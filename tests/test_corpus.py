"""MuJoCo Warp's feature test models (``mujoco_warp/test_data``, shipped with the mujoco-warp dev
dependency) and Gymnasium's MuJoCo environment models as a public corpus: every model hybridwam
loads steps like ``mj_step`` contact-free.

Each model is loaded as its author wrote it; one that loads is then copied with contacts disabled
(MuJoCo's contact flag, which hybridwam's pair filter honours) and stepped from random states
inside its joint ranges (limits inactive there in both simulators) with random controls, through
the looped engine (one compiled step for the whole corpus), against mj_step in float64. Models
hybridwam refuses are refused with an UnsupportedFeatureError naming the elements (never a crash).
"""
from __future__ import annotations

import glob
import os

import mujoco
import numpy as np
import pytest
import torch
from conftest import mj_step_batch, random_ctrl, random_state, rel_err

import hybridwam as hw

mjw = pytest.importorskip("mujoco_warp")
ROOT = os.path.join(os.path.dirname(mjw.__file__), "test_data")
FILES = sorted(glob.glob(os.path.join(ROOT, "**", "*.xml"), recursive=True))
#: the corpus models that load today (2026-12-03: the tendon models since tendons act, the mug,
#: wrap and pulley_wrap since cylinders collide, site since site transmissions act; 2026-12-07:
#: actuators since activation dynamics and affine gains act, hfield since height fields collide): a
#: model dropping out of this set is a regression
LOADED_AT_LEAST = {"actuation/actuation.xml", "actuation/actuators.xml", "actuation/position.xml", "actuation/site.xml",
                   "actuation/tendon_force_limit.xml", "collision.xml", "convex_collision/box100.xml",
                   "hfield/hfield.xml", "humanoid/humanoid.xml", "humanoid/n_humanoid.xml", "mug/mug.xml",
                   "tendon/damping.xml",
                   "tendon/fixed.xml", "tendon/fixed_site.xml", "tendon/pulley_fixed_site.xml",
                   "tendon/pulley_site.xml", "tendon/pulley_site_fixed.xml", "tendon/pulley_wrap.xml",
                   "tendon/site.xml", "tendon/site_fixed.xml", "tendon/wrap.xml"}


def _inside_ranges(mj, qpos, rng):
    """qpos with every limited joint drawn inside its range, 5% of the range (and the margin) away
    from both ends."""
    for j in range(mj.njnt):
        if mj.jnt_limited[j]:
            lo, hi = mj.jnt_range[j]
            pad = mj.jnt_margin[j] + 0.05 * (hi - lo)
            qpos[:, mj.jnt_qposadr[j]] = rng.uniform(lo + pad, hi - pad, len(qpos))
    return qpos


def test_corpus_models_load_or_are_refused_by_name():
    assert len(FILES) >= 40, f"expected mujoco_warp's test models under {ROOT}"
    loaded, refused = [], []
    for f in FILES:
        rel = os.path.relpath(f, ROOT)
        try:
            hw.load_model(f, device="cpu")
            loaded.append(rel)
        except hw.UnsupportedFeatureError as e:
            assert "unsupported by hybridwam" in str(e) and "  - " in str(e)
            assert len(str(e)) < 4000, (rel, len(str(e)))  # one line per kind, not per element pair
            refused.append(rel)
        except hw.ModelLoadError as e:  # MuJoCo itself cannot compile it here (a missing asset)
            assert "Error" in str(e)
            refused.append(rel)
    assert LOADED_AT_LEAST <= set(loaded), sorted(LOADED_AT_LEAST - set(loaded))
    print(f"\ncorpus: {len(loaded)} of {len(FILES)} models load: {', '.join(loaded)}")


#: with MuJoCo's law (limit_law="mujoco"), also the connect and weld models (their steps:
#: tests/test_equality.py), the tendon limit model (tests/test_tendon_constraints.py) and, since
#: torsional friction (condim 4: tests/test_condim.py), the ALOHA arms with a pot (equalities
#: couple its fingers), and since ball joints' cone limits and actuators on ball and free joints
#: (tests/test_ball_joints.py, which steps them) constraints and pendula
LOADED_WITH_MUJOCO_LAW_AT_LEAST = LOADED_AT_LEAST | {"jdotv/connect_2d.xml", "jdotv/connect_3d.xml",
                                                     "jdotv/weld_3d.xml", "tendon/tendon_limit.xml",
                                                     "aloha_pot/scene.xml", "constraints.xml", "pendula.xml"}


def test_corpus_models_load_with_mujocos_law():
    loaded = []
    for f in FILES:
        rel = os.path.relpath(f, ROOT)
        try:
            hw.load_model(f, device="cpu", limit_law="mujoco")
            loaded.append(rel)
        except (hw.UnsupportedFeatureError, hw.ModelLoadError):
            pass
    assert LOADED_WITH_MUJOCO_LAW_AT_LEAST <= set(loaded), sorted(LOADED_WITH_MUJOCO_LAW_AT_LEAST - set(loaded))
    print(f"\ncorpus with limit_law='mujoco': {len(loaded)} of {len(FILES)} models load")


def _contact_free_step_matches_mujoco(path, rng):
    """The model at ``path`` with contacts disabled, one looped-engine step (float64) from 16
    random states inside its joint ranges with random controls against mj_step; returns the
    model."""
    mj = mujoco.MjModel.from_xml_path(path)
    mj.opt.disableflags |= int(mujoco.mjtDisableBit.mjDSBL_CONTACT)
    model = hw.load_model(mj, device="cpu", dtype="float64")
    assert not model.structure.pairs
    phys = hw.Physics(model, engine="looped", verbose=False)
    B = 16
    qpos, qvel = random_state(mj, B, rng, vel_scale=1.0, pos_scale=0.3)
    qpos = _inside_ranges(mj, qpos, rng)
    ctrl = random_ctrl(mj, B, rng)
    if mj.na:  # activation states: random ones, stepped in both
        act = rng.normal(0, 0.5, (B, mj.na))
        q1, v1, a1 = phys.step(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrl), act=torch.tensor(act))
        mq, mv, ma = mj_step_batch(mj, qpos, qvel, ctrl, act=act)
        assert rel_err(a1, ma) <= 1e-9, rel_err(a1, ma)
    else:
        q1, v1 = phys.step(torch.tensor(qpos), torch.tensor(qvel), torch.tensor(ctrl))
        mq, mv = mj_step_batch(mj, qpos, qvel, ctrl)
    d = mujoco.MjData(mj)
    d.qpos[:] = qpos[0]
    mujoco.mj_forward(mj, d)
    assert d.nefc == 0  # no limit active in MuJoCo either
    assert rel_err(q1, mq) <= 1e-9 and rel_err(v1, mv) <= 1e-9, (rel_err(q1, mq), rel_err(v1, mv))
    assert np.isfinite(q1.numpy()).all()
    return model


@pytest.mark.parametrize("rel", sorted(LOADED_AT_LEAST))
def test_corpus_model_contact_free_step_matches_mujoco(rng, rel):
    _contact_free_step_matches_mujoco(os.path.join(ROOT, rel), rng)


#: Gymnasium's MuJoCo environment models (the gymnasium dev dependency's assets), written by
#: others for RK4 and Euler (the humanoids with tendons that exert no force, the swimmer in a
#: viscous, dense medium: fluid forces, the pushers with cylinders): every one hybridwam
#: loads steps like mj_step contact-free, as above
GYM_MODELS = ("ant.xml", "half_cheetah.xml", "hopper.xml", "humanoid.xml", "humanoidstandup.xml",
              "inverted_double_pendulum.xml", "inverted_pendulum.xml", "point.xml", "pusher.xml", "pusher_v5.xml",
              "reacher.xml", "swimmer.xml", "walker2d.xml", "walker2d_v5.xml")


@pytest.mark.parametrize("name", GYM_MODELS)
def test_gymnasium_model_contact_free_step_matches_mujoco(rng, name):
    gym = pytest.importorskip("gymnasium")
    path = os.path.join(os.path.dirname(gym.__file__), "envs", "mujoco", "assets", name)
    model = _contact_free_step_matches_mujoco(path, rng)
    assert model.structure.rk4 == (int(model.mj.opt.integrator) == int(mujoco.mjtIntegrator.mjINT_RK4))


@pytest.mark.parametrize("name", ["hopper.xml", "walker2d.xml"])
def test_gymnasium_rk4_walker_dropped_on_the_floor_lands_at_mujocos_height(name):
    """RK4 with contacts (hybridwam's contact law in every stage): Gymnasium's hopper and walker2d,
    as written, dropped from 0.2 m above their reference pose with zero controls, have their torso
    within 3 mm of MuJoCo's height after 3 s (measured 2.2 and 0.2 mm; both still settle slowly,
    in both simulators), float64."""
    gym = pytest.importorskip("gymnasium")
    mj = mujoco.MjModel.from_xml_path(os.path.join(os.path.dirname(gym.__file__), "envs", "mujoco", "assets", name))
    assert int(mj.opt.integrator) == int(mujoco.mjtIntegrator.mjINT_RK4)
    T = 300
    q0 = mj.qpos0.copy()
    q0[1] += 0.2  # rootz
    d = mujoco.MjData(mj)
    d.qpos[:] = q0
    for _ in range(T):
        mujoco.mj_step(mj, d)
    model = hw.load_model(mj, device="cpu", dtype="float64")
    assert model.structure.rk4 and model.structure.pairs
    tr = hw.Physics(model, verbose=False).rollout(torch.tensor(q0)[None], torch.zeros(1, mj.nv, dtype=torch.float64),
                                                 torch.zeros(1, T, mj.nu, dtype=torch.float64))
    assert abs(q0[1] - d.qpos[1]) > 0.2  # it fell
    assert abs(tr.qpos[0, -1, 1].item() - d.qpos[1]) <= 3e-3, (tr.qpos[0, -1, 1].item(), d.qpos[1])
