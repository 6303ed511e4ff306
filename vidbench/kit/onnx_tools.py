"""ONNX export and ONNX Runtime sessions, shared by the optimizations that run through ONNX."""

from __future__ import annotations

import hashlib
import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidbench.kit.ort_session import ort_session
from vidbench.specs import Unsupported


def export_onnx(model: nn.Module, example: torch.Tensor, path: Path, cache_dir: Path | None = None) -> list[Path]:
    """``torch.onnx.export(dynamo=True)`` with a dynamic batch dimension; the weights go to an external
    ``.onnx.data`` file. Returns every file written. A model that does not export raises
    :class:`Unsupported` with the exporter's first line (it names the operator).

    With ``cache_dir``, an export of the same weights, model class, example shape, file name and torch
    version made earlier (by another cell of the same job: onnx and int8 both start from it) is copied
    instead of exported again."""
    if cache_dir is None:
        return _export(model, example, path)
    stored = Path(cache_dir) / export_key(model, example, path.name)
    if not (stored / path.name).exists():
        scratch = stored.with_name(f".{stored.name}.{os.getpid()}.tmp")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        _export(model, example, scratch / path.name)
        try:
            os.replace(scratch, stored)
        except OSError:  # another process stored the same export first
            shutil.rmtree(scratch, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(f, path.parent / f.name)) for f in sorted(stored.iterdir())]


def export_key(model: nn.Module, example: torch.Tensor, name: str) -> str:
    """What decides an export's bytes: the weights and buffers, the model class, the example's shape and
    dtype, the file name (the graph names its data file) and the torch version."""
    digest = hashlib.sha256(f"{type(model).__module__}.{type(model).__qualname__}|{name}|{torch.__version__}".encode())
    digest.update(f"{tuple(example.shape)}|{example.dtype}".encode())
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:24]


def _export(model: nn.Module, example: torch.Tensor, path: Path) -> list[Path]:
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                model.eval(),
                (example,),
                dynamo=True,
                input_names=["clip"],
                output_names=["logits"],
                dynamic_shapes=({0: batch},),
                optimize=True,
                verbose=False,
            )
            program.save(str(path), external_data=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise Unsupported(f"ONNX export failed: {first}") from exc
    return sorted(p for p in path.parent.iterdir() if p.name.startswith(path.name))


def ort_callable(path: Path, threads: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable clip -> logits over an ORT session (the tensor conversion is part of the cost)."""
    sess = ort_session(path, threads)
    input_name = sess.get_inputs()[0].name

    def run(clip: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32)
        return torch.from_numpy(sess.run(None, {input_name: array})[0])

    return run
