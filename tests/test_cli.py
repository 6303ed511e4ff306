"""Command-line conventions: the version, ``python -m vidbench``, options that only make sense together."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO, only_run_dir, vidbench, write_suite


def test_version_matches_the_package_and_python_m_works(tmp_path: Path) -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    commands = ([str(Path(sys.executable).parent / "vidbench")], [sys.executable, "-m", "vidbench"])
    for command in commands:
        proc = subprocess.run([*command, "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == f"vidbench {declared}", proc.stdout


def test_retry_failed_without_resume_is_refused(tmp_path: Path, data_root: Path) -> None:
    suite = write_suite(tmp_path, data_root)
    proc = vidbench("run", str(suite), "--retry-failed", "--quiet", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--retry-failed" in proc.stderr and "--resume" in proc.stderr
    assert not (tmp_path / "results").exists(), "refused before any work"


def test_data_preview_decodes_with_the_auto_backend_by_default(tmp_path: Path, data_root: Path) -> None:
    clip = next((data_root / "synthetic-motion").rglob("*.mp4"))
    help_text = vidbench("data", "preview", "--help", cwd=tmp_path, timeout=120).stdout
    assert "auto" in help_text and "pyav" in help_text, help_text
    proc = vidbench("data", "preview", str(clip), "--out", str(tmp_path / "p.png"), "--crop", "32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "p.png").stat().st_size > 0
    bad = vidbench("data", "preview", str(clip), "--backend", "opencv", cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "opencv" in bad.stderr


def test_loading_every_plugin_raises_no_deprecation_warning(tmp_path: Path) -> None:
    """fvcore's import-time ``torch.jit.script`` warning (through pytorchvideo) is silenced where it is imported;
    any other FutureWarning on the way to a loaded registry fails here."""
    env = {"PYTHONWARNINGS": "error::FutureWarning"}
    proc = vidbench("plugins", "list", cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x3d" in proc.stdout and "slowfast" in proc.stdout and "Warning" not in proc.stderr


def test_plugins_list_json_is_one_document_with_every_plugin(tmp_path: Path) -> None:
    import json

    proc = vidbench("plugins", "list", "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plugins = json.loads(proc.stdout)["plugins"]
    by_name = {(p["kind"], p["name"]): p for p in plugins}
    assert "tiny" in by_name[("model", "r2plus1d")]["presets"]
    assert by_name[("optimization", "eager")]["baseline"] is True
    assert by_name[("optimization", "tensorrt")]["cpu_supported"] is False
    assert by_name[("trainer", "distill")]["options"] == ["teacher", "temperature", "alpha"]
    assert [p["name"] for p in plugins if p.get("default")] == ["supervised"]


HAND_WRITTEN_GPU_SUITE = """
name: compare_all_gpu
description: architecture comparison on synthetic-motion (small), tiny presets, CUDA
datasets:
  - name: synthetic-motion
    options: {size: small, resolution: 64, length: 16}
models:
  - name: r2plus1d
    presets: [tiny]
  - name: timesformer
    presets: [tiny]
    train: {lr: 0.001}
  - name: cnn_lstm
    presets: [tiny]
    train: {lr: 0.003}
  - name: x3d
    presets: [tiny]
  - name: frame_avg
    presets: [tiny]
recipes: false
optimizations: [eager, amp, compile, tensorrt, tensorrt-int8]
batch_sizes: [1, 16]
input: {frames: 8, crop: 32, sampling: uniform}
data: {cache: true}
train: {epochs: 8, batch_size: 32, lr: 0.005, warmup_epochs: 1, workers: 6}
measure: {device: cuda, threads: 4, warmup: 5, min_iters: 50, min_seconds: 1.0, max_seconds: 6, rounds: 12,
          eval_batch_size: 60, timeout_s: 240}
"""
"""suites/compare_all_gpu.yaml as it was written by hand before ``extends`` existed (plus compare_all's rounds and
time cap)."""


def test_extends_gives_the_hand_written_suite_it_replaced(tmp_path: Path) -> None:
    from vidbench.suite.compose import load_suite
    from vidbench.suite.schema import SuiteError

    hand = tmp_path / "hand.yaml"
    hand.write_text(HAND_WRITTEN_GPU_SUITE)
    extended, _ = load_suite(REPO / "suites" / "compare_all_gpu.yaml")
    written, _ = load_suite(hand)
    assert extended.extends == [str((REPO / "suites" / "compare_all.yaml").resolve())]
    assert extended.model_dump(exclude={"extends"}) == written.model_dump(exclude={"extends"})
    loop = tmp_path / "loop.yaml"
    loop.write_text("extends: loop.yaml\nname: x\n")
    with pytest.raises(SuiteError, match="a cycle"):
        load_suite(loop)


def test_overrides_dry_run_only_and_json(tmp_path: Path, data_root: Path) -> None:
    """``-o`` settings are validated like the YAML and recorded in suite.json; ``--dry-run`` lists exactly the
    cells a run then measures (and their time once measured); ``--only`` runs a subset; ``run --json`` and
    ``report --json`` print one JSON document and nothing else."""
    import json

    import pandas as pd

    models = [{"name": "r2plus1d", "presets": ["tiny"]}, {"name": "frame_avg", "presets": ["tiny"]}]
    suite = write_suite(tmp_path, data_root, models=models, train={"epochs": 3, "batch_size": 16, "workers": 0})
    bad = vidbench("run", str(suite), "-o", "train.epochs=many", "--quiet", cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "train.epochs" in bad.stderr and "'many'" in bad.stderr, bad.stderr[-1500:]
    unknown = vidbench("run", str(suite), "--only", "colour=red", "--dry-run", cwd=tmp_path, timeout=120)
    assert unknown.returncode == 2 and "dataset, model, preset, optimization, batch_size" in unknown.stderr

    overrides = ("-o", "train.epochs=1", "-o", "measure.threads=1", "-o", "data.backend=pyav")  # runs on PyAV alone
    plan = vidbench("run", str(suite), *overrides, "--dry-run", cwd=tmp_path, timeout=120)
    assert plan.returncode == 0, plan.stderr[-2000:]
    assert "cells: 4; jobs: 2; measured before: 0" in plan.stdout, plan.stdout
    assert "training of each job" in plan.stdout and "(suite)" in plan.stdout, "each job's settings and their source"
    assert not (tmp_path / "results").exists(), "a dry run writes nothing"
    proc = vidbench("run", str(suite), *overrides, "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    document = json.loads(proc.stdout)  # the whole of stdout: one document
    assert document["run_dir"] == str(run_dir) and document["cells"] == len(document["rows"]) == 4
    assert Path(document["report_html"]).is_file() and document["statuses"] == {"ok": 4}
    assert len(pd.read_csv(run_dir / "results.csv")) == 4
    again_report = vidbench("report", str(run_dir), "--json", cwd=tmp_path, timeout=300)
    assert json.loads(again_report.stdout)["rows"] == document["rows"]
    recorded = json.loads((run_dir / "suite.json").read_text())
    assert recorded["overrides"] == ["train.epochs=1", "measure.threads=1", "data.backend=pyav"]
    assert (recorded["train"]["epochs"], recorded["measure"]["threads"], recorded["data"]["backend"]) == (1, 1, "pyav")

    again = vidbench("run", str(suite), *overrides, "--only", "model=frame_avg", "--dry-run", cwd=tmp_path)
    assert "cells: 2; jobs: 1; measured before: 2" in again.stdout, again.stdout


def test_models_info_json_gives_counts_published_figures_and_recipes(tmp_path: Path) -> None:
    import json

    proc = vidbench("models", "info", "r2plus1d", "--json", cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    presets = {p["preset"]: p for p in json.loads(proc.stdout)["presets"]}
    r18 = presets["r18"]
    assert r18["params"] == r18["published"]["params"], "r18 is torchvision's r2plus1d_18, parameter for parameter"
    assert abs(r18["gflops"] - r18["published"]["gflops"]) / r18["published"]["gflops"] < 0.05
    assert presets["tiny"]["recipe"]["settings"]["until"] == "plateau" and presets["tiny"]["recipe"]["source"]


def test_data_inspect_json_lists_every_file_with_its_status(tmp_path: Path, data_root: Path) -> None:
    import json
    import shutil

    folder = tmp_path / "clips"
    folder.mkdir()
    shutil.copy(next((data_root / "synthetic-motion").rglob("*.mp4")), folder / "good.mp4")
    (folder / "notes.txt").write_text("not a video")
    proc = vidbench("data", "inspect", str(folder), "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    files = {Path(f["file"]).name: f for f in json.loads(proc.stdout)["files"]}
    assert files["good.mp4"]["status"] == "video" and files["good.mp4"]["codec"] == "h264"
    assert files["good.mp4"]["frames"] == 8 and files["good.mp4"]["problems"] == []
    assert files["notes.txt"]["status"] == "not_video" and files["notes.txt"]["reason"]


def test_data_bench_json_gives_every_backend_against_the_reference(tmp_path: Path, data_root: Path) -> None:
    import json

    clip = next((data_root / "synthetic-motion").rglob("*.mp4"))
    args = ("data", "bench", str(clip), "--frames", "4", "--crop", "16", "--rounds", "1", "--json")
    proc = vidbench(*args, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    document = json.loads(proc.stdout)
    backends = {b["backend"]: b for b in document["backends"]}
    assert document["reference"] in backends and backends[document["reference"]]["vs_reference"] == 1.0
    assert all(b["clips"] == 1 and b["failed"] == 0 and b["clips_per_s"] > 0 for b in backends.values())


def test_decord_is_only_required_where_it_has_wheels_and_pyav_takes_over_without_it(tmp_path: Path) -> None:
    """pip reads the marker: no decord on macOS arm64 or Linux aarch64 (no wheels there). Without decord,
    ``auto`` decodes with PyAV and the data bench compares PyAV with the reference alone."""
    from packaging.requirements import Requirement

    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    decord = next(Requirement(d) for d in dependencies if d.startswith("decord"))
    assert decord.marker is not None
    for machine, wanted in (("x86_64", True), ("AMD64", True), ("arm64", False), ("aarch64", False)):
        assert decord.marker.evaluate({"platform_machine": machine}) is wanted, machine
    without = (
        "import sys; sys.modules['decord'] = None\n"  # as on a machine where it is not installed
        "from vidbench.data.decode import resolve_backend\n"
        "from vidbench.data.bench import decoders\n"
        "print(resolve_backend('auto'), sorted(decoders()))"
    )
    proc = subprocess.run([sys.executable, "-c", without], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[0] == "pyav" and "decord" not in proc.stdout, proc.stdout


NO_DECORD = """raise ModuleNotFoundError("No module named 'decord'", name="decord")  # as where it is not installed
"""


def test_a_suite_runs_end_to_end_on_pyav_where_decord_is_not_installed(tmp_path: Path, data_root: Path) -> None:
    """Every process of the run (the runner, training, measuring children) finds no decord: the suite still
    trains and measures, and env.json names PyAV as the decoder."""
    blocker = tmp_path / "site" / "decord"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text(NO_DECORD)
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")])}
    probe = subprocess.run(
        [sys.executable, "-c", "import decord"], capture_output=True, text=True, env={**os.environ, **env}
    )
    assert probe.returncode == 1 and "No module named 'decord'" in probe.stderr
    suite = write_suite(
        tmp_path, data_root, models=[{"name": "frame_avg", "presets": ["tiny"]}], batch_sizes=[1]
    )  # fmt: skip
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    assert json.loads((run_dir / "env.json").read_text())["decoder"] == "pyav"
    import pandas as pd

    frame = pd.read_csv(run_dir / "results.csv")
    assert list(frame["status"]) == ["ok"] and frame["top1"].notna().all()


OUTSIDE_VIDBENCH = r'''
"""Classify videos with an ONNX artifact and its metadata alone: onnxruntime, numpy, PyAV and PIL, no vidbench."""
import json, sys
import av, numpy as np, onnx, onnxruntime as ort
from PIL import Image

model_path, videos = sys.argv[1], json.loads(sys.argv[2])
props = {p.key: p.value for p in onnx.load(model_path, load_external_data=False).metadata_props}
card = json.loads(props["vidbench.card"])
spec = card["input"]
session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])

def clip(path):
    with av.open(path) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    n, middle = len(frames), (len(frames) - 1) / 2
    positions = np.linspace(0, n - 1, spec["frames"])
    indices = np.where(positions < middle, np.floor(positions + 0.5), np.ceil(positions - 0.5)).astype(int)
    out = []
    for i in indices:
        image = Image.fromarray(frames[i])
        w, h = image.size
        short = spec["resize_short_side"]
        size = (short, round(h * short / w)) if w <= h else (round(w * short / h), short)
        image = image.resize(size, Image.BILINEAR)
        w, h = image.size
        top, left = int(round((h - spec["crop"]) / 2)), int(round((w - spec["crop"]) / 2))
        array = np.asarray(image, dtype=np.float32)[top : top + spec["crop"], left : left + spec["crop"]] / 255
        out.append((array - np.array(spec["mean"], np.float32)) / np.array(spec["std"], np.float32))
    return np.stack(out).transpose(3, 0, 1, 2)  # C x T x H x W

batch = np.stack([clip(v) for v in videos]).astype(np.float32)
logits = session.run(None, {session.get_inputs()[0].name: batch})[0]
print(json.dumps({"top1": logits.argmax(1).tolist(), "classes": card["class_names"],
                  "vidbench_imported": any(m.startswith("vidbench") for m in sys.modules)}))
'''


@pytest.fixture(scope="module")
def onnx_run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    """One tiny run measured eager and through ONNX Runtime (1 epoch of r2plus1d tiny, batch 1)."""
    folder = tmp_path_factory.mktemp("onnx_run")
    suite = write_suite(folder, data_root, optimizations=["eager", "onnx"], batch_sizes=[1])
    proc = vidbench("run", str(suite), "--quiet", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only_run_dir(folder)


def test_an_onnx_artifact_describes_itself_well_enough_to_be_used_without_vidbench(
    onnx_run: Path, tmp_path: Path
) -> None:
    import json

    import numpy as np

    from vidbench.data.scan import load_prepared

    run_dir = onnx_run
    job = "synthetic-motion__r2plus1d__tiny"
    folder = run_dir / "artifacts" / job / "onnx"
    card = json.loads((folder / "card.json").read_text())
    assert card["measured"]["status"] == "ok" and card["input"]["frames"] == 4 and card["input"]["crop"] == 16
    assert "## Input" in (folder / "README.md").read_text()
    test = load_prepared(next((run_dir / "datasets").glob("*.json"))).splits["test"]
    expected = np.load(run_dir / "models" / job / "eval.npz")["logits"].argmax(1).tolist()
    script = tmp_path / "outside.py"
    script.write_text(OUTSIDE_VIDBENCH)
    videos = json.dumps([str(sample.path) for sample in test])
    ran = subprocess.run(
        [sys.executable, "-I", str(script), str(folder / "model.onnx"), videos],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr[-3000:]
    outside = json.loads(ran.stdout.strip().splitlines()[-1])
    assert not outside["vidbench_imported"] and outside["classes"] == card["class_names"]
    agree = np.mean(np.array(outside["top1"]) == np.array(expected))
    assert agree >= 0.9, f"top-1 agreement with the run's predictions {agree:.0%} (PIL's resize vs torchvision's)"


def test_export_to_parquet_and_mlflow_reads_back_with_their_own_clients(onnx_run: Path, tmp_path: Path) -> None:
    """Parquet read by pandas/pyarrow and MLflow read by MlflowClient give the values of results.csv."""
    import pandas as pd
    from mlflow.tracking import MlflowClient

    table = pd.read_csv(onnx_run / "results.csv")
    proc = vidbench("export", str(onnx_run), "--to", "parquet", "--out", str(tmp_path / "r.parquet"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    parquet = pd.read_parquet(tmp_path / "r.parquet")
    assert list(parquet.columns) == list(table.columns) and len(parquet) == len(table)
    for column in ("top1", "latency_ms_p50", "size_mb", "batch_size"):
        assert parquet[column].tolist() == pytest.approx(table[column].tolist(), nan_ok=True), column
    assert pd.api.types.is_string_dtype(parquet["model"]) and parquet["top1"].dtype == "float64"

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = vidbench("export", str(onnx_run), "--to", "mlflow", "--tracking-uri", uri, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("vidbench/t")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    cells = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(cells) == len(table)
    assert "report.html" in [a.path for a in client.list_artifacts(parents[0].info.run_id)]
    for cell in cells:
        params = cell.data.params
        row = table[
            (table["optimization"] == params["optimization"]) & (table["batch_size"] == int(params["batch_size"]))
        ]
        assert len(row) == 1 and cell.data.tags["status"] == row["status"].iloc[0]
        assert cell.data.metrics["top1"] == pytest.approx(float(row["top1"].iloc[0]))
        assert cell.data.metrics["latency_ms_p50"] == pytest.approx(float(row["latency_ms_p50"].iloc[0]))


def test_export_to_wandb_offline_reads_back_with_wandbs_own_reader(onnx_run: Path, tmp_path: Path) -> None:
    """W&B offline runs, one per cell and one for the run, read back by ``wandb leet inspect`` (W&B's reader of
    its own transaction log): config, summary and tags equal results.csv; nothing is uploaded."""
    import pandas as pd

    table = pd.read_csv(onnx_run / "results.csv")
    out = tmp_path / "wb"
    offline = {"WANDB_MODE": "offline", "WANDB_CACHE_DIR": str(tmp_path / "cache")}
    proc = vidbench("export", str(onnx_run), "--to", "wandb", "--out", str(out), cwd=tmp_path, env=offline)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wandb sync" in proc.stdout
    folders = sorted((out / "wandb").glob("offline-run-*"))
    assert len(folders) == len(table) + 1, folders
    read = []
    for folder in folders:
        inspect = subprocess.run(
            [str(Path(sys.executable).parent / "wandb"), "leet", "inspect", "--summary", "--json", str(folder)],
            capture_output=True, text=True, timeout=120, cwd=tmp_path, env={**os.environ, **offline},
        )  # fmt: skip
        assert inspect.returncode == 0, inspect.stderr[-2000:]
        read.append(json.loads(inspect.stdout))
    assert {r["state"] for r in read} == {"finished"} and {r["project"] for r in read} == {"vidbench-t"}
    cells = [r for r in read if "optimization" in r["config"]]
    assert len(cells) == len(table)
    for cell in cells:
        row = table[(table["optimization"] == cell["config"]["optimization"])
                    & (table["batch_size"] == cell["config"]["batch_size"])]  # fmt: skip
        assert len(row) == 1 and cell["tags"] == [row["status"].iloc[0]]
        for metric in ("top1", "latency_ms_p50", "size_mb", "params_m", "gflops_per_clip"):
            assert cell["summary"][metric] == pytest.approx(float(row[metric].iloc[0])), metric


def test_multi_view_testing_averages_views_and_says_so(tmp_path: Path, data_root: Path) -> None:
    """``measure.views`` 3 x 3 (set with -o): every ok row's top-1 is over 9 views per video, the row says
    ``3x3`` and keeps the one-view top-1 beside it; one view is exactly the single-view evaluation."""
    import pandas as pd

    suite = write_suite(tmp_path, data_root, batch_sizes=[1])
    views = "measure.views={temporal: 3, spatial: 3}"
    proc = vidbench("run", str(suite), "-o", views, "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = pd.read_csv(only_run_dir(tmp_path) / "results.csv").iloc[0]
    assert row["status"] == "ok" and row["views"] == "3x3", row.to_dict()
    assert 0 <= row["top1"] <= 1 and 0 <= row["top1_single_view"] <= 1
    assert "views" in (only_run_dir(tmp_path) / "summary.md").read_text()

    from vidbench.data.loader import ClipDataset, MultiViewClipDataset
    from vidbench.data.sampling import ClipSpec
    from vidbench.specs import VideoSample

    video = VideoSample(next((data_root / "synthetic-motion").rglob("*.mp4")), 0)
    spec = ClipSpec(4, 1, "uniform", "repeat_last")
    one = MultiViewClipDataset([video], spec, 16, 1, 1, backend="pyav")[0][0]
    nine = MultiViewClipDataset([video], spec, 16, 3, 3, backend="pyav")[0][0]
    assert one.shape == (1, 3, 4, 16, 16) and nine.shape == (9, 3, 4, 16, 16)
    assert torch.equal(one[0], ClipDataset([video], spec, 16, False, backend="pyav")[0][0])
