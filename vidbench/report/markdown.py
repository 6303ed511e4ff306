"""``report.md``: the report as Markdown, figures written as PNG files beside it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from vidbench.report.document import Report


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "_(none)_"
    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def render_markdown(report: Report, figure_dir: Path) -> str:
    """The Markdown text; each figure's PNG is written into ``figure_dir`` and linked relatively."""
    figure_dir.mkdir(parents=True, exist_ok=True)
    for stale in figure_dir.glob("*.png"):  # a figure now missing must not leave its old PNG behind
        stale.unlink()
    lines = [f"# {report.title}", "", "## Summary", "", report.summary, "", "## Results", "", _table(report.table)]
    lines += ["", "## Cells not measured", ""]
    lines.append(_table(report.not_measured) if not report.not_measured.empty else "Every cell was measured (ok).")
    for section in report.sections:
        lines += ["", f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        for figure in section.figures:
            lines += [f"### {figure.title}", ""]
            if figure.png is None:
                lines += [f"_not available: {figure.missing}_", ""]
                continue
            path = figure_dir / f"{figure.key}.png"
            path.write_bytes(figure.png)
            lines += [f"![{figure.title}]({figure_dir.name}/{path.name})", ""]
            if figure.caption:
                lines += [figure.caption, ""]
            if figure.table is not None and not figure.table.empty:
                lines += [_table(figure.table), ""]
    lines += ["", "## Environment", ""] + [f"- {name}: {value}" for name, value in report.environment]
    lines += ["", "---", "", "Methodology:", ""] + [f"- {text}" for text in report.methodology]
    return "\n".join(lines) + "\n"
