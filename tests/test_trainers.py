"""Trainers as plugins: distill and ssl resume after SIGKILL, supervised is the loop it replaced, suites name
trainers and teachers correctly, the label fraction is drawn per class, the pretext targets follow motion."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from vidbench_plugins.datasets import synthetic
from vidbench_plugins.trainers.ssl import motion_statistics

from tests.conftest import only_run_dir, suite_dict, vidbench, write_suite
from vidbench.data.scan import labelled_subset
from vidbench.job.context import Context
from vidbench.job.train import run_train
from vidbench.learn.train import Trainer, config_from_settings, seed_everything
from vidbench.run.progress import Silent
from vidbench.run.scheduler import SuiteRun
from vidbench.rundir import JobDir, RunDir
from vidbench.specs import VideoSample
from vidbench.suite.cells import trained_weights
from vidbench.suite.compose import load_suite
from vidbench.suite.schema import SuiteError

TEACHER = {"name": "frame_avg", "presets": ["tiny"]}
TAUGHT_BY = {"teacher": "frame_avg/tiny"}
STUDENT = {"name": "r2plus1d", "presets": ["tiny"], "train": {"trainer": "distill", "trainer_options": TAUGHT_BY}}
SELF_TAUGHT = {"name": "r2plus1d", "presets": ["tiny"], "train": {"trainer": "ssl", "label_fraction": 0.5,
               "trainer_options": {"pretrain_epochs": 3}}}  # fmt: skip
JOBS = {
    "distill": "models/synthetic-motion__r2plus1d__tiny+distill",
    "ssl": "models/synthetic-motion__r2plus1d__tiny+ssl",
}


def _suite(tmp_path: Path, data_root: Path) -> Path:
    train = {"epochs": 3, "batch_size": 16, "workers": 0, "lr": 0.003}
    data = suite_dict(data_root, models=[TEACHER, STUDENT, SELF_TAUGHT], train=train)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _train(suite: Path, out: Path, trainer: str, cwd: Path, resume: bool = False) -> None:
    model = "frame_avg" if trainer == "supervised" else "r2plus1d"
    args = ["train", str(suite), "--model", model, "--trainer", trainer, "--out", str(out)]
    proc = vidbench(*args, *(["--resume"] if resume else []), cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _killed_once(suite: Path, out: Path, trainer: str, watched: Path, cwd: Path) -> int:
    """Start ``vidbench train`` of ``trainer``'s job; SIGKILL its process group once ``watched`` (a
    ``metrics.jsonl``) holds one epoch. Returns the epochs it held at the kill."""
    args = ["train", str(suite), "--model", "r2plus1d", "--trainer", trainer, "--out", str(out)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "vidbench.cli", *args],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and len(_lines(watched)) < 1 and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return len(_lines(watched))


@pytest.mark.parametrize("trainer", ["distill", "ssl"])
def test_each_builtin_trainer_resumes_after_sigkill_as_if_never_killed(
    trainer: str, tmp_path: Path, data_root: Path
) -> None:
    """Killed in its first phase (distill: its one phase; ssl: the pre-training), resumed, the job ends with the
    epochs, loss and test top-1 of an uninterrupted run (supervised's own test is in test_training.py)."""
    suite = _suite(tmp_path, data_root)
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    job = JOBS[trainer]
    if trainer == "distill":  # the teacher first, in both folders (the same weights)
        _train(suite, killed, "supervised", tmp_path)
        teacher = "models/synthetic-motion__frame_avg__tiny"
        shutil.copytree(killed / teacher, straight / teacher)
    watched = killed / job / ("phases/pretrain/metrics.jsonl" if trainer == "ssl" else "metrics.jsonl")
    assert 1 <= _killed_once(suite, killed, trainer, watched, tmp_path) < 3, "the kill must land mid-phase"
    assert not (killed / job / "train.json").exists()
    _train(suite, killed, trainer, tmp_path, resume=True)
    _train(suite, straight, trainer, tmp_path)
    runs = [json.loads((out / job / "train.json").read_text()) for out in (killed, straight)]
    assert runs[0]["top1"] == runs[1]["top1"] and runs[0]["epochs_run"] == runs[1]["epochs_run"] == 3
    assert runs[0]["trainer"] == trainer and runs[0]["train_clips"] == runs[1]["train_clips"]
    curves = [_lines(out / job / "metrics.jsonl") for out in (killed, straight)]
    assert [m["epoch"] for m in curves[0]] == [1, 2, 3]
    assert curves[0][-1]["loss"] == pytest.approx(curves[1][-1]["loss"], abs=1e-5)
    if trainer == "ssl":
        pretrain = [_lines(out / job / "phases/pretrain/metrics.jsonl") for out in (killed, straight)]
        assert [m["epoch"] for m in pretrain[0]] == [1, 2, 3] and pretrain[0][0]["train_top1"] is None
        assert pretrain[0][-1]["loss"] == pytest.approx(pretrain[1][-1]["loss"], abs=1e-5)
        assert runs[0]["trainer_notes"]["pretrain_epochs"] == 3
        assert runs[0]["train_clips"] > sum(m["clips"] for m in curves[0]), "pre-training counts in the compute"
    else:
        assert runs[0]["teacher"] == "synthetic-motion__frame_avg__tiny"
        assert runs[0]["teacher_checkpoint_sha"] == runs[1]["teacher_checkpoint_sha"]


def test_supervised_trains_exactly_as_the_loop_it_replaced(tmp_path: Path, data_root: Path) -> None:
    """The ``supervised`` plugin gives bit-identical weights to the shared loop driven directly, the way the
    worker trained every job before trainers were plugins."""
    path = write_suite(tmp_path, data_root, train={"epochs": 1, "batch_size": 16, "workers": 0, "lr": 0.003})
    suite, registry = load_suite(path)
    run = SuiteRun(suite, registry, path, RunDir.new(tmp_path / "results", "t", "r"))
    run.prepare_datasets(Silent())
    job = run.jobs[0]
    run.write_job_file(job)
    task = run.train_step(job).task
    run_train(Context(task))
    via_plugin = torch.load(run.rundir.job(job.slug).checkpoint, weights_only=True)

    ctx = Context(task)
    settings = job.train_settings()
    seed_everything(settings.seed, settings.deterministic)
    model = ctx.build_model()
    direct = Trainer(
        model, ctx.loader("train", settings.batch_size, train_mode=True), config_from_settings(settings, False),
        JobDir(tmp_path / "direct"), val_loader=ctx.loader("val", suite.measure.eval_batch_size),
    )  # fmt: skip
    direct.run(resume=False)
    weights = direct.evaluated_model().state_dict()
    assert via_plugin.keys() == weights.keys()
    assert all(torch.equal(via_plugin[k], weights[k]) for k in weights)


def test_a_suite_names_trainers_and_teachers_or_says_what_is_allowed(tmp_path: Path, data_root: Path) -> None:
    """Before any work: an unknown trainer lists the installed ones; a teacher not in the suite lists those that
    are; a trainer's bad option and a bad label fraction name the field (the CLI prints these, exit 2)."""
    cases = {
        "models[0].train.trainer: unknown trainer 'nope'; allowed: distill, early-exit, ssl, supervised": [
            {"name": "r2plus1d", "presets": ["tiny"], "train": {"trainer": "nope"}}
        ],
        "models[0].train.trainer_options.teacher: 'x3d/tiny' is not a model/preset of this suite trained without "
        "a teacher; allowed: frame_avg/tiny": [
            {**STUDENT, "train": {**STUDENT["train"], "trainer_options": {"teacher": "x3d/tiny"}}},
            TEACHER,
        ],
        "models[0].train.trainer_options.temperature: Input should be greater than 0 (got 0)": [
            {**STUDENT, "train": {**STUDENT["train"], "trainer_options": {**TAUGHT_BY, "temperature": 0}}},
            TEACHER,
        ],
        "models[0].train.label_fraction: Input should be less than or equal to 1 (got 2)": [
            {"name": "r2plus1d", "presets": ["tiny"], "train": {"label_fraction": 2}}
        ],
    }
    for i, (message, models) in enumerate(cases.items()):
        folder = tmp_path / str(i)
        folder.mkdir()
        with pytest.raises(SuiteError) as caught:
            load_suite(write_suite(folder, data_root, models=models))
        assert message in str(caught.value), (message, str(caught.value))


def test_a_student_whose_teacher_fails_fails_with_its_reason(tmp_path: Path, data_root: Path) -> None:
    """The teacher's training fails (it outlives a 1 s time limit): its cells fail, and its student's name it."""
    # 1,000 epochs: one epoch of the tiny suite can finish inside the second once the fork server holds torch
    hurried = {**TEACHER, "train": {"timeout_s": 1, "epochs": 1000}}
    suite = write_suite(tmp_path, data_root, models=[STUDENT, hurried])
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    frame = pd.read_csv(only_run_dir(tmp_path) / "results.csv")
    student = frame[frame["preset"] == "tiny+distill"]
    teacher = frame[frame["model"] == "frame_avg"]
    assert (teacher["status"] == "failed").all(), teacher["reason"].tolist()
    assert (student["status"] == "failed").all()
    assert student["reason"].str.startswith("teacher frame_avg/tiny did not train: training failed").all()


def test_a_students_cell_keys_change_with_its_teachers_weights() -> None:
    own = {"checkpoint_sha": "s1"}
    assert trained_weights(own) == "s1", "a job without a teacher keeps the keys it always had"
    taught = {**own, "teacher_checkpoint_sha": "t1"}
    assert (
        len(
            {trained_weights(own), trained_weights(taught), trained_weights({**taught, "teacher_checkpoint_sha": "t2"})}
        )
        == 3
    )


def test_label_fraction_is_drawn_per_class_with_a_fixed_seed() -> None:
    samples = [VideoSample(Path(f"{c}_{i}.mp4"), c) for c in range(5) for i in range(10 + c)]
    first = labelled_subset(samples, 0.1, seed=0)
    assert first == labelled_subset(samples, 0.1, seed=0), "the same draw every time"
    assert first != labelled_subset(samples, 0.1, seed=1)
    counts = pd.Series([s.label for s in first]).value_counts().sort_index().tolist()
    assert counts == [1, 1, 1, 1, 1], "a tenth of each class, at least one clip"
    assert [s for s in samples if s in first] == first, "the split's order is kept"
    assert len(labelled_subset(samples, 0.5, seed=0)) == sum(round(0.5 * (10 + c)) for c in range(5))


def test_motion_statistics_follow_the_moving_object() -> None:
    """On real synthetic-motion clips: a slide-right's change moves right, its reversed clip's left; a
    still clip has less energy than a moving one."""
    rng = np.random.default_rng(0)
    right = synthetic.PATTERNS.index("slide-right")
    forward = synthetic.render_clip(2 * right, rng, 32, 8)
    clips = torch.from_numpy(np.stack([forward, forward[::-1].copy(), np.repeat(forward[:1], 8, axis=0)]))
    stats = motion_statistics(clips.permute(0, 4, 1, 2, 3).float() / 255)
    pairs = 7
    cx = stats[:, :pairs]
    energy = stats[:, 4 * pairs :]
    assert (cx[0, -1] - cx[0, 0]) > 0.2 and (cx[1, -1] - cx[1, 0]) < -0.2
    assert stats.shape == (3, 5 * pairs) and torch.isfinite(stats).all()
    assert energy[2].max() < energy[0].min()
