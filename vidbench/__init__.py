"""vidbench: a plugin-based benchmarking harness for video-understanding models."""

from vidbench.hookspecs import hookimpl

__all__ = ["__version__", "hookimpl"]
__version__ = "0.1.0"
