"""An operator profile: one artifact's call split into its engine's operators, sorted into groups.

The engines' profilers (:mod:`vidbench.measure.operators`) fill it in the artifact's timing process; the report
(:mod:`vidbench.report.operators`) reads it back. Operators are sorted into engine-independent groups
(:func:`op_group`). The time that no operator accounts for (Python and the framework between operators, the
engine's own dispatch) is its own group, :data:`OUTSIDE`, so that the groups of a profile add up to the call's
wall time under the profiler, which the report sets beside the row's p50.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

OUTSIDE = "outside operators"
"""The group of the time no operator accounts for: wall time under the profiler minus every operator's time."""

GROUP_RULES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("quantize / dequantize", ("quantize", "fakequant")),
    ("compiled (fused) code", ("compiledfunction", "compiledfxgraph", "compiled region", "cpp_fused", "graph_")),
    ("torch.compile guards & wrappers", ("dynamo", "pregraph", "aotdispatcher", "guard")),
    ("layout & copy", ("convert", "reorder", "reshape", "transpose", "permute", "view", "copy", "contiguous",
                       "concat", "gather", "slice", "split", "squeeze", "flatten", "empty", "clone", "expand",
                       "select", "stack", "as_strided", "pad", "fill", "zero", "unfold", "index", "shape", "resize",
                       "resolve_conj", "resolve_neg")),
    ("convolution", ("conv",)),
    ("matmul / linear", ("matmul", "gemm", "fullyconnected", "linear", "addmm", "bmm", "_int_mm", "einsum")),
    ("attention / softmax", ("softmax", "attention")),
    ("normalization", ("norm", "mvn")),
    ("pooling / reduction", ("pool", "reduce", "mean")),
    ("activation", ("relu", "gelu", "sigmoid", "silu", "swish", "tanh", "clamp", "elu", "erf", "hardswish")),
    ("elementwise", ("add", "mul", "sub", "div", "eltwise", "subgraph", "pow", "sqrt", "multiply")),
)  # fmt: skip
"""(group, name fragments), first match wins: an operator type (lower case, namespace dropped) that contains a
fragment belongs to the group (``Convert`` is a copy, not a convolution, so layout comes before convolution)."""

EXACT_GROUPS: dict[str, str] = {"mm": "matmul / linear", "t": "layout & copy", "to": "layout & copy",
                                "cat": "layout & copy", "sum": "pooling / reduction"}  # fmt: skip
"""Operator types too short to match by fragment."""

COMPUTE_GROUPS = ("convolution", "matmul / linear")
"""The groups whose precision decides an INT8 artifact's speed (its layers left in floating point)."""


def op_group(op_type: str) -> str:
    """The engine-independent group of an operator type (``aten::mkldnn_convolution``, ``QLinearConv``,
    ``FullyConnected``, ...); ``other`` when no rule names it."""
    name = op_type.rsplit("::", 1)[-1].lower()
    if name in EXACT_GROUPS:
        return EXACT_GROUPS[name]
    return next((group for group, parts in GROUP_RULES if any(p in name for p in parts)), "other")


@dataclass(frozen=True)
class OpTime:
    """One operator (a node of a graph engine; an operator type in PyTorch): its mean milliseconds per call."""

    name: str
    op_type: str
    ms: float
    precision: str = ""
    """``fp32``, ``bf16``, ``fp16``, ``int8``, or empty where the engine does not say."""
    kernel: str = ""
    """The kernel the engine ran it with, where it says (OpenVINO's ``exec_type``)."""

    @property
    def group(self) -> str:
        return op_group(self.op_type)


@dataclass
class OperatorProfile:
    """One artifact's profile at one batch size: its operators and the wall time of a call under the profiler."""

    engine: str
    profiler: str
    batch: int
    calls: int
    wall_ms: float
    """Mean wall milliseconds of one profiled call."""
    ops: list[OpTime] = field(default_factory=list)
    unprofiled_ms: float | None = None
    """The median of the timed artifact's calls without the profiler, as many just before it and just after (the
    profile's own overhead is ``wall_ms`` over it; the row's p50 was timed earlier, on a host that may have
    drifted since)."""

    @property
    def ops_ms(self) -> float:
        """Milliseconds per call inside operators."""
        return sum(op.ms for op in self.ops)

    @property
    def overhead(self) -> float | None:
        """The profiler's own cost: a profiled call's wall time over an unprofiled one's (1.0: none)."""
        return self.wall_ms / self.unprofiled_ms if self.unprofiled_ms else None

    def attributed(self) -> dict[str, float]:
        """Each group's share of the profiled call times the unprofiled call: where the artifact's own time
        goes, the profiler's overhead spread in proportion (ONNX Runtime's profiling slows even its kernels).
        Without an unprofiled time, the profiled milliseconds."""
        groups = self.groups()
        total = sum(groups.values())
        if not self.unprofiled_ms or total <= 0:
            return groups
        return {group: ms / total * self.unprofiled_ms for group, ms in groups.items()}

    def groups(self) -> dict[str, float]:
        """Milliseconds per call of each group, largest first, with :data:`OUTSIDE` (never negative: a
        profiler whose operator times overlap the call's wall, with threads, leaves no time outside)."""
        totals: dict[str, float] = defaultdict(float)
        for op in self.ops:
            totals[op.group] += op.ms
        totals[OUTSIDE] = max(0.0, self.wall_ms - self.ops_ms)
        return dict(sorted(totals.items(), key=lambda kv: -kv[1]))

    @property
    def reports_precision(self) -> bool:
        """Whether the engine said the precision of its compute operators."""
        return any(op.precision for op in self.ops if op.group in COMPUTE_GROUPS)

    def by_kind(self) -> list[tuple[str, float]]:
        """Milliseconds per call of each operator kind (type, kernel where reported, precision), largest first:
        which kernels the time goes to (``aten::slow_conv3d_forward fp32``, ``Convolution brgconv_avx2_f32``)."""
        totals: dict[str, float] = defaultdict(float)
        for op in self.ops:
            kind = " ".join(part for part in (op.op_type, op.kernel or op.precision) if part)
            totals[kind] += op.ms
        return sorted(totals.items(), key=lambda kv: -kv[1])

    def float_compute(self) -> list[OpTime]:
        """The convolutions and matmuls that ran in floating point, slowest first (an INT8 artifact's layers
        left unquantized); none where the engine does not report precisions."""
        found = [op for op in self.ops if op.group in COMPUTE_GROUPS and op.precision in ("fp32", "bf16", "fp16")]
        return sorted(found, key=lambda op: -op.ms)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatorProfile:
        ops = [OpTime(**op) for op in data.get("ops", [])]
        batch, calls, wall_ms = int(data["batch"]), int(data["calls"]), float(data["wall_ms"])
        unprofiled = data.get("unprofiled_ms")
        return cls(data["engine"], data["profiler"], batch, calls, wall_ms, ops, unprofiled)


def top_groups(profile: OperatorProfile, count: int = 5, attributed: bool = False) -> list[tuple[str, float]]:
    """The ``count`` largest groups (``outside operators`` among them when it is one), then ``rest``: the other
    groups together; their times add up to the profiled call's wall time (``attributed``: to the unprofiled
    call's, see :meth:`OperatorProfile.attributed`)."""
    groups = list((profile.attributed() if attributed else profile.groups()).items())
    head, tail = groups[:count], groups[count:]
    return head + ([("rest", sum(ms for _, ms in tail))] if tail else [])
