"""Finding and checking video files before any training: every file is probed once, broken ones are
listed with their reason instead of failing a run later."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from vidbench.data.decode import DecodeError, VideoMeta, probe
from vidbench.specs import PreparedDataset, VideoSample

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv")


class DatasetError(Exception):
    """A dataset that cannot be used as given (missing path, empty class, unknown label); says which."""


def _probe_one(path: str) -> VideoMeta | str:
    try:
        meta = probe(path)
    except DecodeError as exc:
        return str(exc)
    except Exception as exc:  # a library error on a hostile file is still just a bad file
        return f"{path}: {type(exc).__name__}: {exc}"
    if meta.frames < 1:
        return f"{path}: zero frames"
    return meta


def probe_files(paths: Sequence[Path], workers: int = 2) -> tuple[dict[Path, VideoMeta], list[tuple[str, str]]]:
    """Probe every file (in ``workers`` processes): the readable ones' metadata, and ``(path, reason)``
    for each file that cannot be read."""
    if workers > 1 and len(paths) > 8:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_probe_one, [str(p) for p in paths], chunksize=8))
    else:
        results = [_probe_one(str(p)) for p in paths]
    good, bad = {}, []
    for path, result in zip(paths, results, strict=True):
        if isinstance(result, str):
            bad.append((str(path), result))
        else:
            good[path] = result
    return good, bad


def decode_all(path: Path, expected_frames: int) -> str:
    """Decode every frame with PyAV; ``""`` when all decode, else what went wrong."""
    import av

    decoded = 0
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                decoded += 1
    except Exception as exc:
        return f"decoding failed after {decoded} of {expected_frames} frames: {exc}"
    if decoded < expected_frames:
        return f"only {decoded} of {expected_frames} frames decode"
    return ""


def list_videos(folder: Path, extensions: Iterable[str] = VIDEO_EXTENSIONS) -> list[Path]:
    """Video files directly in ``folder`` (by extension, case-insensitive), sorted."""
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions}
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in wanted)


def write_skipped(path: Path, rows: Iterable[tuple[str, str]]) -> None:
    """``path,reason`` CSV with a header."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "reason"])
        writer.writerows(rows)


def save_prepared(prepared: PreparedDataset, path: Path) -> None:
    """Write a prepared dataset's index as JSON (atomic), so child processes need not scan again."""
    data = {
        "root": str(prepared.root),
        "class_names": prepared.class_names,
        "labels_kind": prepared.labels_kind,
        "mirror": None if prepared.mirror is None else {str(k): v for k, v in prepared.mirror.items()},
        "splits": {name: [[str(s.path), s.label] for s in samples] for name, samples in prepared.splits.items()},
        "skipped": [list(row) for row in prepared.skipped],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def load_prepared(path: Path) -> PreparedDataset:
    """Read what :func:`save_prepared` wrote."""
    data = json.loads(Path(path).read_text())
    mirror = data["mirror"]
    return PreparedDataset(
        root=Path(data["root"]),
        class_names=data["class_names"],
        splits={
            name: [VideoSample(Path(p), tuple(y) if isinstance(y, list) else y) for p, y in rows]
            for name, rows in data["splits"].items()
        },
        labels_kind=data["labels_kind"],
        mirror=None if mirror is None else {int(k): v for k, v in mirror.items()},
        skipped=[tuple(row) for row in data["skipped"]],
    )
