"""``python -m vidbench.cli``."""

from vidbench.cli import main

main()
