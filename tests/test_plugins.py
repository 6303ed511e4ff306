"""Plugins: a third-party package with its own entry point, a local file, duplicate names."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import install_into, only_run_dir, vidbench, write_suite
from vidbench.plugins import PluginError, load_plugins

MODEL_MODULE = '''
"""A third-party model: a 3D conv, pooled, and a head."""
import torch
from torch import nn
from vidbench import hookimpl
from vidbench.specs import InputSpec, ModelSpec, Preset


class {cls}(nn.Module):
    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, width, 3, padding=1)
        self.fc = nn.Linear(width, num_classes)

    def embed(self, clip: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(clip)).mean(dim=(2, 3, 4))

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        return self.fc(self.embed(clip))


@hookimpl
def vidbench_models():
    preset = Preset("small", InputSpec(frames=4, crop=16), {{"width": 8}})
    return [ModelSpec("{name}", {{"small": preset}}, lambda p, n: {cls}(n, **p.arch))]
'''


def _install_third_party(tmp_path: Path) -> dict[str, str]:
    """Build and install a real package declaring a ``vidbench`` entry point into its own target folder."""
    src = tmp_path / "src"
    (src / "acme_video").mkdir(parents=True)
    (src / "acme_video" / "__init__.py").write_text(MODEL_MODULE.format(cls="AcmeNet", name="acme_net"))
    (src / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "acme-video"
        version = "1.0"
        [project.entry-points.vidbench]
        acme = "acme_video"
        [tool.setuptools]
        packages = ["acme_video"]
    """)
    )
    return install_into(src, tmp_path / "site")


def test_third_party_entry_point_plugin_lists_and_runs(tmp_path: Path, data_root: Path) -> None:
    env = _install_third_party(tmp_path)
    listing = vidbench("plugins", "list", cwd=tmp_path, env=env, timeout=120)
    assert listing.returncode == 0, listing.stderr
    assert "acme_net" in listing.stdout and "acme-video:acme_video" in listing.stdout
    without = vidbench("plugins", "list", cwd=tmp_path, timeout=120)
    assert "acme_net" not in without.stdout
    suite = write_suite(tmp_path, data_root, models=[{"name": "acme_net", "presets": ["small"]}], batch_sizes=[1])
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(only_run_dir(tmp_path) / "results.csv")
    assert list(frame["model"]) == ["acme_net"] and list(frame["status"]) == ["ok"]


def test_local_file_plugin_named_in_a_suite_runs(tmp_path: Path, data_root: Path) -> None:
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "my_model.py").write_text(MODEL_MODULE.format(cls="MyNet", name="my_net"))
    suite = write_suite(
        tmp_path,
        data_root,
        plugins=["plugins/my_model.py"],
        batch_sizes=[1],
        models=[{"name": "my_net"}],
        optimizations=["eager", "onnx"],
    )
    listing = vidbench("plugins", "list", "--suite", str(suite), cwd=tmp_path, timeout=120)
    assert "my_net" in listing.stdout
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(only_run_dir(tmp_path) / "results.csv")
    assert set(frame["model"]) == {"my_net"} and set(frame["status"]) == {"ok"}, frame["reason"].tolist()


def test_duplicate_names_fail_naming_both_sources(tmp_path: Path) -> None:
    clash = tmp_path / "clash.py"
    clash.write_text(MODEL_MODULE.format(cls="Clash", name="r2plus1d"))
    with pytest.raises(PluginError) as info:
        load_plugins([clash])
    message = str(info.value)
    assert "duplicate model name 'r2plus1d'" in message
    assert "vidbench_plugins.models.r2plus1d" in message and str(clash) in message


def test_builtin_plugins_are_all_registered() -> None:
    registry = load_plugins()
    assert {"r2plus1d", "frame_avg"} <= set(registry.models)
    assert {"eager", "onnx"} <= set(registry.optimizations)
    assert "synthetic-motion" in registry.datasets
