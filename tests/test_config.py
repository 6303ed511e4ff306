"""Bad suites fail before any work, with one line naming the field, the bad value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import suite_dict, vidbench
from vidbench.suite.compose import load_suite
from vidbench.suite.schema import SuiteError

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


RECIPE_PLUGIN = """
from torch import nn
from vidbench import hookimpl
from vidbench.specs import InputSpec, ModelSpec, Preset, Recipe

def build(preset, num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))

PRESETS = {
    "tuned": Preset("tuned", InputSpec(4, 16), recipe=Recipe({"lr": 0.02, "lr_batch": 64, "epochs": 9,
                                                              "weight_decay": 0.1}, "an experiment")),
    "bad": Preset("bad", InputSpec(4, 16), recipe=Recipe({"workers": 7}, "a mistake")),
    "plain": Preset("plain", InputSpec(4, 16)),
}

@hookimpl
def vidbench_models():
    return [ModelSpec(name="recipe-net", presets=PRESETS, build=build)]
"""


def _recipe_suite(tmp_path: Path, preset: str, model_train: dict | None = None, **top: object) -> Path:
    (tmp_path / "recipe_plugin.py").write_text(RECIPE_PLUGIN)
    data = suite_dict(tmp_path, plugins=["recipe_plugin.py"], **{"recipes": True, **top})
    data["train"] = {"epochs": 2, "lr": 0.001, "batch_size": 16, "weight_decay": 0.05, "workers": 0}
    data["models"] = [{"name": "recipe-net", "presets": [preset], "train": model_train or {}}]
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_recipe_precedence_model_over_recipe_over_suite(tmp_path: Path) -> None:
    """The suite's train block < the preset's recipe < the model's own train block; ``recipes: false`` keeps the
    suite's; the lr scales with the global batch from the recipe's ``lr_batch``; the job names the recipe."""
    from vidbench.suite.cells import expand
    from vidbench.suite.schema import train_sources

    suite, registry = load_suite(_recipe_suite(tmp_path, "tuned", {"epochs": 4}))
    job = expand(suite, registry)[0][0]
    settings = job.train_settings()
    assert (settings.epochs, settings.lr, settings.weight_decay, settings.workers) == (4, 0.02, 0.1, 0)
    assert settings.effective_lr() == pytest.approx(0.02 * 16 / 64)
    assert job.recipe == "an experiment"
    sources = train_sources(suite, suite.models[0], registry.model("recipe-net").presets["tuned"].recipe.settings)
    assert (sources["epochs"], sources["lr"], sources["batch_size"], sources["seed"]) == (
        "model", "recipe", "suite", "default"
    )  # fmt: skip
    off, registry = load_suite(_recipe_suite(tmp_path, "tuned", recipes=False))
    plain = expand(off, registry)[0][0]
    assert (plain.train_settings().lr, plain.train_settings().epochs, plain.recipe) == (0.001, 2, None)
    assert plain.digest() != job.digest()


def test_a_recipe_may_set_only_recipe_fields(tmp_path: Path) -> None:
    with pytest.raises(SuiteError, match=r"model 'recipe-net' preset 'bad' recipe: workers: not a recipe field"):
        load_suite(_recipe_suite(tmp_path, "bad"))


def test_seeds_make_one_job_per_seed_and_seed_zero_is_the_single_run(tmp_path: Path) -> None:
    from vidbench.suite.cells import expand

    (tmp_path / "recipe_plugin.py").write_text(RECIPE_PLUGIN)
    single, registry = load_suite(_recipe_suite(tmp_path, "plain"))
    seeded, _ = load_suite(_recipe_suite(tmp_path, "plain", {"seeds": [0, 1, 2]}))
    jobs = expand(seeded, registry)[0]
    assert [j.seed for j in jobs] == [0, 1, 2] and len({j.slug for j in jobs}) == 3
    assert jobs[0].slug.endswith("__seed0") and jobs[0].digest() == expand(single, registry)[0][0].digest()


def test_models_info_shows_each_presets_recipe() -> None:
    proc = vidbench("models", "info", "timesformer", "--no-flops", cwd=Path.cwd())
    assert proc.returncode == 0, proc.stderr
    assert "training recipes (precedence: suite per-model train > recipe > suite train)" in proc.stdout
    assert "lr=" in proc.stdout
