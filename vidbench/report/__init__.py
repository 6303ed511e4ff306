"""What a run directory tells a reader: the result table, the computed summary, the figures, the Markdown and
HTML report, and the comparison of two runs."""
