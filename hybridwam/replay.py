"""Recorded Warp launch commands, replayed many times with only a few integer arguments changing.

The looped engine's backward steps through a rollout one step at a time: per step the same few
launches (the step's stages forward, then their adjoints) with only the step index ``t``
changing. Warp's ``Launch.launch`` packs every argument into a new ctypes struct at each call;
for the step's scratch structs (about a hundred arrays, 14 kB) that costs 2-10 us a launch on
the CPU, more than a small batch's arithmetic (a 2-dof model with a 64x64 residual: 8 launches a
step, 4-11 us each through ``Launch.launch``, 0.4-4 us through a struct packed once).

:class:`Replay` packs a CPU launch's argument structs once and calls the kernel's entry point
with them; :meth:`Replay.setter` gives a callable that changes an integer argument in the
packed struct and
:meth:`Replay.rebind` swaps in new arguments (the next backward pass's trajectory arrays),
repacking only those that changed. Where the
command does not expose what that needs (another Warp version, a CUDA device, a block launch),
it falls back to ``Launch.set_param_by_name`` / ``Launch.launch``: the same kernel, the same
arguments, only the packing repeated.
"""
from __future__ import annotations

import ctypes
import functools

#: argument struct types by (kernel, argument names, argument ctypes)
_STRUCTS: dict = {}


class Replay:
    """One recorded launch command (``wp.launch(..., record_cmd=True)``), launched by calling
    :attr:`call`."""

    def __init__(self, cmd, inputs=None, adj_inputs=None):
        self.cmd = cmd
        #: the arguments it was recorded with (what :meth:`rebind` compares against)
        self._inputs, self._adj_inputs = list(inputs or ()), list(adj_inputs or ())
        labels = [a.label for a in cmd.kernel.adj.args]
        self._labels = labels
        self.names = frozenset(labels)
        self._args = self._adj = self._call = None
        try:
            if not cmd.device.is_cpu or (getattr(cmd, "block_dim", 1) or 1) > 1:
                return
            params, hooks, n = cmd.params, cmd.hooks, len(labels)

            def pack(values):
                key = (cmd.kernel.key, tuple(labels), tuple(type(v) for v in values))
                struct = _STRUCTS.get(key)
                if struct is None:  # a ctypes type costs more to make than to fill
                    struct = _STRUCTS[key] = type("Args", (ctypes.Structure,), {
                        "_fields_": [(k, type(v)) for k, v in zip(labels, values, strict=True)]})
                out = struct()
                for k, v in zip(labels, values, strict=True):
                    setattr(out, k, v)
                return out

            self._bounds = params[0]
            self._args = pack(params[1:1 + n])
            refs = [ctypes.byref(self._bounds), ctypes.byref(self._args)]
            if cmd.adjoint:
                self._adj = pack(params[1 + n:1 + 2 * n])
                refs.append(ctypes.byref(self._adj))
            # a partial of the entry point: called without a Python frame
            self._call = functools.partial(hooks.backward if cmd.adjoint else hooks.forward, *refs)
        except (AttributeError, TypeError, ValueError):  # a Warp without these internals: plain replay
            self._args = self._adj = self._call = None

    @property
    def packed(self) -> bool:
        """True when the launch goes through its struct packed once (else ``Launch.launch``)."""
        return self._call is not None

    @property
    def call(self):
        """The launch as a callable of no arguments (the packed entry point, else Launch.launch)."""
        return self._call if self._call is not None else self.cmd.launch

    def setter(self, name: str):
        """A callable ``f(value)`` that sets the forward integer argument ``name`` for the next calls."""
        if self._call is not None:
            return functools.partial(setattr, self._args, name)
        return functools.partial(self.cmd.set_param_by_name, name)

    def rebind(self, inputs, adj_inputs=None) -> None:
        """The launch's arguments replaced by ``inputs`` (and ``adj_inputs``; the lists it was
        recorded with, same kernel): only those that are not the very objects recorded are packed
        again (Launch.set_param_at_index) and copied into the packed structs."""
        n = len(self._labels)
        for adjoint, new, old in ((False, inputs, self._inputs), (True, adj_inputs or (), self._adj_inputs)):
            for i, v in enumerate(new):
                if i < len(old) and v is old[i]:
                    continue
                self.cmd.set_param_at_index(i, v, adjoint)
                if self._call is not None:
                    setattr(self._adj if adjoint else self._args, self._labels[i],
                            self.cmd.params[1 + i + (n if adjoint else 0)])
            old[:] = list(new)
