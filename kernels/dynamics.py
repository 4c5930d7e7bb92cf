"""Rigid-body dynamics in world-aligned spatial coordinates about a reference point.

A motion (twist) is a pair (w, v): angular velocity and the velocity of the body point at the
reference point. A force (wrench) is (n, f): torque about the reference point and force. A spatial
inertia about it is (m, h, J): mass, first moment m*c and rotational inertia about the point.
Composite inertias are sums of these triples about one point; ``shift_*`` here (and
kernels/contact.py's shift_moment for wrenches, shift_stiffness for 6x6 inertia-like matrices)
re-express each kind about another point (``d`` = old point - new point), as the looped engine
does from a body's own origin to its parent's.
"""
from typing import Any

import warp as wp


@wp.func
def inertia_about_origin(m: Any, com: Any, rot: Any, diag: Any):
    """(h, J) of a body of mass ``m`` with its centre of mass at ``com`` (world) and principal
    inertia ``diag`` in the frame rotated by the matrix ``rot``."""
    icom = rot * wp.diag(diag) * wp.transpose(rot)
    eye = wp.identity(n=3, dtype=type(m))
    jo = icom + m * (wp.dot(com, com) * eye - wp.outer(com, com))
    return com * m, jo


@wp.func
def inertia_apply_n(h: Any, J: Any, w: Any, v: Any):
    """Torque part of I * (w, v): J w + h x v."""
    return J * w + wp.cross(h, v)


@wp.func
def inertia_apply_f(m: Any, h: Any, w: Any, v: Any):
    """Force part of I * (w, v): m v - h x w."""
    return m * v - wp.cross(h, w)


@wp.func
def cross_motion_w(w1: Any, v1: Any, w2: Any, v2: Any):
    """Angular part of (w1, v1) x (w2, v2)."""
    return wp.cross(w1, w2)


@wp.func
def cross_motion_v(w1: Any, v1: Any, w2: Any, v2: Any):
    """Linear part of (w1, v1) x (w2, v2)."""
    return wp.cross(w1, v2) + wp.cross(v1, w2)


@wp.func
def cross_force_n(w: Any, v: Any, n: Any, f: Any):
    """Torque part of (w, v) x* (n, f)."""
    return wp.cross(w, n) + wp.cross(v, f)


@wp.func
def cross_force_f(w: Any, v: Any, n: Any, f: Any):
    """Force part of (w, v) x* (n, f)."""
    return wp.cross(w, f)


@wp.func
def shift_motion_v(w: Any, v: Any, d: Any):
    """Linear part of the motion (w, v) about a point displaced by -d (d = old - new): v + d x w
    (the angular part is unchanged)."""
    return v + wp.cross(d, w)


@wp.func
def shift_inertia_J(m: Any, h: Any, J: Any, d: Any):
    """Rotational inertia of (m, h, J) about a point displaced by -d (d = old - new): for x' = x + d,
    J + 2 (h . d) I - h d^T - d h^T + m (|d|^2 I - d d^T); the first moment becomes h + m d."""
    eye = wp.identity(n=3, dtype=type(m))
    return (J + (type(m)(2.0) * wp.dot(h, d)) * eye - wp.outer(h, d) - wp.outer(d, h)
            + m * (wp.dot(d, d) * eye - wp.outer(d, d)))
