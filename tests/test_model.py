"""hw.load_model / hw.Model: loading scenes, files and strings; sizes, names and parameters read
from MuJoCo's compiler; errors for missing or malformed files and for unsupported elements.

No test here builds a Physics, so this file compiles no kernels.
"""
from __future__ import annotations

import os

import mujoco
import numpy as np
import pytest
import torch

import hybridwam as hw

SHIPPED = {"pendulum", "cartpole", "acrobot", "reacher", "double_pendulum", "spinning_box"}


# ==== loading and contents =========================================================================
def test_list_scenes_has_the_shipped_scenes():
    scenes = hw.list_scenes()
    assert SHIPPED <= set(scenes)
    assert scenes == sorted(scenes)


@pytest.mark.parametrize("scene", hw.list_scenes())
def test_scene_sizes_names_and_parameters_match_mujoco(scene):
    model = hw.load_model(scene, device="cpu")
    ref = mujoco.MjModel.from_xml_path(model.source)  # independent compile of the same file
    assert os.path.isabs(model.source) and model.source.endswith(f"{scene}.xml")
    assert (model.nq, model.nv, model.nu, model.nbody, model.njnt) == (ref.nq, ref.nv, ref.nu, ref.nbody, ref.njnt)
    assert model.timestep == pytest.approx(ref.opt.timestep)
    assert model.device == "cpu" and model.dtype == torch.float32
    for kind, objtype, n in [("joint", mujoco.mjtObj.mjOBJ_JOINT, ref.njnt),
                             ("actuator", mujoco.mjtObj.mjOBJ_ACTUATOR, ref.nu),
                             ("body", mujoco.mjtObj.mjOBJ_BODY, ref.nbody)]:
        names = model.names(kind)
        assert len(names) == n
        for i, name in enumerate(names):
            assert name == (mujoco.mj_id2name(ref, objtype, i) or f"{kind}{i}")
    p = model.params
    for name, t in p.items():
        assert isinstance(t, torch.Tensor) and t.dtype == torch.float32 and t.device.type == "cpu", name
    np.testing.assert_allclose(p["body_mass"].numpy(), ref.body_mass, rtol=1e-6)
    np.testing.assert_allclose(p["body_inertia"].numpy(), ref.body_inertia, rtol=1e-6)
    np.testing.assert_allclose(p["gravity"].numpy()[0], ref.opt.gravity, rtol=1e-6)
    np.testing.assert_allclose(p["dof_damping"].numpy()[:ref.nv], ref.dof_damping, rtol=1e-6)
    assert model.body_mass is p["body_mass"]  # parameters are also attributes
    # default state = MuJoCo's reset state
    q, v = model.default_state()
    assert q.shape == (ref.nq,) and v.shape == (ref.nv,)
    np.testing.assert_allclose(q.numpy(), ref.qpos0, rtol=1e-6)
    assert not v.any()
    qb, vb = model.default_state(5)
    assert qb.shape == (5, ref.nq) and vb.shape == (5, ref.nv)
    qb[0, 0] += 1.0  # batched states are independent copies
    assert torch.equal(qb[1], q)
    # describe() lists every joint and actuator by name
    text = model.describe()
    assert f"nq={ref.nq}" in text and f"nv={ref.nv}" in text and f"nu={ref.nu}" in text
    for name in model.names("joint") + model.names("actuator"):
        assert name in text


def test_scene_by_short_name_relative_path_absolute_path_and_string_are_the_same_model():
    a = hw.load_model("cartpole", device="cpu")
    b = hw.load_model("scenes/cartpole.xml", device="cpu")
    c = hw.load_model(a.source, device="cpu")
    with open(a.source) as f:
        d = hw.load_model(f.read(), device="cpu")
    assert d.source == "<xml string>"
    for other in (b, c, d):
        assert (other.nq, other.nv, other.nu) == (a.nq, a.nv, a.nu)
        assert other.structure == a.structure
        for k in a.params:
            assert torch.equal(a.params[k], other.params[k]), k


def test_load_from_mjmodel_and_float64():
    mj = mujoco.MjModel.from_xml_path(hw.load_model("acrobot", device="cpu").source)
    mj.body_mass[1] = 2.5
    model = hw.load_model(mj, device="cpu", dtype="float64")
    assert model.mj is mj and model.dtype == torch.float64
    assert all(t.dtype == torch.float64 for t in model.params.values())
    assert model.params["body_mass"][1].item() == 2.5
    assert model.default_state()[0].dtype == torch.float64
    assert hw.load_model(mj, device="cpu", dtype=torch.float32).dtype == torch.float32


def test_invalid_dtype_raises():
    with pytest.raises(ValueError, match="dtype"):
        hw.load_model("pendulum", device="cpu", dtype="float16")


def test_urdf_file_loads(tmp_path):
    urdf = """<?xml version="1.0"?>
<robot name="two_link">
  <link name="base"><inertial><mass value="1"/><origin xyz="0 0 0"/>
    <inertia ixx="0.01" ixy="0" ixz="0" iyy="0.01" iyz="0" izz="0.01"/></inertial></link>
  <link name="arm"><inertial><mass value="0.5"/><origin xyz="0 0 -0.2"/>
    <inertia ixx="0.002" ixy="0" ixz="0" iyy="0.002" iyz="0" izz="0.001"/></inertial></link>
  <joint name="hinge" type="continuous">
    <parent link="base"/><child link="arm"/><origin xyz="0 0 0.1"/><axis xyz="0 1 0"/>
  </joint>
</robot>
"""
    path = tmp_path / "two_link.urdf"
    path.write_text(urdf)
    model = hw.load_model(str(path), device="cpu")
    assert model.source == str(path)
    assert (model.nq, model.nv, model.nu) == (1, 1, 0)
    assert model.names("joint") == ["hinge"]
    assert model.params["body_mass"][-1].item() == pytest.approx(0.5)


def test_urdf_revolute_limits_become_joint_limits(tmp_path):
    """A URDF revolute joint's <limit> is a range limit (tests/test_contact.py checks the law)."""
    urdf = """<?xml version="1.0"?>
<robot name="limited">
  <link name="base"/>
  <link name="arm"><inertial><mass value="0.5"/><origin xyz="0 0 -0.2"/>
    <inertia ixx="0.002" ixy="0" ixz="0" iyy="0.002" iyz="0" izz="0.001"/></inertial></link>
  <joint name="hinge" type="revolute">
    <parent link="base"/><child link="arm"/><axis xyz="0 1 0"/>
    <limit lower="-0.5" upper="0.5" effort="10" velocity="5"/>
  </joint>
</robot>
"""
    path = tmp_path / "limited.urdf"
    path.write_text(urdf)
    model = hw.load_model(str(path), device="cpu")
    assert model.structure.jnt_limited == (True,)
    assert model.params["jnt_range"][0].tolist() == pytest.approx([-0.5, 0.5])
    tr = hw.Physics(model).rollout(torch.zeros(1, 1), torch.full((1, 1), 6.0), torch.zeros(1, 300, 0))
    assert 0.5 < tr.qpos[0, :, 0].max().item() < 0.55  # swung into the upper limit, stopped there


# ==== loading errors ===============================================================================
MALFORMED = "<mujoco><worldbody><body name='b'><geom size='0.1'></worldbody></mujoco>"


def test_malformed_xml_string_raises_model_load_error():
    with pytest.raises(hw.ModelLoadError, match="<xml string>") as ei:
        hw.load_model(MALFORMED, device="cpu")
    assert "XML" in str(ei.value)
    assert isinstance(ei.value, ValueError)


def test_malformed_xml_file_raises_model_load_error_naming_the_file(tmp_path):
    path = tmp_path / "broken_model.xml"
    path.write_text(MALFORMED)
    with pytest.raises(hw.ModelLoadError) as ei:
        hw.load_model(str(path), device="cpu")
    assert str(path) in str(ei.value)


def test_invalid_attribute_raises_model_load_error(tmp_path):
    path = tmp_path / "bad_keyword.xml"
    path.write_text("<mujoco><worldbody><body><joint type='hing'/><geom size='0.1'/></body></worldbody></mujoco>")
    with pytest.raises(hw.ModelLoadError, match="hing") as ei:
        hw.load_model(path, device="cpu")
    assert str(path) in str(ei.value)


def test_missing_file_raises_model_load_error_naming_the_path(tmp_path):
    path = tmp_path / "no_such_dir" / "robot.xml"
    with pytest.raises(hw.ModelLoadError) as ei:
        hw.load_model(str(path), device="cpu")
    assert str(path) in str(ei.value)
    with pytest.raises(hw.ModelLoadError, match="not_a_scene"):
        hw.load_model("not_a_scene", device="cpu")


def test_missing_file_whose_name_matches_a_shipped_scene_raises(tmp_path):
    path = tmp_path / "my_robot_dir" / "pendulum.xml"  # user's own file, not there
    assert not path.exists()
    with pytest.raises(hw.ModelLoadError) as ei:
        hw.load_model(str(path), device="cpu")
    assert str(path) in str(ei.value)


# ==== unsupported features ==========================================================================
# A valid two-link arm; each case below adds exactly one element hybridwam does not simulate.
BASE = """<mujoco model="arm">
  <compiler angle="radian"/>
  <option integrator="{integrator}"/>
  <default><geom contype="0" conaffinity="0"/></default>
  <worldbody>
    <body name="upper">
      <joint name="shoulder" type="hinge" axis="0 1 0" {shoulder}/>
      <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.03" mass="1"/>
      <site name="s_upper" pos="0 0 -0.1"/>
      <body name="lower" pos="0 0 -0.5">
        <joint name="elbow" type="hinge" axis="0 1 0" {elbow}/>
        <geom type="capsule" fromto="0 0 0 0 0 -0.5" size="0.03" mass="1"/>
        <site name="s_lower" pos="0 0 -0.1"/>
        <body name="hand" pos="0 0 -0.5">
          <joint name="wrist_ball" type="ball" {wrist}/>
          <geom type="sphere" size="0.05" mass="0.2"/>
        </body>
      </body>
    </body>
  </worldbody>
  <tendon>{tendon}</tendon>
  <equality>{equality}</equality>
  <actuator>
    <motor name="ok_motor" joint="shoulder" gear="2"/>
    {actuator}
  </actuator>
</mujoco>"""

# case: (pieces to insert, [keywords that must all appear in one entry of .features])
UNSUPPORTED = {
    # a tendon that acts is refused by what the step does not simulate of it (stiffness, damping
    # and tendon actuators are simulated: tests/test_tendons.py; inert tendons accepted: below)
    "fixed_tendon": (dict(tendon='<fixed name="coupling_tendon" stiffness="10" frictionloss="1">'
                                 '<joint joint="shoulder" coef="1"/><joint joint="elbow" coef="-1"/></fixed>'),
                     ["tendon", "coupling_tendon", "frictionloss"]),
    "spatial_tendon": (dict(tendon='<spatial name="cable" limited="true" range="0 1"><site site="s_upper"/>'
                                   '<site site="s_lower"/></spatial>'),
                       ["tendon", "cable", "limited"]),
    "tendon_actuator": (dict(tendon='<fixed name="drive" armature="0.1"><joint joint="shoulder" coef="1"/></fixed>',
                             actuator='<motor name="tendon_motor" tendon="drive"/>'),
                        ["tendon", "drive", "armature"]),
    "equality": (dict(equality='<joint name="mirror_constraint" joint1="shoulder" joint2="elbow"/>'),
                 ["equality", "mirror_constraint"]),
    # hinge and slide limits are simulated (tests/test_contact.py); a ball joint's cone limit only
    # with MuJoCo's law (tests/test_ball_joints.py)
    "ball_joint_range": (dict(wrist='range="0 0.5"'), ["wrist_ball", "cone limit", "limit_law='mujoco'"]),
    "ball_actuatorgravcomp": (dict(wrist='actuatorgravcomp="true"'), ["wrist_ball", "actuatorgravcomp"]),
    # integrator, filter and filterexact dynamics are simulated (tests/test_activation.py)
    "user_dynamics": (dict(actuator='<general name="user_servo" joint="elbow" dyntype="user"/>'),
                      ["user_servo", "dynamics 'user'"]),
    "muscle": (dict(actuator='<muscle name="biceps" joint="elbow" lengthrange="-1 1"/>'), ["biceps"]),
    "implicit": (dict(integrator="implicit"), ["integrator", "IMPLICIT"]),
    # actuators on ball and free joints are simulated (tests/test_ball_joints.py), body transmissions not
    "body_actuator": (dict(actuator='<adhesion name="grip" body="hand" ctrlrange="0 1" gain="1"/>'),
                      ["grip", "transmission 'body'"]),
}


def _xml(**pieces) -> str:
    kw = dict(integrator="Euler", shoulder="", elbow="", wrist="", tendon="", equality="", actuator="")
    kw.update(pieces)
    return BASE.format(**kw)


def _has_entry(features: list[str], keywords: list[str]) -> bool:
    return any(all(k in f for k in keywords) for f in features)


def test_base_model_is_supported():
    model = hw.load_model(_xml(), device="cpu")
    assert (model.nq, model.nv, model.nu) == (6, 5, 1)


def test_tendons_that_exert_no_force_are_accepted():
    """A fixed and a spatial tendon without stiffness, damping, friction, armature, limit or
    actuator change nothing in MuJoCo's step (checked here against the model without them), so
    the model loads; Gymnasium's humanoid has two (tests/test_corpus.py steps it)."""
    tendons = ('<fixed name="coupling"><joint joint="shoulder" coef="1"/><joint joint="elbow" coef="-1"/></fixed>'
               '<spatial name="cable"><site site="s_upper"/><site site="s_lower"/></spatial>')
    model = hw.load_model(_xml(tendon=tendons), device="cpu")
    assert model.mj.ntendon == 2
    bare = mujoco.MjModel.from_xml_string(_xml())
    rng = np.random.default_rng(0)
    d1, d2 = mujoco.MjData(model.mj), mujoco.MjData(bare)
    q = bare.qpos0.copy()
    q[:2] = rng.normal(0, 0.5, 2)
    v = rng.normal(0, 1.0, bare.nv)
    for d, mj in ((d1, model.mj), (d2, bare)):
        d.qpos[:], d.qvel[:], d.ctrl[:] = q, v, 0.3
        mujoco.mj_step(mj, d)
    assert np.array_equal(d1.qvel, d2.qvel) and np.array_equal(d1.qpos, d2.qpos)


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_unsupported_element_is_named(tmp_path, case):
    pieces, keywords = UNSUPPORTED[case]
    path = tmp_path / f"{case}.xml"
    path.write_text(_xml(**pieces))
    with pytest.raises(hw.UnsupportedFeatureError) as ei:
        hw.load_model(str(path), device="cpu")
    err = ei.value
    assert _has_entry(err.features, keywords), err.features
    assert str(path) in str(err)  # the message names the file ...
    for f in err.features:  # ... and lists every entry
        assert f in str(err)
    assert not any("ok_motor" in f for f in err.features)  # supported elements are not listed
    # the same model as an XML string: same features
    with pytest.raises(hw.UnsupportedFeatureError) as es:
        hw.load_model(_xml(**pieces), device="cpu")
    assert es.value.features == err.features


def test_model_with_several_problems_lists_all_of_them(tmp_path):
    pieces = {}
    for case in ("fixed_tendon", "equality", "ball_joint_range", "implicit"):
        pieces.update(UNSUPPORTED[case][0])
    pieces["actuator"] = (UNSUPPORTED["user_dynamics"][0]["actuator"] + UNSUPPORTED["muscle"][0]["actuator"]
                          + UNSUPPORTED["body_actuator"][0]["actuator"])
    path = tmp_path / "many_problems.xml"
    path.write_text(_xml(**pieces))
    with pytest.raises(hw.UnsupportedFeatureError) as ei:
        hw.load_model(str(path), device="cpu")
    err = ei.value
    cases = ("fixed_tendon", "equality", "ball_joint_range", "implicit", "user_dynamics", "muscle",
             "body_actuator")
    for case in cases:
        assert _has_entry(err.features, UNSUPPORTED[case][1]), (case, err.features)
    assert len(err.features) >= len(cases)
    assert str(path) in str(err)


CUSTOM_EPS_XML = """
<mujoco>
  <custom><numeric name="hybridwam_contact_eps" data="{eps}"/></custom>
  <worldbody>
    <geom type="plane" size="1 1 0.1"/>
    <body pos="0 0 0.2"><freejoint/><geom type="sphere" size="0.1" mass="1"/></body>
  </worldbody>
</mujoco>
"""


def test_scene_sets_the_contact_smoothing_through_a_custom_numeric():
    assert float(hw.load_model("pendulum", device="cpu").params["contact_eps"][0]) == pytest.approx(1e-3)
    assert float(hw.load_model("pusher", device="cpu").params["contact_eps"][0]) == pytest.approx(0.02)
    m = hw.load_model(CUSTOM_EPS_XML.format(eps="0.005"), device="cpu", dtype="float64")
    assert float(m.params["contact_eps"][0]) == 0.005 and float(m.params["contact_tau"][0]) == 5e-4
    for bad in ("-0.01", "0.01 0.02", "0"):
        with pytest.raises(hw.ModelLoadError, match="hybridwam_contact_eps"):
            hw.load_model(CUSTOM_EPS_XML.format(eps=bad), device="cpu")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_parameters_are_copies_sharing_memory_with_nothing(dtype):
    """model.params own their memory: an edit changes neither the MjModel they were loaded from
    (the MuJoCo reference) nor another parameter (float64 tensors made with torch.as_tensor used to
    share the MjModel's arrays, and actuator_gear with actuator_gear_force)."""
    model = hw.load_model("acrobot", device="cpu", dtype=dtype)
    ptrs = [t.data_ptr() for t in model.params.values()]
    assert len(set(ptrs)) == len(ptrs)
    mass, gear = model.mj.body_mass.copy(), model.mj.actuator_gear.copy()
    with torch.no_grad():
        model.params["body_mass"][1] *= 2
        model.params["actuator_gear"][0] *= 3
    assert (model.mj.body_mass == mass).all() and (model.mj.actuator_gear == gear).all()
    assert model.params["actuator_gear_force"][0, 0] == float(gear[0, 0])


def test_unsupported_pairs_are_listed_per_pair_of_geom_types():
    """Candidate pairs without a narrow phase are one entry per pair of geom types, with their
    count and the first few by name (MuJoCo Warp's primitives scene has 2825 such pairs: listed
    one by one the message ran to 613 kB)."""
    from hybridwam.model import SHOWN_PAIRS
    bodies = "".join(f'<body pos="{0.3 * i} 0 0.2"><freejoint/><geom name="e{i}" type="ellipsoid" '
                     f'size="0.1 0.05 0.04"/></body>' for i in range(SHOWN_PAIRS + 2))
    xml = f"""<mujoco><worldbody><geom name="table" type="box" size="1 1 0.05"/>{bodies}
      <body pos="0 1 0.2"><freejoint/><geom name="s" type="sphere" size="0.05"/></body></worldbody></mujoco>"""
    with pytest.raises(hw.UnsupportedFeatureError) as ei:
        hw.load_model(xml, device="cpu")
    feats = ei.value.features
    n = SHOWN_PAIRS + 2
    box = [f for f in feats if f.startswith("ellipsoid-box contact")]
    assert len(box) == 1 and f"{n} candidate pairs" in box[0] and "and 2 more" in box[0], feats
    assert box[0].count("geom 'table'") == SHOWN_PAIRS
    sph = [f for f in feats if f.startswith("sphere-ellipsoid contact")]
    assert len(sph) == 1 and f"{n} candidate pairs" in sph[0], feats
    ee = [f for f in feats if f.startswith("ellipsoid-ellipsoid contact")]
    assert len(ee) == 1 and f"{n * (n - 1) // 2} candidate pairs" in ee[0], feats
    assert len(feats) == 3, feats
