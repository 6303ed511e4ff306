"""The ``vidbench`` command line: one module per command group, assembled here.

- :mod:`~vidbench.cli.run`: ``run``, ``report``, ``compare``, ``export``
- :mod:`~vidbench.cli.learn`: ``train``, ``evaluate``
- :mod:`~vidbench.cli.serve`: ``embed``, ``index build|query``, ``serve``
- :mod:`~vidbench.cli.plugins`: ``plugins list``, ``models info``
- :mod:`~vidbench.cli.data`: ``data inspect|bench|preview``

:mod:`~vidbench.cli.common` holds the consoles and the one ``fail``; :mod:`~vidbench.cli.progress` the
progress display of ``run``.
"""

from __future__ import annotations

from typing import Annotated

import typer

from vidbench import __version__
from vidbench.cli import data, learn, plugins, run, serve

app = typer.Typer(
    help="Benchmark video-understanding models: train, optimize, measure, compare.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        print(f"vidbench {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, help="Print the version and exit.")
    ] = False,
) -> None:
    """Benchmark video-understanding models: train, optimize, measure, compare."""


app.command()(run.run)
app.command()(learn.train)
app.command()(learn.evaluate)
app.command()(run.report)
app.command()(run.compare)
app.command()(run.export)
app.add_typer(plugins.plugins_app, name="plugins")
app.add_typer(plugins.models_app, name="models")
app.add_typer(data.data_app, name="data")
app.command()(serve.embed)
app.add_typer(serve.index_app, name="index")
app.command()(serve.serve)

__all__ = ["app"]
