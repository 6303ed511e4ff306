"""A PNG contact sheet of one clip: the sampled frames as decoded (upright, square pixels) and the
same frames after the evaluation transforms (normalization undone), for eyes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from vidbench.data.decode import Backend, open_video
from vidbench.data.sampling import ClipSpec, sample_indices
from vidbench.data.transforms import KINETICS_MEAN, KINETICS_STD, clip_transform, frames_to_clip


def _denormalize(clip: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(KINETICS_MEAN).view(3, 1, 1, 1)
    std = torch.tensor(KINETICS_STD).view(3, 1, 1, 1)
    images = (clip * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    return images.permute(1, 2, 3, 0).numpy()


def _row(frames: np.ndarray, height: int) -> Image.Image:
    tiles = [Image.fromarray(f).resize((max(1, round(f.shape[1] * height / f.shape[0])), height)) for f in frames]
    row = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), height), "white")
    x = 0
    for tile in tiles:
        row.paste(tile, (x, 0))
        x += tile.width + 4
    return row


def contact_sheet(
    path: str | Path, out: str | Path, frames: int = 8, crop: int = 112, backend: Backend = "decord", height: int = 160
) -> Path:
    """Write the contact sheet of ``path`` to ``out`` and return ``out``."""
    reader = open_video(path, backend, square_pixels=True)
    indices = sample_indices(reader.meta.frames, ClipSpec(frames))
    raw = reader.read(indices)
    transformed = _denormalize(frames_to_clip(raw, clip_transform(crop, train=False)))
    rows = [_row(raw, height), _row(transformed, height)]
    title = 24
    sheet = Image.new("RGB", (max(r.width for r in rows), title + sum(r.height + 8 for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    w, h = reader.meta.display_size
    draw.text(
        (4, 4),
        f"{Path(path).name}: frames {indices} of {reader.meta.frames}, display {w}x{h}, "
        f"rotation {reader.meta.rotation}, top: decoded, bottom: after {crop}px eval transforms",
        fill="black",
    )
    y = title
    for row in rows:
        sheet.paste(row, (0, y))
        y += row.height + 8
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out
