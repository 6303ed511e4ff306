"""``vidbench plugins list`` and ``models info``: what the installed plugins offer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vidbench.cli.common import JsonOpt, console, fail

plugins_app = typer.Typer(help="Inspect the installed plugins.", no_args_is_help=True)
models_app = typer.Typer(help="Inspect the model plugins.", no_args_is_help=True)


def _plugin_record(item: Any) -> dict[str, Any]:
    """One registered plugin as plain data: kind, name, source, description and what its kind adds."""
    spec = item.spec
    record: dict[str, Any] = {"kind": item.kind, "name": spec.name, "source": item.source}
    if item.kind == "model":
        record["presets"] = list(spec.presets)
    elif item.kind == "optimization":
        ok, why = spec.supported("cpu")
        record.update(cpu_supported=ok, cpu_reason=why or None, baseline=spec.baseline, lossy=spec.lossy)
    else:
        record["options"] = list(spec.options.model_fields)
        if item.kind == "trainer":
            record["default"] = spec.default
    return {**record, "description": spec.description}


def _detail(record: dict[str, Any]) -> str:
    if "presets" in record:
        return ", ".join(record["presets"])
    if "cpu_supported" in record:
        support = "cpu: supported" if record["cpu_supported"] else f"cpu: unsupported ({record['cpu_reason']})"
        return support + ("; baseline" if record["baseline"] else "")
    return ", ".join(record["options"]) + ("; default" if record.get("default") else "")


@plugins_app.command("list")
def plugins_list(
    suite_file: Annotated[Path | None, typer.Option("--suite", help="Also load this suite's local plugins.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List every model, dataset, optimization and trainer with where it comes from."""
    from vidbench.plugins import PluginError, load_plugins
    from vidbench.suite.compose import load_suite
    from vidbench.suite.schema import SuiteError

    try:
        registry = load_suite(suite_file)[1] if suite_file else load_plugins()
    except (SuiteError, PluginError) as exc:
        raise fail(str(exc)) from None
    records = [_plugin_record(item) for item in registry.all()]
    if as_json:
        print(json.dumps({"plugins": records}, indent=2))
        return
    table = Table(title="vidbench plugins")
    for column in ("kind", "name", "source", "presets / support / options", "description"):
        table.add_column(column, overflow="fold")
    for record in records:
        table.add_row(record["kind"], record["name"], record["source"], _detail(record), record["description"])
    console.print(table)


@models_app.command("info")
def models_info(
    name: Annotated[str | None, typer.Argument(help="One model; all when omitted.")] = None,
    flops: Annotated[bool, typer.Option(help="Count fvcore GFLOPs (slow for the large presets).")] = True,
    num_classes: Annotated[int, typer.Option(help="Head size for the counts (published figures use 400).")] = 400,
    as_json: JsonOpt = False,
) -> None:
    """Per model and preset: params, fvcore GFLOPs at the preset's input, published figures and the
    difference, input spec, ONNX exportability; then each preset's training recipe and its source."""
    from vidbench.plugins import load_plugins

    registry = load_plugins()
    names = [name] if name else sorted(registry.models)
    if name and name not in registry.models:
        raise fail(f"unknown model {name!r}; allowed: {', '.join(sorted(registry.models))}")
    table = Table(
        title=f"vidbench models (GFLOPs: fvcore, one multiply-add = one FLOP, batch 1, {num_classes} classes)"
    )
    for column in (
        "model",
        "preset",
        "input T x crop",
        "params M",
        "published M",
        "diff %",
        "GFLOPs",
        "published",
        "diff %",
        "K400 top-1",
        "ONNX",
        "source",
    ):
        table.add_column(column, overflow="fold")
    records = [_preset_record(registry, model_name, preset, num_classes, flops) for model_name in names
               for preset in registry.model(model_name).presets.values()]  # fmt: skip
    if as_json:
        print(json.dumps({"num_classes": num_classes, "presets": records}, indent=2))
        return
    for r in records:
        pub = r["published"] or {}

        def diff(ours: float | None, theirs: float | None) -> str:
            return f"{(ours - theirs) / theirs * 100:+.2f}" if ours is not None and theirs else "-"

        table.add_row(
            r["model"],
            r["preset"],
            f"{r['frames']} x {r['crop']}",
            f"{r['params'] / 1e6:.3f}",
            f"{pub['params'] / 1e6:.2f}" if pub.get("params") else "-",
            diff(r["params"], pub.get("params")),
            f"{r['gflops']:.3f}" if r["gflops"] is not None else "-",
            f"{pub['gflops']:g}" if pub.get("gflops") else "-",
            diff(r["gflops"], pub.get("gflops")),
            f"{pub['top1']:g}" if pub.get("top1") else "-",
            "yes" if r["onnx_exportable"] is True else f"no: {r['onnx_exportable']}",
            pub.get("source") or r["description"],
        )
    console.print(table)
    console.print(_recipes_table(registry, names))


def _preset_record(registry: Any, model_name: str, preset: Any, num_classes: int, flops: bool) -> dict[str, Any]:
    """One preset as plain data: input, params and GFLOPs counted here, published figures, recipe."""
    import dataclasses

    import torch

    from vidbench.measure.complexity import count_params, gflops_per_clip

    spec = registry.model(model_name)
    model = spec.build(preset, num_classes).eval()
    gflops = None
    if flops:
        gflops = gflops_per_clip(model, torch.zeros(1, 3, preset.input.frames, preset.input.crop, preset.input.crop))
    recipe = preset.recipe
    return {
        "model": model_name,
        "preset": preset.name,
        "frames": preset.input.frames,
        "crop": preset.input.crop,
        "stride": preset.input.stride,
        "params": count_params(model),
        "gflops": gflops,
        "published": dataclasses.asdict(preset.published) if preset.published else None,
        "onnx_exportable": spec.onnx_exportable,
        "description": preset.description,
        "recipe": {"settings": dict(recipe.settings), "source": recipe.source} if recipe else None,
    }


def _recipes_table(registry: Any, names: list[str]) -> Table:
    """Each preset's default training recipe (a suite's per-model ``train:`` overrides it; it overrides the
    suite's ``train:`` block)."""
    table = Table(title="training recipes (precedence: suite per-model train > recipe > suite train)")
    for column in ("model", "preset", "recipe", "source"):
        table.add_column(column, overflow="fold")
    for model_name in names:
        for preset in registry.model(model_name).presets.values():
            recipe = preset.recipe
            settings = ", ".join(f"{k}={v}" for k, v in recipe.settings.items()) if recipe else "(suite's train: block)"
            table.add_row(model_name, preset.name, settings, recipe.source if recipe else "-")
    return table
