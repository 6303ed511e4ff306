"""Scale-out on real engines: the suite on a real local Ray (2 CPUs), and 2-process DDP training on the CPU.

Every suite run goes through the real CLI in a child process; the Ray tests share one local Ray started
here, which the CLI joins through ``RAY_ADDRESS`` (the path of an existing cluster).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.conftest import REPO, only_run_dir, vidbench, write_suite
from tests.serve_helpers import trained_run
from tests.test_runner import FAULTY_PLUGIN
from vidbench.learn.distributed import SAMPLE_LOG_ENV

JOB = "models/synthetic-motion__r2plus1d__tiny"
KEYS = ["model", "optimization", "batch_size"]
SAME = ["status", "top1", "top5", "mean_class_acc", "agreement_top1", "max_abs_logit_diff", "cell_key"]
FAULTY = ["raises", "dies", "hangs"]
# A cell here takes at most 7 s (measured under Ray); the timeout only has to outlast that, and is what the
# hanging cell costs the test.
MEASURE = {"warmup": 1, "min_iters": 3, "min_seconds": 0.0, "eval_batch_size": 32, "threads": 1, "timeout_s": 45}


@pytest.fixture(scope="module")
def ray_env() -> Iterator[dict[str, str]]:
    """One local Ray (2 CPUs, a small object store, its files in its own temp folder) for the module; yields
    the environment that points the CLI at it."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    temp = tempfile.mkdtemp(prefix="vbray")  # short: Ray's socket paths must stay under 107 characters
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=100 * 2**20,
        _temp_dir=temp,
        log_to_driver=False,
    )
    try:
        yield {"RAY_ADDRESS": ray.get_runtime_context().gcs_address, "RAY_USAGE_STATS_ENABLED": "0"}
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines() if line.strip()]


def _smoke_suite(folder: Path, data_root: Path, faulty: bool) -> Path:
    """smoke.yaml's matrix (its models and optimizations, two batch sizes) on the tiny set, 1 epoch; frame_avg
    trains with the suite's DDP option (2 processes). ``faulty`` adds three broken optimizations for frame_avg."""
    smoke = yaml.safe_load((REPO / "suites" / "smoke.yaml").read_text())
    models = [{**m, "train": {"nproc": 2}} if m["name"] == "frame_avg" else m for m in smoke["models"]]
    overrides: dict = {"models": models, "optimizations": smoke["optimizations"], "measure": MEASURE}
    if faulty:
        (folder / "faulty.py").write_text(FAULTY_PLUGIN)
        overrides |= {
            "plugins": ["faulty.py"],
            "optimizations": [*smoke["optimizations"], *FAULTY],
            "exclude": [{"model": "r2plus1d", "optimization": name} for name in FAULTY],
        }
    return write_suite(folder, data_root, **overrides)


def _run(folder: Path, data_root: Path, executor: str, env: dict[str, str]) -> pd.DataFrame:
    folder.mkdir()
    suite = _smoke_suite(folder, data_root, faulty=executor == "ray")
    proc = vidbench("run", str(suite), "--quiet", "--executor", executor, cwd=folder, env=env)
    assert proc.returncode == (1 if executor == "ray" else 0), proc.stderr[-3000:]  # ray's suite has faulty cells
    frame = pd.read_csv(only_run_dir(folder) / "results.csv")
    return frame.sort_values(["model", "optimization", "batch_size"]).reset_index(drop=True)


def test_smoke_suite_on_ray_same_rows_failed_cells_and_resume(tmp_path: Path, data_root: Path, ray_env: dict) -> None:
    local = _run(tmp_path / "local", data_root, "local", ray_env)
    ray = _run(tmp_path / "ray", data_root, "ray", ray_env)
    assert len(local) == 8 and set(local["status"]) == {"ok"}, local["reason"].tolist()
    assert list(local.columns) == list(ray.columns)
    common = ray[~ray["optimization"].isin(FAULTY)].reset_index(drop=True)
    pd.testing.assert_frame_equal(local[KEYS + SAME], common[KEYS + SAME])  # same weights, keys, accuracy
    assert (common["latency_ms_p50"] > 0).all()
    for executor in ("local", "ray"):  # the driver timed every ok row, after the job's measure tasks came back
        logs = only_run_dir(tmp_path / executor) / "logs" / "synthetic-motion__r2plus1d__tiny" / "eager"
        assert (logs / "latency_rounds_bs1.json").exists() and not (logs / "untimed.json").exists()

    broken = ray[ray["optimization"].isin(FAULTY)].set_index(["optimization", "batch_size"])
    assert len(broken) == 6 and set(broken["status"]) == {"failed"} and set(broken["model"]) == {"frame_avg"}
    for batch_size in (1, 2):
        assert "boom: this optimization always raises" in broken.loc[("raises", batch_size), "reason"]
        assert "SIGKILL" in broken.loc[("dies", batch_size), "reason"]
        assert broken.loc[("hangs", batch_size), "reason"].startswith(f"timeout after {MEASURE['timeout_s']} s")

    run_dir = only_run_dir(tmp_path / "ray")
    summaries = sorted((run_dir / "models").glob("*/train.json"))
    assert [json.loads(f.read_text()).get("processes") for f in summaries] == [2, 1]  # frame_avg under torchrun
    trained_at = [f.stat().st_mtime_ns for f in summaries]
    # as if killed before r2plus1d's eager cells were written: --resume must measure those two, nothing else
    kept = [r for r in _rows(run_dir) if (r["model"], r["optimization"]) != ("r2plus1d", "eager")]
    (run_dir / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    suite = tmp_path / "ray" / "suite.yaml"
    resumed = vidbench("run", str(suite), "--quiet", "--resume", "--executor", "ray", cwd=tmp_path / "ray", env=ray_env)
    assert resumed.returncode == 1, resumed.stderr[-3000:]  # the stored failed cells still fail the run
    after = _rows(run_dir)
    assert after[: len(kept)] == kept, "stored rows changed"
    new = sorted((r["model"], r["optimization"], r["batch_size"], r["status"]) for r in after[len(kept) :])
    assert new == [("r2plus1d", "eager", 1, "ok"), ("r2plus1d", "eager", 2, "ok")]
    assert [f.stat().st_mtime_ns for f in summaries] == trained_at, "a trained job was trained again"


def _metrics(folder: Path) -> list[dict]:
    path = folder / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _train_command(suite: Path, out: Path, *extra: str) -> list[str]:
    command = [sys.executable, "-m", "vidbench.cli", "train", str(suite), "--model", "r2plus1d", "--nproc", "2"]
    return [*command, "--out", str(out), *extra]


def test_ddp_two_cpu_processes_disjoint_shards_rank0_writes_and_resume(tmp_path: Path, data_root: Path) -> None:
    train = {"epochs": 2, "batch_size": 16, "workers": 0, "lr": 0.003, "timeout_s": 300}
    suite = write_suite(tmp_path, data_root, train=train)
    out = tmp_path / "ddp"
    folder = out / JOB
    env = {**os.environ, SAMPLE_LOG_ENV: "1"}
    proc = subprocess.Popen(
        _train_command(suite, out),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not _metrics(folder) and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks
    proc.wait()
    killed_after = len(_metrics(folder))
    assert killed_after == 1, "the kill must land in the second epoch"

    resumed = subprocess.run(
        _train_command(suite, out, "--resume"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = _metrics(folder)
    assert [m["epoch"] for m in metrics] == [1, 2], "rank 0 alone logs, once per epoch, resumed where it stopped"
    assert set(metrics[0]) == {
        "epoch",
        "loss",
        "train_top1",
        "val_top1",
        "lr",
        "clips_per_s",
        "epoch_s",
        "clips",
        "skipped_steps",
    }
    state = torch.load(folder / "train_state.pt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and (folder / "checkpoint.pt").exists()
    assert json.loads((folder / "train.json").read_text())["processes"] == 2

    logged: dict[tuple[int, int], list[list[int]]] = {}
    for rank in (0, 1):
        for line in (folder / "samples" / f"rank{rank}.jsonl").read_text().splitlines():
            entry = json.loads(line)
            assert entry["rank"] == rank and entry["world_size"] == 2
            logged.setdefault((entry["epoch"], rank), []).append(entry["indices"])
    train_size = 120  # the tiny set's train split
    for epoch in range(2):
        shards = [logged[(epoch, rank)] for rank in (0, 1)]
        assert all(run == shard[0] for shard in shards for run in shard), "a resumed epoch reshuffles the same way"
        zero, one = set(shards[0][0]), set(shards[1][0])
        assert len(zero) == len(one) == train_size // 2
        assert not zero & one, f"epoch {epoch}: the ranks shared samples"
        assert zero | one == set(range(train_size))
    assert logged[(0, 0)][0] != logged[(1, 0)][0], "each epoch reshuffles"


def _store(folder: Path) -> tuple[dict[str, np.ndarray], str]:
    index = pd.read_csv(folder / "index.csv")
    vectors = np.load(folder / "embeddings.npy")
    return dict(zip(index["path"], vectors, strict=True)), (folder / "skipped.csv").read_text()


def test_embed_on_ray_writes_the_same_store_as_locally(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, data_root: Path, ray_env: dict
) -> None:
    run_dir = trained_run(tmp_path_factory.getbasetemp(), data_root)
    videos = tmp_path / "videos"
    videos.mkdir()
    for i, file in enumerate(sorted((data_root / "synthetic-motion").rglob("*.mp4"))[:40]):
        shutil.copy(file, videos / f"clip{i:02d}.mp4")
    (videos / "notes.mp4").write_text("a text file, not a video\n")
    stores = {}
    for executor in ("local", "ray"):
        out = tmp_path / f"store-{executor}"
        args = ("embed", str(videos), "--artifact", f"{run_dir}/r2plus1d@eager", "--out", str(out), "--workers", "0")
        proc = vidbench(*args, "--batch-size", "8", "--executor", executor, cwd=tmp_path, env=ray_env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "40 embedded" in proc.stdout and "1 skipped" in proc.stdout, proc.stdout
        assert f"skipped {videos / 'notes.mp4'}" in proc.stdout
        assert ("on Ray" in proc.stdout) == (executor == "ray")
        stores[executor] = _store(out)
    (local, local_skipped), (ray, ray_skipped) = stores["local"], stores["ray"]
    assert sorted(local) == sorted(ray) and len(local) == 40
    assert max(float(np.abs(local[path] - ray[path]).max()) for path in local) <= 1e-5
    assert local_skipped == ray_skipped and "notes.mp4" in ray_skipped


def test_the_default_paths_do_not_import_ray() -> None:
    modules = "vidbench.cli, vidbench.run.scheduler, vidbench.run.worker, vidbench.serve.features"
    code = f"import sys, {modules}; print('ray' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr[-2000:]
