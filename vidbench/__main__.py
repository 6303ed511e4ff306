"""``python -m vidbench``: the command line."""

from vidbench.cli import main

main()
