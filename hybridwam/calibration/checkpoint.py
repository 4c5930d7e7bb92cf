"""Resumable training state: one safetensors file, tensors plus a JSON document in its metadata.

One file means one atomic ``os.replace``: a crash leaves either the previous epoch's state or the
new one, never a mixture. No pickle: tensors go through safetensors, everything else through JSON
(optimiser hyper-parameters, epochs, stage, early-stopping bookkeeping, history).

A state that cannot be resumed (truncated, not hybridwam's, made for another scene or run) raises
:class:`ResumeError`, a ValueError that says what is wrong and how to recover.
"""
from __future__ import annotations

import json
import os

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..hybrid import _atomic_write

STATE_FILE = "train_state.safetensors"
META_KEY = "hybridwam_train_state"


class ResumeError(ValueError):
    """The training state in an output folder cannot be resumed; ``.file`` is the state file."""

    def __init__(self, msg: str, file: str | None = None):
        super().__init__(msg)
        self.file = file


def recovery_hint(path: str) -> str:
    """How to get going again when the state at ``path`` cannot be resumed."""
    return (f"start afresh with overwrite=True (command line: --overwrite) or another output folder, or put back "
            f"a good copy of {os.path.basename(path)} from an earlier run")


def resume_error(path: str, what: str) -> ResumeError:
    return ResumeError(f"{path}: cannot resume: {what}; {recovery_hint(path)}", path)


def save_state(path: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    t = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    if not t:
        t = {"_empty": torch.zeros(1)}
    _atomic_write(path, lambda p: save_file(t, p, metadata={META_KEY: json.dumps(meta)}))


#: keys of the JSON document every state has, with their JSON types
_META_KEYS = {"version": int, "config": dict, "done": list, "stages": dict, "splits": dict}


def load_state(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, JSON document) of the state file; ResumeError when it is unreadable or incomplete."""
    try:
        with safe_open(path, framework="pt") as f:
            raw = (f.metadata() or {}).get(META_KEY)
            tensors = {k: f.get_tensor(k) for k in f.keys() if k != "_empty"}
    except FileNotFoundError:
        raise
    except Exception as e:  # SafetensorError (neither ValueError nor OSError), OSError of a damaged file
        raise resume_error(path, f"the training state is unreadable ({str(e).strip() or type(e).__name__}): the "
                                 "file is truncated or damaged") from None
    if raw is None:
        raise resume_error(path, f"the file has no {META_KEY!r} metadata, so it is not a training state written by "
                                 "hybridwam calibrate")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as e:
        raise resume_error(path, f"the training state's metadata is not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise resume_error(path, "the training state's metadata is not a JSON object")
    for k, kind in _META_KEYS.items():
        if not isinstance(meta.get(k), kind):
            raise resume_error(path, f"the training state's metadata lacks {k!r} (a {kind.__name__}): damaged, or "
                                     "written by another program")
    for k in ("train", "val"):
        if not isinstance(meta["splits"].get(k), list):
            raise resume_error(path, f"the training state's metadata lacks splits[{k!r}]")
    return tensors, meta


def optimizer_to_flat(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, JSON) of an optimiser's state dict."""
    sd = opt.state_dict()
    tensors, state_meta = {}, {}
    for pid, st in sd["state"].items():
        entry = {}
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"{prefix}.{pid}.{k}"] = v
            else:
                entry[k] = v
        state_meta[str(pid)] = {"tensors": [k for k, v in st.items() if isinstance(v, torch.Tensor)], "other": entry}
    return tensors, {"param_groups": sd["param_groups"], "state": state_meta}


def optimizer_from_flat(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict, prefix: str):
    state = {}
    for pid, e in meta["state"].items():
        st = {k: tensors[f"{prefix}.{pid}.{k}"] for k in e["tensors"]}
        st.update(e["other"])
        state[int(pid)] = st
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def exists(out: str | None) -> bool:
    return bool(out) and os.path.isfile(os.path.join(out, STATE_FILE))
