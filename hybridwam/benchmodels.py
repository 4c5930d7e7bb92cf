"""Models written for the benchmarks and tests: hinge chains of any length and a humanoid-like tree.

``model_xml(name)`` turns a benchmark model name into MJCF text: ``chain:N`` (N hinges), ``tree``
(a 31-dof humanoid-like tree, no contacts), ``tree:contact`` (the same tree standing on a floor,
every geom colliding: about 150 candidate pairs), ``hand`` (an arm with a tendon-driven hand:
fixed and spatial tendons, tendon actuators); any other name is returned as is (a shipped scene
or a path, for ``hw.load_model``).
"""
from __future__ import annotations


def chain_xml(n: int, contype: int = 0) -> str:
    """A chain of ``n`` hinges hanging from the world: tilted axes and body frames, 0.1 m links of
    0.2 + 0.01 i kg (link i), damped joints, a motor on every other joint."""
    bodies = ""
    for i in range(n):
        bodies += (f'<body pos="0 0 -0.1" euler="{7 * (i % 5)} {3 * (i % 7)} 0"><joint name="j{i}" type="hinge" '
                   f'axis="{i % 2} 1 {0.3 * (i % 3)}" damping="0.05"/><geom type="capsule" fromto="0 0 0 0.02 0 -0.1" '
                   f'size="0.02" mass="{0.2 + 0.01 * i}" contype="{contype}" conaffinity="{contype}"/>')
    bodies += "</body>" * n
    acts = "".join(f'<motor joint="j{i}" gear="1"/>' for i in range(0, n, 2))
    return (f'<mujoco model="chain{n}"><option timestep="0.002"/><worldbody>{bodies}</worldbody>'
            f'<actuator>{acts}</actuator></mujoco>')


def _limb(name: str, pos: str, axis: str, n_hinges: int, length: float, g: str) -> tuple[str, list[str]]:
    """A limb: a ball joint at ``pos`` then ``n_hinges`` hinged segments, ``g`` the geoms' contact
    attributes; returns (xml, hinge names)."""
    xml = (f'<body name="{name}0" pos="{pos}"><joint name="{name}_ball" type="ball" damping="0.5"/>'
           f'<geom type="capsule" fromto="0 0 0 {axis} {-length}" size="0.04" mass="2" {g}/>')
    hinges = []
    for k in range(n_hinges):
        j = f"{name}_h{k}"
        hinges.append(j)
        xml += (f'<body name="{name}{k + 1}" pos="{axis} {-length}"><joint name="{j}" type="hinge" '
                f'axis="{1 if k % 2 else 0} {0 if k % 2 else 1} 0" damping="0.2" armature="0.01"/>'
                f'<geom type="capsule" fromto="0 0 0 0 0 {-0.8 * length}" size="0.035" mass="1" {g}/>')
    if 'contype="1"' in g:  # the end of a colliding limb (hand or foot): a sphere
        xml += f'<geom type="sphere" pos="0 0 {-0.8 * length}" size="0.05" mass="0.3" {g}/>'
    xml += "</body>" * (n_hinges + 1)
    return xml, hinges


def tree_xml(contacts: bool = False) -> str:
    """A humanoid-like tree of 31 dofs: free torso; legs (ball hip, knee, two ankle hinges), arms
    (ball shoulder, elbow, wrist) and a ball neck; motors on every hinge. No contacts, or
    (``contacts``) spheres at the limbs' ends, a floor, and every geom colliding with every other
    one not on the same or the parent body (MuJoCo's filter): 187 candidate pairs of 8 kinds."""
    g = 'contype="1" conaffinity="1"' if contacts else 'contype="0" conaffinity="0"'
    parts, hinges = [], []
    # colliding: hips and shoulders wider apart, so that no two limbs touch near the resting pose
    hip, sh = (0.16, 0.3) if contacts else (0.1, 0.25)
    for name, pos, axis, n, length in (("lleg", f"0 {hip} -0.3", "0 0", 3, 0.4),
                                       ("rleg", f"0 {-hip} -0.3", "0 0", 3, 0.4),
                                       ("larm", f"0 {sh} 0.25", "0 0.05", 2, 0.3),
                                       ("rarm", f"0 {-sh} 0.25", "0 -0.05", 2, 0.3)):
        xml, h = _limb(name, pos, axis, n, length, g)
        parts.append(xml)
        hinges += h
    neck = ('<body name="head" pos="0 0 0.35"><joint name="neck" type="ball" damping="0.3"/>'
            f'<geom type="sphere" size="0.1" mass="3" {g}/></body>')
    acts = "".join(f'<motor joint="{j}" gear="20" ctrlrange="-1 1"/>' for j in hinges)
    floor = '<geom name="floor" type="plane" size="10 10 0.1"/>' if contacts else ""
    z = 2.0 if contacts else 1.3  # with contacts: falling from above the floor
    return (f'<mujoco model="tree31"><option timestep="0.002"/><worldbody>{floor}<body name="torso" pos="0 0 {z}">'
            f'<freejoint/><geom type="box" size="0.1 0.2 0.3" mass="20" {g}/>'
            + "".join(parts) + neck + f'</body></worldbody><actuator>{acts}</actuator></mujoco>')


def hand_xml() -> str:
    """An arm with a tendon-driven hand, 17 dofs: shoulder and elbow hinges with motors, a palm with
    five fingers of three hinges each; each finger flexed by a fixed tendon over its three joints
    (a spring to straight, and a position actuator on the tendon, as coupled fingers are driven),
    and a spatial cable from a world anchor to the palm (spring and damper). No contacts."""
    g = 'contype="0" conaffinity="0"'
    fingers = ""
    for f in range(5):
        y = -0.04 + 0.02 * f
        fingers += f'<body pos="0.08 {y} 0">'
        for k in range(3):
            fingers += (f'<joint name="f{f}_{k}" type="hinge" axis="0 1 0" damping="0.01" armature="0.001"/>'
                        f'<geom type="capsule" fromto="0 0 0 0.03 0 0" size="0.008" mass="0.02" {g}/>'
                        + ('<body pos="0.03 0 0">' if k < 2 else ""))
        fingers += "</body>" * 3
    tendons = "".join(f'<fixed name="flex{f}" stiffness="0.2">' + "".join(
        f'<joint joint="f{f}_{k}" coef="1"/>' for k in range(3)) + "</fixed>" for f in range(5))
    acts = ('<motor joint="shoulder" gear="10" ctrlrange="-1 1"/><motor joint="elbow" gear="5" ctrlrange="-1 1"/>'
            + "".join(f'<position tendon="flex{f}" kp="0.5" ctrlrange="0 3"/>' for f in range(5)))
    return ('<mujoco model="hand"><option timestep="0.002"/><worldbody><site name="anchor" pos="0.3 0 1.4"/>'
            '<body pos="0 0 1"><joint name="shoulder" type="hinge" axis="0 1 0" damping="0.5"/>'
            f'<geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.04" mass="1.5" {g}/>'
            '<body pos="0.3 0 0"><joint name="elbow" type="hinge" axis="0 1 0" damping="0.3"/>'
            f'<geom type="capsule" fromto="0 0 0 0.25 0 0" size="0.03" mass="1" {g}/>'
            f'<body pos="0.25 0 0"><geom type="box" size="0.04 0.05 0.01" pos="0.04 0 0" mass="0.3" {g}/>'
            '<site name="palm" pos="0.04 0 0.01"/>' + fingers + '</body></body></body></worldbody>'
            '<tendon><spatial name="cable" stiffness="20" damping="0.5"><site site="anchor"/><site site="palm"/>'
            f'</spatial>{tendons}</tendon><actuator>{acts}</actuator></mujoco>')


def linkage_xml() -> str:
    """An arm with a closed linkage and a coupled gripper, 9 dofs, every constraint kind MuJoCo's
    law (limit_law "mujoco") simulates: shoulder and elbow hinges with limits, damping and dry
    friction, a four-bar at the wrist (three hinges, a connect closing it to the forearm), two
    fingers coupled by a joint equality (one limited), a slide held at its reference by another;
    motors on the shoulder, elbow, crank and finger. No contacts."""
    g = 'contype="0" conaffinity="0"'
    return ('<mujoco model="linkage"><option timestep="0.002"/><default><joint damping="0.05"/></default>'
            '<worldbody><body pos="0 0 1">'
            '<joint name="shoulder" type="hinge" axis="0 1 0" range="-90 90" damping="0.5" frictionloss="0.1"/>'
            f'<geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.04" mass="1.5" {g}/>'
            '<body name="forearm" pos="0.3 0 0">'
            '<joint name="elbow" type="hinge" axis="0 1 0" range="-120 120" damping="0.3" frictionloss="0.05"/>'
            f'<geom type="capsule" fromto="0 0 0 0.3 0 0" size="0.03" mass="1" {g}/>'
            '<body name="crank" pos="0.3 0 0"><joint name="crank" type="hinge" axis="0 1 0"/>'
            f'<geom type="capsule" fromto="0 0 0 0.06 0 0" size="0.01" mass="0.1" {g}/>'
            '<body pos="0.06 0 0"><joint name="coupler" type="hinge" axis="0 1 0"/>'
            f'<geom type="capsule" fromto="0 0 0 0.02 0 0.08" size="0.01" mass="0.1" {g}/>'
            '<body name="rocker" pos="0.02 0 0.08"><joint name="rocker" type="hinge" axis="0 1 0"/>'
            f'<geom type="capsule" fromto="0 0 0 -0.06 0 -0.07" size="0.01" mass="0.1" {g}/>'
            '<body name="palm" pos="-0.06 0 -0.07"><joint name="slide" type="slide" axis="1 0 0"/>'
            f'<geom type="box" size="0.03 0.04 0.01" mass="0.2" {g}/>'
            '<body pos="0.02 0 0"><joint name="f1" type="hinge" axis="0 1 0" range="-30 40"/>'
            f'<geom type="capsule" fromto="0 0 0 0 0 -0.06" size="0.006" mass="0.03" {g}/></body>'
            '<body pos="-0.02 0 0"><joint name="f2" type="hinge" axis="0 1 0"/>'
            f'<geom type="capsule" fromto="0 0 0 0 0 -0.06" size="0.006" mass="0.03" {g}/></body>'
            '</body></body></body></body></body></body></worldbody>'
            '<equality><connect body1="rocker" body2="forearm" anchor="-0.06 0 -0.07"/>'
            '<joint joint1="f2" joint2="f1" polycoef="0 -1 0 0 0"/><joint joint1="slide" polycoef="0 0 0 0 0"/>'
            '</equality><actuator><motor joint="shoulder" gear="10" ctrlrange="-1 1"/>'
            '<motor joint="elbow" gear="5" ctrlrange="-1 1"/><motor joint="crank" gear="0.5" ctrlrange="-1 1"/>'
            '<motor joint="f1" gear="0.1" ctrlrange="-1 1"/></actuator></mujoco>')


#: load_model options a benchmark model needs (its constraints are MuJoCo's soft constraints)
MODEL_OPTIONS = {"linkage": {"limit_law": "mujoco"}}


def model_options(name: str) -> dict:
    """hw.load_model keyword arguments for a benchmark model name (empty for scenes and files)."""
    return dict(MODEL_OPTIONS.get(name, {}))


def model_xml(name: str) -> str:
    """MJCF text of a benchmark model name (``chain:N``, ``tree``, ``hand``, ``linkage``), or ``name``
    unchanged."""
    if name.startswith("chain:"):
        try:
            n = int(name.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"{name!r}: expected chain:N with N a positive integer") from None
        if n < 1:
            raise ValueError(f"{name!r}: expected chain:N with N a positive integer")
        return chain_xml(n)
    if name in ("tree", "tree:contact"):
        return tree_xml(contacts=name == "tree:contact")
    if name == "hand":
        return hand_xml()
    if name == "linkage":
        return linkage_xml()
    return name
