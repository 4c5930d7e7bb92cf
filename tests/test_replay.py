"""hybridwam.replay: a recorded launch replayed through its packed argument struct computes what
the kernel computes (checked against the closed form), forward and adjoint, with an integer
argument changed between calls; the fallback (Warp's own Launch.launch) gives the same."""
import numpy as np
import pytest
import warp as wp

from hybridwam.replay import Replay


@wp.kernel(module="unique")
def _scale(x: wp.array(dtype=float), t: int, y: wp.array(dtype=float)):
    i = wp.tid()
    wp.atomic_add(y, i, x[i] * x[i] * float(t))


def _arrays(n=5):
    x = wp.array(np.arange(1.0, n + 1.0, dtype=np.float32), dtype=float, device="cpu", requires_grad=True)
    y = wp.zeros(n, dtype=float, device="cpu", requires_grad=True)
    return x, y


@pytest.mark.parametrize("packed", [True, False])
def test_forward_replay_with_changing_int(packed):
    x, y = _arrays()
    r = Replay(wp.launch(_scale, dim=5, inputs=[x, 0, y], device="cpu", record_cmd=True))
    if not packed:
        r._call = None  # the fallback: Warp's Launch.set_param_by_name / launch
    assert r.packed is packed
    assert "t" in r.names
    set_t = r.setter("t")
    for t in (3, 7):
        set_t(t)
        r.call()
    xs = np.arange(1.0, 6.0)
    np.testing.assert_allclose(y.numpy(), xs * xs * 10.0, rtol=1e-6)


@pytest.mark.parametrize("packed", [True, False])
def test_adjoint_replay(packed):
    x, y = _arrays()
    ay = wp.array(np.full(5, 2.0, dtype=np.float32), dtype=float, device="cpu")
    ax = wp.zeros(5, dtype=float, device="cpu")
    r = Replay(wp.launch(_scale, dim=5, inputs=[x, 4, y], adj_inputs=[ax, 0, ay], adjoint=True, device="cpu",
                         record_cmd=True))
    if not packed:
        r._call = None
    r.call()
    r.setter("t")(1)
    r.call()
    # d(y . ay)/dx = 2 x t ay, summed over the two calls (t = 4, then 1)
    xs = np.arange(1.0, 6.0)
    np.testing.assert_allclose(ax.numpy(), 2.0 * xs * 5.0 * 2.0, rtol=1e-6)
