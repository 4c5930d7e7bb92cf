"""Fluid forces (MuJoCo's inertia-box model, option density / viscosity / wind) against mj_step
and mj_forward's qfrc_passive, their gradients against central differences, and what is refused
(the ellipsoid fluid model, fluid forces with implicitfast)."""
from __future__ import annotations

import mujoco
import numpy as np
import pytest
import torch
from conftest import (
    assert_grads_match_central_differences,
    assert_looped_rollout_matches_mujoco,
    final_state_loss,
    mj_rollout,
    rel_err,
    to_torch,
)

import hybridwam as hw

# a hinge chain ending in a ball joint and a free ellipsoid, in a viscous, dense, moving medium
FLUID = """<mujoco><option integrator="{integrator}" timestep="0.01" density="1000" viscosity="0.5"
  wind="0.3 -0.2 0.1"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body pos="0 0 1"><joint name="a" type="hinge" axis="0 1 0" damping="0.1"/>
      <geom type="box" size=".3 .05 .02" pos=".3 0 0" mass="1"/>
      <body pos=".6 0 0" euler="10 20 30"><joint type="hinge" axis="0 0 1"/>
        <geom type="capsule" fromto="0 0 0 .4 .1 0" size=".03" mass=".4"/>
        <body pos=".4 .1 0"><joint type="ball"/><geom type="box" size=".1 .05 .2" pos=".1 0 0" mass=".3"/></body>
      </body></body>
    <body pos="1 0 1"><freejoint/><geom type="ellipsoid" size=".1 .2 .05" mass="1"/></body>
  </worldbody>
  <actuator><motor joint="a" gear="1"/></actuator></mujoco>"""


def _inputs(mj, B, T, seed, vel=2.0):
    rng = np.random.default_rng(seed)
    qpos = np.tile(mj.qpos0, (B, 1))
    qpos[:, :2] += rng.normal(0, 0.5, (B, 2))
    return qpos, rng.normal(0, vel, (B, mj.nv)), rng.normal(0, 1.0, (B, T, mj.nu))


@pytest.mark.parametrize("integrator", ["RK4", "Euler"])
def test_fluid_rollouts_and_passive_force_match_mujoco(integrator):
    """30-step rollouts against mj_step (float64 to 1e-12) and Physics.forward's qfrc_passive
    against mj_forward's (fluid forces included) to 1e-12; without the medium MuJoCo's rollout
    differs by far more (the comparison can fail)."""
    xml = FLUID.format(integrator=integrator)
    mj = mujoco.MjModel.from_xml_string(xml)
    qpos, qvel, ctrl = _inputs(mj, 4, 30, seed=0)
    mq, mv = mj_rollout(mj, qpos, qvel, ctrl)
    still = mujoco.MjModel.from_xml_string(xml.replace('density="1000" viscosity="0.5"', ""))
    assert rel_err(mj_rollout(still, qpos, qvel, ctrl)[1], mv) > 1e-1
    assert hw.load_model(xml, dtype="float64").structure.fluid
    out, datas = assert_looped_rollout_matches_mujoco(xml, qpos, qvel, ctrl, 1e-12)
    for b, d in enumerate(datas):
        assert np.abs(d.qfrc_fluid).max() > 1.0
        assert rel_err(out.qfrc_passive[b], d.qfrc_passive) <= 1e-12


def test_fluid_gradients_match_finite_differences():
    """d loss / d (the medium's density, viscosity and wind, a body's inertia and mass, the initial
    velocity, a control) through a fluid rollout against central differences (float64)."""
    model = hw.load_model(FLUID.format(integrator="RK4"), dtype="float64")
    phys = hw.Physics(model, verbose=False)
    qpos, qvel, ctrl = _inputs(model.mj, 2, 8, seed=1, vel=1.0)
    inputs = [to_torch(x, torch.float64).requires_grad_(True) for x in (qpos, qvel, ctrl)]
    loss = final_state_loss(phys, inputs)

    # the inertias' box sides are square roots of small differences: a smaller step keeps the
    # difference quotient's curvature error below the tolerance (at 1e-6 it is 6e-6 relative)
    checks = [("fluid_density", 0), ("fluid_viscosity", 0), ("wind", (0, 0)), ("wind", (0, 2)),
              ("body_inertia", (1, 1), 1e-7), ("body_inertia", (3, 0), 1e-7), ("body_mass", 3), (inputs[1], (1, 4)),
              (inputs[2], (0, 3, 0))]
    assert_grads_match_central_differences(
        model, ("fluid_density", "fluid_viscosity", "wind", "body_inertia", "body_mass"), loss, checks)


def test_what_fluid_forces_refuse():
    ellipsoid = FLUID.format(integrator="RK4").replace('<geom type="ellipsoid" size=".1 .2 .05" mass="1"/>',
                                                       '<geom type="ellipsoid" size=".1 .2 .05" mass="1" '
                                                       'fluidshape="ellipsoid"/>')
    with pytest.raises(hw.UnsupportedFeatureError, match="fluidshape 'ellipsoid'"):
        hw.load_model(ellipsoid)
    with pytest.raises(hw.UnsupportedFeatureError, match="fluid forces with the implicitfast integrator"):
        hw.load_model(FLUID.format(integrator="implicitfast"))
    model = hw.load_model(FLUID.format(integrator="Euler"))
    with pytest.raises(ValueError, match="fluid forces run"):
        hw.Physics(model, verbose=False, engine="unrolled")
    # wind alone moves nothing (MuJoCo applies no fluid force without density or viscosity)
    calm = hw.load_model(FLUID.format(integrator="Euler").replace('density="1000" viscosity="0.5"', ""))
    assert not calm.structure.fluid
