"""Command-line conventions: the version, ``python -m vidbench``, options that only make sense together."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import REPO, vidbench, write_suite


def test_version_matches_the_package_and_python_m_works(tmp_path: Path) -> None:
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    commands = ([str(Path(sys.executable).parent / "vidbench")], [sys.executable, "-m", "vidbench"])
    for command in commands:
        proc = subprocess.run([*command, "--version"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == f"vidbench {declared}", proc.stdout


def test_retry_failed_without_resume_is_refused(tmp_path: Path, data_root: Path) -> None:
    suite = write_suite(tmp_path, data_root)
    proc = vidbench("run", str(suite), "--retry-failed", "--quiet", cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "--retry-failed" in proc.stderr and "--resume" in proc.stderr
    assert not (tmp_path / "results").exists(), "refused before any work"


def test_data_preview_decodes_with_the_auto_backend_by_default(tmp_path: Path, data_root: Path) -> None:
    clip = next((data_root / "synthetic-motion").rglob("*.mp4"))
    help_text = vidbench("data", "preview", "--help", cwd=tmp_path, timeout=120).stdout
    assert "auto" in help_text and "pyav" in help_text, help_text
    proc = vidbench("data", "preview", str(clip), "--out", str(tmp_path / "p.png"), "--crop", "32", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "p.png").stat().st_size > 0
    bad = vidbench("data", "preview", str(clip), "--backend", "opencv", cwd=tmp_path, timeout=120)
    assert bad.returncode == 2 and "opencv" in bad.stderr


def test_loading_every_plugin_raises_no_deprecation_warning(tmp_path: Path) -> None:
    """fvcore's import-time ``torch.jit.script`` warning (through pytorchvideo) is silenced where it is imported;
    any other FutureWarning on the way to a loaded registry fails here."""
    env = {"PYTHONWARNINGS": "error::FutureWarning"}
    proc = vidbench("plugins", "list", cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x3d" in proc.stdout and "slowfast" in proc.stdout and "Warning" not in proc.stderr


def test_plugins_list_json_is_one_document_with_every_plugin(tmp_path: Path) -> None:
    import json

    proc = vidbench("plugins", "list", "--json", cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plugins = json.loads(proc.stdout)["plugins"]
    by_name = {(p["kind"], p["name"]): p for p in plugins}
    assert "tiny" in by_name[("model", "r2plus1d")]["presets"]
    assert by_name[("optimization", "eager")]["baseline"] is True
    assert by_name[("optimization", "tensorrt")]["cpu_supported"] is False
    assert by_name[("trainer", "distill")]["options"] == ["teacher", "temperature", "alpha"]
    assert [p["name"] for p in plugins if p.get("default")] == ["supervised"]
