"""Forward kinematics helpers (MuJoCo conventions, Warp quaternions are x, y, z, w).

MuJoCo stores quaternions as (w, x, y, z) in qpos; Warp's ``wp.quat`` is (x, y, z, w).
"""
from typing import Any

import warp as wp


@wp.func
def quat_from_wxyz(w: Any, x: Any, y: Any, z: Any):
    """Unit Warp quaternion from MuJoCo's (w, x, y, z) order; normalised as MuJoCo does."""
    return wp.normalize(wp.quaternion(x, y, z, w))


@wp.func
def hinge_quat(axis: Any, angle: Any):
    """Rotation by ``angle`` (rad) about the unit ``axis`` in the parent frame."""
    half = angle * type(angle)(0.5)
    return wp.quaternion(axis * wp.sin(half), wp.cos(half))


@wp.func
def motion_dof(axis: Any, anchor: Any):
    """Linear part of the world-origin Plücker motion vector of a rotation about ``axis``
    through ``anchor``: the velocity of the point at the origin, anchor x axis."""
    return wp.cross(anchor, axis)
