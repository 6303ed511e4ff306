"""The baseline is declared by a plugin (or named by a suite), never by the core: a baseline under another name
runs a suite, gets the speedups in the report, and is what ``serve`` serves by default, also after the run's
log folders are gone."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import only_run_dir, suite_dict, vidbench, write_suite
from tests.serve_helpers import Server
from vidbench.rundir import RunDir
from vidbench.serve.artifact import load_served, parse_ref
from vidbench.suite.compose import load_suite
from vidbench.suite.schema import SuiteError

REFERENCE_PLUGIN = '''
"""``reference``: the trained model as it is, declared as the suite's baseline under its own name."""
import torch

from vidbench import hookimpl
from vidbench.specs import Artifact, OptimizationSpec


def prepare(model, example, calibration, workdir):
    weights = workdir / "weights.pt"
    torch.save(model.state_dict(), weights)
    model.eval()

    @torch.inference_mode()
    def run(clip):
        return model(clip)

    return Artifact(run=run, files=[weights], notes="the trained model as is")


@hookimpl
def vidbench_optimizations():
    return [OptimizationSpec(name="reference", prepare=prepare, baseline=True, description="renamed baseline")]
'''


def _plugin(folder: Path) -> str:
    (folder / "reference_plugin.py").write_text(REFERENCE_PLUGIN)
    return "reference_plugin.py"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    folder = tmp_path_factory.mktemp("baseline")
    suite = write_suite(
        folder, data_root, plugins=[_plugin(folder)], optimizations=["reference", "onnx"], batch_sizes=[1]
    )
    proc = vidbench("run", str(suite), "--quiet", cwd=folder)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return only_run_dir(folder)


def test_a_renamed_baseline_runs_and_reports_speedups(run_dir: Path) -> None:
    run = RunDir(run_dir)
    assert run.read_suite()["baseline"] == "reference"
    frame = pd.read_csv(run.results_csv).set_index("optimization")
    assert set(frame["status"]) == {"ok"}, frame["reason"].tolist()
    assert frame.loc["reference", "agreement_top1"] == 1.0
    # the baseline's cell runs the temporal probes; the other artifacts do not (measure.probes: baseline)
    assert pd.notna(frame.loc["reference", "top1_reversed"]) and pd.isna(frame.loc["onnx", "top1_reversed"])
    report = run.report_markdown.read_text()
    assert "## Optimizations vs reference" in report and "### Speedup and accuracy delta vs reference" in report
    speedups = report.split("## Optimizations vs reference", 1)[1].split("\n## ", 1)[0]
    assert "not available" not in speedups and "| speedup x |" in speedups and "| onnx |" in speedups


def test_serve_defaults_to_the_baseline_and_needs_no_log_folder(run_dir: Path, tmp_path: Path) -> None:
    served_copy = tmp_path / "moved-run"
    shutil.copytree(run_dir, served_copy)  # a moved run directory...
    shutil.rmtree(served_copy / "logs")  # ...whose child logs are gone
    run = RunDir(served_copy)
    job = run.jobs()[0]
    reference = np.load(job.reference_logits)["logits"]
    server = Server(["--artifact", f"{served_copy}/r2plus1d", "--threads", "1"], tmp_path / "serve.log", cwd=tmp_path)
    try:
        health = httpx.get(f"{server.url}/healthz", timeout=30).json()
        assert health["optimization"] == "reference" and health["model"] == "r2plus1d"
        assert health["parity_vs_checkpoint"]["agreement_top1"] == 1.0
        assert [row["status"] for row in health["measured"]] == ["ok"], "the served artifact is a measured row"
        served = load_served(parse_ref(str(served_copy / "r2plus1d")), threads=1, prepare=False)
        test_files = [s.path for s in served.ctx.dataset.splits["test"]][:3]
        for i, path in enumerate(test_files):
            with open(path, "rb") as fh:
                answer = httpx.post(f"{server.url}/v1/classify", files={"file": (path.name, fh)}, timeout=60)
            assert answer.status_code == 200, answer.text
            assert answer.json()["labels"][0]["index"] == int(reference[i].argmax())
    finally:
        server.stop()


def _suite(tmp_path: Path, data_root: Path, **overrides: object) -> Path:
    path = tmp_path / "suite.yaml"
    data = suite_dict(data_root, plugins=[_plugin(tmp_path)], **overrides)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_the_suite_chooses_among_declared_baselines(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(SuiteError, match=r"baseline: several optimizations declare .*\(eager, reference\)"):
        load_suite(_suite(tmp_path, data_root, optimizations=["eager", "reference", "onnx"]))
    suite, _ = load_suite(_suite(tmp_path, data_root, optimizations=["eager", "onnx"], baseline="onnx"))
    assert suite.baseline == "onnx"
    with pytest.raises(SuiteError, match=r"baseline: unknown .* 'int8'; allowed: eager, onnx"):
        load_suite(_suite(tmp_path, data_root, optimizations=["eager", "onnx"], baseline="int8"))
    suite, _ = load_suite(_suite(tmp_path, data_root, optimizations=["onnx"]))
    assert suite.baseline is None
