"""docs/adding-a-model.md runs as written: its module and pyproject are copied out, installed, used."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from tests.conftest import REPO, install_into, only_run_dir, vidbench, write_suite


def _blocks(markdown: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", markdown, flags=re.S)


def test_adding_a_model_example_works_as_written(tmp_path: Path, data_root: Path) -> None:
    doc = (REPO / "docs" / "adding-a-model.md").read_text()
    module, pyproject = _blocks(doc, "python")[0], _blocks(doc, "toml")[0]
    package = tmp_path / "pkg"
    (package / "my_video_models").mkdir(parents=True)
    (package / "my_video_models" / "__init__.py").write_text("")
    (package / "my_video_models" / "tiny_c2d.py").write_text(module)
    (package / "pyproject.toml").write_text(pyproject)
    env = install_into(package, tmp_path / "site")
    listing = vidbench("plugins", "list", cwd=tmp_path, env=env, timeout=120)
    assert "tiny_c2d" in listing.stdout and "my-video-models:my_video_models.tiny_c2d" in listing.stdout
    info = vidbench("models", "info", "tiny_c2d", cwd=tmp_path, env=env, timeout=120)
    assert info.returncode == 0, info.stderr[-2000:]
    assert "tiny_c2d" in info.stdout and "8 x 32" in info.stdout
    suite = write_suite(
        tmp_path,
        data_root,
        models=[{"name": "tiny_c2d", "presets": ["tiny"]}],
        optimizations=["eager", "onnx"],
        batch_sizes=[1],
    )
    proc = vidbench("run", str(suite), "--quiet", cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frame = pd.read_csv(only_run_dir(tmp_path) / "results.csv")
    assert set(frame["model"]) == {"tiny_c2d"} and set(frame["status"]) == {"ok"}, frame["reason"].tolist()
