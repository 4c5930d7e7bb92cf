"""Resumable training state: one safetensors file, tensors plus a JSON document in its metadata.

One file means one atomic ``os.replace``: a crash leaves either the previous epoch's state or the
new one, never a mixture. No pickle: tensors go through safetensors, everything else through JSON
(optimiser hyper-parameters, epochs, stage, early-stopping bookkeeping, history).
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


def save_state(path: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    t = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    if not t:
        t = {"_empty": torch.zeros(1)}
    _atomic_write(path, lambda p: save_file(t, p, metadata={META_KEY: json.dumps(meta)}))


def load_state(path: str) -> tuple[dict[str, torch.Tensor], dict]:
    with safe_open(path, framework="pt") as f:
        meta = json.loads((f.metadata() or {})[META_KEY])
        tensors = {k: f.get_tensor(k) for k in f.keys() if k != "_empty"}
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
