"""The comparison report (report.md / report.html) and ``vidbench compare``, on one real tiny run.

One module-scoped run (two tiny models, eager + ONNX, one optimization that always raises, TensorRT
unsupported on CPU) feeds every test; copies of it are edited (a worse top-1, another environment,
missing analysis files) to check the report and the regression gate react.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
from markupsafe import escape as html_escape
from matplotlib.text import Annotation
from matplotlib.transforms import Bbox

from tests.conftest import REPO, only_run_dir, vidbench, write_suite
from vidbench.profiles import OperatorProfile, top_groups
from vidbench.report.compare import compare_runs, parse_rule, wide_table
from vidbench.report.figures import (
    _overlap,
    _shift,
    accuracy_latency,
    accuracy_latency_points,
    draw_accuracy_latency,
    pareto_front,
    speedup_table,
    speedup_vs_baseline,
)
from vidbench.report.operators import operator_figures
from vidbench.report.rundata import RunData, load_frame, load_run
from vidbench.report.summary import summary_paragraph
from vidbench.report.table import DISPLAY, display_frame, rich_table

RAISING_PLUGIN = """
from vidbench import hookimpl
from vidbench.specs import OptimizationSpec

def _raises(model, example, calibration, workdir):
    raise RuntimeError("boom: this optimization always raises")

@hookimpl
def vidbench_optimizations():
    return [OptimizationSpec("raises", _raises)]
"""

SECTIONS = ("summary", "results", "not-measured", "pareto", "cost", "speedup", "classes", "probes", "embeddings",
            "training", "time", "operators", "environment", "methodology")  # fmt: skip
OPERATOR_FIGURES = ("operators_synthetic-motion__r2plus1d__tiny", "operators_synthetic-motion__frame_avg__tiny")
FIGURES = ("accuracy_latency", "cost_accuracy", "size_on_disk", "speedup", "per_class", "confusion", "probes",
           "tsne_r2plus1d_tiny", "tsne_frame_avg_tiny", "training", "time_split", "latency_histograms",
           *OPERATOR_FIGURES)  # fmt: skip


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A real run of a tiny suite (about a minute), and the finished ``vidbench run`` process."""
    work = tmp_path_factory.mktemp("report")
    (work / "raises.py").write_text(RAISING_PLUGIN)
    suite = write_suite(
        work,
        data_root,
        plugins=["raises.py"],
        models=[{"name": "r2plus1d", "presets": ["tiny"]}, {"name": "frame_avg", "presets": ["tiny"]}],
        optimizations=["eager", "onnx", "raises", "tensorrt"],
        exclude=[{"model": "frame_avg", "optimization": "raises"}],
    )
    proc = vidbench("run", str(suite), "--quiet", "--exit-zero", cwd=work)  # exploratory: failed cells, exit 0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 cell(s) failed" in proc.stderr and "exit 0" in proc.stderr, proc.stderr[-3000:]
    return only_run_dir(work), proc


@pytest.fixture
def copy_of(run: tuple[Path, subprocess.CompletedProcess[str]], tmp_path: Path):
    """A function returning a fresh copy of the run directory under ``tmp_path``."""

    def make(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(run[0], target, ignore=shutil.ignore_patterns("artifacts", "logs", "*.pt"))
        return target

    return make


def _rewrite_rows(run_dir: Path, edit) -> None:
    path = run_dir / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("".join(json.dumps(edit(row)) + "\n" for row in rows))


def _figure_block(html: str, key: str) -> str:
    match = re.search(rf'<figure id="fig-{key}".*?</figure>', html, re.S)
    assert match, f"figure {key} missing"
    return match.group(0)


def test_run_writes_the_report_and_prints_its_path_last(run) -> None:
    run_dir, proc = run
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    assert last == f"report: {run_dir / 'report.html'}"
    assert (run_dir / "report.md").exists() and (run_dir / "report.html").exists()
    for key in FIGURES:
        assert (run_dir / "report_files" / f"{key}.png").stat().st_size > 1000, key


def test_html_is_self_contained_with_every_section_and_figure(run) -> None:
    html = (run[0] / "report.html").read_text()
    for section in SECTIONS:
        assert f'id="{section}"' in html, section
    assert not re.findall(r'(?:src|href)="(?!data:|#)', html), "the page references an outside resource"
    assert "<link" not in html and "@import" not in html
    for key in FIGURES:
        block = _figure_block(html, key)
        assert '<img src="data:image/png;base64,' in block, f"{key}: {block[:300]}"
        assert "not available" not in block
    assert html.count("<img ") == len(FIGURES)


def test_failed_and_unsupported_cells_appear_with_their_reasons(run) -> None:
    run_dir = run[0]
    html = (run_dir / "report.html").read_text()
    frame = pd.read_csv(run_dir / "results.csv")
    assert set(frame["status"]) == {"ok", "failed", "unsupported"}
    results = re.search(r'<table class="sortable" id="results-table">.*?</table>', html, re.S).group(0)
    missing = re.search(r'<table id="not-measured-table">.*?</table>', html, re.S).group(0)
    assert results.count("<tr class=") == len(frame)
    for table in (results, missing):
        assert "boom: this optimization always raises" in table
        assert table.count('class="status-failed"') == 2 and table.count('class="status-unsupported"') == 4
    tensorrt_reason = frame.loc[frame["optimization"] == "tensorrt", "reason"].iloc[0]
    assert tensorrt_reason and str(html_escape(tensorrt_reason)) in missing
    markdown = (run_dir / "report.md").read_text()
    assert "boom: this optimization always raises" in markdown and tensorrt_reason in markdown


def test_summary_is_computed_from_the_table(run, copy_of) -> None:
    frame = pd.read_csv(run[0] / "results.csv")
    ok = frame[frame["status"] == "ok"]
    best = ok.loc[ok["top1"].idxmax()]
    summary = re.search(r'<p class="summary" id="summary-text">(.*?)</p>', (run[0] / "report.html").read_text())
    assert f"best accuracy: {best['model']}/{best['preset']}" in summary.group(1)
    assert f"{best['top1'] * 100:.1f}% top-1" in summary.group(1)
    low = float(re.search(r"95% interval ([0-9.]+)-", summary.group(1)).group(1)) / 100
    smallest = ok[ok["top1"] >= low - 5e-4].sort_values("size_mb").iloc[0]  # the interval is printed to 0.1 %
    named = f"smallest within the best's 95% interval: {smallest['model']}/{smallest['preset']}"
    assert str(html_escape(f"{named} ({smallest['optimization']})")) in summary.group(1), summary.group(1)
    # Make frame_avg's ONNX artifact the most accurate: the rewritten report must say so.
    edited = copy_of("edited")
    _rewrite_rows(
        edited,
        lambda r: (
            {**r, "top1": 0.987} if (r["model"], r["optimization"], r["status"]) == ("frame_avg", "onnx", "ok") else r
        ),
    )
    proc = vidbench("report", str(edited), cwd=edited)
    assert proc.returncode == 0, proc.stderr
    text = (edited / "report.html").read_text()
    assert "best accuracy: frame_avg/tiny (onnx) [not converged] at 98.7% top-1" in text
    assert "fastest within the best&#39;s 95% interval: frame_avg/tiny (onnx) [not converged]" in text


def test_a_run_capped_by_epochs_says_not_converged_everywhere(run, copy_of) -> None:
    """The module's run trains 1 epoch (``until: epochs``): a budget, not a plateau. The table, the learning
    curves and the summary say so; a copy whose r2plus1d rows converged ranks r2plus1d alone and names
    frame_avg as left out."""
    run_dir = run[0]
    frame = pd.read_csv(run_dir / "results.csv")
    trained = frame[frame["epochs_run"].notna()]
    assert (trained["stopped_by"] == "max_epochs").all() and (~trained["converged"].astype(bool)).all()
    assert (trained["epochs_run"] == 1).all() and (trained["train_pflops"].dropna() > 0).all()
    report = (run_dir / "report.md").read_text()
    summary = report.split("## Summary\n\n", 1)[1].split("\n", 1)[0]
    assert summary.startswith("no model converged (each stopped by a budget:"), summary
    assert "[not converged]" in summary
    table = report.split("## Results", 1)[1].split("## Cells not measured", 1)[0]
    assert "| converged |" in table and "not converged" in table
    curves = report.split("### Training curves", 1)[1].split("\n## ", 1)[0]
    assert "Not converged (stopped by a budget, not at a plateau): r2plus1d/tiny (max_epochs)" in curves
    protocol = "r2plus1d/tiny: lr 0.001, 1 epoch, stopped by max_epochs (not converged); settings from the suite's"
    assert protocol in report.split("\n## Training curves\n", 1)[1].split("\n## ", 1)[0]
    mixed = copy_of("mixed")
    _rewrite_rows(mixed, lambda r: {**r, "converged": True, "stopped_by": "plateau"} if r["model"] == "r2plus1d" else r)
    text = summary_paragraph(load_frame(mixed))
    assert text.startswith("left out as not converged (stopped by a budget): frame_avg/tiny (max_epochs); best"), text
    assert text.count("frame_avg") == 1, "named once, as left out; never ranked"


def test_rows_carry_the_interval_of_their_top1(run) -> None:
    frame = pd.read_csv(run[0] / "results.csv")
    ok = frame[frame["status"] == "ok"]
    assert (ok["test_clips"] == ok["test_clips"].iloc[0]).all() and ok["test_clips"].iloc[0] >= 20
    assert ((ok["top1_ci95_low"] <= ok["top1"]) & (ok["top1"] <= ok["top1_ci95_high"])).all()
    assert (ok["top1_ci95_high"] - ok["top1_ci95_low"] > 0.05).all(), "a small split gives a wide interval"
    assert "top-1 95% CI" in (run[0] / "summary.md").read_text()


def test_a_win_by_less_than_the_interval_is_called_a_tie(run, copy_of) -> None:
    """A copied run in which r2plus1d's ONNX artifact gets one test clip more right than eager: the summary must
    not crown it alone; it names the tie. A win by far more than the interval is no tie."""
    frame = pd.read_csv(run[0] / "results.csv")
    eager = frame[(frame["model"] == "r2plus1d") & (frame["optimization"] == "eager")].iloc[0]
    clips = int(eager["test_clips"])
    # One epoch of training can leave r2plus1d anywhere, 0 % included, where one clip is no tie: fix a mid value.
    middle = (clips // 2) / clips
    better = middle + 1 / clips

    def one_clip_better(row: dict) -> dict:
        row = {**row, "converged": True}  # as if every model had reached its plateau: only the tie is at stake
        if row["status"] != "ok":
            return row
        if row["model"] == "frame_avg":
            return {**row, "top1": 0.0}  # out of the way: the comparison is r2plus1d's eager vs onnx
        return {**row, "top1": better if row["optimization"] == "onnx" else middle}

    edited = copy_of("one-clip")
    _rewrite_rows(edited, one_clip_better)
    summary = summary_paragraph(load_frame(edited))
    assert f"best accuracy: r2plus1d/tiny (onnx) at {better * 100:.1f}% top-1 (95% interval" in summary, summary
    assert f"a tie with r2plus1d/tiny (eager) {middle * 100:.1f}%" in summary, summary
    far = copy_of("far-better")
    _rewrite_rows(far, lambda r: {**r, "top1": 1.0} if (r["model"], r["optimization"]) == ("r2plus1d", "onnx") else r)
    assert "a tie with" not in summary_paragraph(load_frame(far))


def test_missing_inputs_become_visible_notes(run, copy_of) -> None:
    bare = copy_of("bare")
    for pattern in ("analysis.json", "tsne.png", "metrics.jsonl"):
        for path in bare.glob(f"models/*/{pattern}"):
            path.unlink()
    (bare / "env.json").unlink()
    _rewrite_rows(bare, lambda r: {**r, "status": "failed", "reason": "made to fail by the test"})
    proc = vidbench("report", str(bare), cwd=bare)
    assert proc.returncode == 0, proc.stderr
    html = (bare / "report.html").read_text()
    for key in ("accuracy_latency", "speedup", "per_class", "confusion", "probes", "tsne_r2plus1d_tiny", "training",
                "latency_histograms"):  # fmt: skip
        assert "not available:" in _figure_block(html, key), key
    assert "no per-class accuracy (analysis.json)" in _figure_block(html, "per_class")
    assert "not available: env.json is missing" in html
    assert "not available: no ok row to profile" in _figure_block(html, "operators")
    assert "No cell was measured successfully" in html
    assert html.count("made to fail by the test") >= 2


def test_where_the_time_goes_splits_each_artifact_by_operator_group(run, copy_of) -> None:
    """Every timed artifact has its engine's profile beside its samples; its table line names the top groups,
    whose times with the rest add up to the profiled call; a run without the files says why."""
    data = load_run(run[0])
    figures = {figure.key: figure for figure in operator_figures(data)}
    assert set(figures) == set(OPERATOR_FIGURES)
    for key in OPERATOR_FIGURES:
        figure = figures[key]
        assert figure.png, figure.missing
        table = figure.table.set_index("artifact")
        assert set(table.index) == {"eager", "onnx"}
        assert "torch.profiler" in table.loc["eager", "profiler"]
        assert "ONNX Runtime" in table.loc["onnx", "profiler"]
    for path in (run[0] / "logs").glob("*/*/operators_bs1.json"):
        profile = OperatorProfile.from_dict(json.loads(path.read_text()))
        groups = top_groups(profile)
        assert sum(ms for _, ms in groups) == pytest.approx(max(profile.wall_ms, profile.ops_ms), rel=1e-6)
        assert profile.unprofiled_ms and profile.unprofiled_ms > 0
        attributed = top_groups(profile, attributed=True)  # the table's: shares of the unprofiled call
        assert sum(ms for _, ms in attributed) == pytest.approx(profile.unprofiled_ms, rel=1e-6)
    assert not list((run[0] / "logs").glob("*/*/operators_bs2.json"))  # measure.profile: the smallest batch
    bare = copy_of("no-profiles")  # without the logs folder
    missing = operator_figures(load_run(bare))
    assert all("no profile file" in (figure.missing or "") for figure in missing)


def test_a_report_failure_is_printed_and_keeps_the_results(run, copy_of) -> None:
    broken = copy_of("broken")
    (broken / "report.html").unlink()
    (broken / "report.html.tmp").mkdir()  # the page cannot be written
    before = (broken / "results.jsonl").read_text()
    proc = vidbench("report", str(broken), cwd=broken)
    assert proc.returncode == 1
    assert "report failed: IsADirectoryError" in " ".join(proc.stderr.split())
    assert "summary:" in proc.stdout and (broken / "results.jsonl").read_text() == before


def test_compare_fails_on_a_worse_top1_and_passes_identical_runs(run, copy_of) -> None:
    a = copy_of("a")
    b = copy_of("b")
    worse = ("r2plus1d", "eager", "ok")
    _rewrite_rows(
        b, lambda r: {**r, "top1": r["top1"] - 0.05} if (r["model"], r["optimization"], r["status"]) == worse else r
    )
    broken = vidbench("compare", str(a), str(b), "--fail-on", "top1<-1", cwd=a)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "FAIL" in broken.stdout and "FAIL" not in broken.stderr, "the verdict is the output"
    assert "synthetic-motion/r2plus1d/tiny/eager/b1: top1" in broken.stdout
    assert "(-5.00 points) breaks 'top1<-1'" in broken.stdout
    assert "frame_avg" not in broken.stdout.split("FAIL", 1)[1]
    as_json = vidbench("compare", str(a), str(b), "--fail-on", "top1<-1", "--json", cwd=a)
    document = json.loads(as_json.stdout)
    assert as_json.returncode == 1 and document["verdict"] == "FAIL" and document["rules"] == ["top1<-1"]
    assert document["broken"] and all("r2plus1d" in message for message in document["broken"])
    assert {"model", "optimization", "metric", "a", "b", "change"} <= set(document["deltas"][0])
    same = vidbench("compare", str(a), str(a), "--fail-on", "top1<-1", "--fail-on", "latency_ms_p50>+10%", cwd=a)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "PASS" in same.stdout and "environments differ" not in same.stderr
    loose = compare_runs(a, b, [parse_rule("top1<-6")])  # the threshold matters: a 5-point drop passes -6
    assert not loose.failed and loose.status_changes == []


def test_compare_breaks_on_a_speedup_only_outside_both_intervals(run, copy_of) -> None:
    a, b = copy_of("a"), copy_of("b")
    onnx = ("r2plus1d", "onnx", "ok")

    def speedup(value: float, half: float):
        bounds = {"speedup": value, "speedup_ci95_low": value - half, "speedup_ci95_high": value + half}
        return lambda r: {**r, **bounds} if (r["model"], r["optimization"], r["status"]) == onnx else r

    _rewrite_rows(a, speedup(4.0, 0.3))
    _rewrite_rows(b, speedup(3.5, 0.3))  # -12.5 %, but 3.7-4.3 and 3.2-3.8 overlap: a tie
    tied = compare_runs(a, b, [parse_rule("speedup<-10%")])
    assert not tied.failed, tied.broken
    row = tied.table[(tied.table["metric"] == "speedup") & (tied.table["optimization"] == "onnx")].iloc[0]
    assert bool(row["tie"]) and any("a tie" in str(v) for v in wide_table(tied.table).to_numpy().ravel())
    _rewrite_rows(b, speedup(3.0, 0.3))  # -25 %, 2.7-3.3 lies below 3.7-4.3
    broken = compare_runs(a, b, [parse_rule("speedup<-10%")])
    assert broken.failed and all("r2plus1d/tiny/onnx" in message for message in broken.broken), broken.broken


def test_compare_says_when_environments_differ(run, copy_of) -> None:
    a, b = copy_of("a"), copy_of("b")
    env = json.loads((b / "env.json").read_text())
    env["cpu"] = "Some Other CPU @ 9.99GHz"
    torch_version, env["packages"]["torch"] = env["packages"]["torch"], "9.9.9"
    (b / "env.json").write_text(json.dumps(env))
    proc = vidbench("compare", str(a), str(b), "--fail-on", "top1<-1", "--require-same-env", cwd=a)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "environments differ" in proc.stderr and "FAIL" not in proc.stdout + proc.stderr
    assert "Some Other CPU @ 9.99GHz" in proc.stderr and f"torch: {torch_version} vs 9.9.9" in proc.stderr
    lenient = compare_runs(a, b, [parse_rule("top1<-1")])  # without --require-same-env: a warning, not a failure
    assert not lenient.failed and len(lenient.env_diffs) == 2


def test_compare_rejects_a_bad_rule(run) -> None:
    proc = vidbench("compare", str(run[0]), str(run[0]), "--fail-on", "top1<<1", cwd=run[0])
    assert proc.returncode == 2 and "bad rule 'top1<<1'" in proc.stderr, proc.stderr
    with pytest.raises(ValueError, match="no column 'nonsense'"):
        compare_runs(run[0], run[0], [parse_rule("nonsense<-1")])


def test_rules_and_pareto_front() -> None:
    rule = parse_rule("latency_ms_p50>+10%")
    assert (rule.metric, rule.op, rule.threshold, rule.relative) == ("latency_ms_p50", ">", 10.0, True)
    assert rule.broken_by(10.5) and not rule.broken_by(9.9)
    drop = parse_rule("top1<-1")
    assert drop.unit() == "points" and drop.broken_by(-1.5) and not drop.broken_by(-0.5)
    points = pd.DataFrame({"ms": [1.0, 2.0, 3.0, 2.5, 0.5], "acc": [50.0, 60.0, 70.0, 55.0, 10.0]})
    assert list(pareto_front(points, "ms", "acc").index) == [4, 0, 1, 2]


@pytest.mark.serial
def test_kinetics50_fails_fast_naming_the_layout(tmp_path: Path) -> None:
    start = time.monotonic()
    proc = vidbench("run", str(REPO / "suites" / "kinetics50.yaml"), "--quiet", cwd=tmp_path, timeout=120)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # a data error (README exit status)
    message = " ".join(proc.stderr.split())
    assert "kinetics data not found at data/kinetics400" in message
    assert "expected layout: <root>/{train,val}.csv and <root>/{train,val}/<label>/<youtube_id>_" in message
    assert time.monotonic() - start < 90
    assert not list(tmp_path.glob("results/kinetics50/*/models")), "something was trained"


# Headless Chromium: the page really renders, every figure decodes, no script or console error.


def _chromium() -> str | None:
    """Debian's chromium; installed with apt-get when missing and this process may (root, apt present)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=300, check=False)
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], env=env, capture_output=True, timeout=900)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = _chromium()
    if path is None:
        pytest.skip("no chromium, and it cannot be installed here (needs root and apt-get with network access)")
    return path


HEADLESS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=5000")


def test_report_renders_in_headless_chromium(run, chromium: str, tmp_path: Path) -> None:
    from PIL import Image

    page = (run[0] / "report.html").as_uri()
    shot = tmp_path / "report.png"
    subprocess.run(
        [chromium, *HEADLESS, f"--screenshot={shot}", "--window-size=1400,5000", page],
        capture_output=True, timeout=180, check=True,
    )  # fmt: skip
    image = Image.open(shot).convert("L")
    assert image.size == (1400, 5000)
    colors = image.resize((140, 500)).getcolors(256)
    assert colors is not None and len(colors) > 20, "the screenshot is blank"
    dumped = subprocess.run(
        [chromium, *HEADLESS, "--enable-logging=stderr", "--v=0", "--dump-dom", page],
        capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip
    root = re.search(r"<html[^>]*>", dumped.stdout).group(0)
    marks = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', root))
    assert marks.get("checked") == "1", root
    assert marks["figures"] == marks["figures-ok"] == str(len(FIGURES)), root
    assert marks["table-rows"] == str(len(pd.read_csv(run[0] / "results.csv")))
    assert "js-errors" not in marks and "resource-errors" not in marks, root
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert not console, console


SORT_PROBE = """<script>
window.addEventListener("load", function () {
  var th = Array.from(document.querySelectorAll("#results-table th")).find(h => h.textContent.trim() === "p50 ms");
  var column = Array.from(th.parentNode.children).indexOf(th);
  var rows = () => Array.from(document.querySelectorAll("#results-table tbody tr"));
  var read = () => rows().map(r => r.cells[column].textContent);
  th.click(); document.documentElement.dataset.ascending = read().join(",");
  th.click(); document.documentElement.dataset.descending = read().join(",");
});
</script></body>"""


def test_results_table_sorts_in_chromium(run, chromium: str, tmp_path: Path) -> None:
    page = tmp_path / "sort.html"
    page.write_text((run[0] / "report.html").read_text().replace("</body>", SORT_PROBE))
    dumped = subprocess.run(
        [chromium, *HEADLESS, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180, check=True
    )
    marks = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', re.search(r"<html[^>]*>", dumped.stdout).group(0)))
    values = marks["ascending"].split(",")
    numbers = [float(v.split()[0]) for v in values if v != "-"]  # a p50 may carry a flag: "1.23 uncertain"
    assert (
        numbers == sorted(numbers)
        and len(numbers) >= 8
        and values[len(numbers) :] == ["-"] * (len(values) - len(numbers))
    )
    assert [float(v.split()[0]) for v in marks["descending"].split(",") if v != "-"] == sorted(numbers, reverse=True)


def test_pareto_front_keeps_ties_inside_the_interval() -> None:
    """A faster point only one clip more accurate does not push a point off the front; a faster point far more
    accurate does."""
    points = pd.DataFrame({"ms": [1.0, 2.0, 3.0], "acc": [80.0, 79.6, 60.0], "high": [85.0, 84.6, 66.0]})
    assert list(pareto_front(points, "ms", "acc", upper="high").index) == [0, 1]
    assert list(pareto_front(points, "ms", "acc").index) == [0]


def test_seeds_give_mean_spread_and_error_bars(tmp_path: Path, data_root: Path) -> None:
    """``train.seeds`` of 3: one job (folder, rows) per seed; every row carries the mean and spread of its cell's
    top-1 over the seeds; the table shows them and the accuracy figure draws error bars."""
    train = {"epochs": 1, "batch_size": 16, "workers": 0, "timeout_s": 300, "seeds": [0, 1, 2]}
    suite = write_suite(tmp_path, data_root, batch_sizes=[1], train=train)
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    frame = pd.read_csv(run_dir / "results.csv")
    assert sorted(frame["seed"]) == [0, 1, 2] and (frame["status"] == "ok").all()
    assert sorted(frame["job"]) == [f"synthetic-motion__r2plus1d__tiny__seed{s}" for s in (0, 1, 2)]
    assert (frame["seeds_n"] == 3).all()
    assert frame["top1_seed_mean"].iloc[0] == pytest.approx(frame["top1"].mean())
    assert frame["top1_seed_std"].iloc[0] == pytest.approx(frame["top1"].std())
    report = (run_dir / "report.md").read_text()
    assert "top-1 over seeds" in report and "(3 seeds)" in report
    assert "Top-1 is the mean over 3 training seeds; error bars: their standard deviation." in report
    assert "Top-1 is the mean over 3 training seeds (spread in the table and as error bars)" in report


def test_one_seed_is_said_in_the_summary(run) -> None:
    summary = (run[0] / "report.md").read_text().split("## Summary\n\n", 1)[1].split("\n", 1)[0]
    assert "Each model was trained with one seed" in summary


# Interleaved timing's columns (speedup, its 95 % interval, speedup_uncertain) and label placement, on small
# hand-made rows (no run needed).


def _rows(*rows: dict) -> pd.DataFrame:
    """Result rows for the tests below: every summary-table column (None unless given), ok, batch 1."""
    base = {column: None for column, _, _ in DISPLAY}
    base |= {"dataset": "d", "preset": "tiny", "status": "ok", "reason": "", "batch_size": 1, "top1": 0.8}
    return pd.DataFrame([{**base, **row} for row in rows])


def _run_data(frame: pd.DataFrame, tmp_path: Path, baseline: str = "eager") -> RunData:
    return RunData(run_dir=tmp_path, frame=frame, env={}, suite={"baseline": baseline}, jobs=[])


INTERLEAVED = (
    {"model": "m1", "optimization": "reference", "latency_ms_p50": 10.0, "speedup": 1.0, "speedup_ci95_low": 1.0,
     "speedup_ci95_high": 1.0, "speedup_uncertain": False, "timing": "interleaved", "timing_rounds": 10},
    {"model": "m1", "optimization": "onnx", "latency_ms_p50": 5.0, "top1": 0.79, "speedup": 1.92,
     "speedup_ci95_low": 1.83, "speedup_ci95_high": 2.01, "speedup_uncertain": False, "timing": "interleaved",
     "timing_rounds": 10},
    {"model": "m1", "optimization": "int8", "latency_ms_p50": 4.0, "speedup": 2.4, "speedup_ci95_low": 2.0,
     "speedup_ci95_high": 2.9, "speedup_uncertain": True, "timing": "interleaved", "timing_rounds": 10},
    {"model": "m2", "optimization": "reference", "latency_ms_p50": 8.0},
    {"model": "m2", "optimization": "onnx", "latency_ms_p50": 2.0, "timing": "alone"},  # no speedup: p50 ratio
)  # fmt: skip


def test_speedup_caption_names_the_baseline_and_its_rule(tmp_path: Path) -> None:
    old = _rows(*[{k: v for k, v in row.items() if not k.startswith(("speedup", "timing"))} for row in INTERLEAVED])
    figure = speedup_vs_baseline(_run_data(old, tmp_path, "reference"))
    assert figure.png and figure.missing is None
    assert figure.caption.startswith("Speedup = reference p50 / optimized p50 at the same batch"), figure.caption
    assert "0.0 p50" not in figure.caption
    new = speedup_vs_baseline(_run_data(_rows(*INTERLEAVED), tmp_path, "reference"))
    assert new.png and "median over the interleaved timing rounds of reference's round p50" in new.caption
    assert "Rows without interleaved rounds (older runs, artifacts timed alone): reference p50 /" in new.caption
    assert "95% interval" in new.table.columns


def test_speedup_table_uses_the_interleaved_speedup_and_falls_back_to_the_p50_ratio() -> None:
    table = speedup_table(_rows(*INTERLEAVED), "reference").set_index(["model", "optimization"])
    assert list(table.columns) == ["batch", "speedup x", "95% interval", "uncertain", "top-1 delta (points)"]
    assert table.loc[("m1/tiny", "onnx"), "speedup x"] == 1.92  # not the p50 ratio, 2.0
    assert table.loc[("m1/tiny", "onnx"), "95% interval"] == "1.83-2.01"
    assert table.loc[("m1/tiny", "onnx"), "uncertain"] is False
    assert table.loc[("m1/tiny", "onnx"), "top-1 delta (points)"] == -1.0
    assert table.loc[("m1/tiny", "int8"), "uncertain"] is True
    assert table.loc[("m2/tiny", "onnx"), "speedup x"] == 4.0  # timed alone: 8 / 2
    assert table.loc[("m2/tiny", "onnx"), "95% interval"] == "-"
    assert table.loc[("m2/tiny", "onnx"), "uncertain"] is None
    old = _rows(
        {"model": "m1", "optimization": "reference", "latency_ms_p50": 10.0},
        {"model": "m1", "optimization": "onnx", "latency_ms_p50": 4.0},
    )
    fallback = speedup_table(old, "reference")
    assert list(fallback.columns) == ["model", "optimization", "batch", "speedup x", "top-1 delta (points)"]
    assert fallback["speedup x"].tolist() == [2.5]


def test_the_table_flags_uncertain_speedups_and_unstable_old_rows() -> None:
    """``speedup_uncertain`` marks p50 "uncertain"; ``latency_unstable`` marks it "unstable" only on a row without
    ``speedup_uncertain`` (as loaded: 1.0 / 0.0 / NaN); the speedup column shows the interval."""
    frame = _rows(
        {"model": "m1", "optimization": "int8", "latency_ms_p50": 10.0, "speedup": 2.4, "speedup_ci95_low": 2.0,
         "speedup_ci95_high": 2.9, "speedup_uncertain": 1.0, "latency_unstable": float("nan")},
        {"model": "m1", "optimization": "onnx", "latency_ms_p50": 5.0, "speedup": 1.925, "speedup_ci95_low": 1.83,
         "speedup_ci95_high": 2.01, "speedup_uncertain": 0.0, "latency_unstable": 1.0},
        {"model": "m2", "optimization": "onnx", "latency_ms_p50": 4.0, "speedup_uncertain": float("nan"),
         "latency_unstable": 1.0},
        {"model": "m2", "optimization": "raises", "status": "failed", "speedup_uncertain": True},
    )  # fmt: skip
    table = display_frame(frame)
    assert table["p50 ms"].tolist() == ["10.00 uncertain", "5.00", "4.00 unstable", "-"]
    assert table["speedup"].tolist() == ["2.40x [2.00-2.90]", "1.93x [1.83-2.01]", "-", "-"]
    assert list(table.columns).index("speedup") == list(table.columns).index("p50 ms") + 1
    assert "speedup" in [column.header for column in rich_table(frame).columns]
    old = display_frame(frame.drop(columns=["speedup", "speedup_ci95_low", "speedup_ci95_high", "speedup_uncertain"]))
    assert old["p50 ms"].tolist() == ["10.00", "5.00 unstable", "4.00 unstable", "-"]
    assert "speedup" not in old.columns


def _fastest(frame: pd.DataFrame) -> str:
    """The summary's "fastest within ..." clause (the "smallest" clause follows it)."""
    return summary_paragraph(frame).split("fastest within ", 1)[1].split("; smallest", 1)[0]


def test_speedups_whose_intervals_overlap_are_a_tie_for_the_fastest() -> None:
    eager = {"model": "m1", "optimization": "eager", "latency_ms_p50": 10.0, "speedup": 1.0, "size_mb": 2.0}
    onnx = {"model": "m1", "optimization": "onnx", "latency_ms_p50": 9.5, "speedup": 1.05, "size_mb": 1.0}
    wide = _fastest(_rows(eager, {**onnx, "speedup_ci95_low": 0.97, "speedup_ci95_high": 1.12}))
    assert wide.startswith("1 point of best: m1/tiny (onnx) at 9.50 ms per clip (batch 1, 80.0% top-1)"), wide
    assert wide.endswith(", a tie with m1/tiny (eager) 10.00 ms (their speedups' 95% intervals overlap)"), wide
    narrow = _fastest(_rows(eager, {**onnx, "speedup_ci95_low": 1.04, "speedup_ci95_high": 1.06}))
    assert "a tie" not in narrow and "m1/tiny (onnx) at 9.50 ms" in narrow, narrow
    old = [{k: v for k, v in row.items() if k != "speedup"} for row in (eager, onnx)]
    assert _fastest(_rows(*old)) == "1 point of best: m1/tiny (onnx) at 9.50 ms per clip (batch 1, 80.0% top-1)"


def _overlapping(boxes: list) -> list[tuple[int, int]]:
    return [
        (i, j)
        for i, a in enumerate(boxes)
        for j, b in enumerate(boxes[:i])
        if a.x0 < b.x1 and b.x0 < a.x1 and a.y0 < b.y1 and b.y0 < a.y1
    ]


def test_point_labels_of_close_points_do_not_overprint(tmp_path: Path) -> None:
    """Six artifacts within 2 % of each other in latency and 0.5 points in top-1 (beside two far-off controls that
    set the axes' range): drawn at their default offset their labels would overprint; the figure moves them
    apart, the same way every time."""
    close = [
        {"model": f"model{i}", "optimization": optimization, "latency_ms_p50": 10.0 + 0.05 * i + 0.02 * k,
         "top1": 0.80 + 0.001 * i - 0.002 * k}
        for i in range(3)
        for k, optimization in enumerate(("eager", "onnx"))
    ]  # fmt: skip
    far = [{"model": "control", "optimization": o, "latency_ms_p50": 60.0, "top1": 0.2} for o in ("eager", "onnx")]
    run = _run_data(_rows(*close, *far), tmp_path)
    offsets = []
    for _ in range(2):
        fig = draw_accuracy_latency(accuracy_latency_points(run), run.frame)
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        labels = [[t for t in ax.texts if isinstance(t, Annotation)] for ax in fig.axes]
        assert [len(group) for group in labels] == [8, 4, 4]
        for group in labels:
            boxes = [label.get_window_extent(renderer) for label in group]
            assert not _overlapping(boxes), [group[i].get_text() for pair in _overlapping(boxes) for i in pair]
        offsets.append([label.xyann for group in labels for label in group])
    assert any(offset != (4, 3) for offset in offsets[0]), "the points are not close enough to test anything"
    assert offsets[0] == offsets[1]
    assert accuracy_latency(run).png


def test_a_label_meeting_a_box_it_rounds_against_is_placed_past_it() -> None:
    """Run 20261207-103746's accuracy-vs-latency figure hung here: shifted just below the box at y 107.8, the
    label still touched it by rounding (1e-14 px) and met it again, forever."""
    box = Bbox.from_bounds(216.80465784798128, 305.9717119402539, 67.0, 10.335611979166686)
    placed = [Bbox.from_bounds(182.057047877112, 107.80672593390806, 75.00000000000003, 10.335611979166671)]
    placed += [Bbox.from_bounds(x, y, 64.0, 10.335611979166686) for x, y in ((266.81815972992587, 312.36091729525856),
               (233.52798395712392, 300.0253053160919), (222.388733544269, 287.6896933369252))]  # fmt: skip
    placed += [Bbox.from_bounds(198.0, y, 75.0, 10.335611979166671) for y in range(110, 290, 12)]  # a column below
    for down in (True, False):
        shift = _shift(box, placed, down=down)
        assert (shift < 0) == down and not any(_overlap(box.translated(0, shift), p) for p in placed)
