"""Loading pretrained weights from a local file: ``weights_only=True``, never a download.

Key names are the architecture's own (torchvision's or pytorchvideo's where the plugin builds their
network), after removing the usual wrappers (``state_dict`` / ``model_state`` / ``model`` entries,
``module.`` prefixes). A checkpoint whose classifier head has another number of classes is loaded
without its head (the head keeps its fresh initialisation), which is how fine-tuning starts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

WRAPPER_KEYS = ("state_dict", "model_state", "model", "module")
PREFIXES = ("module.", "_orig_mod.")


class WeightsError(Exception):
    """A weights file that cannot be loaded into the model; names the file and the first bad key."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local checkpoint, unwrapped from the common container formats."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"pretrained weights not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path}: not a loadable weights file ({type(exc).__name__}: {exc})") from exc
    while isinstance(state, Mapping):
        inner = next((state[k] for k in WRAPPER_KEYS if k in state and isinstance(state[k], Mapping)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path}: no state dict of tensors found")
    out = {}
    for key, value in state.items():
        for prefix in PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def load_pretrained(model: nn.Module, path: str | Path, head: str) -> list[str]:
    """Load ``path`` into ``model`` (every key must match); returns the head keys left at their init
    because the checkpoint's head is for another number of classes."""
    state = read_state_dict(path)
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise WeightsError(f"{path}: key {unexpected[0]!r} is not in the model ({len(unexpected)} unexpected)")
    missing = [k for k in own if k not in state]
    if missing:
        raise WeightsError(f"{path}: model key {missing[0]!r} is missing from the file ({len(missing)} missing)")
    skipped = []
    for key, value in own.items():
        if state[key].shape == value.shape:
            continue
        if key.startswith(head + "."):
            state[key] = value
            skipped.append(key)
            continue
        raise WeightsError(
            f"{path}: shape mismatch at {key!r}: file {tuple(state[key].shape)} vs model {tuple(value.shape)}"
        )
    model.load_state_dict(state, strict=True)
    return skipped


def load_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load a checkpoint this project wrote (a plain state dict) into ``model``, every key matching."""
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model
