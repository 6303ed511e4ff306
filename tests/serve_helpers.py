"""Helpers for the production tests: one trained run per session, free ports, a real server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import only_run_dir, vidbench, write_suite


def trained_run(base: Path, data_root: Path) -> Path:
    """A ``vidbench run`` directory with r2plus1d/tiny trained 1 epoch on the tiny synthetic set (eager test
    logits in eval.npz) and measured under ONNX Runtime; made once per test session (under ``base``) and
    reused by every test module."""
    folder = base / "serve-run"
    runs = folder / "results" / "t"
    if runs.is_dir() and any(runs.glob("*/results.csv")):
        return only_run_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    suite = write_suite(folder, data_root, optimizations=["onnx"], batch_sizes=[1])
    proc = vidbench("run", str(suite), "--quiet", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only_run_dir(folder)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``vidbench serve`` in a child process on a free local port; stopped by :meth:`stop`."""

    def __init__(self, args: list[str], log: Path, cwd: Path, timeout_s: float = 180) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "vidbench.cli", "serve", *args, "--host", "127.0.0.1", "--port", str(self.port)]
        with open(log, "w") as fh:
            self.proc = subprocess.Popen(cmd, cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ})
        self._wait(timeout_s)

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"server not ready after {timeout_s} s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop in 15 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
