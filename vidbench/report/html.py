"""``report.html``: the report rendered with jinja2 into one self-contained page (no network access)."""

from __future__ import annotations

import jinja2

from vidbench.report.document import Report
from vidbench.report.template import REPORT_TEMPLATE

TEXT_COLUMNS = frozenset({"dataset", "model", "preset", "trainer", "optim.", "status", "reason"})
"""Result-table columns aligned left (the rest are numbers)."""


def render_html(report: Report) -> str:
    """The HTML page of ``report``: sortable table, inline PNG figures, environment and methodology."""
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return env.from_string(REPORT_TEMPLATE).render(report=report, css=column_class)


def column_class(column: str) -> str:
    """The CSS class of a result-table column: ``reason`` wraps, text columns align left, numbers right."""
    return "reason" if column == "reason" else ("text" if column in TEXT_COLUMNS else "")
