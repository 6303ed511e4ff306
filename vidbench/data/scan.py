"""Finding and checking video files before any training: every file is probed once, broken ones are
listed with their reason instead of failing a run later."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from vidbench.data.decode import DecodeError, VideoMeta, probe
from vidbench.specs import PreparedDataset, VideoSample

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv")
"""Common video suffixes: only a filter a user may ask for; folders are scanned by content (:func:`find_files`)."""


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


def decode_all(path: Path, expected_frames: int) -> tuple[str, str]:
    """Decode every frame with PyAV, forward: ``(error, note)``. ``error`` when decoding fails (the file is
    unusable); ``note`` when it ends cleanly with fewer frames than the container promised (the frames that
    decode are used)."""
    import av

    decoded = 0
    try:
        with av.open(str(path)) as container:
            for _ in container.decode(video=0):
                decoded += 1
    except Exception as exc:
        return f"decoding failed after {decoded} of {expected_frames} frames: {exc}", ""
    if decoded == 0:
        return "no frame decodes", ""
    if decoded < expected_frames:
        return "", f"{decoded} of the {expected_frames} frames the container lists decode (the {decoded} are used)"
    return "", ""


def readable_by(path: Path, meta: VideoMeta) -> list[str]:
    """The backends that read the first, middle and last frames of ``path`` (a data loader falls back from
    decord to PyAV, so a file either reads is usable)."""
    from vidbench.data.decode import BACKENDS, open_video

    indices = sorted({0, meta.frames // 2, meta.frames - 1})
    ok = []
    for backend in BACKENDS:
        try:
            open_video(path, backend, meta=meta).read(indices)
        except Exception:
            continue
        ok.append(backend)
    return ok


def is_not_video(reason: str) -> bool:
    """Whether a probe's failure says the file is no video at all (rather than a damaged one)."""
    return "not a file FFmpeg can read" in reason or ": not a video:" in reason


def find_files(folder: Path, recursive: bool = True, extensions: Iterable[str] | None = None) -> list[Path]:
    """Files in ``folder`` (not hidden), sorted. Without ``extensions`` every file is a candidate: whether it is
    a video is for :func:`probe_files` to find out from its content, as FFmpeg would, whatever its name."""
    wanted = {e.lower() if e.startswith(".") else f".{e.lower()}" for e in extensions} if extensions else None
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        p
        for p in found
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and (wanted is None or p.suffix.lower() in wanted)
    )


def list_videos(folder: Path, extensions: Iterable[str] | None = None) -> list[Path]:
    """Candidate video files directly in ``folder`` (see :func:`find_files`)."""
    return find_files(folder, recursive=False, extensions=extensions)


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


def labelled_subset(samples: Sequence[VideoSample], fraction: float, seed: int = 0) -> list[VideoSample]:
    """``fraction`` of the clips of each class (at least one), drawn with ``seed``, in their original order: the
    labelled part of a split for label-efficiency runs (the same draw for every model and trainer of a suite).
    A multi-label clip counts under its first label."""
    by_class: dict[int, list[int]] = {}
    for index, sample in enumerate(samples):
        label = sample.label if isinstance(sample.label, int) else min(sample.label)
        by_class.setdefault(label, []).append(index)
    rng = np.random.default_rng(seed)
    kept: set[int] = set()
    for label in sorted(by_class):
        members = by_class[label]
        count = max(1, round(fraction * len(members)))
        kept.update(int(i) for i in rng.choice(members, size=count, replace=False))
    return [sample for index, sample in enumerate(samples) if index in kept]
