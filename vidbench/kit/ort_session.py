"""The ONNX Runtime CPU session every ONNX artifact runs in, in the harness and timed alone.

No torch at import: :mod:`vidbench.measure.alone` builds the very same session in a process without torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def ort_session(path: Path, threads: int, profile_prefix: str | None = None) -> Any:
    """An ONNX Runtime CPU session with every graph optimization on and a fixed thread count; with
    ``profile_prefix``, the same session with ONNX Runtime's profiling on (its JSON file starts with it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
