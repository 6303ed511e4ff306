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

import sys
import traceback
from typing import Annotated

import typer

from vidbench import __version__
from vidbench.cli import data, learn, plugins, run, serve
from vidbench.cli.common import ExitCode, err_console

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
def _root(
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


def main() -> None:
    """The ``vidbench`` executable: the app, with click's catch-alls replaced so that every exit status means
    one thing (:class:`~vidbench.cli.common.ExitCode`): Ctrl-C exits 130, not click's 1 ("a cell failed"), and
    an unexpected exception prints its traceback and exits 70."""
    try:
        code = app(standalone_mode=False)
    except typer.Abort:  # the command line's translation of KeyboardInterrupt
        err_console.print("interrupted (Ctrl-C)", highlight=False)
        sys.exit(ExitCode.INTERRUPTED)
    except typer.TyperException as exc:  # usage errors (click's, vendored by typer): the message, status 2
        exc.show()  # type: ignore[attr-defined]
        sys.exit(getattr(exc, "exit_code", ExitCode.USAGE))
    except Exception:
        traceback.print_exc()
        err_console.print("[bold red]internal error[/] (a bug in vidbench or a plugin): the traceback is above")
        sys.exit(ExitCode.INTERNAL)
    sys.exit(code if isinstance(code, int) else ExitCode.OK)


__all__ = ["app", "main"]
