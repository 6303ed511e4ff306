"""``vidbench data inspect|bench|preview``: look at video files before they go into a suite."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vidbench.cli.common import DecodeBackend, ExitCode, JsonOpt, console, fail

data_app = typer.Typer(help="Look at video files: metadata, decode speed, sampled frames.", no_args_is_help=True)


def _video_files(path: Path) -> list[Path]:
    """``path`` itself, or every file under it: which are videos is found by probing their content."""
    from vidbench.data.scan import find_files

    if path.is_file():
        return [path]
    if not path.is_dir():
        raise fail(f"{path}: no such file or folder")
    files = find_files(path)
    if not files:
        raise fail(f"{path}: no files")
    return files


def _file_record(file: Path, good: dict[Path, Any], bad: list[tuple[str, str]], notes: dict[Path, str]) -> dict:
    """One inspected file as plain data: its metadata and problems, or why it is not a readable video."""
    from vidbench.data.scan import is_not_video

    if file not in good:
        reason = next(r for p, r in bad if p == str(file))
        return {"file": str(file), "status": "not_video" if is_not_video(reason) else "unreadable", "reason": reason}
    m = good[file]
    width, height = m.display_size
    return {
        "file": str(file), "status": "video", "container": m.container, "codec": m.codec, "pix_fmt": m.pix_fmt,
        "color_range": m.color_range, "coded_width": m.coded_width, "coded_height": m.coded_height,
        "display_width": width, "display_height": height, "rotation": m.rotation, "sar": str(m.sar), "fps": m.fps,
        "frames": m.frames, "frames_from": m.frames_from, "duration_s": m.duration_s, "vfr": m.vfr,
        "keyframes": m.keyframes, "problems": [*m.problems(), *filter(None, [notes.get(file)])],
    }  # fmt: skip


@data_app.command("inspect")
def data_inspect(
    path: Annotated[Path, typer.Argument(help="A video file or a folder (searched recursively).")],
    decode: Annotated[bool, typer.Option(help="Also decode every frame (finds damaged packet data).")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Metadata of each file (container, codec, range, size, rotation, SAR, fps, frames, VFR) and its problems."""
    from vidbench.data.scan import decode_all, is_not_video, probe_files, readable_by

    files = _video_files(path)
    good, bad = probe_files(files, workers=1)
    notes: dict[Path, str] = {}
    if decode:
        for file in list(good):
            error, note = decode_all(file, good[file].frames)
            if error:
                bad.append((str(file), error))
                del good[file]
            else:
                readers = readable_by(file, good[file])
                read = f"read by {' and '.join(readers)}" if readers else "no backend reads it"
                notes[file] = "; ".join(filter(None, [note, read]))
    others = sum(is_not_video(reason) for _, reason in bad)
    if as_json:
        print(json.dumps({"path": str(path), "files": [_file_record(f, good, bad, notes) for f in files]}, indent=2))
        return
    title = f"{path}: {len(files)} file(s): {len(good)} video(s), {len(bad) - others} unreadable, {others} not video"
    table = Table(title=title)
    for column in (
        "file",
        "container",
        "codec",
        "pix_fmt",
        "range",
        "coded",
        "display",
        "rot",
        "SAR",
        "fps",
        "frames",
        "dur s",
        "VFR",
        "keyframes",
        "problems",
    ):
        table.add_column(column, overflow="fold")
    base = path if path.is_dir() else path.parent
    for file in files:
        name = str(file.relative_to(base))
        if file not in good:
            reason = next(r for p, r in bad if p == str(file)).replace(str(file), name)
            label = "[dim]not a video" if is_not_video(reason) else "[red]unreadable"
            table.add_row(name, *["-"] * 13, f"{label}: {reason}[/]")
            continue
        m = good[file]
        w, h = m.display_size
        table.add_row(
            name,
            m.container,
            m.codec,
            m.pix_fmt,
            m.color_range,
            f"{m.coded_width}x{m.coded_height}",
            f"{w}x{h}",
            str(m.rotation),
            str(m.sar),
            f"{m.fps:.2f}",
            f"{m.frames} ({m.frames_from})",
            f"{m.duration_s:.2f}",
            "yes" if m.vfr else "no",
            str(m.keyframes),
            "; ".join([*m.problems(), *filter(None, [notes.get(file)])]),
        )
    console.print(table)


@data_app.command("bench")
def data_bench(
    path: Annotated[Path, typer.Argument(help="A video file or a folder of them.")],
    frames: Annotated[int, typer.Option(help="Frames per clip (uniform over the whole video).")] = 16,
    crop: Annotated[int, typer.Option(help="Crop size of the eval transforms.")] = 112,
    rounds: Annotated[int, typer.Option(help="Passes over the files per backend.")] = 3,
    threads: Annotated[int, typer.Option(help="torch threads for the transforms.")] = 1,
    policy: Annotated[
        list[str] | None,
        typer.Option(help="A decode policy to time (repeat; default: every mode, and keyframes+scaled)."),
    ] = None,
    decode_threads: Annotated[int, typer.Option(help="Decoder threads per file.")] = 1,
    as_json: JsonOpt = False,
) -> None:
    """Decode + transform clips/s per backend and per decode policy on the same files; ``x exact``: against
    PyAV's exact reader, ``x pytorchvideo``: against pytorchvideo's EncodedVideo (the reference)."""
    import torch

    from vidbench.data.bench import DEFAULT_POLICIES, REFERENCE, bench_backends, decoders

    torch.set_num_threads(threads)
    files = _video_files(path)
    try:
        chosen = decoders(policy or DEFAULT_POLICIES, decode_threads, crop)
    except ValueError as exc:
        raise fail(str(exc)) from None
    results = bench_backends(chosen, files, frames, crop, rounds=rounds)
    reference = next(r for r in results if r.backend == REFERENCE)
    exact = next(r for r in results if r.backend == "pyav")
    if as_json:
        backends = [
            {**dataclasses.asdict(r), "clips_per_s": r.clips_per_s, "frames_per_s": r.frames_per_s,
             "vs_reference": r.clips_per_s / reference.clips_per_s if reference.clips_per_s else None,
             "vs_exact": r.clips_per_s / exact.clips_per_s if exact.clips_per_s else None}
            for r in results
        ]  # fmt: skip
        document = {
            "files": len(files),
            "rounds": rounds,
            "frames": frames,
            "crop": crop,
            "threads": threads,
            "decode_threads": decode_threads,
        }
        print(json.dumps({**document, "reference": REFERENCE, "backends": backends}, indent=2))
        return
    table = Table(
        title=f"{len(files)} file(s) x {rounds} round(s), {frames} frames uniform, {crop}px eval transforms, "
        f"{decode_threads} decoder thread(s)"
    )
    for column in (
        "backend",
        "clips",
        "failed",
        "clips/s",
        "frames/s",
        "decode ms/clip",
        "transform ms/clip",
        "collate ms/clip",
        "x exact",
        f"x {REFERENCE}",
    ):
        table.add_column(column, justify="right")
    for r in results:
        per = 1000 / max(r.clips, 1)
        ratio = r.clips_per_s / reference.clips_per_s if reference.clips_per_s else float("nan")
        table.add_row(
            r.backend,
            str(r.clips),
            str(r.failed),
            f"{r.clips_per_s:.1f}",
            f"{r.frames_per_s:.0f}",
            f"{r.decode_s * per:.1f}",
            f"{r.transform_s * per:.1f}",
            f"{r.collate_s * per:.2f}",
            f"{r.clips_per_s / exact.clips_per_s:.2f}" if exact.clips_per_s else "-",
            f"{ratio:.2f}",
        )
    console.print(table)


@data_app.command("preview")
def data_preview(
    path: Annotated[Path, typer.Argument(help="A video file.")],
    out: Annotated[Path, typer.Option(help="PNG to write.")] = Path("preview.png"),
    frames: Annotated[int, typer.Option(help="Frames to sample.")] = 8,
    crop: Annotated[int, typer.Option(help="Crop size of the eval transforms.")] = 112,
    backend: Annotated[DecodeBackend, typer.Option(help="The decoder (auto: decord if installed, else PyAV).")] = (
        DecodeBackend.auto
    ),
) -> None:
    """Write a PNG contact sheet of a clip's sampled frames, as decoded and after the transforms."""
    from vidbench.data.decode import DecodeError, resolve_backend
    from vidbench.data.preview import contact_sheet

    try:
        written = contact_sheet(path, out, frames, crop, resolve_backend(backend.value))
    except DecodeError as exc:
        raise fail(str(exc), ExitCode.DATA) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    console.print(f"preview: {written}")
