"""vidbench: a plugin-based benchmarking harness for video-understanding models."""

from importlib import metadata as _metadata

from vidbench.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
try:  # the installed distribution's version: pyproject.toml is its one source
    __version__ = _metadata.version("vidbench")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
