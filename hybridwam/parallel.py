"""Worlds split across CPU threads.

Warp launches a CPU kernel on one thread. A batched launch of ``B`` worlds is therefore split
into contiguous slices of worlds, one Warp launch per slice, run concurrently on a small
persistent thread pool: Warp calls the compiled kernel through ctypes, which releases the GIL for
the duration of the call, so the slices run on separate cores. Each world is computed by exactly
the same code whatever the slice it lands in, so trajectories are bit-identical for any number of
threads; gradients that sum over worlds (physical parameters) use a fixed chunking of the worlds
that does not depend on the thread count (see :func:`chunks`), so they are bit-identical too.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

#: Fewest worlds a thread gets, and fewest world-steps (worlds x steps) a launch must hold to be
#: split at all: below these the hand-off to a second thread costs more than it saves. Measured on
#: the 2-core development machine (captured one-step calls and 100-step rollouts, acrobot and
#: pusher, 16-4096 worlds): a split launch ran 0.3-0.8x as fast as one thread up to 1024 acrobot
#: world-steps, 1.5x at 4096, 1.6x for 1024 x 100.
MIN_WORLDS_PER_THREAD = 16
MIN_WORLD_STEPS = 4096
#: Worlds per chunk of a parameter-gradient reduction (the chunking depends on B only).
GRAD_CHUNK_WORLDS = 64

_POOLS: dict[int, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity), as ``os.sched_getaffinity`` reports."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):  # not on Linux
        return max(os.cpu_count() or 1, 1)


def resolve_threads(threads, device: str) -> int:
    """``threads`` as given (a positive int), or all usable cores for None; 1 on a GPU."""
    if threads is None:
        n = usable_cores()
    elif isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None (all usable cores), got {threads!r}")
    else:
        n = int(threads)
    return 1 if not str(device).startswith("cpu") else n


def slices(batch: int, threads: int, steps: int | None = None,
           min_per_thread: int = MIN_WORLDS_PER_THREAD) -> list[tuple[int, int]]:
    """Contiguous [start, stop) world ranges, at most ``threads`` of them, none smaller than
    ``min_per_thread`` worlds, sizes differing by at most one; one range when a launch of
    ``batch`` worlds x ``steps`` steps is too small to gain from a split (``MIN_WORLD_STEPS``)."""
    if steps is not None and batch * steps < MIN_WORLD_STEPS:
        return [(0, batch)]
    n = max(1, min(threads, batch // max(min_per_thread, 1)))
    base, extra = divmod(batch, n)
    out, a = [], 0
    for i in range(n):
        b = a + base + (1 if i < extra else 0)
        out.append((a, b))
        a = b
    return out


def chunks(batch: int, size: int = GRAD_CHUNK_WORLDS) -> list[tuple[int, int]]:
    """Fixed [start, stop) ranges of ``size`` worlds (the last one shorter): independent of the
    thread count, so a reduction over them in order gives the same bits on any machine."""
    return [(a, min(a + size, batch)) for a in range(0, batch, size)]


def _pool(n: int) -> ThreadPoolExecutor:
    with _LOCK:
        p = _POOLS.get(n)
        if p is None:
            p = _POOLS[n] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="hybridwam")
        return p


def run(tasks, threads: int) -> None:
    """Run the callables ``tasks`` on up to ``threads`` threads (the caller's thread included), in
    contiguous groups of about equal size, and wait for all of them; the first exception raised
    by any task is raised here, after every group finished."""
    tasks = list(tasks)
    n = min(threads, len(tasks))
    if n <= 1:
        for t in tasks:
            t()
        return
    groups = [tasks[a:b] for a, b in slices(len(tasks), n, min_per_thread=1)]

    def run_group(group):
        for t in group:
            t()

    pool = _pool(n - 1)
    futures = [pool.submit(run_group, g) for g in groups[1:]]
    err = None
    try:
        run_group(groups[0])
    except BaseException as e:  # noqa: BLE001 - re-raised after the other groups finished
        err = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:  # noqa: BLE001
            err = err or e
    if err is not None:
        raise err
