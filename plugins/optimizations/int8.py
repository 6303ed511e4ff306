"""``int8``: ONNX Runtime static quantization (QDQ, per-channel int8 weights, uint8 activations),
calibrated on a stated number of training clips, after ``quant_pre_process``.

When the INT8 graph's top-1 agrees with the fp32 model on fewer than ``TARGET_AGREEMENT`` of the
calibration clips, the nodes whose activations lose most to quantization are kept in fp32, a few more
at each try, until it does: sensitivity is the signal-to-quantization-noise ratio of each activation
tensor's own quantize-dequantize (``onnxruntime.quantization.qdq_loss_debug``), lowest first; the
tensor's producer and consumers are excluded together. The row's notes name the nodes and the size cost.
The test split is never used here: the harness's parity gate judges the result on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from vidbench import hookimpl
from vidbench.kit import agreement, export_onnx, named, ort_callable, top1
from vidbench.specs import Artifact, OptimizationSpec, Unsupported, cpu_only

TARGET_AGREEMENT = 0.98
"""Top-1 agreement with fp32 on the calibration clips an INT8 graph must reach before nodes stay in fp32: above
the 95 % parity gate, since the test split is larger and unseen."""
EXCLUSION_STEPS = (1, 2, 4, 8, 16, 32)
"""How many of the most sensitive tensors' nodes each further try keeps in fp32."""
SENSITIVITY_CLIPS = 8
"""Calibration clips whose every activation is compared (the activations of all of them are held in memory)."""


class ClipReader:
    """onnxruntime's CalibrationDataReader over the calibration clips (one batch of 1 at a time)."""

    def __init__(self, clips: Iterable[torch.Tensor], input_name: str) -> None:
        self._clips: Iterator[torch.Tensor] = iter(clips)
        self.input_name = input_name
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        clip = next(self._clips, None)
        if clip is None:
            return None
        self.count += 1
        return {self.input_name: np.ascontiguousarray(clip.detach().cpu().numpy(), dtype=np.float32)}

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        """The feeds one after another (``qdq_loss_debug.collect_activations`` iterates its reader)."""
        while (feed := self.get_next()) is not None:
            yield feed


def _quantize(pre: Path, out: Path, clips: Sequence[torch.Tensor], exclude: Sequence[str] = ()) -> None:
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    try:
        quantize_static(
            str(pre),
            str(out),
            ClipReader(clips, "clip"),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
        )
    except Exception as exc:
        raise Unsupported(f"ONNX Runtime static quantization failed: {str(exc).splitlines()[0]}") from exc


def _opened(path: Path, clips: Sequence[torch.Tensor], reference: Sequence[int]) -> tuple[Callable, float]:
    """The ONNX graph at ``path`` opened as the artifact runs it, and its top-1 agreement with ``reference``."""
    run = ort_callable(path, torch.get_num_threads())
    return run, agreement(top1(run, clips), reference)


def sensitive_nodes(fp32: Path, qdq: Path, clips: Sequence[torch.Tensor], work: Path) -> list[str]:
    """Node names of the fp32 graph, most quantization-sensitive first: activation tensors ranked by the SQNR
    (dB) of their own quantize-dequantize in ``qdq`` on ``clips``, each giving its producer and consumers."""
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_signal_to_quantization_noice_ratio,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    acts = {}
    for name, path in (("float", fp32), ("qdq", qdq)):
        augmented = work / f"{name}.augmented.onnx"
        modify_model_output_intermediate_tensors(str(path), str(augmented))
        acts[name] = collect_activations(str(augmented), ClipReader(clips, "clip"))
        augmented.unlink()
    matches = create_activation_matching(acts["qdq"], acts["float"])
    sqnr = {
        tensor: compute_signal_to_quantization_noice_ratio(match["pre_qdq"], match["post_qdq"])
        for tensor, match in matches.items()
        if match.get("pre_qdq") is not None and match.get("post_qdq") is not None
    }
    graph = onnx.load(str(fp32), load_external_data=False).graph
    producer = {output: node.name for node in graph.node for output in node.output}
    consumers: dict[str, list[str]] = defaultdict(list)
    for node in graph.node:
        for tensor in node.input:
            consumers[tensor].append(node.name)
    order: list[str] = []
    for tensor in sorted(sqnr, key=sqnr.get):
        for node in (producer.get(tensor), *consumers[tensor]):
            if node and node not in order:
                order.append(node)
    return order


def _size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.parent.iterdir() if p.name.startswith(path.name)) / 1e6


def prepare(
    model: nn.Module, example: torch.Tensor, calibration: Iterable[torch.Tensor] | None, workdir: Path
) -> Artifact:
    """fp32 export -> quant_pre_process -> quantize_static (QDQ, per-channel, MinMax calibration); then the
    most sensitive nodes kept in fp32 until the calibration clips agree (see the module doc)."""
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if calibration is None:
        raise Unsupported("static INT8 needs calibration clips and none were given")
    clips = list(calibration)
    if not clips:
        raise Unsupported("static INT8 needs calibration clips and none were given")
    build = workdir / "build"
    build.mkdir(parents=True, exist_ok=True)
    fp32 = build / "model.onnx"  # the onnx cell's name: the job's shared export serves both
    export_onnx(model, example, fp32, cache_dir=workdir.parent / ".onnx-export")
    # quant_pre_process copies the model to a temp folder without its external data file, so the
    # fp32 graph is first folded into one self-contained file (the tiny and base presets are < 2 GB).
    single = build / "fp32-single.onnx"
    onnx.save(onnx.load(str(fp32)), str(single), save_as_external_data=False)
    pre = build / "pre.onnx"
    quant_pre_process(str(single), str(pre), skip_symbolic_shape=True)
    out = workdir / "model.int8.onnx"
    _quantize(pre, out, clips)
    with torch.inference_mode():
        reference = top1(model, clips)
    run, agreed = _opened(out, clips, reference)
    notes = f"ORT static INT8, QDQ, per-channel weights, U8 activations, MinMax on {len(clips)} training clips"
    if agreed < TARGET_AGREEMENT:
        all_int8_mb, all_int8_agreement = _size_mb(out), agreed
        order = sensitive_nodes(pre, out, clips[:SENSITIVITY_CLIPS], build)
        kept: list[str] = []
        for count in EXCLUSION_STEPS:
            kept = order[: min(count, len(order))]
            _quantize(pre, out, clips, kept)
            run, agreed = _opened(out, clips, reference)
            if agreed >= TARGET_AGREEMENT or len(kept) == len(order):
                break
        notes += (
            f"; all-INT8 agreed with fp32 on {all_int8_agreement:.1%} of them, so {len(kept)} most sensitive "
            f"nodes stay fp32 ({named(kept)}): {agreed:.1%}, {_size_mb(out):.2f} MB vs {all_int8_mb:.2f} MB all-INT8"
        )
    else:
        notes += f"; agrees with fp32 on {agreed:.1%} of them"
    files = sorted(p for p in workdir.iterdir() if p.is_file() and p.name.startswith(out.name))
    return Artifact(run=run, files=files, notes=notes, engine="onnxruntime", engine_file=out, precision="int8")


@hookimpl
def vidbench_optimizations() -> list[OptimizationSpec]:
    return [
        OptimizationSpec(
            name="int8",
            prepare=prepare,
            supported=cpu_only("ONNX Runtime's CPUExecutionProvider (INT8 QDQ)"),
            lossy=True,
            description="ONNX Runtime static INT8 (QDQ, per-channel), calibrated on training clips",
        )
    ]
