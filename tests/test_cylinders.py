"""Cylinders as collision geometry (planes, spheres, capsules, boxes and cylinders against cylinders; hybridwam's
contact law, kernels/contact.py), against MuJoCo's behaviour: rest heights and poses, rolling on
the side, gradients against central differences, and the pairs still refused by name."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from conftest import assert_grads_match_central_differences

import hybridwam as hw

FLOOR = '<geom name="floor" type="plane" size="5 5 .1"/>'
# cylinders of contype 2, conaffinity 1: they collide with the floor, spheres and capsules, not with
# each other (cylinder-cylinder pairs are refused)
TABLE = '<geom name="table" type="cylinder" size="0.1 0.15" pos="0 0 0.15" contype="2"/>'
LOG = '<geom name="log" type="cylinder" size="0.1 0.3" pos="0 0 0.1" euler="90 0 0"/>'
CYL = '<geom type="cylinder" size="0.05 0.1" mass="1" contype="2"/>'
CAPSULE = '<geom type="capsule" size="0.03 0.15" mass="0.5"/>'
CRATE = '<geom name="crate" type="box" size="0.3 0.3 0.1" pos="0 0 0.1"/>'
#: (static geoms, the falling body's pose, its geom): each dropped 3-5 cm onto the floor or a cylinder
DROPS = {
    "cylinder upright on the floor": (FLOOR, 'pos="0 0 0.14"', CYL),
    "cylinder on its side on the floor": (FLOOR, 'pos="0 0 0.09" euler="90 0 0"', CYL),
    "tilted cylinder falls onto its side": (FLOOR, 'pos="0 0 0.3" euler="30 20 0"', CYL),
    "sphere on an upright cylinder": (FLOOR + TABLE, 'pos="0 0 0.4"', '<geom type="sphere" size="0.05" mass="0.5"/>'),
    "capsule across a cap, off centre": (FLOOR + TABLE, 'pos="0.02 0 0.36" euler="0 90 0"', CAPSULE),
    "capsule along a lying cylinder": (FLOOR + LOG, 'pos="0 0 0.26" euler="0 90 0"', CAPSULE),
    "cylinder upright on a box": (FLOOR + CRATE, 'pos="0.05 0 0.34"', CYL),
    "cylinder overhanging a box's edge": (FLOOR + CRATE, 'pos="0.28 0 0.34"', CYL),
    "cylinder lying on a box": (FLOOR + CRATE, 'pos="0 0.05 0.29" euler="90 0 0"', CYL),
    "box on a lying cylinder": (FLOOR + LOG, 'pos="0 0 0.29"', '<geom type="box" size="0.15 0.2 0.05" mass="1"/>'),
    # the falling cylinder of contype 1 collides with the cylinders of contype 2
    "cylinder stacked on a cylinder": (FLOOR + TABLE, 'pos="0.02 0 0.44"', CYL.replace('contype="2"', "")),
    "cylinder overhanging a cylinder's rim": (FLOOR + TABLE, 'pos="0.07 0 0.44"', CYL.replace('contype="2"', "")),
    "cylinder lying across a lying one": (FLOOR + LOG, 'pos="0 0 0.29" euler="0 90 0"', CYL.replace('contype="2"', "")),
    "cylinder upright on a lying one": (FLOOR + LOG, 'pos="0 0 0.34"', CYL.replace('contype="2"', "")),
}


def _scene(static: str, pose: str, geom: str) -> str:
    return (f'<mujoco><option timestep="0.002"/><worldbody>{static}<body {pose}><freejoint/>{geom}</body>'
            "</worldbody></mujoco>")


def _both(xml: str, T: int, qvel0=None):
    """Final (qpos, qvel) of MuJoCo and hybridwam (float64) after T steps from the reference pose."""
    mj = mujoco.MjModel.from_xml_string(xml)
    d = mujoco.MjData(mj)
    if qvel0 is not None:
        d.qvel[:] = qvel0
    for _ in range(T):
        mujoco.mj_step(mj, d)
    model = hw.load_model(xml, dtype="float64")
    phys = hw.Physics(model, verbose=False)
    assert phys.engine == "looped"
    q0, v0 = model.default_state(1)
    if qvel0 is not None:
        v0 = torch.tensor(qvel0, dtype=torch.float64)[None]
    tr = phys.rollout(q0, v0, torch.zeros(1, T, 0, dtype=torch.float64))
    return (d.qpos.copy(), d.qvel.copy()), (tr.qpos[0, -1].numpy(), tr.qvel[0, -1].numpy())


@pytest.mark.parametrize("case", sorted(DROPS))
def test_dropped_bodies_rest_where_mujocos_do(case):
    """After 2 s, the body rests within 2 mm of MuJoCo's height, 3 mm of its position and 0.01 of
    its orientation quaternion (measured: 0.07-0.34 mm deeper, the compliant law's penetration;
    the tilted cylinder lands 1.6 mm from MuJoCo's spot after rolling, the one overhanging a
    cylinder's rim 2.6 mm, the one over a box's edge 0.3 mm), having fallen more than 3 cm."""
    xml = _scene(*DROPS[case])
    (mq, _), (hq, hv) = _both(xml, 1000)
    z0 = mujoco.MjModel.from_xml_string(xml).qpos0[2]
    assert z0 - mq[2] > 0.03
    assert abs(hq[2] - mq[2]) <= 2e-3 and np.abs(hq[:2] - mq[:2]).max() <= 3e-3, (hq[:3], mq[:3])
    assert min(np.abs(hq[3:7] - mq[3:7]).max(), np.abs(hq[3:7] + mq[3:7]).max()) <= 1e-2, (hq[3:7], mq[3:7])
    assert np.abs(hv).max() <= 1e-2  # at rest


@pytest.mark.parametrize("spin", [-10.0, 0.0])
def test_cylinder_rolls_on_its_side_like_mujocos(spin):
    """A cylinder on its side launched at 0.5 m/s, rolling (spin = -v / r about its axis) or
    sliding first (no spin: friction spins it up until it rolls): after 1 s it is within 2 mm of
    MuJoCo's position, and rolls without slipping (v = omega r within 1%)."""
    xml = _scene(FLOOR, 'pos="0 0 0.0498" euler="90 0 0"', CYL)
    v0 = np.zeros(6)
    v0[0], v0[5] = 0.5, spin
    (mq, mv), (hq, hv) = _both(xml, 500, v0)
    assert mq[0] > 0.3 and abs(hq[0] - mq[0]) <= 2e-3, (hq[0], mq[0])
    assert abs(hv[0] + hv[5] * 0.05) <= 0.01 * abs(hv[0]), hv


def test_cylinder_contact_gradients_match_finite_differences():
    """d loss / d (the initial state, the cylinder's radius and half-length, a sphere's radius)
    through 40 steps in which a cylinder tips onto its side on the floor and a sphere lands on an
    upright cylinder, against central differences (float64)."""
    xml = ('<mujoco><option timestep="0.002"/><worldbody>' + FLOOR + TABLE
           + '<body pos="0.6 0 0.11" euler="10 0 0"><freejoint/>' + CYL + '</body>'
           + '<body pos="0.03 0 0.351"><freejoint/><geom type="sphere" size="0.05" mass="0.5"/></body>'
           + '<body pos="1.2 0 0.04" euler="0 90 0"><freejoint/>' + CAPSULE + '</body>'
           + '<body pos="1.2 0 0.11" euler="90 0 0"><freejoint/>' + CYL + '</body>'
           + "</worldbody></mujoco>")
    model = hw.load_model(xml, dtype="float64")
    phys = hw.Physics(model, verbose=False)
    q0, v0 = model.default_state(1)
    v0 = v0.clone()
    v0[0, 0:3] = torch.tensor([0.1, 0.0, -0.5], dtype=torch.float64)
    v0[0, 6:9] = torch.tensor([0.0, 0.1, -0.4], dtype=torch.float64)
    v0[0, 18:21] = torch.tensor([0.0, 0.0, -0.3], dtype=torch.float64)
    inputs = [q0.clone().requires_grad_(True), v0.requires_grad_(True)]
    g = torch.Generator().manual_seed(0)
    wq = torch.randn(model.nq, generator=g, dtype=torch.float64)

    def loss():
        tr = phys.rollout(*inputs, torch.zeros(1, 40, 0, dtype=torch.float64))
        return (tr.qpos[0, -1] * wq).sum()

    cyl, sphere = 2, 3  # geoms: floor, table, cylinder, sphere, capsule, cylinder
    checks = [("geom_size", (1, 1)), ("geom_size", (cyl, 0)), ("geom_size", (cyl, 1)), ("geom_size", (sphere, 0)),
              ("geom_size", (5, 0)), (inputs[1], (0, 2)), (inputs[1], (0, 8)), (inputs[1], (0, 20)),
              (inputs[0], (0, 2))]
    assert_grads_match_central_differences(model, ("geom_size",), loss, checks, tol=1e-5)


def test_cylinder_box_gradients_match_finite_differences():
    """d loss / d (the cylinder's and the box's sizes, the initial state) through 40 steps of a
    tilted cylinder landing on a box, against central differences (float64)."""
    model = hw.load_model(_scene(FLOOR + CRATE, 'pos="0.26 0.02 0.32" euler="15 25 0"', CYL), dtype="float64")
    phys = hw.Physics(model, verbose=False)
    q0, v0 = model.default_state(1)
    v0 = v0.clone()
    v0[0, :3] = torch.tensor([0.1, 0.0, -0.6], dtype=torch.float64)
    inputs = [q0.clone().requires_grad_(True), v0.requires_grad_(True)]
    wq = torch.randn(model.nq, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def loss():
        return (phys.rollout(*inputs, torch.zeros(1, 40, 0, dtype=torch.float64)).qpos[0, -1] * wq).sum()

    crate, can = 1, 2
    checks = [("geom_size", (can, 0), 1e-7), ("geom_size", (can, 1), 1e-7),
              ("geom_size", (crate, 2), 1e-7), (inputs[1], (0, 2)), (inputs[1], (0, 3)), (inputs[0], (0, 0), 1e-7)]
    assert_grads_match_central_differences(model, ("geom_size",), loss, checks, tol=1e-5)


def test_what_cylinder_contacts_refuse():
    mesh = _scene(FLOOR + '<geom name="rock" type="mesh" mesh="tet"/>', 'pos="0 0 0.4"',
                  '<geom name="can" type="cylinder" size="0.05 0.1" mass="1"/>').replace(
        "<worldbody>", '<asset><mesh name="tet" vertex="0 0 0 1 0 0 0 1 0 0 0 1"/></asset><worldbody>')
    with pytest.raises(hw.UnsupportedFeatureError,
                       match="cylinder-mesh contact, 1 candidate pair: geom 'can' - geom 'rock'") as e:
        hw.load_model(mesh)
    assert "cylinders collide with planes, spheres, capsules, boxes and cylinders" in str(e.value)
    with pytest.raises(ValueError, match="cylinder, ellipsoid and height field contacts run"):
        hw.Physics(hw.load_model(_scene(*DROPS["cylinder upright on the floor"])), verbose=False, engine="unrolled")
