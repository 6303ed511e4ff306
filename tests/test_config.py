"""Bad suites fail before any work, with one line naming the field, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import suite_dict, vidbench
from vidbench.run.config import SuiteError, load_suite

BAD_SUITES = [
    (
        "unknown model",
        {"models": [{"name": "r2plus1dd"}]},
        ["models[0].name", "'r2plus1dd'", "allowed:", "frame_avg", "r2plus1d"],
    ),
    (
        "unknown preset",
        {"models": [{"name": "r2plus1d", "presets": ["huge"]}]},
        ["models[0].presets[0]", "'huge'", "tiny", "r18"],
    ),
    (
        "unknown optimization",
        {"optimizations": ["eager", "tensorrtt"]},
        ["optimizations[1]", "'tensorrtt'", "eager", "onnx"],
    ),
    ("bad batch size", {"batch_sizes": [1, 0]}, ["batch_sizes", "[1, 0]"]),
    ("wrong type", {"train": {"epochs": "many"}}, ["train.epochs", "'many'", "integer"]),
    ("unknown field", {"meassure": {}}, ["meassure", "unknown field", "allowed:", "measure"]),
    ("bad sampling", {"input": {"sampling": "random"}}, ["input.sampling", "'random'", "'uniform'", "'dense'"]),
    (
        "bad dataset option",
        {"datasets": [{"name": "synthetic-motion", "options": {"size": "huge"}}]},
        ["datasets[0].options.size", "'huge'", "'tiny'", "'small'", "'full'"],
    ),
    ("unknown dataset", {"datasets": [{"name": "kinetics-9000"}]}, ["datasets[0].name", "synthetic-motion"]),
    (
        "missing weights",
        {"models": [{"name": "r2plus1d", "pretrained": "nope.pt"}]},
        ["models[0].pretrained", "'nope.pt'", "not found"],
    ),
]


@pytest.mark.parametrize(("case", "change", "expected"), BAD_SUITES, ids=[c[0] for c in BAD_SUITES])
def test_bad_suite_names_the_field(tmp_path: Path, case: str, change: dict, expected: list[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(suite_dict(tmp_path / "data", **change)))
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for fragment in expected:
        assert fragment in message, (fragment, message)


def test_cli_rejects_a_bad_suite_before_any_work(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(suite_dict(tmp_path / "data", models=[{"name": "nope"}])))
    proc = vidbench("run", str(path), cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert "models[0].name" in proc.stderr and "'nope'" in proc.stderr
    assert not (tmp_path / "results").exists()
    assert not (tmp_path / "data").exists()


def test_yaml_syntax_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nmodels: [r2plus1d\n")
    with pytest.raises(SuiteError, match=r"invalid YAML at line \d+"):
        load_suite(path)


def test_shipped_suites_are_valid() -> None:
    for path in sorted(Path(__file__).resolve().parents[1].glob("suites/*.yaml")):
        suite, _ = load_suite(path)
        assert suite.name == path.stem
