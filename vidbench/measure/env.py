"""The environment a run measured on: versions, CPU, threads, commit; and its hash for cache keys."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

PACKAGES = (
    "torch", "torchvision", "onnx", "onnxscript", "onnxruntime", "openvino", "nncf", "torchao", "numpy", "decord",
    "av", "timm", "pytorchvideo", "fvcore", "faiss-cpu", "vidbench",
)  # fmt: skip
"""The distributions whose versions ``env.json`` records (and the environment hash covers)."""


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else platform's answer."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


ISA_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""CPU features that decide INT8 and bf16 speed (``/proc/cpuinfo`` flag names)."""


def cpu_features() -> list[str]:
    """The ISA features of :data:`ISA_FEATURES` this CPU has (``/proc/cpuinfo``; none found elsewhere)."""
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    return [f for f in ISA_FEATURES if f in flags]


def cpu_isa() -> dict[str, Any]:
    """The ISA features of :data:`ISA_FEATURES` this CPU has, and what torch dispatches its kernels to."""
    return {"features": cpu_features(), **engine_isa()}


TORCH_ISA_CHECKS = ("avx2", "avx512", "vnni", "avx512_bf16", "amx_tile", "amx_fp16")
"""``torch.cpu._is_<name>_supported``: the ISA torch's own CPU detection (the one its oneDNN kernels follow) finds."""


def engine_isa() -> dict[str, Any]:
    """What each engine says it will use here: torch's kernel dispatch level and ISA checks, and the OpenVINO
    CPU plugin's optimization capabilities (``BF16`` appears only where the CPU has AVX512-BF16 or AMX);
    ``unknown`` / ``None`` where an engine is missing. ONNX Runtime exposes no such query."""
    return {**torch_isa(), "openvino_cpu_capabilities": _openvino_caps()}


def torch_isa() -> dict[str, Any]:
    """torch's kernel dispatch level (``AVX512``, ``AVX2``, ...) and the ISA its own CPU checks find."""
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
        found = [n for n in TORCH_ISA_CHECKS if getattr(torch.cpu, f"_is_{n}_supported", lambda: False)()]
    except (ImportError, AttributeError):
        capability, found = "unknown", []
    return {"torch_cpu_capability": capability, "torch_isa": found}


_OPENVINO_CAPS = (
    "import os, openvino as ov\n"
    "print(','.join(ov.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')), flush=True)\n"
    "os._exit(0)\n"
)


def _openvino_caps() -> list[str] | None:
    """The OpenVINO CPU plugin's capabilities, asked in a short child process that skips its own shutdown: the
    runner never loads OpenVINO (a full test run saw its exit delayed by 15 s once it had)."""
    try:
        proc = subprocess.run([sys.executable, "-c", _OPENVINO_CAPS], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    caps = proc.stdout.strip()
    return caps.split(",") if proc.returncode == 0 and caps else None


def git_commit(cwd: Path | None = None) -> str:
    """The checked-out commit (with ``-dirty`` when the tree has changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    """The installed version of each of :data:`PACKAGES` (``not installed`` when absent)."""
    found = {}
    for name in PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def collect_env(threads: int, device: str = "cpu", decoder: str | None = None) -> dict[str, Any]:
    """Everything that changes a measurement, as JSON-able data; ``decoder`` is the video backend that reads the
    clips (decord or PyAV: their frames can differ by a rounding)."""
    cuda = None
    try:
        import torch

        if torch.cuda.is_available():
            cuda = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "isa": cpu_isa(),
        "cores": os.cpu_count(),
        "threads": threads,
        "device": device,
        "gpu": cuda,
        "decoder": decoder,
        "packages": package_versions(),
    }


def env_hash(env: dict[str, Any]) -> str:
    """A short hash of the parts of the environment that change results (not the commit or time)."""
    keys = ("python", "cpu", "isa", "cores", "threads", "device", "gpu", "decoder", "packages")
    payload = json.dumps({k: env.get(k) for k in keys}, sort_keys=True).encode()
    return hashlib.sha256(payload).hexdigest()[:16]
