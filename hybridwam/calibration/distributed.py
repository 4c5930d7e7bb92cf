"""Data-parallel calibration over ``torch.distributed`` processes (``torchrun``).

Every process (rank) builds the same world from the same logs and runs the same calibration; what
differs is which segments it rolls out. Each minibatch of the global order (seeded by seed, stage,
epoch, exactly as in one process) is cut into ``world_size`` contiguous pieces, rank r rolls out
piece r, and the loss of a piece is its share of the global minibatch mean
(``seg_loss(piece) * len(piece) / len(minibatch)``), so the sum over ranks of the gradients,
all-reduced in one flat float64 buffer, is the gradient of the one-process minibatch loss. Every
rank then takes the same clipped optimiser step and the parameters stay identical on all ranks; the
result differs from one process's only by the order of floating-point sums. Validation segments are
split the same way and their loss sums all-reduced, so every rank makes the same early-stopping
decision. Only rank 0 writes (checkpoint, world, report, plots); all ranks resume from its
checkpoint. The gradients are reduced by hand rather than by wrapping the networks in
``DistributedDataParallel``: the physical parameters are not a module, and their gradients reach
``theta`` through ``PhysicalParameters.backward_to_theta`` after ``backward()``.

Backend: gloo for CPU models, nccl for CUDA models. A rank that fails raises on its own; torchrun
then stops the others (and, with ``--max-restarts``, starts them again: the restarted attempt
resumes from rank 0's last checkpoint, see :func:`elastic_resume`).
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings

import numpy as np
import torch

from . import checkpoint as ckpt


class Dist:
    """The process group of one calibration: ``rank``, ``world_size`` and the collectives it needs.
    ``Dist()`` is one process (every collective is a no-op)."""

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device | None = None, owned: bool = False):
        self.rank, self.world_size = rank, world_size
        self.device = torch.device(device or "cpu")
        self.owned = owned   # this Dist initialised the process group and destroys it in close()

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def __repr__(self) -> str:
        return f"Dist(rank={self.rank}, world_size={self.world_size}, device={self.device})"

    # -- sharding ------------------------------------------------------------------------------------
    def shard(self, idx: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous piece of a minibatch's segment indices (rank 0's is the largest:
        it is empty only when ``idx`` is)."""
        return idx.tensor_split(self.world_size)[self.rank] if self.active else idx

    def shard_range(self, n: int) -> range:
        """This rank's contiguous piece of ``range(n)``."""
        if not self.active:
            return range(n)
        q, r = divmod(n, self.world_size)
        a = self.rank * q + min(self.rank, r)
        return range(a, a + q + (1 if self.rank < r else 0))

    # -- collectives ---------------------------------------------------------------------------------
    def all_reduce_sum(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` summed over the ranks (in place, on every rank)."""
        if self.active:
            import torch.distributed as tdist

            y = x.to(self.device)
            tdist.all_reduce(y, op=tdist.ReduceOp.SUM)
            if y is not x:
                x.copy_(y)
        return x

    def sum_floats(self, *values: float) -> list[float]:
        """The sums over the ranks of a few Python floats (float64)."""
        if not self.active:
            return [float(v) for v in values]
        t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=self.device)
        return [float(v) for v in self.all_reduce_sum(t)]

    def broadcast(self, obj, src: int = 0):
        """``obj`` of rank ``src`` on every rank (picklable objects)."""
        if not self.active:
            return obj
        import torch.distributed as tdist

        box = [obj if self.rank == src else None]
        tdist.broadcast_object_list(box, src=src, device=self.device if self.device.type == "cuda" else None)
        return box[0]

    def gather(self, obj) -> list:
        """``[obj of rank 0, obj of rank 1, ...]`` on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as tdist

        out = [None] * self.world_size
        tdist.all_gather_object(out, obj)
        return out

    def agree(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` on every rank; when it raises on any rank, every rank raises (the
        rank's own exception, or a RuntimeError naming the rank that failed and why), so that no rank
        is left waiting in a collective for one that gave up."""
        try:
            value, err = fn(*args, **kwargs), None
        except Exception as e:  # re-raised below, on this rank and the others
            value, err = None, e
        if not self.active:
            if err is not None:
                raise err
            return value
        errors = self.gather(None if err is None else f"{type(err).__name__}: {err}")
        if err is not None:
            raise err
        bad = [(r, e) for r, e in enumerate(errors) if e is not None]
        if bad:
            r, e = bad[0]
            raise RuntimeError(f"calibrate: rank {r} of {self.world_size} failed: {e}")
        return value

    def on_main(self, fn, *args, **kwargs):
        """``fn(*args, **kwargs)`` run by rank 0 only, its value on every rank; when it raises there,
        rank 0 raises its exception and the others a RuntimeError that says so."""
        if not self.active:
            return fn(*args, **kwargs)
        value, err, msg = None, None, None
        if self.is_main:
            try:
                value = fn(*args, **kwargs)
            except Exception as e:  # re-raised below, after the others have been told
                err, msg = e, f"{type(e).__name__}: {e}"
        value, msg = self.broadcast((value, msg))
        if err is not None:
            raise err
        if msg is not None:
            raise RuntimeError(f"calibrate: rank 0 of {self.world_size} failed: {msg}")
        return value

    def check_same(self, what: str, value) -> None:
        """RuntimeError on every rank unless every rank passes the same JSON-able ``value``: the ranks
        of one calibration must be given the same logs, settings and world."""
        if not self.active:
            return
        digest = hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
        got = self.gather(digest)
        if len(set(got)) > 1:
            groups = {}
            for r, d in enumerate(got):
                groups.setdefault(d, []).append(r)
            raise RuntimeError(f"calibrate: the {self.world_size} processes were not given the same {what} (ranks "
                               + " / ".join(",".join(map(str, g)) for g in groups.values())
                               + " differ); launch every rank with the same command and files")

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as tdist

            if self.device.type == "cuda":
                tdist.barrier(device_ids=[self.device.index or 0])
            else:
                tdist.barrier()

    def close(self) -> None:
        if self.owned:
            import torch.distributed as tdist

            if tdist.is_initialized():
                tdist.destroy_process_group()
            self.owned = False


def env_world_size() -> int:
    """WORLD_SIZE as torchrun sets it (1 when unset)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def backend_for(device) -> str:
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


def setup(distributed: bool | None, device) -> Dist:
    """The Dist of a calibration of a model on ``device``.

    ``distributed=None``: the process group already initialised by the caller, else the one that
    torchrun's environment describes (WORLD_SIZE > 1: initialised here with gloo for a CPU model or
    nccl for a CUDA one, and destroyed when the calibration ends), else one process. ``True``: the
    same, but one process is an error. ``False``: one process, whatever the environment says (each
    process then runs a calibration of its own)."""
    if distributed is False:
        return Dist(device=device)
    import torch.distributed as tdist

    device = torch.device(device)
    backend = backend_for(device)
    if tdist.is_available() and tdist.is_initialized():
        have = tdist.get_backend()
        if backend == "nccl" and "nccl" not in str(have):
            raise ValueError(f"calibrate: the model is on {device} but the process group's backend is {have}; "
                             "initialise it with backend='nccl' (or 'cpu:gloo,cuda:nccl') for CUDA models")
        if backend == "gloo" and "gloo" not in str(have):
            raise ValueError(f"calibrate: the model is on the CPU but the process group's backend is {have}, "
                             "which cannot reduce CPU tensors; initialise it with backend='gloo'")
        d = Dist(tdist.get_rank(), tdist.get_world_size(), device)
    elif env_world_size() > 1:
        if not tdist.is_available():
            raise RuntimeError("calibrate: WORLD_SIZE > 1 but this torch build has no torch.distributed")
        missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
        if missing:
            raise ValueError(f"calibrate: WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} "
                             "not set; launch with torchrun (e.g. torchrun --nproc_per_node=2 -m hybridwam.cli "
                             "calibrate ...) or set distributed=False")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if restart is None:
            tdist.init_process_group(backend=backend, init_method="env://")
        else:
            # torchrun's workers share the agent's TCPStore, and it outlives a restart: keys that the
            # failed attempt's ranks left there (gloo's and nccl's addresses) could be read by the new
            # attempt before its own ranks overwrite them, and a rank would then connect to a dead
            # port (pytorch/pytorch#135712). Every attempt gets keys of its own.
            from torch.distributed.rendezvous import rendezvous

            store, rank, world_size = next(rendezvous("env://"))
            store = tdist.PrefixStore(f"hybridwam/attempt_{restart}/", store)
            tdist.init_process_group(backend=backend, store=store, rank=rank, world_size=world_size)
        d = Dist(tdist.get_rank(), tdist.get_world_size(), device, owned=True)
    else:
        d = Dist(device=device)
    if distributed is True and not d.active:
        raise ValueError("calibrate(distributed=True): no process group with more than one process; launch with "
                         "torchrun --nproc_per_node=N (N > 1) or initialise torch.distributed first")
    if d.active and device.type == "cuda":
        torch.cuda.set_device(device)
    return d


def local_device(device: str) -> str:
    """The device of this rank under torchrun: ``cuda[:N]`` becomes ``cuda:LOCAL_RANK`` when there
    is more than one process (one GPU per process, as nccl needs); anything else is kept."""
    if env_world_size() > 1 and str(device).startswith("cuda") and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


def elastic_resume(out: str | None, resume: bool, overwrite: bool) -> tuple[bool, bool]:
    """(resume, overwrite) for this attempt. When torchrun restarts the workers of a run that lost a
    rank (``--max-restarts``, TORCHELASTIC_RESTART_COUNT > 0) and ``out`` holds the training state
    that the failed attempt's rank 0 wrote, the restarted attempt continues it: resume on,
    overwrite off (the restart repeats the original command, which did not ask to resume)."""
    try:
        restarts = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        restarts = 0
    if restarts > 0 and env_world_size() > 1 and ckpt.exists(out) and not resume:
        if int(os.environ.get("RANK", "0")) == 0:
            warnings.warn(f"torchrun restart {restarts}: resuming the run saved in {out!r}", stacklevel=3)
        return True, False
    return resume, overwrite


def grad_sync(dist: Dist, params: list[torch.Tensor], loss: torch.Tensor | None, bad: bool) -> float | None:
    """Sum over the ranks of every parameter's ``.grad`` (in place) and of the ranks' losses.

    ``loss``: this rank's share of the minibatch loss (None when its piece is empty); ``bad``: its
    rollout diverged or its loss is not finite. Returns the minibatch loss, or None when any rank was
    bad (every rank then skips the step). A parameter that got no gradient on any rank keeps
    ``grad=None`` (as in one process, where Adam then leaves it alone)."""
    if not dist.active:
        return None if bad or loss is None else loss.detach()
    numels = [p.numel() for p in params]
    parts = [p.grad.detach().reshape(-1).to(torch.float64) if p.grad is not None
             else torch.zeros(n, dtype=torch.float64, device=p.device) for p, n in zip(params, numels, strict=True)]
    flags = [float(p.grad is not None) for p in params]
    lv = 0.0 if loss is None or bad else float(loss.detach())
    tail = torch.tensor([lv, float(bad), *flags], dtype=torch.float64)
    buf = torch.cat([x.to(dist.device) for x in parts] + [tail.to(dist.device)])
    dist.all_reduce_sum(buf)
    tail = buf[sum(numels):].cpu().numpy()
    if tail[1] > 0 or not np.isfinite(tail[0]):
        return None
    a = 0
    for p, n, has in zip(params, numels, tail[2:], strict=True):
        if has > 0:
            p.grad = buf[a:a + n].view(p.shape).to(device=p.device, dtype=p.dtype)
        else:
            p.grad = None
        a += n
    return float(tail[0])
