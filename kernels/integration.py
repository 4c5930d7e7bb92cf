"""Position integration on the joint manifolds (MuJoCo's mj_integratePos conventions)."""
from typing import Any

import warp as wp


@wp.func
def quat_integrate(q: Any, omega: Any, h: Any):
    """q * exp(omega h / 2), normalised: rotate by the local-frame angular velocity ``omega``
    for time ``h``. Smooth at omega = 0 (series branch, no sqrt of zero)."""
    one = type(h)(1.0)
    th2 = wp.dot(omega, omega) * h * h
    # series for small angles keeps value and gradient finite at omega = 0
    s = h * (type(h)(0.5) - th2 / type(h)(48.0))
    c = one - th2 / type(h)(8.0) + th2 * th2 / type(h)(384.0)
    if th2 > type(h)(1.0e-6):
        th = wp.sqrt(th2)
        s = h * wp.sin(type(h)(0.5) * th) / th
        c = wp.cos(type(h)(0.5) * th)
    return wp.normalize(q * wp.quaternion(omega * s, c))


@wp.func
def quat_to_rotvec(q: Any):
    """Rotation vector (axis * angle, angle in [-pi, pi]) of a unit quaternion; MuJoCo's
    mju_quat2Vel with scale 1. Smooth at the identity."""
    v = wp.vector(q[0], q[1], q[2])
    w = q[3]
    s2 = wp.dot(v, v)
    # near the identity: angle ~ 2 |v| / w
    r = v * (type(w)(2.0) / w)
    if s2 > type(w)(1.0e-12):
        s = wp.sqrt(s2)
        ang = type(w)(2.0) * wp.atan2(s, w)
        if ang > type(w)(3.141592653589793):
            ang = ang - type(w)(6.283185307179586)
        r = v * (ang / s)
    return r


@wp.func
def quat_sub(qa: Any, qb: Any):
    """MuJoCo's mju_subQuat: rotation vector of qb^-1 qa (in qb's frame)."""
    return quat_to_rotvec(wp.quat_inverse(qb) * qa)
