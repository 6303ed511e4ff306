"""Self-describing artifacts: a model card beside every measured artifact, and inside its ONNX files.

``card.json`` (and a README.md made from it) says what the artifact is and how to feed it without vidbench:
the model and preset, the input (frames sampled how, resize, crop, normalisation, layout), the class names,
the training recipe, and what the run measured (parity with the trained model, accuracy, latency, machine).
An ONNX file of the artifact carries the same card in its ``metadata_props`` (key ``vidbench.card``), so
plain ONNX Runtime can preprocess a video and name the classes from the file alone. The card is written after
the artifact was measured: its size and timings are of the artifact without it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidbench.data.transforms import KINETICS_MEAN, KINETICS_STD, resize_size
from vidbench.rundir import write_json_atomic

CARD_KEY = "vidbench.card"
"""The ``metadata_props`` key of the card in an ONNX artifact."""

CARD_FIELDS_OF_ROWS = (
    "top1", "top1_ci95_low", "top1_ci95_high", "top5", "test_clips", "agreement_top1", "max_abs_logit_diff",
    "size_mb", "params_m", "gflops_per_clip", "status", "reason",
)  # fmt: skip
LATENCY_FIELDS = ("latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "clips_per_s", "threads")


def model_card(ctx: Any, optimization: str, notes: str, rows: list[dict[str, Any]], env: dict[str, Any]) -> dict:
    """The card of one measured artifact of job ``ctx.job`` (``rows``: its rows, one per batch size)."""
    job, settings = ctx.job, ctx.job.train_settings()
    first = rows[0] if rows else {}
    return {
        "format": "vidbench model card 1",
        "model": job.model,
        "preset": job.variant,
        "optimization": optimization,
        "notes": notes,
        "input": {
            "layout": "N x C x T x H x W, float32, RGB",
            "frames": job.frames,
            "sampling": f"{job.sampling}: positions p = numpy.linspace(0, n - 1, frames) over the n decoded frames, "
            "index floor(p + 0.5) below the middle (n - 1) / 2 and ceil(p - 0.5) from it on",
            "resize_short_side": resize_size(job.crop),
            "resize": "bilinear with antialiasing, the shorter side to resize_short_side, aspect kept",
            "crop": job.crop,
            "crop_position": "centre",
            "scale": "uint8 / 255",
            "mean": list(KINETICS_MEAN),
            "std": list(KINETICS_STD),
        },
        "output": "logits, N x classes (softmax for probabilities)",
        "class_names": list(ctx.dataset.class_names),
        "dataset": {"name": job.dataset, "options": dict(job.dataset_options)},
        "training": {
            "trainer": job.trainer_name,
            "recipe": job.recipe,
            "lr": settings.effective_lr(),
            "epochs_run": first.get("epochs_run"),
            "stopped_by": first.get("stopped_by"),
            "converged": first.get("converged"),
            "seed": job.seed,
        },
        "measured": {key: first.get(key) for key in CARD_FIELDS_OF_ROWS},
        "latency": {str(row.get("batch_size")): {k: row.get(k) for k in LATENCY_FIELDS} for row in rows},
        "environment": {k: env.get(k) for k in ("cpu", "isa", "cores", "device", "packages", "git_commit")},
        "run": {"run_id": ctx.run.run_id, "job": job.slug},
    }


def card_markdown(card: dict[str, Any]) -> str:
    """README.md of an artifact folder: the card for a person."""
    spec, measured = card["input"], card["measured"]
    top1 = measured.get("top1")
    lines = [
        f"# {card['model']}/{card['preset']} ({card['optimization']})",
        "",
        f"{card['notes']}".strip() or "-",
        "",
        "## Input",
        f"`{spec['layout']}`: {spec['frames']} frames ({spec['sampling']}); {spec['resize']} "
        f"({spec['resize_short_side']} px); {spec['crop_position']} crop {spec['crop']} x {spec['crop']}; "
        f"{spec['scale']}; normalised with mean {spec['mean']} and std {spec['std']}.",
        "",
        f"## Output\n{card['output']}; classes in order: {', '.join(card['class_names'])}.",
        "",
        "## Measured",
        f"top-1 {top1 * 100:.1f}% on {measured.get('test_clips')} test clips" if top1 is not None else "top-1: -",
        f"; agreement with the trained model {measured.get('agreement_top1')}, max |dlogit| "
        f"{measured.get('max_abs_logit_diff')}; status {measured.get('status')} {measured.get('reason') or ''}",
        "",
        "Latency by batch size: " + json.dumps(card["latency"]),
        "",
        f"## Training\n{json.dumps(card['training'])}",
        "",
        f"## Environment\n{json.dumps(card['environment'])}",
        "",
        "The same card is `card.json` here and, for ONNX files, the `vidbench.card` entry of their metadata.",
    ]
    return "\n".join(lines) + "\n"


def add_latency(card_json: Path, readme: Path, rows: list[dict[str, Any]]) -> None:
    """The timings and status of an artifact's rows added to its card once the job's timing has measured them (the card
    inside an ONNX file stays as written after the accuracy check: rewriting the file would change what was
    timed); a missing card is left missing."""
    try:
        card = json.loads(card_json.read_text())
    except (OSError, ValueError):
        return
    card["latency"] = {str(row.get("batch_size")): {k: row.get(k) for k in LATENCY_FIELDS} for row in rows}
    if rows:
        card["measured"].update({"status": rows[0].get("status"), "reason": rows[0].get("reason")})
    write_json_atomic(card_json, card)
    readme.write_text(card_markdown(card))


def write_card(card_json: Path, readme: Path, files: list[Path], card: dict[str, Any]) -> list[Path]:
    """The card as ``card_json`` and ``readme``, and in each ONNX file's metadata (the weights stay where they
    are: external data is not rewritten). Returns the ONNX files that got it."""
    write_json_atomic(card_json, card)
    readme.write_text(card_markdown(card))
    stamped = []
    for path in files:
        if Path(path).suffix != ".onnx" or not Path(path).is_file():
            continue
        import onnx

        model = onnx.load(str(path), load_external_data=False)
        kept = [p for p in model.metadata_props if p.key != CARD_KEY]
        del model.metadata_props[:]
        model.metadata_props.extend(kept)
        entry = model.metadata_props.add()
        entry.key, entry.value = CARD_KEY, json.dumps(card, default=str)
        tmp = Path(path).with_name(f".{Path(path).name}.card")
        onnx.save(model, str(tmp))
        tmp.replace(path)
        stamped.append(Path(path))
    return stamped
