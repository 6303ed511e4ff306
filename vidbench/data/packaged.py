"""Real data that ships inside installable packages: a PyPI package's data files, a Debian package's files.

Nothing here downloads at run time from anywhere but the package registries the project already installs
from; a missing package is a :class:`~vidbench.data.scan.DatasetError` whose one line names it and how to get it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from vidbench.data.scan import DatasetError


def pypi_file(distribution: str, package: str, relative: str) -> Path:
    """The file ``relative`` inside the installed package ``package`` (from the PyPI distribution
    ``distribution``), found without importing the package (an old package's ``__init__`` may not import
    with today's libraries, and its data files do not need it to)."""
    spec = importlib.util.find_spec(package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise DatasetError(
            f"the PyPI package {distribution!r} is not installed (it holds the real data: pip install {distribution})"
        )
    path = Path(locations[0]) / relative
    if not path.is_file():
        raise DatasetError(f"the PyPI package {distribution!r} has no {relative} (reinstall {distribution})")
    return path


def debian_package(name: str, cache: Path) -> Path:
    """The files of the Debian package ``name``, unpacked under ``cache/<name>/`` (no root needed: the .deb is
    fetched with ``apt-get download`` from the machine's configured archive and unpacked with ``dpkg-deb -x``).
    Done once: later calls return the unpacked folder. ``cache/<name>/SOURCE`` names the .deb and its SHA-256."""
    folder = cache / name
    if (folder / "SOURCE").exists():
        return folder
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise DatasetError(f"the Debian package {name!r} is needed, and {tool} is not on this machine's PATH")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as scratch:
        fetched = subprocess.run(["apt-get", "download", name], cwd=scratch, capture_output=True, text=True)
        debs = sorted(Path(scratch).glob(f"{name}_*.deb"))
        if fetched.returncode != 0 or not debs:
            last = (fetched.stderr.strip().splitlines() or ["no .deb written"])[-1]
            raise DatasetError(f"the Debian package {name!r} could not be fetched (apt-get download {name}): {last}")
        unpacked = Path(scratch) / "unpacked"
        subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(unpacked)], check=True, capture_output=True)
        digest = hashlib.sha256(debs[0].read_bytes()).hexdigest()
        (unpacked / "SOURCE").write_text(f"{debs[0].name} sha256 {digest}\n")
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(unpacked, folder)  # whole or absent: a reader never sees half a package
    return folder
