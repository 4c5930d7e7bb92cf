"""Narrow phase and the compliant contact law (in joint space also the range limits and dry friction).

Every narrow-phase function returns one contact as (depth, normal, point): ``depth`` > 0 when
the two surfaces overlap (negative: separation distance), ``normal`` a unit vector pointing
from the first geom towards the second (the direction of the force on the second), ``point``
the midpoint between the two surfaces, all in world coordinates. Degenerate configurations
(coincident centres, parallel segments, a point at a box centre) pick a fixed, finite answer:
no NaN reaches the dynamics or the gradients.
"""
from typing import Any

import warp as wp


@wp.func
def safe_normalize(v: Any, fallback: Any):
    """(v / |v|, |v|), or (fallback, 0) when |v| is tiny; no sqrt(0) on any path."""
    s2 = wp.dot(v, v)
    n = fallback
    length = s2 * type(s2)(0.0)
    if s2 > type(s2)(1.0e-20):
        length = wp.sqrt(s2)
        n = v / length
    return n, length


@wp.func
def plane_point(plane_pos: Any, plane_normal: Any, c: Any, r: Any):
    """Plane (first) against a sphere of radius r at c (r = 0: a point)."""
    dist = wp.dot(c - plane_pos, plane_normal)
    depth = r - dist
    p = c - plane_normal * ((dist + r) * type(r)(0.5))
    return depth, plane_normal, p


@wp.func
def sphere_sphere(c1: Any, r1: Any, c2: Any, r2: Any):
    """Two spheres (a capsule reduces to the sphere at its closest segment point)."""
    n, dist = safe_normalize(c2 - c1, type(c1)(type(r1)(0.0), type(r1)(0.0), type(r1)(1.0)))
    depth = r1 + r2 - dist
    p = c1 + n * (r1 - depth * type(r1)(0.5))
    return depth, n, p


@wp.func
def segment_point(a: Any, b: Any, c: Any):
    """Closest point to c on the segment [a, b]."""
    ab = b - a
    den = wp.dot(ab, ab)
    t = den * type(den)(0.0)
    if den > type(den)(1.0e-20):
        t = wp.clamp(wp.dot(c - a, ab) / den, type(den)(0.0), type(den)(1.0))
    return a + ab * t


@wp.func
def segment_segment(a0: Any, a1: Any, b0: Any, b1: Any):
    """Closest points (on [a0, a1], on [b0, b1]); parallel segments give the middle of their
    overlap, so a capsule lying on a capsule is pushed at its centre."""
    zero = type(a0[0])(0.0)
    one = type(a0[0])(1.0)
    d1 = a1 - a0
    d2 = b1 - b0
    r = a0 - b0
    a = wp.dot(d1, d1)
    e = wp.dot(d2, d2)
    f = wp.dot(d2, r)
    c = wp.dot(d1, r)
    b = wp.dot(d1, d2)
    den = a * e - b * b
    s = zero
    t = zero
    if a <= type(a)(1.0e-20) and e <= type(a)(1.0e-20):
        s = zero
        t = zero
    elif a <= type(a)(1.0e-20):
        t = wp.clamp(f / e, zero, one)
    elif e <= type(a)(1.0e-20):
        s = wp.clamp(-c / a, zero, one)
    else:
        if den > type(a)(1.0e-9) * a * e:
            s = wp.clamp((b * f - c * e) / den, zero, one)
        else:
            # parallel: middle of the overlap of b's projection onto a
            s0 = wp.clamp(-c / a, zero, one)
            s1 = wp.clamp((b - c) / a, zero, one)
            s = (s0 + s1) * type(a)(0.5)
        t = (b * s + f) / e
        if t < zero:
            t = zero
            s = wp.clamp(-c / a, zero, one)
        elif t > one:
            t = one
            s = wp.clamp((b - c) / a, zero, one)
    return a0 + d1 * s, b0 + d2 * t


@wp.func
def box_point(box_pos: Any, box_rot: Any, half: Any, c: Any, r: Any):
    """Box (first) against a sphere of radius r at c (r = 0: a point, e.g. another box's corner).
    Inside the box the normal is the face of least penetration."""
    zero = type(r)(0.0)
    loc = wp.transpose(box_rot) * (c - box_pos)
    cl = wp.vector(wp.clamp(loc[0], -half[0], half[0]), wp.clamp(loc[1], -half[1], half[1]),
                   wp.clamp(loc[2], -half[2], half[2]))
    diff = loc - cl
    s2 = wp.dot(diff, diff)
    depth = zero
    nl = wp.vector(zero, zero, type(r)(1.0))
    surf = cl
    if s2 > type(r)(1.0e-20):
        dist = wp.sqrt(s2)
        nl = diff / dist
        depth = r - dist
    else:
        # inside: leave through the nearest face
        dx = half[0] - wp.abs(loc[0])
        dy = half[1] - wp.abs(loc[1])
        dz = half[2] - wp.abs(loc[2])
        sx = wp.where(loc[0] < zero, type(r)(-1.0), type(r)(1.0))
        sy = wp.where(loc[1] < zero, type(r)(-1.0), type(r)(1.0))
        sz = wp.where(loc[2] < zero, type(r)(-1.0), type(r)(1.0))
        if dx <= dy and dx <= dz:
            nl = wp.vector(sx, zero, zero)
            depth = r + dx
            surf = wp.vector(sx * half[0], loc[1], loc[2])
        elif dy <= dz:
            nl = wp.vector(zero, sy, zero)
            depth = r + dy
            surf = wp.vector(loc[0], sy * half[1], loc[2])
        else:
            nl = wp.vector(zero, zero, sz)
            depth = r + dz
            surf = wp.vector(loc[0], loc[1], sz * half[2])
    n = box_rot * nl
    ps = box_pos + box_rot * surf
    # midpoint between the box surface point ps and the sphere's deepest point c - n r
    p = (ps + c - n * r) * type(r)(0.5)
    return depth, n, p


@wp.func
def capsule_capsule(a0: Any, a1: Any, ra: Any, b0: Any, b1: Any, rb: Any):
    """Two capsules: spheres at the closest points of their segments."""
    pa, pb = segment_segment(a0, a1, b0, b1)
    return sphere_sphere(pa, ra, pb, rb)


@wp.func
def cylinder_point(cyl_pos: Any, cyl_rot: Any, size: Any, c: Any, r: Any):
    """Cylinder (first; radius size[0], half-length size[1] along its z axis) against a sphere of
    radius r at c (r = 0: a point): the closest point of the solid cylinder, the normal from it
    towards c. Inside the cylinder the normal is that of the nearer of its side and its caps."""
    zero = type(r)(0.0)
    one = type(r)(1.0)
    loc = wp.transpose(cyl_rot) * (c - cyl_pos)
    rad = size[0]
    hh = size[1]
    radial, rho = safe_normalize(wp.vector(loc[0], loc[1], zero), wp.vector(one, zero, zero))
    cl = radial * wp.min(rho, rad) + wp.vector(zero, zero, wp.clamp(loc[2], -hh, hh))
    diff = loc - cl
    s2 = wp.dot(diff, diff)
    depth = zero
    nl = wp.vector(zero, zero, one)
    surf = cl
    if s2 > type(r)(1.0e-20):
        dist = wp.sqrt(s2)
        nl = diff / dist
        depth = r - dist
    else:
        # inside: leave through the nearest of the side and the caps
        dside = rad - rho
        dcap = hh - wp.abs(loc[2])
        if dside <= dcap:
            nl = radial
            depth = r + dside
            surf = radial * rad + wp.vector(zero, zero, loc[2])
        else:
            sz = wp.where(loc[2] < zero, -one, one)
            nl = wp.vector(zero, zero, sz)
            depth = r + dcap
            surf = wp.vector(loc[0], loc[1], sz * hh)
    n = cyl_rot * nl
    ps = cyl_pos + cyl_rot * surf
    p = (ps + c - n * r) * type(r)(0.5)
    return depth, n, p


@wp.func
def ellipsoid_support(pos: Any, rot: Any, radii: Any, down: Any):
    """The point of an ellipsoid (semi-axes ``radii`` along its frame's axes) furthest along the
    unit direction ``down``: pos + R A^2 R^T down / |A R^T down|, A = diag(radii)."""
    loc = wp.transpose(rot) * down
    a = wp.cw_mul(radii, loc)
    n, l = safe_normalize(a, loc)
    return pos + rot * wp.cw_mul(radii, n)


@wp.func
def cylinder_rim_point(cyl_pos: Any, cyl_rot: Any, size: Any, down: Any, k: int):
    """Rim point k (0..5) of a cylinder for a contact whose outward normal from the cylinder is
    ``down`` (a plane below it: minus the plane's normal): per cap (k < 3: the -z one) the rim
    point furthest along ``down`` and the two 120 degrees from it, so that a cylinder standing on
    a cap rests on a triangle and one rolling on its side touches along its deepest line. Where
    ``down`` is along the axis (standing upright), the rim points start at the cylinder's x axis."""
    zero = type(size[0])(0.0)
    one = type(size[0])(1.0)
    ax = wp.vector(cyl_rot[0, 2], cyl_rot[1, 2], cyl_rot[2, 2])
    ex = wp.vector(cyl_rot[0, 0], cyl_rot[1, 0], cyl_rot[2, 0])
    u, l = safe_normalize(down - ax * wp.dot(down, ax), ex)
    if l < type(size[0])(1.0e-6):
        u = ex
    i = k % 3
    cs = wp.where(i == 0, one, type(size[0])(-0.5))
    sn = wp.where(i == 0, zero, wp.where(i == 1, type(size[0])(0.8660254037844386), type(size[0])(-0.8660254037844386)))
    sz = wp.where(k < 3, -one, one)
    return cyl_pos + ax * (sz * size[1]) + (u * cs + wp.cross(ax, u) * sn) * size[0]


@wp.func
def box_corner(box_pos: Any, box_rot: Any, half: Any, k: int):
    """Corner k (0..7) of a box in world coordinates."""
    one = type(half[0])(1.0)
    sx = wp.where((k & 1) == 0, -one, one)
    sy = wp.where((k & 2) == 0, -one, one)
    sz = wp.where((k & 4) == 0, -one, one)
    return box_pos + box_rot * wp.vector(sx * half[0], sy * half[1], sz * half[2])


@wp.func
def triangle_closest(p: Any, a: Any, b: Any, c: Any):
    """The point of the triangle (a, b, c) closest to p: its Voronoi regions in turn (the
    vertices, the edges, the face), as in Ericson's Real-Time Collision Detection (5.1.5)."""
    zero = type(p[0])(0.0)
    tiny = type(p[0])(1.0e-30)
    ab = b - a
    ac = c - a
    ap = p - a
    d1 = wp.dot(ab, ap)
    d2 = wp.dot(ac, ap)
    bp = p - b
    d3 = wp.dot(ab, bp)
    d4 = wp.dot(ac, bp)
    cp = p - c
    d5 = wp.dot(ab, cp)
    d6 = wp.dot(ac, cp)
    vc = d1 * d4 - d3 * d2
    vb = d5 * d2 - d1 * d6
    va = d3 * d6 - d5 * d4
    den = va + vb + vc
    q = a + ab * (vb / wp.max(den, tiny)) + ac * (vc / wp.max(den, tiny))  # the face
    if va <= zero and d4 - d3 >= zero and d5 - d6 >= zero:  # edge bc
        q = b + (c - b) * ((d4 - d3) / wp.max((d4 - d3) + (d5 - d6), tiny))
    if vb <= zero and d2 >= zero and d6 <= zero:  # edge ac
        q = a + ac * (d2 / wp.max(d2 - d6, tiny))
    if vc <= zero and d1 >= zero and d3 <= zero:  # edge ab
        q = a + ab * (d1 / wp.max(d1 - d3, tiny))
    if d6 >= zero and d5 <= d6:
        q = c
    if d3 >= zero and d4 <= d3:
        q = b
    if d1 <= zero and d2 <= zero:
        q = a
    return q


@wp.func
def skew(p: Any):
    z = type(p[0])(0.0)
    return wp.matrix(z, -p[2], p[1], p[2], z, -p[0], -p[1], p[0], z, shape=(3, 3))


@wp.func
def normal_law(depth: Any, vn: Any, meff: Any, k: Any, b: Any, tau: Any, h: Any):
    """One-sided spring-damper along a normal: (f, a), the force and its implicit-Euler velocity
    coefficient (d f / d vn = -a / h). ``depth`` > 0 is the overlap, ``vn`` the separating
    velocity; k, b in acceleration units scaled by the effective mass ``meff`` (MuJoCo's solref
    convention). The depth enters through s(depth), a C1 onset over the length ``tau`` (0 when
    separated, depth^2 / 2 tau, then depth - tau / 2), so the force has a continuous gradient
    through the onset and none at a distance."""
    zero = type(k)(0.0)
    sp = zero
    sig = zero
    if depth > zero:
        sp = depth - type(k)(0.5) * tau
        sig = type(k)(1.0)
        if depth < tau:
            sp = depth * depth / (type(k)(2.0) * tau)
            sig = depth / tau
    fs = meff * k * sp
    # the spring is integrated explicitly (symplectic, little numerical damping) while the step
    # resolves it (h^2 k <= 1); stiffer springs get the implicit share theta that keeps it stable
    theta = wp.max(zero, type(k)(1.0) - type(k)(1.0) / (h * h * k + type(k)(1.0e-30)))
    bh = b + theta * h * k
    return fs - meff * bh * sig * vn, h * bh * sig * meff


@wp.func
def limit_force(q: Any, qd: Any, rng: Any, margin: Any, meff: Any, k: Any, b: Any, tau: Any, h: Any):
    """Range limit of a hinge or slide joint: (generalized force, implicit coefficient added to
    the dof's mass-matrix diagonal). Each side is the contact law's normal part in joint space,
    active within ``margin`` of its end of ``rng`` (MuJoCo's jnt_margin); no friction."""
    fl, al = normal_law(rng[0] + margin - q, qd, meff, k, b, tau, h)
    fu, au = normal_law(q - rng[1] + margin, -qd, meff, k, b, tau, h)
    return fl - fu, al + au


@wp.func
def limited_viscosity(c: Any, slip: Any, fmax: Any, m: Any, h: Any):
    """The friction viscosity that gives exactly ``fmax`` at the end of the step, for a point (or
    dof) of effective mass ``m`` whose first solve with viscosity ``c`` predicted the slip speed
    ``slip``: without friction it would slip at slip (1 + h c / m), so c' = fmax / (slip (1 + h c /
    m) - h fmax / m). Used where c slip > fmax (contact_force, joint_friction)."""
    return fmax / (slip * (type(c)(1.0) + h * c / m) - h * fmax / m)


@wp.func
def joint_friction(v: Any, vp: Any, fmax: Any, m: Any, eps: Any, h: Any):
    """Dry friction of one dof (MuJoCo's frictionloss ``fmax``): (force, implicit coefficient
    added to the dof's mass-matrix diagonal). The contact law's friction in joint space: the
    viscosity c = fmax / sqrt(v^2 + eps^2) acts on the end-of-step velocity, and where the
    velocity ``vp`` a first solve predicted exceeds the regularised one, c is lowered to the value
    that gives exactly fmax for a dof of effective inertia ``m`` (limited_viscosity)."""
    s2 = v * v + eps * eps
    c = fmax / wp.sqrt(s2)
    if vp * vp > s2 and fmax > type(fmax)(0.0):
        c = limited_viscosity(c, wp.abs(vp), fmax, m, h)
    return -c * v, h * c


@wp.func
def contact_force(depth: Any, n: Any, p: Any, rel_v: Any, rel_vp: Any, meff: Any, k: Any, b: Any, mu: Any,
                  tau: Any, eps: Any, h: Any, fpair: Any):
    """Compliant contact law: force on the second geom (at p) and its implicit-Euler matrix.

    Normal: :func:`normal_law`, meff * (k * s(depth) - (b + theta h k) * s'(depth) * v_n).
    Friction: regularised Coulomb, -mu * max(f_n, 0) * v_t / sqrt(|v_t|^2 + eps^2), smooth in the
    slip velocity on the scale ``eps`` (m/s). ``rel_v`` is the velocity of the second body's point
    relative to the first's. Returns (force, K) with K the 3x3 velocity coefficient (h (b + theta
    h k) s' meff along n, h * friction viscosity across n) that the step treats implicitly, which
    keeps stiff contacts and small eps stable at large time steps.

    The implicit step applies the friction viscosity c to the slip at the END of the step, so
    with c taken from the slip at its start (c = mu f_n / |v_t| ~ mu f_n / eps at rest) a body
    breaking away is held back by more than mu f_n. ``rel_vp`` is the end-of-step velocity that
    a first solve with that c predicted (equal to ``rel_v`` in the first solve). When the
    friction c |v_t'| it implied exceeds mu f_n, c is lowered to the value whose friction is
    exactly mu f_n for a point of effective mass m: the predicted slip without friction is
    |v_t'| (1 + h c / m), and c' = mu f_n / (|v_t'| (1 + h c / m) - h mu f_n / m). c' is
    continuous with c where the two meet (|v_t'|^2 = |v_t|^2 + eps^2). A pair's points (a box's
    corners) slide together, so each takes the share m = meff f_n / F_n of the pair's effective
    mass, with F_n = n . ``fpair`` the pair's normal load in the first solve (``fpair`` = 0 there);
    then a pair sliding in translation gets exactly Coulomb's friction mu F_n.
    """
    zero = type(k)(0.0)
    vn = wp.dot(rel_v, n)
    vt = rel_v - n * vn
    fn, an = normal_law(depth, vn, meff, k, b, tau, h)
    # friction bound from the whole normal force (spring and damper), never negative
    fmax = mu * wp.max(fn, zero)
    s2 = wp.dot(vt, vt) + eps * eps
    ct = fmax / wp.sqrt(s2)
    vtp = rel_vp - n * wp.dot(rel_vp, n)
    sp2 = wp.dot(vtp, vtp)
    if sp2 > s2 and fmax > zero:
        # the predicted slip exceeds the regularised one: c |v_t'| > mu f_n (see the docstring);
        # sp2 > eps^2 > 0 here, so the square root is never taken at zero
        sp = wp.sqrt(sp2)
        m = meff * fn / wp.max(wp.dot(n, fpair), fn)
        ct = limited_viscosity(ct, sp, fmax, m, h)
    force = n * fn - vt * ct
    at = h * ct
    eye = wp.identity(n=3, dtype=type(k))
    nn = wp.outer(n, n)
    K = nn * an + (eye - nn) * at
    return force, K


@wp.func
def spin_roll_torque(n: Any, w_rel: Any, fn: Any, mu_spin: Any, mu_roll: Any, eps_w: Any, h: Any):
    """Torsional and rolling friction at a contact point (MuJoCo's condim 4 and 6; coefficients in
    metres, MuJoCo's friction[1] and friction[2]): the regularised Coulomb law of
    :func:`contact_force` on the relative angular velocity ``w_rel`` (the second body's minus the
    first's), -mu_spin f_n w_n / sqrt(w_n^2 + eps_w^2) about the normal and -mu_roll f_n w_t /
    sqrt(|w_t|^2 + eps_w^2) across it, with f_n = max(fn, 0) the point's normal force and ``eps_w``
    (rad/s) the angular slip scale. Returns (torque on the second geom, K) with K the 3x3
    coefficient h (c_spin n n^T + c_roll (I - n n^T)) that the step treats implicitly (the
    angular block of the pair's stiffness). Unlike the sliding friction its viscosity is not
    limited in the second solve: in the step a body breaks into a spin or a roll, the torque
    can exceed mu f_n."""
    zero = type(fn)(0.0)
    fp = wp.max(fn, zero)
    wn = wp.dot(w_rel, n)
    wt = w_rel - n * wn
    cs = mu_spin * fp / wp.sqrt(wn * wn + eps_w * eps_w)
    cr = mu_roll * fp / wp.sqrt(wp.dot(wt, wt) + eps_w * eps_w)
    nn = wp.outer(n, n)
    eye = wp.identity(n=3, dtype=type(fn))
    return -(n * (wn * cs) + wt * cr), nn * (h * cs) + (eye - nn) * (h * cr)


# ---- pair functions ------------------------------------------------------------------------
# Each returns the summed contact action of one geom pair about the reference point rc (near the
# contact): (N, F, A, B, C), with F the total force on the second geom, N its moment about rc,
# and (A, B, C) the 6x6 implicit stiffness P^T K P summed over the contact points, all in world
# axes about rc. ``vw*`` / ``vc*``: angular velocity of each body and the velocity of its point
# at rc, as 2x3 matrices (row 0: start of the step, row 1: predicted end, see contact_force).
# ``prm`` = (meff, k, b, mu, tau, eps, h, the pair's force in the first solve [3]).


@wp.func
def _accumulate(depth: Any, n: Any, p: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any, vc2: Any, prm: Any,
                N: Any, F: Any, A: Any, B: Any, C: Any):
    d = p - rc
    # each velocity is a 2x3 matrix: row 0 at the start of the step, row 1 the predicted end
    rel = (vc2[0] + wp.cross(vw2[0], d)) - (vc1[0] + wp.cross(vw1[0], d))
    relp = (vc2[1] + wp.cross(vw2[1], d)) - (vc1[1] + wp.cross(vw1[1], d))
    f, K = contact_force(depth, n, p, rel, relp, prm[0], prm[1], prm[2], prm[3], prm[4], prm[5], prm[6],
                         wp.vector(prm[7], prm[8], prm[9]))
    X = skew(d)
    return N + wp.cross(d, f), F + f, A - X * K * X, B + X * K, C + K


@wp.func
def _zero_action(rc: Any):
    z = rc * type(rc[0])(0.0)
    Zm = wp.outer(z, z)
    return z, z, Zm, Zm, Zm


@wp.func
def pair_plane_sphere(pp: Any, pz: Any, c: Any, r: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any, vc2: Any,
                      prm: Any):
    N, F, A, B, C = _zero_action(rc)
    depth, n, p = plane_point(pp, pz, c, r)
    return _accumulate(depth, n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def pair_plane_capsule(pp: Any, pz: Any, e0: Any, e1: Any, r: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any,
                       vc2: Any, prm: Any):
    N, F, A, B, C = _zero_action(rc)
    depth, n, p = plane_point(pp, pz, e0, r)
    N, F, A, B, C = _accumulate(depth, n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)
    depth1, n1, p1 = plane_point(pp, pz, e1, r)
    return _accumulate(depth1, n1, p1, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def pair_plane_box(pp: Any, pz: Any, bp: Any, bR: Any, half: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any,
                   vc2: Any, prm: Any):
    N, F, A, B, C = _zero_action(rc)
    for k in range(8):
        depth, n, p = plane_point(pp, pz, box_corner(bp, bR, half, k), type(prm[0])(0.0))
        N, F, A, B, C = _accumulate(depth, n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)
    return N, F, A, B, C


@wp.func
def pair_sphere_sphere(c1: Any, r1: Any, c2: Any, r2: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any, vc2: Any,
                       prm: Any):
    N, F, A, B, C = _zero_action(rc)
    depth, n, p = sphere_sphere(c1, r1, c2, r2)
    return _accumulate(depth, n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def pair_sphere_capsule(c1: Any, r1: Any, e0: Any, e1: Any, r2: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any,
                        vc2: Any, prm: Any):
    N, F, A, B, C = _zero_action(rc)
    depth, n, p = sphere_sphere(c1, r1, segment_point(e0, e1, c1), r2)
    return _accumulate(depth, n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def pair_sphere_box(c1: Any, r1: Any, bp: Any, bR: Any, half: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any,
                    vc2: Any, prm: Any):
    N, F, A, B, C = _zero_action(rc)
    depth, n, p = box_point(bp, bR, half, c1, r1)
    # box_point's normal points from the box (second geom here) to the sphere: flip it
    return _accumulate(depth, -n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def pair_capsule_capsule(a0: Any, a1: Any, ra: Any, b0: Any, b1: Any, rb: Any, rc: Any, vw1: Any, vc1: Any,
                         vw2: Any, vc2: Any, prm: Any):
    N, F, A, B, C = _zero_action(rc)
    depth, n, p = capsule_capsule(a0, a1, ra, b0, b1, rb)
    return _accumulate(depth, n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def slab_clip(la: Any, d: Any, h: Any, lo: Any, hi: Any):
    """Narrow [lo, hi] to the parameters t where la + t d lies in the slab |x| <= h (one axis)."""
    one = type(h)(1.0)
    if wp.abs(d) > type(h)(1.0e-12):
        ta = (-h - la) / d
        tb = (h - la) / d
        lo = wp.max(lo, wp.min(ta, tb))
        hi = wp.min(hi, wp.max(ta, tb))
    elif wp.abs(la) > h:
        lo = one
        hi = -one  # parallel to the slab and outside it: empty
    return lo, hi


@wp.func
def capsule_box_params(a0: Any, a1: Any, ra: Any, bp: Any, bR: Any, half: Any):
    """Segment parameters (t0, t1) of the capsule's contact stretch with a box: the axis (in [0, 1])
    clipped to the box's extent across the face it meets, so that a capsule lying along a face
    touches it over the face only, with the face's normal (not the edges' diagonals) where it
    overhangs. The face is the one of the box's outward normal at the segment point closest to the
    box centre; a segment that misses the face's extent collapses to that point."""
    zero = type(ra)(0.0)
    one = type(ra)(1.0)
    RT = wp.transpose(bR)
    la = RT * (a0 - bp)
    d = RT * (a1 - a0)
    den = wp.dot(d, d)
    tc = zero
    if den > type(ra)(1.0e-20):
        tc = wp.clamp(-wp.dot(la, d) / den, zero, one)
    depth, nl, p = box_point(bp, bR, half, a0 + (a1 - a0) * tc, ra)
    nl = RT * nl
    ax = wp.abs(nl[0])
    ay = wp.abs(nl[1])
    az = wp.abs(nl[2])
    lo = zero
    hi = one
    # clip across the face: by the slabs of the two axes other than its normal's
    if ax < ay or ax < az:
        lo, hi = slab_clip(la[0], d[0], half[0], lo, hi)
    if ay <= ax or ay < az:
        lo, hi = slab_clip(la[1], d[1], half[1], lo, hi)
    if az <= ax or az <= ay:
        lo, hi = slab_clip(la[2], d[2], half[2], lo, hi)
    if lo > hi:
        lo = tc
        hi = tc
    return lo, hi


@wp.func
def capsule_cylinder_params(a0: Any, a1: Any, ra: Any, cp: Any, cR: Any, size: Any, tc: Any):
    """Segment parameters (t0, t1) of the capsule's contact stretch with a cylinder, given tc, the
    segment point closest to the cylinder's axis: where that point meets a cap, the axis (in [0,
    1]) clipped to the cap's disc; where it meets the side, clipped to the side's axial extent
    (so a capsule lying along the side touches along the overlap); empty extents collapse to tc."""
    zero = type(ra)(0.0)
    one = type(ra)(1.0)
    RT = wp.transpose(cR)
    la = RT * (a0 - cp)
    d = RT * (a1 - a0)
    depth, nl, p = cylinder_point(cp, cR, size, a0 + (a1 - a0) * tc, ra)
    nl = RT * nl
    lo = zero
    hi = one
    if wp.abs(nl[2]) * wp.abs(nl[2]) > nl[0] * nl[0] + nl[1] * nl[1]:
        # a cap: |la.xy + t d.xy| <= radius
        A = d[0] * d[0] + d[1] * d[1]
        B = la[0] * d[0] + la[1] * d[1]
        C = la[0] * la[0] + la[1] * la[1] - size[0] * size[0]
        if A > type(ra)(1.0e-20):
            disc = B * B - A * C
            if disc > type(ra)(1.0e-20):
                r = wp.sqrt(disc)
                lo = wp.max(lo, (-B - r) / A)
                hi = wp.min(hi, (-B + r) / A)
            else:
                lo = one
                hi = zero
        elif C > zero:
            lo = one
            hi = zero
    else:
        lo, hi = slab_clip(la[2], d[2], size[1], lo, hi)
    if lo > hi:
        lo = tc
        hi = tc
    return lo, hi


@wp.func
def pair_capsule_box(a0: Any, a1: Any, ra: Any, bp: Any, bR: Any, half: Any, rc: Any, vw1: Any, vc1: Any,
                     vw2: Any, vc2: Any, prm: Any):
    """Spheres at both ends and the middle of the capsule's contact stretch (``capsule_box_params``):
    a capsule lying on a face presses with 3 springs spread over the face, one crossing a face or an
    edge is caught where it crosses, one overhanging a face is pushed along the face normal."""
    N, F, A, B, C = _zero_action(rc)
    t0, t1 = capsule_box_params(a0, a1, ra, bp, bR, half)
    ab = a1 - a0
    c0 = a0 + ab * t0
    c1 = a0 + ab * t1
    depth, n, p = box_point(bp, bR, half, c0, ra)
    N, F, A, B, C = _accumulate(depth, -n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)
    depth1, n1, p1 = box_point(bp, bR, half, c1, ra)
    N, F, A, B, C = _accumulate(depth1, -n1, p1, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)
    depth2, n2, p2 = box_point(bp, bR, half, (c0 + c1) * type(ra)(0.5), ra)
    return _accumulate(depth2, -n2, p2, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def box_extent(R: Any, half: Any, u: Any):
    """Half-length of a box's projection on the unit axis u."""
    return (half[0] * wp.abs(R[0, 0] * u[0] + R[1, 0] * u[1] + R[2, 0] * u[2])
            + half[1] * wp.abs(R[0, 1] * u[0] + R[1, 1] * u[1] + R[2, 1] * u[2])
            + half[2] * wp.abs(R[0, 2] * u[0] + R[1, 2] * u[1] + R[2, 2] * u[2]))


@wp.func
def face_clamp(R: Any, half: Any, center: Any, axis: int, c: Any):
    """c with its coordinates along the reference box's two face axes (all but ``axis``)
    clamped into the face: a point of the face rectangle, in world coordinates."""
    loc = wp.transpose(R) * (c - center)
    x = wp.where(axis == 0, loc[0], wp.clamp(loc[0], -half[0], half[0]))
    y = wp.where(axis == 1, loc[1], wp.clamp(loc[1], -half[1], half[1]))
    z = wp.where(axis == 2, loc[2], wp.clamp(loc[2], -half[2], half[2]))
    return center + R * wp.vector(x, y, z)


@wp.func
def box_box_face(p1: Any, R1: Any, h1: Any, p2: Any, R2: Any, h2: Any):
    """The reference face of a box pair (separating-axis test over the 6 face normals): (its index
    a: 0-2 a face axis of box 1, 3-5 of box 2; the normal n from box 1 towards box 2)."""
    zero = type(h1[0])(0.0)
    dp = p2 - p1
    best = type(h1[0])(1.0e30)
    n = wp.vector(zero, zero, type(h1[0])(1.0))
    best_a = 0
    for a in range(6):
        u = wp.vector(R1[0, a % 3], R1[1, a % 3], R1[2, a % 3])
        if a >= 3:
            u = wp.vector(R2[0, a - 3], R2[1, a - 3], R2[2, a - 3])
        proj = wp.dot(dp, u)
        overlap = box_extent(R1, h1, u) + box_extent(R2, h2, u) - wp.abs(proj)
        if overlap < best:
            best = overlap
            best_a = a
            n = wp.where(proj < zero, -u, u)
    return best_a, n


@wp.func
def box_box_point(p1: Any, R1: Any, h1: Any, p2: Any, R2: Any, h2: Any, best_a: int, n: Any, k: int):
    """Contact k (0..7) of a box pair with reference face ``best_a`` and normal ``n``
    (box_box_face): corner k of the incident box, clamped into the reference face rectangle, with
    the corner's depth below the face. Returns (depth, n, point)."""
    half = type(h1[0])(0.5)
    depth = h1[0] * type(h1[0])(0.0)
    p = p1
    if best_a < 3:
        # reference face on box 1 (its face towards box 2), incident corners of box 2
        top = wp.dot(p1, n) + box_extent(R1, h1, n)
        c = box_corner(p2, R2, h2, k)
        depth = top - wp.dot(c, n)
        x = face_clamp(R1, h1, p1, best_a, c)
        p = x + n * (top - wp.dot(x, n) - depth * half)
    else:
        # reference face on box 2 (its face towards box 1), incident corners of box 1
        bot = wp.dot(p2, n) - box_extent(R2, h2, n)
        c = box_corner(p1, R1, h1, k)
        depth = wp.dot(c, n) - bot
        x = face_clamp(R2, h2, p2, best_a - 3, c)
        p = x + n * (bot - wp.dot(x, n) + depth * half)
    return depth, n, p


@wp.func
def pair_box_box(p1: Any, R1: Any, h1: Any, p2: Any, R2: Any, h2: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any,
                 vc2: Any, prm: Any):
    """Face-based box-box contact. The normal is the face axis (of either box) of least overlap
    (separating-axis test over the 6 face normals); that face is the reference face. Each corner
    of the other (incident) box is clamped into the reference face rectangle and gives a
    contact with the corner's depth below the face: for parallel faces these are exactly the
    corners of the overlap polygon, so a box resting on another is supported over the whole
    overlap. Edge-edge contacts between tilted boxes are not detected."""
    N, F, A, B, C = _zero_action(rc)
    best_a, n = box_box_face(p1, R1, h1, p2, R2, h2)
    for k in range(8):
        depth, nk, p = box_box_point(p1, R1, h1, p2, R2, h2, best_a, n, k)
        N, F, A, B, C = _accumulate(depth, nk, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)
    return N, F, A, B, C


@wp.func
def shift_moment(N: Any, F: Any, d: Any):
    """Moment about a point displaced by -d from rc (d = rc - r): N + d x F."""
    return N + wp.cross(d, F)


@wp.func
def shift_stiffness(A: Any, B: Any, C: Any, d: Any):
    """(A, B) of a 6x6 P^T K P about rc re-expressed about r = rc - d (C is unchanged)."""
    R = skew(-d)
    return A + B * R - R * wp.transpose(B) - R * C * R, B - R * C


# ---- convex meshes ----------------------------------------------------------------------------
# A mesh geom collides as the convex hull of its vertices (MuJoCo does the same): hull vertices
# and face planes (n, d) with n . x <= d inside, in the geom frame. Inside a convex polytope the
# signed distance max_f (n_f . x - d_f) is exact, so penetration depths and normals are exact;
# outside it is a lower bound of the distance (exact over faces), which only delays the onset
# of contact by nothing (no force is applied at positive distance).


@wp.func
def hull_face(planes: Any, start: int, count: int, x: Any):
    """Index of the face plane of greatest signed distance from the local point x (no gradient
    flows through the choice; the caller evaluates that plane)."""
    best = type(x[0])(-1.0e30)
    best_f = start
    for f in range(start, start + count):
        p = planes[f]
        s = p[0] * x[0] + p[1] * x[1] + p[2] * x[2] - p[3]
        if s > best:
            best = s
            best_f = f
    return best_f


@wp.func
def mesh_point(planes: Any, start: int, count: int, mp: Any, mR: Any, c: Any, r: Any):
    """Convex mesh (first) against a sphere of radius r at c (r = 0: a point). Returns
    (depth, normal mesh -> point, contact point)."""
    x = wp.transpose(mR) * (c - mp)
    f = hull_face(planes, start, count, x)
    p = planes[f]
    nl = wp.vector(p[0], p[1], p[2])
    sd = wp.dot(nl, x) - p[3]
    n = mR * nl
    depth = r - sd
    return depth, n, c - n * (r - depth * type(r)(0.5))


@wp.func
def accumulate_vertex_plane(pp: Any, pz: Any, v: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any, vc2: Any,
                            prm: Any, N: Any, F: Any, A: Any, B: Any, C: Any):
    """One hull vertex v (world) of a mesh (second geom) against a plane (first)."""
    depth, n, p = plane_point(pp, pz, v, type(prm[0])(0.0))
    return _accumulate(depth, n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def accumulate_point_mesh(planes: Any, start: int, count: int, mp: Any, mR: Any, c: Any, r: Any, flip: int,
                          rc: Any, vw1: Any, vc1: Any, vw2: Any, vc2: Any, prm: Any,
                          N: Any, F: Any, A: Any, B: Any, C: Any):
    """A sphere (or point, r = 0) at c against a convex mesh. flip = 0: the mesh is the first
    geom; flip = 1: the mesh is the second geom (normal reversed)."""
    depth, n, p = mesh_point(planes, start, count, mp, mR, c, r)
    sgn = wp.where(flip == 1, type(r)(-1.0), type(r)(1.0))
    return _accumulate(depth, n * sgn, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def accumulate_point_box(bp: Any, bR: Any, half: Any, c: Any, flip: int, rc: Any, vw1: Any, vc1: Any,
                         vw2: Any, vc2: Any, prm: Any, N: Any, F: Any, A: Any, B: Any, C: Any):
    """A point c (a mesh vertex) against a box; flip as in accumulate_point_mesh for the box."""
    depth, n, p = box_point(bp, bR, half, c, type(prm[0])(0.0))
    sgn = wp.where(flip == 1, type(prm[0])(-1.0), type(prm[0])(1.0))
    return _accumulate(depth, n * sgn, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def accumulate_point_capsule(a0: Any, a1: Any, ra: Any, c: Any, rc: Any, vw1: Any, vc1: Any, vw2: Any,
                             vc2: Any, prm: Any, N: Any, F: Any, A: Any, B: Any, C: Any):
    """A point c (a vertex of the second geom) against a capsule (first geom)."""
    depth, n, p = sphere_sphere(segment_point(a0, a1, c), ra, c, type(ra)(0.0))
    return _accumulate(depth, n, p, rc, vw1, vc1, vw2, vc2, prm, N, F, A, B, C)


@wp.func
def zero_action(rc: Any):
    return _zero_action(rc)
