"""The docs/adding-*.md pages run as written: their module and pyproject are copied out, installed, used."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from tests.conftest import REPO, install_into, only_run_dir, vidbench, write_suite
from vidbench.data.encode import write_mp4
from vidbench.specs import Unsupported


def _blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", markdown, flags=re.S)


def test_adding_a_model_example_works_as_written(tmp_path: Path, data_root: Path) -> None:
    doc = (REPO / "docs" / "adding-a-model.md").read_text()
    module, pyproject = _blocks(doc, "python")[0], _blocks(doc, "toml")[0]
    package = tmp_path / "pkg"
    (package / "my_video_models").mkdir(parents=True)
    (package / "my_video_models" / "__init__.py").write_text("")
    (package / "my_video_models" / "tiny_c2d.py").write_text(module)
    (package / "pyproject.toml").write_text(pyproject)
    env = install_into(package, tmp_path / "site")
    listing = vidbench("plugins", "list", cwd=tmp_path, env=env, timeout=120)
    assert "tiny_c2d" in listing.stdout and "my-video-models:my_video_models.tiny_c2d" in listing.stdout
    info = vidbench("models", "info", "tiny_c2d", cwd=tmp_path, env=env, timeout=120)
    assert info.returncode == 0, info.stderr[-2000:]
    assert "tiny_c2d" in info.stdout and "8 x 32" in info.stdout
    suite = write_suite(
        tmp_path,
        data_root,
        models=[{"name": "tiny_c2d", "presets": ["tiny"]}],
        optimizations=["eager", "onnx"],
        batch_sizes=[1],
    )
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(only_run_dir(tmp_path) / "results.csv")
    assert set(frame["model"]) == {"tiny_c2d"} and set(frame["status"]) == {"ok"}, frame["reason"].tolist()


def _install_doc_example(doc: str, package_dir: str, module_name: str, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Copy a doc page's module and pyproject into a package under ``tmp_path`` and install it there."""
    text = (REPO / "docs" / doc).read_text()
    modules, pyprojects = _blocks(text, "python"), _blocks(text, "toml")
    assert len(modules) == 1 and len(pyprojects) == 1, (len(modules), len(pyprojects))
    package = tmp_path / "pkg"
    (package / package_dir).mkdir(parents=True)
    (package / package_dir / "__init__.py").write_text("")
    module = package / package_dir / f"{module_name}.py"
    module.write_text(modules[0])
    (package / "pyproject.toml").write_text(pyprojects[0])
    return module, install_into(package, tmp_path / "site")


def test_adding_an_optimization_example_works_as_written(tmp_path: Path, data_root: Path) -> None:
    module, env = _install_doc_example("adding-an-optimization.md", "my_video_opts", "channels_last", tmp_path)
    listing = vidbench("plugins", "list", cwd=tmp_path, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "channels_last" in listing.stdout
    assert "my-video-opts:my_video_opts.channels_last" in listing.stdout

    # A model with 2D convolutions cannot take channels_last_3d: prepare says so with Unsupported.
    spec = importlib.util.spec_from_file_location("doc_channels_last", module)
    assert spec is not None and spec.loader is not None
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    with pytest.raises(Unsupported, match="4-D"):
        plugin.prepare(nn.Sequential(nn.Conv2d(3, 4, 3)), torch.zeros(2, 3, 8, 8), None, tmp_path)

    suite = write_suite(
        tmp_path,
        data_root,
        models=[{"name": "r2plus1d", "presets": ["tiny"]}],
        optimizations=["eager", "channels_last"],
        batch_sizes=[1],
    )
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    frame = pd.read_csv(run_dir / "results.csv")
    assert set(frame["optimization"]) == {"eager", "channels_last"}
    assert set(frame["status"]) == {"ok"}, frame["reason"].tolist()
    ours = frame[frame["optimization"] == "channels_last"]
    assert len(ours) == 1 and (ours["agreement_top1"] == 1.0).all(), ours["agreement_top1"].tolist()
    assert (ours["size_mb"] > 0).all() and (ours["latency_ms_p50"] > 0).all()


def test_adding_a_dataset_example_works_as_written(tmp_path: Path, data_root: Path) -> None:
    _, env = _install_doc_example("adding-a-dataset.md", "my_video_datasets", "my_clips", tmp_path)
    listing = vidbench("plugins", "list", cwd=tmp_path, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "my-clips" in listing.stdout and "my-video-datasets:my_video_datasets.my_clips" in listing.stdout
    assert "min_frames" in listing.stdout

    # The page's layout, <root>/<split>/<class>/*.mp4, linked from the real MP4 files of synthetic-motion.
    synthetic = next((data_root / "synthetic-motion").glob("*/.complete")).parent
    names = dict(pd.read_csv(synthetic / "classes.csv").itertuples(index=False))
    clips_root = tmp_path / "data" / "my-clips"
    for split in ("train", "val", "test"):
        for rel, label in pd.read_csv(synthetic / f"{split}.csv").itertuples(index=False):
            target = clips_root / split / names[int(label)] / Path(rel).name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(synthetic / rel)
    (clips_root / "train" / names[0] / "broken.mp4").write_bytes(b"not a video")
    short = np.zeros((2, 32, 32, 3), dtype=np.uint8)  # a real 2-frame MP4: under min_frames 4 below
    write_mp4(short, clips_root / "train" / names[1] / "short.mp4", fps=16)

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = write_suite(bad_dir, tmp_path / "data", datasets=[{"name": "my-clips", "options": {"min_frames": 0}}])
    proc = vidbench("run", str(bad), "--quiet", cwd=bad_dir, env=env, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "datasets[0].options.min_frames" in errors[0] and "(got 0)" in errors[0], proc.stderr

    suite = write_suite(
        tmp_path,
        tmp_path / "data",
        datasets=[{"name": "my-clips", "options": {"min_frames": 4}}],
        models=[{"name": "r2plus1d", "presets": ["tiny"]}],
        optimizations=["eager"],
        batch_sizes=[1],
    )
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    frame = pd.read_csv(run_dir / "results.csv")
    assert set(frame["dataset"]) == {"my-clips"} and set(frame["status"]) == {"ok"}, frame["reason"].tolist()
    skipped = dict(pd.read_csv(run_dir / "skipped.csv").itertuples(index=False))
    assert sorted(Path(p).name for p in skipped) == ["broken.mp4", "short.mp4"], skipped
    assert any("2 frames < min_frames 4" in reason for reason in skipped.values()), skipped


def test_adding_a_trainer_example_works_as_written(tmp_path: Path, data_root: Path) -> None:
    """A third party's trainer, installed from the page's two files, trains a job beside a supervised one with
    no core edit; a bad option stops the suite naming the field."""
    _, env = _install_doc_example("adding-a-trainer.md", "my_video_trainers", "mixup", tmp_path)
    listing = vidbench("plugins", "list", cwd=tmp_path, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr[-2000:]
    assert "mixup" in listing.stdout and "my-video-trainers:my_video_trainers.mixup" in listing.stdout

    mixup = {"name": "r2plus1d", "presets": ["tiny"], "train": {"trainer": "mixup", "trainer_options": {"alpha": 0}}}
    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    bad = write_suite(bad_dir, data_root, models=[{"name": "r2plus1d", "presets": ["tiny"]}, mixup])
    proc = vidbench("run", str(bad), "--quiet", cwd=bad_dir, env=env, timeout=120)
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "models[1].train.trainer_options.alpha" in proc.stderr and "(got 0)" in proc.stderr, proc.stderr

    mixup["train"]["trainer_options"] = {"alpha": 0.4}
    suite = write_suite(tmp_path, data_root, models=[{"name": "r2plus1d", "presets": ["tiny"]}, mixup])
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    frame = pd.read_csv(run_dir / "results.csv")
    assert set(frame["status"]) == {"ok"}, frame["reason"].tolist()
    assert sorted(zip(frame["preset"], frame["trainer"], strict=True)) == [
        ("tiny", "supervised"), ("tiny", "supervised"), ("tiny+mixup", "mixup"), ("tiny+mixup", "mixup")
    ]  # fmt: skip
    assert (run_dir / "models" / "synthetic-motion__r2plus1d__tiny+mixup" / "train_state.pt").is_file()
    report = (run_dir / "report.md").read_text()
    assert "r2plus1d/tiny+mixup: trainer mixup" in report
    assert "Trainers against the default trainer on the same model: r2plus1d/tiny+mixup:" in report


def _listed(value: int | list[int]) -> list[int]:
    return value if isinstance(value, list) else [value]


def test_production_levers_example_works_as_written(tmp_path: Path, data_root: Path) -> None:
    """The page's suite (its models, input sweep and cascade) on the tiny set: one job per frames x crop, named by
    its input everywhere; the cascade's threshold chosen from the validation logits alone and its escalations
    recomputed from the saved logits; the report's input-cost and cascade figures, tables and summary."""
    import yaml

    from vidbench.learn.cascade import DEFAULT_THRESHOLDS, cascade_point, choose_threshold
    from vidbench.serve.artifact import parse_ref, select_slug

    page = yaml.safe_load(_blocks((REPO / "docs" / "production-levers.md").read_text(), "yaml")[0])
    frames, crops = _listed(page["input"]["frames"]), _listed(page["input"]["crop"])
    suite = write_suite(
        tmp_path, data_root, models=page["models"], optimizations=page["optimizations"],
        batch_sizes=page["batch_sizes"], input={**page["input"]}, cascades=page["cascades"],
        early_exits=page["early_exits"],
    )  # fmt: skip
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    frame = pd.read_csv(run_dir / "results.csv")
    assert set(frame["status"]) == {"ok"}, frame["reason"].tolist()
    swept = [m for m in page["models"] if "input" not in m]
    wanted = {(m["name"], f"tiny@{f}x{c}", f, c) for m in swept for f in frames for c in crops}
    wanted.add(("r2plus1d", "tiny-exit+early-exit", 8, crops[0]))
    assert set(zip(frame["model"], frame["preset"], frame["frames"], frame["crop"], strict=True)) == wanted
    assert len({p.name for p in (run_dir / "models").iterdir()}) == len(wanted)  # one trained job per input

    records = {r["kind"]: r for r in (json.loads(p.read_text()) for p in (run_dir / "cascades").glob("*.json"))}
    assert set(records) == {"cascade", "early-exit"}
    for kind, record in records.items():
        assert record["status"] == "ok", record
        [logits_file] = list((run_dir / "logs").glob(f"*/{kind}-*/cascade_logits.npz"))
        saved = np.load(logits_file)
        chosen, _, _ = choose_threshold(saved["val_fast"], saved["val_slow"], saved["val_labels"], DEFAULT_THRESHOLDS)
        assert record["threshold"] == chosen.threshold  # from the validation split's logits alone
        test = cascade_point(saved["test_fast"], saved["test_slow"], saved["test_labels"], record["threshold"])
        assert (record["test"]["escalations"], record["test"]["clips"]) == (test.escalations, test.clips)
        assert record["test"]["top1"] == pytest.approx(test.top1)
        timed = record["timed"]
        assert timed["clips"] == test.clips and all(timed[k]["mean_ms"] > 0 for k in ("cascade", "slow", "fast"))

    report = (run_dir / "report.md").read_text()
    section = report.split("## Production levers", 1)[1].split("\n## ", 1)[0]
    for figure in ("input_cost", "cascades"):
        assert f"report_files/{figure}.png" in section, section
    assert "not available" not in section
    rows = [line for line in section.splitlines() if line.startswith("| ") and "frames x crop" not in line]
    assert sum(f"| {f}x{c} |" in line for line in rows for f in frames for c in crops) == len(wanted) - 1
    assert "cheapest input within" in report.split("## Results", 1)[0]

    model = f"{page['models'][0]['name']}__tiny@{frames[0]}x{crops[0]}"
    ref = parse_ref(f"{run_dir}/{model}")  # a swept input's job, not an optimization named "4x32"
    assert ref.optimization is None and select_slug(ref).endswith(model)
