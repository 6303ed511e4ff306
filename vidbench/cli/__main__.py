"""``python -m vidbench.cli``."""

from vidbench.cli import app

app()
