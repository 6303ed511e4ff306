"""Writing a run's report files: ``report.md`` (figures as PNGs beside it) and a self-contained ``report.html``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vidbench.report.document import build_report
from vidbench.report.html import render_html
from vidbench.report.markdown import render_markdown
from vidbench.report.rundata import load_run
from vidbench.rundir import RunDir


@dataclass(frozen=True)
class ReportFiles:
    """Where a report was written."""

    markdown: Path
    html: Path


def write_report(run_dir: Path) -> ReportFiles:
    """Write the Markdown report (figures as PNGs in its files folder) and the self-contained HTML report."""
    run = RunDir(run_dir)
    report = build_report(load_run(run.root))
    _atomic_write(run.report_html, render_html(report))
    _atomic_write(run.report_markdown, render_markdown(report, run.report_files))
    return ReportFiles(run.report_markdown, run.report_html)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
