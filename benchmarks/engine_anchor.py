"""What a plain script gets from each engine on r2plus1d r18, outside the harness: the anchor the harness's
``r18_cpu`` rows are held to (issue 37).

torchvision's ``r2plus1d_18`` (random weights: speed does not depend on them) at 16 x 112 x 112, one batch size,
fixed threads, each engine set up the way its own documentation does it, in one process:

- ``eager``: the module under ``torch.inference_mode``;
- ``onnxruntime``: ``torch.onnx.export`` and an ``InferenceSession`` with every graph optimization;
- ``onnxruntime-int8``: ``onnxruntime.quantization.quantize_static`` (QDQ, uint8 activations, int8 weights);
- ``openvino``: ``openvino.convert_model`` compiled for the CPU with its default settings (on a CPU with native
  bf16 that default runs an fp32 model in bf16: the precision it chose is printed);
- ``openvino-f32``: the same with ``INFERENCE_PRECISION_HINT f32``, timed only where the default is not f32;
- ``openvino-int8``: ``nncf.quantize`` with default settings on the converted model.

The engines are timed in interleaved rounds (A B C, then C B A, ...; a short pause before each turn), and each
engine's speedup over eager is the median of its per-round ratios with a 95 % interval, as the harness
computes it. Calibration uses random clips (the harness uses real ones; speed does not depend on them).

Run: ``python benchmarks/engine_anchor.py [--threads 2] [--batch 1] [--rounds 10] [--json anchor.json]
[--run results/r18_cpu/<run_id>]``; with ``--run`` the run's rows at the same batch and threads are printed
beside the anchor's, and the best row's speedup as a share of the anchor's best.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision.models.video import r2plus1d_18

from vidbench.measure.env import cpu_features
from vidbench.stats import median_interval

Call = Callable[[], object]

TURN_GAP_S = 0.05
"""A pause before each turn: the previous engine's spinning threads stand down."""


def _calibration(shape: tuple[int, ...], count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.standard_normal(shape, dtype=np.float32) for _ in range(count)]


def _onnx(model: torch.nn.Module, clip: torch.Tensor, folder: Path) -> Path:
    path = folder / "r2plus1d_18.onnx"
    torch.onnx.export(model, (clip,), str(path), input_names=["clip"], output_names=["logits"])
    return path


def _ort(path: Path, threads: int, clip: np.ndarray) -> Call:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda: session.run(None, {"clip": clip})


def _ort_int8(path: Path, threads: int, clip: np.ndarray, calibration: list[np.ndarray]) -> Call:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter({"clip": c} for c in calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    quantized = path.with_name("r2plus1d_18.int8.onnx")
    quantize_static(
        str(path), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
    )  # fmt: skip
    return _ort(quantized, threads, clip)


def _openvino(model: torch.nn.Module, clip: torch.Tensor, threads: int, calibration: list[np.ndarray]) -> dict:
    """OpenVINO's engines: default settings, f32 pinned (where the default differs), NNCF INT8."""
    import nncf
    import openvino as ov

    core = ov.Core()
    converted = ov.convert_model(model, example_input=clip)
    array = clip.numpy()
    default = core.compile_model(converted, "CPU", {"INFERENCE_NUM_THREADS": threads})
    hint = default.get_property("INFERENCE_PRECISION_HINT")
    hint = hint.to_string() if hasattr(hint, "to_string") else str(hint)  # an openvino.Type: "f32", "bf16"
    engines = {f"openvino ({hint})": default}
    if hint != "f32":
        config = {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32"}
        engines["openvino (f32)"] = core.compile_model(converted, "CPU", config)
    quantized = nncf.quantize(converted, nncf.Dataset(calibration), subset_size=len(calibration))
    engines["openvino-int8"] = core.compile_model(quantized, "CPU", {"INFERENCE_NUM_THREADS": threads})
    return {name: (lambda c=c: c(array)) for name, c in engines.items()}


def build(threads: int, batch: int, calibration_clips: int) -> dict[str, Call]:
    """Every engine's call on the same clip batch, with ``threads`` threads."""
    torch.manual_seed(0)
    torch.set_num_threads(threads)
    model = r2plus1d_18(weights=None, num_classes=400).eval()
    clip = torch.from_numpy(np.random.default_rng(0).standard_normal((batch, 3, 16, 112, 112), dtype=np.float32))
    calibration = _calibration(tuple(clip.shape), calibration_clips)

    def eager() -> object:
        with torch.inference_mode():
            return model(clip)

    folder = Path(tempfile.mkdtemp(prefix="engine-anchor-"))
    path = _onnx(model, clip, folder)
    calls: dict[str, Call] = {"eager": eager}
    calls["onnxruntime"] = _ort(path, threads, clip.numpy())
    calls["onnxruntime-int8"] = _ort_int8(path, threads, clip.numpy(), calibration)
    calls.update(_openvino(model, clip, threads, calibration))
    return calls


def interleaved(calls: dict[str, Call], rounds: int, seconds: float) -> dict[str, list[float]]:
    """Each engine's round medians (ms): every engine warmed, then ``rounds`` turns each, alternating order."""
    for call in calls.values():
        for _ in range(2):
            call()
    medians: dict[str, list[float]] = {name: [] for name in calls}
    names = list(calls)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            time.sleep(TURN_GAP_S)
            calls[name]()  # the turn's warm-up call: another engine had the cores
            samples, began = [], time.perf_counter()
            while not samples or time.perf_counter() - began < seconds:
                t0 = time.perf_counter()
                calls[name]()
                samples.append((time.perf_counter() - t0) * 1e3)
            medians[name].append(float(np.median(samples)))
    return medians


def summary(medians: dict[str, list[float]]) -> pd.DataFrame:
    """p50 and the speedup over eager (median of per-round ratios, 95 % interval) per engine."""
    base = medians["eager"]
    rows = []
    for name, rounds in medians.items():
        ratios = [b / r for b, r in zip(base, rounds, strict=True)]
        low, high = median_interval(ratios)
        rows.append({"engine": name, "p50_ms": float(np.median(rounds)), "speedup": float(np.median(ratios)),
                     "ci95_low": low, "ci95_high": high})  # fmt: skip
    return pd.DataFrame(rows)


def beside_run(anchor: pd.DataFrame, run_dir: Path, batch: int, threads: int) -> pd.DataFrame:
    """The run's ok rows at ``batch`` and ``threads`` with their speedups, and the best against the anchor's."""
    frame = pd.read_csv(run_dir / "results.csv")
    rows = frame[(frame["status"] == "ok") & (frame["batch_size"] == batch) & (frame["threads"] == threads)]
    rows = rows[["optimization", "precision", "latency_ms_p50", "speedup", "speedup_ci95_low", "speedup_ci95_high"]]
    best_run = float(rows["speedup"].max()) if len(rows) else float("nan")
    best_anchor = float(anchor["speedup"].max())
    print(f"\nrun {run_dir} (batch {batch}, {threads} threads):")
    print(rows.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    print(f"best row speedup {best_run:.2f}x; anchor's best {best_anchor:.2f}x; share {best_run / best_anchor:.1%}")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=1.0, help="timed seconds per engine per round (>= 1 call)")
    parser.add_argument("--calibration-clips", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--run", type=Path, help="an r18_cpu run directory to print beside the anchor")
    args = parser.parse_args()
    began = time.perf_counter()
    calls = build(args.threads, args.batch, args.calibration_clips)
    prepared_s = time.perf_counter() - began
    medians = interleaved(calls, args.rounds, args.seconds)
    table = summary(medians)
    features = ", ".join(cpu_features()) or "none of AVX2 / AVX-512 / VNNI / BF16 / AMX"
    print(f"r2plus1d_18, batch {args.batch} x 3 x 16 x 112 x 112, {args.threads} threads, {args.rounds} interleaved "
          f"rounds; CPU features: {features}; prepared in {prepared_s:.0f} s")  # fmt: skip
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.json:
        record = {"threads": args.threads, "batch": args.batch, "rounds": args.rounds, "cpu_features": features,
                  "torch": torch.__version__, "engines": table.to_dict("records"),
                  "round_p50s_ms": medians}  # fmt: skip
        args.json.write_text(json.dumps(record, indent=2))
    if args.run:
        beside_run(table, args.run, args.batch, args.threads)


if __name__ == "__main__":
    main()
