"""The inference server as a real uvicorn process on a free local port, fed real encoded video files.

The served model is r2plus1d/tiny trained for one epoch on the tiny synthetic set and served under
ONNX Runtime (prepared through the registry, as the harness measured it). Labels are checked against
the harness's own evaluation of the same files (eval.npz), embeddings against the feature store, and
similar-video search against the files that were indexed.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch

from tests.conftest import REAL_CLIPS, REPO
from tests.serve_helpers import Server, trained_run
from vidbench.serve.artifact import load_served, parse_ref
from vidbench.serve.batcher import BatchSettings, DynamicBatcher
from vidbench.serve.features import FeatureStore, embed_files
from vidbench.serve.index import VectorIndex

HAVE_REAL = (REAL_CLIPS / "MANIFEST.csv").exists()
needs_real = pytest.mark.skipif(not HAVE_REAL, reason=f"{REAL_CLIPS} is absent")
REAL_GOOD = ["asl_gestures/book.mkv", "asl_gestures/thanks.mkv", "demo/mmaction2_test.avi", "odd/video_90.mov"]


class Env:
    """What the tests share: the server, the run, the test split, the store and the class names."""

    def __init__(self, tmp: Path, run_dir: Path) -> None:
        self.run_dir = run_dir
        served = load_served(parse_ref(f"{run_dir}/r2plus1d@eager"), threads=1, prepare=False)
        self.classes = served.class_names
        self.test_files = [s.path for s in served.ctx.dataset.splits["test"]]
        self.eval_logits = np.load(run_dir / "models" / served.slug / "eval.npz")["logits"]
        indexed = [(Path(p).resolve(), "synthetic") for p in self.test_files[:12]]
        indexed += [((REAL_CLIPS / name).resolve(), "real") for name in REAL_GOOD if HAVE_REAL]
        self.store = tmp / "store"
        embed_files(served, indexed, self.store, batch_size=8, workers=0)
        VectorIndex.from_store(self.store, "flat").save(tmp / "index")
        args = ["--artifact", f"{run_dir}/r2plus1d@onnx", "--index", str(tmp / "index"), "--max-upload-mb", "1"]
        args += ["--max-duration-s", "8", "--max-batch", "8", "--max-wait-ms", "50", "--threads", "1"]
        self.server = Server(args, tmp / "server.log", cwd=tmp)
        self.client = httpx.Client(base_url=self.server.url, timeout=60)

    def post(self, endpoint: str, path: Path, name: str | None = None, **params: object) -> httpx.Response:
        """Upload one file to an endpoint."""
        with open(path, "rb") as fh:
            return self.client.post(endpoint, files={"file": (name or path.name, fh)}, params=params)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, data_root: Path):
    run_dir = trained_run(tmp_path_factory.getbasetemp(), data_root)
    shared = Env(tmp_path_factory.mktemp("serve"), run_dir)
    yield shared
    shared.client.close()
    shared.server.stop()


def test_health_docs_and_openapi(env: Env) -> None:
    health = env.client.get("/healthz").json()
    assert health["status"] == "ok" and health["optimization"] == "onnx" and health["model"] == "r2plus1d"
    assert health["classes"] == 20 and health["clip"] == [3, 4, 16, 16]
    assert health["parity_vs_checkpoint"]["agreement_top1"] == 1.0
    measured = health["measured"]
    assert measured and measured[0]["status"] == "ok" and measured[0]["clips_per_s"] > 0, "not a measured row"
    assert health["index"]["kind"] == "flat" and "PyTorch model" in health["embed"]
    assert "swagger" in env.client.get("/docs").text.lower()
    paths = env.client.get("/openapi.json").json()["paths"]
    assert {"/v1/classify", "/v1/embed", "/v1/similar", "/healthz", "/metrics"} <= set(paths)


def test_classify_gives_the_labels_the_harness_measured(env: Env) -> None:
    for i in range(4):
        response = env.post("/v1/classify", Path(env.test_files[i]), k=3)
        assert response.status_code == 200, response.text
        labels = response.json()["labels"]
        assert len(labels) == 3 and all(item["label"] in env.classes for item in labels)
        assert [item["score"] for item in labels] == sorted((item["score"] for item in labels), reverse=True)
        assert labels[0]["index"] == int(env.eval_logits[i].argmax()), "served top-1 differs from eval.npz"
        assert labels[0]["label"] == env.classes[labels[0]["index"]]


@needs_real
def test_real_clips_classify_and_embed_like_the_store(env: Env) -> None:
    store = FeatureStore(env.store)
    for name in REAL_GOOD:
        path = REAL_CLIPS / name
        classified = env.post("/v1/classify", path)
        assert classified.status_code == 200, (name, classified.text)
        assert len(classified.json()["labels"]) == 5
        assert sum(item["score"] for item in classified.json()["labels"]) <= 1.0 + 1e-6
        embedded = env.post("/v1/embed", path)
        assert embedded.status_code == 200, (name, embedded.text)
        body = embedded.json()
        assert body["dim"] == len(body["embedding"]) == store.dim == 128
        stored = store.rows[str(path.resolve())][1]
        assert np.allclose(body["embedding"], stored, atol=1e-4), f"{name}: served embedding != stored one"


def test_similar_finds_the_indexed_file_itself(env: Env) -> None:
    names = [Path(env.test_files[3])] + ([REAL_CLIPS / REAL_GOOD[0]] if HAVE_REAL else [])
    for path in names:
        response = env.post("/v1/similar", path, k=4)
        assert response.status_code == 200, response.text
        neighbours = response.json()["neighbours"]
        assert len(neighbours) == 4
        shown = neighbours[0]["path"]
        assert str(path.resolve()).endswith(shown) and path.name in shown and neighbours[0]["score"] > 0.999
        assert not any(Path(n["path"]).is_absolute() for n in neighbours), "a machine path without --show-paths"
        assert [n["score"] for n in neighbours] == sorted((n["score"] for n in neighbours), reverse=True)


def _bad_uploads(tmp: Path) -> list[tuple[str, Path, int, str]]:
    text = tmp / "notes.mp4"
    text.write_text("a text file renamed .mp4\n" * 20)
    big = tmp / "big.mp4"
    big.write_bytes(np.random.default_rng(0).bytes(3 * 2**20))
    empty = tmp / "empty.mp4"
    empty.write_bytes(b"")
    cases = [("text", text, 415, "not_a_video"), ("oversize", big, 413, "too_large"), ("empty", empty, 400, "empty")]
    if HAVE_REAL:
        cases += [
            ("corrupted", REAL_CLIPS / "odd/corrupted.mp4", 422, "undecodable"),
            ("real oversize", REAL_CLIPS / "demo/mmaction2_test.mp4", 413, "too_large"),
            ("too long", REAL_CLIPS / "demo/flipping_a_pancake.mkv", 422, "too_long"),
        ]
    return cases


def test_bad_uploads_get_a_4xx_and_the_server_keeps_serving(env: Env, tmp_path: Path) -> None:
    good = Path(env.test_files[0])
    for case, path, status, code in _bad_uploads(tmp_path):
        for endpoint in ("/v1/classify", "/v1/embed"):
            response = env.post(endpoint, path)
            assert response.status_code == status, (case, endpoint, response.text)
            assert response.json()["error"] == code and response.json()["detail"], (case, response.text)
            assert str(tmp_path) not in response.json()["detail"], "error leaked a server path"
        assert env.post("/v1/classify", good).status_code == 200, f"server broken after {case}"
    missing = env.client.post("/v1/classify", data={"nothing": "here"})
    assert missing.status_code == 422
    metrics = env.client.get("/metrics").text
    assert re.search(r'vidbench_rejected_uploads_total\{reason="not_a_video"\} [1-9]', metrics)
    assert env.client.get("/healthz").status_code == 200


async def _concurrent(url: str, paths: list[Path]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        return await asyncio.gather(
            *(client.post("/v1/classify", files={"file": (p.name, p.read_bytes())}) for p in paths)
        )


def test_concurrent_requests_are_batched_and_answered_correctly(env: Env) -> None:
    before = env.client.get("/metrics").text
    paths = [Path(p) for p in env.test_files[:12]]
    responses = asyncio.run(_concurrent(env.server.url, paths))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    for i, response in enumerate(responses):
        assert response.json()["labels"][0]["index"] == int(env.eval_logits[i].argmax())
    after = env.client.get("/metrics").text

    def counts(text: str) -> tuple[float, float]:
        single = re.search(r'vidbench_batch_size_bucket\{le="1.0",model="classify"\} (\S+)', text)
        total = re.search(r'vidbench_batch_size_count\{model="classify"\} (\S+)', text)
        return float(single.group(1)) if single else 0.0, float(total.group(1)) if total else 0.0

    (single0, total0), (single1, total1) = counts(before), counts(after)
    assert total1 - total0 < 12, "12 concurrent requests were never batched"
    assert (total1 - total0) - (single1 - single0) >= 1, "no model call held more than one clip"
    assert 'vidbench_request_latency_seconds_bucket{endpoint="/v1/classify"' in after
    assert re.search(r'vidbench_requests_total\{endpoint="/v1/classify",status="200"\} \d+', after)


def test_load_test_script_is_bounded_and_prints_the_table(env: Env, tmp_path: Path) -> None:
    folder = tmp_path / "clips"
    folder.mkdir()
    for p in env.test_files[:4]:
        (folder / Path(p).name).write_bytes(Path(p).read_bytes())
    script = REPO / "benchmarks" / "load_test.py"
    cmd = [sys.executable, str(script), "--url", env.server.url, "--files", str(folder), "--clients", "1,4"]
    cmd += ["--requests", "8", "--duration", "20", "--warmup", "1", "--json", str(tmp_path / "cells.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| server |")]
    assert len(rows) == 2 and all("| 8 | 0 |" in row for row in rows), proc.stdout
    remote = subprocess.run(
        [sys.executable, str(script), "--url", "http://example.com", "--files", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert remote.returncode == 2 and "loopback only" in remote.stderr


async def _batched(settings: BatchSettings, clips: torch.Tensor, fn) -> tuple[list[torch.Tensor], list[int]]:
    sizes: list[int] = []
    with ThreadPoolExecutor(1) as pool:
        batcher = DynamicBatcher(fn, settings, pool, lambda size, seconds: sizes.append(size))
        batcher.start()
        outputs = await asyncio.gather(*(batcher.submit(clip) for clip in clips))
        await batcher.stop()
    return outputs, sizes


def test_batcher_groups_up_to_max_batch_and_keeps_each_row_with_its_request() -> None:
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 3)
    clips = torch.randn(11, 6)

    @torch.inference_mode()
    def fn(batch: torch.Tensor) -> torch.Tensor:
        return layer(batch)

    on, sizes = asyncio.run(_batched(BatchSettings(max_batch=4, max_wait_ms=50), clips, fn))
    off, single = asyncio.run(_batched(BatchSettings(max_batch=1, max_wait_ms=0), clips, fn))
    assert sizes == [4, 4, 3] and single == [1] * 11
    expected = fn(clips)
    assert torch.allclose(torch.stack(on), expected, atol=1e-6)
    assert torch.allclose(torch.stack(off), expected, atol=1e-6)
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        BatchSettings(max_batch=0)


def test_a_failing_model_call_fails_its_requests_and_the_batcher_goes_on() -> None:
    def fn(batch: torch.Tensor) -> torch.Tensor:
        if (batch < 0).any():
            raise RuntimeError("negative input")
        return batch * 2

    async def scenario() -> tuple[list[object], torch.Tensor]:
        with ThreadPoolExecutor(1) as pool:
            batcher = DynamicBatcher(fn, BatchSettings(max_batch=4, max_wait_ms=20), pool)
            batcher.start()
            negative = [batcher.submit(torch.tensor([-1.0])) for _ in range(3)]
            bad = await asyncio.gather(*negative, return_exceptions=True)
            good = await batcher.submit(torch.tensor([2.0]))
            await batcher.stop()
        return bad, good

    bad, good = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert all(isinstance(b, RuntimeError) and "negative input" in str(b) for b in bad)
    assert good.item() == 4.0
