"""The runner end to end, through the real CLI in child processes, on real encoded files."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest

from tests.conftest import REPO, only_run_dir, suite_dict, vidbench, write_suite
from vidbench.results import COLUMNS, SCHEMA, ResultStore
from vidbench.rundir import RunDir

FAULTY_PLUGIN = """
import os, signal, time
from vidbench import hookimpl
from vidbench.specs import OptimizationSpec

def _raises(model, example, calibration, workdir):
    raise RuntimeError("boom: this optimization always raises")

def _dies(model, example, calibration, workdir):
    os.kill(os.getpid(), signal.SIGKILL)

def _hangs(model, example, calibration, workdir):
    time.sleep(3600)

@hookimpl
def vidbench_optimizations():
    return [OptimizationSpec("raises", _raises), OptimizationSpec("dies", _dies), OptimizationSpec("hangs", _hangs)]
"""


def test_failing_cells_are_recorded_and_the_suite_finishes(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "faulty.py").write_text(FAULTY_PLUGIN)
    measure = {"warmup": 1, "min_iters": 3, "min_seconds": 0.0, "threads": 1, "timeout_s": 25}
    suite = write_suite(
        tmp_path,
        data_root,
        plugins=["faulty.py"],
        batch_sizes=[1],
        optimizations=["raises", "eager", "dies", "hangs", "onnx"],
        measure=measure,
    )
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr  # the suite finished, and its exit status says cells failed
    assert "3 cell(s) failed" in proc.stderr and "exit 1" in proc.stderr, proc.stderr[-2000:]
    frame = pd.read_csv(only_run_dir(tmp_path) / "results.csv").set_index("optimization")
    assert frame.loc["raises", "status"] == "failed"
    assert "boom: this optimization always raises" in frame.loc["raises", "reason"]
    assert frame.loc["dies", "status"] == "failed"
    assert "SIGKILL" in frame.loc["dies", "reason"]
    assert frame.loc["hangs", "status"] == "failed"
    assert frame.loc["hangs", "reason"].startswith("timeout after 25 s")
    for good in ("eager", "onnx"):
        assert frame.loc[good, "status"] == "ok", frame.loc[good, "reason"]
        assert frame.loc[good, "latency_ms_p50"] > 0
    assert frame.loc["onnx", "agreement_top1"] == 1.0
    assert frame.loc["onnx", "max_abs_logit_diff"] <= 1e-3
    # ONNX Runtime timed as deployed, in its own process without torch, in turns with eager (the baseline)
    assert frame.loc["onnx", "timed_alone"] and frame.loc["onnx", "engine"] == "onnxruntime"
    assert not frame.loc["eager", "timed_alone"] and frame.loc["eager", "engine"] == "torch"
    for good in ("eager", "onnx"):
        assert frame.loc[good, "timing"] == "interleaved" and frame.loc[good, "timing_rounds"] == 10
        low, high = frame.loc[good, "speedup_ci95_low"], frame.loc[good, "speedup_ci95_high"]
        assert low <= frame.loc[good, "speedup"] <= high
    assert frame.loc["eager", "speedup"] == 1.0  # its rounds against themselves
    rounds = json.loads(
        (only_run_dir(tmp_path) / "logs" / frame.loc["onnx", "job"] / "onnx" / "latency_rounds_bs1.json").read_text()
    )
    assert len(rounds["samples_ms"]) == 10 and len(rounds["baseline_round_p50_ms"]) == 10
    retime = subprocess.run(
        [
            sys.executable,
            str(REPO / "benchmarks" / "retime_artifacts.py"),
            str(only_run_dir(tmp_path)),
            "--min-iters",
            "5",
            "--repeats",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert retime.returncode == 0, retime.stderr[-2000:]
    # the run's own plan (warm-up 1, min_seconds 0 from its suite.json), with --min-iters overriding its 3
    assert "plan: 1 warm-up calls, then >= 5 calls and >= 0 s a process" in retime.stdout, retime.stdout
    assert re.search(r"onnx\s+1\s+[\d.]+\s+[\d.]+\s+[\d.]+-[\d.]+\s+[\d.]+\s+[\d.]+%", retime.stdout), retime.stdout
    assert re.search(r"\d+ of \d+ rows within 5 %", retime.stdout), retime.stdout
    onnx = frame.loc["onnx"]  # the same file in consecutive windows of one process, steal time beside each
    shape = f"1,3,{onnx['frames']},{onnx['crop']},{onnx['crop']}"
    artifact = only_run_dir(tmp_path) / onnx["engine_file"]
    windows = ["--shape", shape, "--seconds", "0.2", "--count", "2"]
    noise = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "window_noise.py"), "onnxruntime", str(artifact), *windows],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert noise.returncode == 0, noise.stderr[-2000:]
    assert len(re.findall(r"0\.2 s window \d: p50 +[\d.]+ ms .* steal +[\d.]+%", noise.stdout)) == 2, noise.stdout
    assert re.search(r"0\.2 s windows: p50 [\d.]+-[\d.]+ ms, [-+][\d.]+% to \+[\d.]+%", noise.stdout), noise.stdout


def test_result_files_have_every_schema_column(tmp_path: Path, data_root: Path) -> None:
    suite = write_suite(tmp_path, data_root, models=[{"name": "frame_avg", "presets": ["tiny"]}])
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path)
    frame = pd.read_csv(run_dir / "results.csv")
    assert list(frame.columns[: len(SCHEMA)]) == list(SCHEMA)
    assert len(frame) == 2 and set(frame["status"]) == {"ok"}
    row = frame.iloc[0]
    for column in ("params_m", "gflops_per_clip", "size_mb", "top1", "clips_per_s", "frames_per_s", "peak_rss_mb"):
        assert row[column] > 0, column
    assert row["frames_per_s"] == pytest.approx(row["clips_per_s"] * 4)
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    assert all(set(SCHEMA) <= set(json.loads(line)) for line in lines)
    unknown = {column for line in lines for column in json.loads(line)} - set(COLUMNS)
    assert not unknown, f"columns that results.Row does not declare: {sorted(unknown)}"
    env = json.loads((run_dir / "env.json").read_text())
    for key in ("python", "cpu", "isa", "cores", "threads", "git_commit", "suite_hash", "packages"):
        assert key in env, key
    assert env["packages"]["torch"].startswith("2.14.1")
    isa = env["isa"]  # what the CPU has, and what each engine says it dispatches to
    assert set(isa["torch_isa"]) <= {"avx2", "avx512", "vnni", "avx512_bf16", "amx_tile", "amx_fp16"}
    assert ("avx2" in isa["features"]) == ("avx2" in isa["torch_isa"])
    assert "FP32" in isa["openvino_cpu_capabilities"]
    assert (run_dir / "summary.md").read_text().count("\n| frame_avg") == 2
    for row in frame.itertuples():  # raw per-call samples kept; a p99 of so few calls is marked, not trusted
        samples = np.load(run_dir / "logs" / row.job / row.optimization / f"latency_ms_bs{row.batch_size}.npy")
        assert len(samples) == row.latency_iterations and np.median(samples) == pytest.approx(row.latency_ms_p50)
        assert row.latency_iterations < 100 and not row.latency_p99_trusted
    assert "(too few calls)" in (run_dir / "summary.md").read_text()
    again = vidbench("report", str(run_dir), cwd=tmp_path)
    assert again.returncode == 0 and "frame_avg" in again.stdout


def _ctrl_c_as_in_a_terminal() -> None:
    """In the child, before exec: SIGINT at its default and unblocked, as a shell gives a foreground job. A
    child inherits an ignored or blocked SIGINT, and a CI job started in the background (``cmd &`` in a
    non-interactive shell) ignores it: the run then never sees the test's Ctrl-C and simply finishes."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start_run(suite: Path, cwd: Path, stderr: int = subprocess.DEVNULL) -> subprocess.Popen:
    """``vidbench run SUITE`` in the background, in a session of its own (a test can kill all of it)."""
    command = [sys.executable, "-m", "vidbench.cli", "run", str(suite), "--quiet"]
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
        preexec_fn=_ctrl_c_as_in_a_terminal,
    )


def _wait_for_rows(path: Path, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{path} never reached {count} rows")


def _wait_for_a_running_cell(runner: int, cwd: Path, timeout: float = 120) -> None:
    """Until a cell's child runs: a task file under the run's logs, and a process forked by the run's fork server
    (the server, started beside the runner's own imports, also forks a probe before the run has begun)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not list(cwd.glob("results/*/*/logs/*/*/task.json")):
            time.sleep(0.1)
            continue
        for process in psutil.Process(runner).children():
            with contextlib.suppress(psutil.Error):
                if "forkserver" in " ".join(process.cmdline()) and process.children():
                    return
        time.sleep(0.1)
    raise AssertionError("no cell started")


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE  # a zombie is dead, only not yet reaped
    except psutil.Error:
        return False


def _kill_only_the_runner(proc: subprocess.Popen) -> list[str]:
    """SIGKILL the runner alone (not its group: the children must die by themselves); the processes of the
    run, seen just before the kill, that are still alive 5 s after it."""
    family = psutil.Process(proc.pid).children(recursive=True)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(family, timeout=5)
    left = [f"{p.pid} {p.cmdline()[:4]}" for p in alive if _alive(p)]
    for p in alive:  # leave nothing behind for the next test, whatever the assertion says
        with contextlib.suppress(psutil.Error):
            p.kill()
    return left


def test_resume_after_a_kill_runs_only_the_missing_cells(tmp_path: Path, data_root: Path) -> None:
    suite = write_suite(
        tmp_path,
        data_root,
        optimizations=["eager", "onnx"],
        models=[{"name": "r2plus1d", "presets": ["tiny"]}, {"name": "frame_avg", "presets": ["tiny"]}],
    )
    proc = _start_run(suite, tmp_path)
    results_dir = tmp_path / "results" / "t"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(results_dir.glob("*/results.jsonl")):
        time.sleep(0.2)
    jsonl = next(results_dir.glob("*/results.jsonl"))
    _wait_for_rows(jsonl, 2, 300)
    _wait_for_a_running_cell(proc.pid, tmp_path)
    left = _kill_only_the_runner(proc)
    assert not left, f"processes of the killed run still alive 5 s later: {left}"
    before = [json.loads(line) for line in jsonl.read_text().splitlines() if line.strip()]
    assert 2 <= len(before) < 8
    resumed = vidbench("run", str(suite), "--resume", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    after = [json.loads(line) for line in jsonl.read_text().splitlines()]
    keys = [row["cell_key"] for row in after]
    assert len(keys) == len(set(keys)) == 8, "a stored cell was measured again, or one is missing"
    assert after[: len(before)] == before, "rows written before the kill changed"
    assert all(row["status"] == "ok" for row in after)
    assert {(r["model"], r["optimization"], r["batch_size"]) for r in after} == {
        (m, o, b) for m in ("r2plus1d", "frame_avg") for o in ("eager", "onnx") for b in (1, 2)
    }
    again = vidbench("run", str(suite), "--resume", "--quiet", cwd=tmp_path)
    assert again.returncode == 0
    assert len(jsonl.read_text().splitlines()) == 8, "a complete run resumed must measure nothing"


def test_a_torn_tail_neither_swallows_the_next_row_nor_fails_its_cell(tmp_path: Path, data_root: Path) -> None:
    suite = write_suite(tmp_path, data_root, models=[{"name": "frame_avg", "presets": ["tiny"]}])
    assert vidbench("run", str(suite), "--quiet", cwd=tmp_path).returncode == 0
    jsonl = only_run_dir(tmp_path) / "results.jsonl"
    first, second = jsonl.read_text().splitlines()
    jsonl.write_text(first + "\n" + second[: len(second) // 2])  # the second append torn (disk full, a kill)
    resumed = vidbench("run", str(suite), "--resume", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "lines [2] are not rows" in resumed.stderr
    store = ResultStore(jsonl)
    assert store.unreadable_lines() == [2]
    rows = store.rows()
    assert [row["status"] for row in rows] == ["ok", "ok"], [row["reason"] for row in rows]
    assert rows[0] == json.loads(first)
    assert rows[1]["cell_key"] == json.loads(second)["cell_key"]


@pytest.mark.serial
def test_a_second_run_into_a_run_directory_being_written_fails_naming_the_holder(
    tmp_path: Path, data_root: Path
) -> None:
    suite = write_suite(tmp_path, data_root, models=[{"name": "frame_avg", "presets": ["tiny"]}])
    first = _start_run(suite, tmp_path)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not list((tmp_path / "results" / "t").glob("*/env.json")):
            time.sleep(0.1)
        started = time.monotonic()
        second = vidbench("run", str(suite), "--resume", "--quiet", cwd=tmp_path)
        took = time.monotonic() - started
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    assert second.returncode == 4, second.stderr  # busy: its own status, not usage's 2
    assert f"another vidbench process (pid {first.pid})" in second.stderr
    assert took < 2, f"the second run took {took:.1f} s to refuse"  # before torch or any plugin is imported


@pytest.mark.serial
def test_ctrl_c_stops_the_run_in_seconds_and_resume_finishes_it(tmp_path: Path, data_root: Path) -> None:
    suite = write_suite(
        tmp_path, data_root, optimizations=["eager", "onnx"], models=[{"name": "frame_avg", "presets": ["tiny"]}]
    )
    proc = _start_run(suite, tmp_path, stderr=subprocess.PIPE)
    _wait_for_a_running_cell(proc.pid, tmp_path)
    family = psutil.Process(proc.pid).children(recursive=True)
    started = time.monotonic()
    os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends (to the runner alone here)
    proc.wait(30)
    took = time.monotonic() - started
    _, alive = psutil.wait_procs(family, timeout=5)
    left = [(p.pid, p.cmdline()[-3:], p.ppid()) for p in alive if _alive(p)]
    err = proc.stderr.read()[-1500:] if proc.stderr else b""
    assert not left, f"a child outlived the interrupted run: {left} {err}"
    print(f"stopped {took:.1f} s after SIGINT")
    assert took < 10, f"the run took {took:.1f} s to stop: {err}"
    assert proc.returncode == 130, (proc.returncode, err)  # as a shell reports Ctrl-C, not click's 1
    resumed = vidbench("run", str(suite), "--resume", "--quiet", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    rows = ResultStore(only_run_dir(tmp_path) / "results.jsonl").rows()
    keys = [row["cell_key"] for row in rows]
    assert len(set(keys)) == 4 and all(row["status"] == "ok" for row in rows if keys.count(row["cell_key"]) == 1)


def test_a_thread_sweep_gives_one_row_per_thread_count(tmp_path: Path, data_root: Path) -> None:
    """``measure.threads: [1, 2]``: every cell is measured in its own child at each count, with its own samples,
    and the table shows the count. The suite also says ``probes: none``: no cell runs the temporal probes, the
    baseline's included, nor does the training evaluation."""
    measure = {**suite_dict(data_root)["measure"], "threads": [1, 2], "probes": "none"}
    suite = write_suite(tmp_path, data_root, optimizations=["eager", "onnx"], batch_sizes=[1], measure=measure)
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    frame = pd.read_csv(run_dir / "results.csv")
    assert sorted(zip(frame["optimization"], frame["threads"], strict=True)) == [
        ("eager", 1), ("eager", 2), ("onnx", 1), ("onnx", 2)
    ]  # fmt: skip
    assert set(frame["status"]) == {"ok"} and frame["cell_key"].nunique() == 4
    assert frame["top1_reversed"].isna().all() and frame["top1"].notna().all()
    assert RunDir(run_dir).jobs()[0].read_summary().get("top1_reversed") is None
    for row in frame.itertuples():
        assert row.measure_task == f"{row.optimization}-{row.threads}t"
        samples = np.load(run_dir / "logs" / row.job / row.measure_task / "latency_ms_bs1.npy")
        assert len(samples) == row.latency_iterations
    for count in (1, 2):
        log = (run_dir / "logs" / frame["job"][0] / f"onnx-{count}t" / "log.txt").read_text()
        assert f", {count} threads" in log, log[-1500:]
    assert "| threads |" in (run_dir / "summary.md").read_text()


def test_a_retried_cell_replaces_its_failure_in_the_table(tmp_path: Path) -> None:
    """A cell that failed (training failed: no checkpoint, so one key) and then ran after ``--retry-failed`` (the
    checkpoint now exists: another key) shows once, as its latest outcome; a failure never retried stays, and
    two ok rows of one slot stay side by side. The record (``results.jsonl``) keeps every line."""
    store = ResultStore(tmp_path / "results.jsonl", tmp_path / "results.csv")
    slot = {"job": "d__m__p", "batch_size": 1, "threads": 2}
    store.append({**slot, "optimization": "eager", "status": "failed", "reason": "training failed", "cell_key": "a"})
    store.append({**slot, "optimization": "onnx", "status": "failed", "reason": "training failed", "cell_key": "b"})
    store.append({**slot, "optimization": "eager", "status": "ok", "cell_key": "c"})
    store.append({**slot, "optimization": "int8", "status": "ok", "cell_key": "d"})
    store.append({**slot, "optimization": "int8", "status": "ok", "cell_key": "e"})
    frame = store.frame()
    assert list(zip(frame["optimization"], frame["status"], frame["cell_key"], strict=True)) == [
        ("onnx", "failed", "b"), ("eager", "ok", "c"), ("int8", "ok", "d"), ("int8", "ok", "e")
    ]  # fmt: skip
    assert pd.read_csv(tmp_path / "results.csv")["cell_key"].tolist() == ["b", "c", "d", "e"]
    assert len(store.rows()) == 5
    # a row without a job names no slot: its failure stays whatever follows
    store.append({"optimization": "eager", "batch_size": 1, "threads": 2, "status": "failed", "cell_key": "f"})
    store.append({"optimization": "eager", "batch_size": 1, "threads": 2, "status": "ok", "cell_key": "g"})
    assert store.frame()["cell_key"].tolist() == ["b", "c", "d", "e", "f", "g"]
    unnamed = {"job": "", "optimization": "eager", "batch_size": 1, "threads": 2}  # an empty job names none either
    store.append({**unnamed, "status": "failed", "cell_key": "h"})
    store.append({**unnamed, "status": "ok", "cell_key": "i"})
    assert store.frame()["cell_key"].tolist() == ["b", "c", "d", "e", "f", "g", "h", "i"]
