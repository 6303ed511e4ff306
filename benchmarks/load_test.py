"""Load test of ``vidbench serve`` on 127.0.0.1: throughput and p50/p99 latency per client count,
with dynamic batching on and off. Bounded: each cell stops after ``--requests`` requests or
``--duration`` seconds, whichever comes first.

Starts its own servers (one per batching mode, both up at once; each client count is measured on
one mode right after the other) from ``--artifact``, or measures a running one given by ``--url``
(loopback only). Each client is an asyncio task that uploads the next file as soon as
its previous answer arrives (closed loop), so N clients means N requests in flight.

    python benchmarks/load_test.py --artifact results/smoke/RUN/r2plus1d@onnx --files DIR
    python benchmarks/load_test.py --url http://127.0.0.1:8000 --files DIR --clients 1,4
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Cell:
    """One measured cell: a batching mode at a client count."""

    batching: str
    clients: int
    requests: int
    errors: int
    seconds: float
    throughput_rps: float
    p50_ms: float
    p99_ms: float
    mean_batch: float | None


def video_files(source: Path, limit: int) -> list[tuple[str, bytes]]:
    """Up to ``limit`` video files of a folder (recursive) or one file, as (name, bytes)."""
    paths = [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
    if not paths:
        raise SystemExit(f"{source}: no video files")
    return [(p.name, p.read_bytes()) for p in paths[:limit]]


def batch_stats(metrics_text: str, model: str) -> tuple[float, float]:
    """(sum, count) of the server's batch-size histogram for ``model``."""
    values = {}
    for kind in ("sum", "count"):
        match = re.search(rf'^vidbench_batch_size_{kind}{{model="{model}"}} (\S+)$', metrics_text, re.M)
        values[kind] = float(match.group(1)) if match else 0.0
    return values["sum"], values["count"]


async def run_cell(
    url: str, endpoint: str, files: list[tuple[str, bytes]], clients: int, max_requests: int, max_seconds: float
) -> tuple[list[float], int, float]:
    """Closed-loop clients until ``max_requests`` are sent or ``max_seconds`` pass: latencies (s), errors, wall s."""
    latencies: list[float] = []
    errors = 0
    issued = 0
    deadline = time.monotonic() + max_seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def worker() -> None:
            nonlocal issued, errors
            while issued < max_requests and time.monotonic() < deadline:
                name, body = files[issued % len(files)]
                issued += 1
                start = time.perf_counter()
                try:
                    response = await client.post(endpoint, files={"file": (name, body)})
                    ok = response.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        return latencies, errors, time.perf_counter() - start


def measure_cell(url: str, mode: str, clients: int, args: argparse.Namespace, files: list[tuple[str, bytes]]) -> Cell:
    """One bounded cell against one server, with the server's mean batch size over the cell."""
    endpoint = f"/v1/{args.endpoint}"
    model = "embed" if args.endpoint in ("embed", "similar") else "classify"
    before = batch_stats(httpx.get(f"{url}/metrics").text, model)
    latencies, errors, wall = asyncio.run(run_cell(url, endpoint, files, clients, args.requests, args.duration))
    after = batch_stats(httpx.get(f"{url}/metrics").text, model)
    calls = after[1] - before[1]
    ms = np.asarray(latencies) * 1000 if latencies else np.asarray([np.nan])
    cell = Cell(
        batching=mode,
        clients=clients,
        requests=len(latencies),
        errors=errors,
        seconds=round(wall, 2),
        throughput_rps=round(len(latencies) / wall, 2) if wall else 0.0,
        p50_ms=round(float(np.percentile(ms, 50)), 1),
        p99_ms=round(float(np.percentile(ms, 99)), 1),
        mean_batch=round((after[0] - before[0]) / calls, 2) if calls else None,
    )
    print(f"  {mode:>8} {clients:>3} clients: {cell.throughput_rps} req/s", file=sys.stderr, flush=True)
    return cell


def measure(servers: dict[str, str], args: argparse.Namespace, files: list[tuple[str, bytes]]) -> list[Cell]:
    """Warm every server up, then for each client count measure every server back to back (so a change
    in the machine's other load hits both modes alike, not one of them)."""
    for url in servers.values():
        asyncio.run(run_cell(url, f"/v1/{args.endpoint}", files, 1, args.warmup, 60))
    return [measure_cell(url, mode, clients, args, files) for clients in args.clients for mode, url in servers.items()]


def verify_labels(url: str, args: argparse.Namespace) -> None:
    """Each file's top-1 label from the server against the harness's own prediction for it: the same artifact
    loaded in this process, the file decoded and transformed by the job's evaluation reader under the decode
    policy the server reports. Prints the agreement; exits non-zero on any difference."""
    import torch

    from vidbench.serve.artifact import load_served, parse_ref

    health = httpx.get(f"{url}/healthz", timeout=30).json()
    policy = health["decoding"]["policy"]
    served = load_served(parse_ref(args.artifact, None), args.threads)
    reader = served.ctx.reader([], decode_policy=policy)
    paths = [args.files] if args.files.is_file() else sorted(
        p for p in args.files.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)[: args.max_files]  # fmt: skip
    differ = []
    for path in paths:
        with torch.inference_mode():
            logits = served.classify(served.load_clip(path, reader).unsqueeze(0))
        harness = served.class_names[int(logits.argmax(dim=-1)[0])]
        with open(path, "rb") as fh:
            answer = httpx.post(f"{url}/v1/classify?k=1", files={"file": (path.name, fh.read())}, timeout=120)
        server = answer.json()["labels"][0]["label"] if answer.status_code == 200 else f"HTTP {answer.status_code}"
        if server != harness:
            differ.append(f"{path.name}: server {server}, harness {harness}")
    print(f"labels: {len(paths) - len(differ)} / {len(paths)} files the same as the harness's ({policy})")
    if differ:
        raise SystemExit("; ".join(differ))


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, batching: bool, log: Path) -> tuple[subprocess.Popen, str]:
    """``vidbench serve`` on a free loopback port; returns once /healthz answers."""
    port = free_port()
    cmd = [sys.executable, "-m", "vidbench.cli", "serve", "--artifact", args.artifact, "--host", "127.0.0.1"]
    cmd += ["--port", str(port), "--max-batch", str(args.max_batch), "--max-wait-ms", str(args.max_wait_ms)]
    cmd += ["--batching" if batching else "--no-batching"] + (["--threads", str(args.threads)] if args.threads else [])
    cmd += ["--decode-policy", args.decode_policy] if args.decode_policy else []
    cmd += ["--decode-workers", str(args.decode_workers)] if args.decode_workers else []
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"server not ready in 300 s; see {log}")


def table(cells: list[Cell]) -> str:
    """A Markdown table of the cells."""
    lines = ["| batching | clients | requests | errors | req/s (= clips/s) | p50 ms | p99 ms | mean batch |"]
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for c in cells:
        batch = "-" if c.mean_batch is None else f"{c.mean_batch:.2f}"
        lines.append(
            f"| {c.batching} | {c.clients} | {c.requests} | {c.errors} | {c.throughput_rps:.2f} | {c.p50_ms:.1f} "
            f"| {c.p99_ms:.1f} | {batch} |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--artifact", help="RUN_DIR/model@optimization: start servers for each batching mode")
    target.add_argument("--url", help="a running server on 127.0.0.1 (its own batching setting is measured)")
    parser.add_argument("--files", type=Path, required=True, help="a video file or a folder of them")
    parser.add_argument("--max-files", type=int, default=32, help="at most this many distinct files are sent")
    parser.add_argument("--endpoint", choices=("classify", "embed", "similar"), default="classify")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=200, help="most requests per cell")
    parser.add_argument("--duration", type=float, default=30.0, help="most seconds per cell")
    parser.add_argument("--warmup", type=int, default=4, help="requests before the first cell")
    parser.add_argument("--modes", default="on,off", help="batching modes when starting servers: on, off or both")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=None, help="server torch / ORT threads")
    parser.add_argument("--decode-policy", default=None, help="the server's --decode-policy (default: its own)")
    parser.add_argument("--decode-workers", type=int, default=None, help="the server's --decode-workers")
    parser.add_argument("--json", type=Path, default=None, help="also write the cells as JSON here")
    parser.add_argument(
        "--verify", action="store_true",
        help="with --artifact: first check the server's top-1 label of every file against the harness's own "
        "prediction (the artifact loaded here, decoded with the policy the server reports in /healthz)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.url and urlparse(args.url).hostname not in LOOPBACK:
        parser.error(f"--url must point at 127.0.0.1 (loopback only), got {args.url}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the load test and print the table."""
    args = parse_args(argv)
    files = video_files(args.files, args.max_files)
    if args.url:
        cells = measure({"server": args.url.rstrip("/")}, args, files)
    else:
        procs, servers = [], {}
        try:
            for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
                log = Path(tempfile.gettempdir()) / f"vidbench-load-test-server-{mode}.log"
                proc, servers[mode] = start_server(args, mode == "on", log)
                procs.append(proc)
            if args.verify:
                verify_labels(next(iter(servers.values())), args)
            cells = measure(servers, args, files)
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(30)
    print(table(cells))
    if args.json:
        args.json.write_text(json.dumps([asdict(c) for c in cells], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
