"""``folder``: one sub-folder per class, any container; every file is probed before training.

``split: hash`` assigns each file to train / val / test by a stable hash of its name; ``subfolders``
expects ``train/``, ``val/`` and ``test/`` folders each holding the class folders; ``all`` puts every
file in every split (a plumbing check on tiny folders, not an accuracy figure). ``reencode_gop`` reads short-GOP
copies of the files, made once into the data root.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

from pydantic import Field

from vidbench import hookimpl
from vidbench.data.cache import file_fingerprint
from vidbench.data.encode import reencode
from vidbench.data.scan import DatasetError, list_videos, probe_files
from vidbench.specs import DatasetOptions, DatasetSpec, PreparedDataset, VideoSample

SPLITS = ("train", "val", "test")


class FolderOptions(DatasetOptions):
    """Options of ``folder``."""

    path: str
    split: Literal["hash", "subfolders", "all"] = "hash"
    val_fraction: float = Field(0.15, ge=0, lt=1)
    test_fraction: float = Field(0.15, ge=0, lt=1)
    extensions: list[str] | None = None
    """Only files with these suffixes; by default every file is probed and those that are not video are
    listed as skipped (FFmpeg reads many containers whatever their names)."""
    workers: int = Field(2, ge=1)
    reencode_gop: int | None = Field(None, ge=1, le=1000)
    """Re-encode every readable file once, into the data root, as H.264 with a keyframe every this many frames
    (mmaction2's dense encoding: at most the clip's frames per seek), and read those copies instead."""


def _hash_split(name: str, val: float, test: float) -> str:
    bucket = int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if bucket < test else ("val" if bucket < test + val else "train")


def _class_folders(root: Path) -> list[Path]:
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DatasetError(f"folder dataset {root}: no class sub-folders (expected {root}/<class>/<video files>)")
    return folders


def prepare(root: Path, options: FolderOptions | dict) -> PreparedDataset:
    """Scan the class folders, probe every file, and split; raises :class:`DatasetError` on bad layout."""
    opts = FolderOptions.model_validate(options)
    base = Path(opts.path).expanduser()
    if not base.is_dir():
        raise DatasetError(f"folder dataset path does not exist or is not a folder: {base}")
    layout: dict[str, list[tuple[Path, str]]] = {}
    if opts.split == "subfolders":
        missing = [s for s in SPLITS if not (base / s).is_dir()]
        if missing:
            raise DatasetError(f"folder dataset {base}: split: subfolders needs {', '.join(missing)}/ folders")
        for split in SPLITS:
            for folder in _class_folders(base / split):
                layout.setdefault(folder.name, []).extend((f, split) for f in list_videos(folder, opts.extensions))
    else:
        for folder in _class_folders(base):
            files = list_videos(folder, opts.extensions)
            if opts.split == "all":
                layout[folder.name] = [(f, s) for f in files for s in SPLITS]
            else:
                layout[folder.name] = [(f, _hash_split(f.name, opts.val_fraction, opts.test_fraction)) for f in files]
    empty = [name for name, files in layout.items() if not files]
    if empty:
        raise DatasetError(f"folder dataset {base}: class folder(s) with no video files: {', '.join(empty)}")
    classes = sorted(layout)
    unique = sorted({f for files in layout.values() for f, _ in files})
    good, skipped = probe_files(unique, opts.workers)
    copies = {p: p for p in good}
    if opts.reencode_gop:
        copies, failed = _short_gop_copies(Path(root), sorted(good), opts)
        skipped += failed
    splits: dict[str, list[VideoSample]] = {s: [] for s in SPLITS}
    for label, name in enumerate(classes):
        for path, split in layout[name]:
            if path in copies:
                splits[split].append(VideoSample(copies[path], label))
    return PreparedDataset(root=base, class_names=classes, splits=splits, skipped=skipped)


def _reencode_one(args: tuple[Path, Path, int]) -> str | None:
    source, target, gop = args
    if target.exists():
        return None
    try:
        reencode(source, target, gop)
    except Exception as exc:  # a file that probes but does not decode to its end is skipped, not fatal
        return f"re-encoding failed: {type(exc).__name__}: {str(exc).strip()[:200]}"
    return None


def _short_gop_copies(
    root: Path, files: list[Path], opts: FolderOptions
) -> tuple[dict[Path, Path], list[tuple[str, str]]]:
    """Each file's short-GOP copy under ``root/reencoded-g<gop>/``, named by a hash of the source's path and
    fingerprint (a changed file gets a new copy), made once in ``workers`` processes; and the files that failed,
    with the reason."""
    folder = root / f"reencoded-g{opts.reencode_gop}"
    folder.mkdir(parents=True, exist_ok=True)
    copies = {}
    for path in files:
        digest = hashlib.sha256(f"{path.resolve()}|{file_fingerprint(path)}".encode()).hexdigest()[:20]
        copies[path] = folder / f"{digest}.mp4"
    with ProcessPoolExecutor(max_workers=opts.workers) as pool:
        reasons = list(pool.map(_reencode_one, [(p, copies[p], opts.reencode_gop) for p in files]))
    failed = [(str(path), why) for path, why in zip(files, reasons, strict=True) if why]
    return {p: c for p, c in copies.items() if str(p) not in dict(failed)}, failed


@hookimpl
def vidbench_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="folder",
            prepare=prepare,
            options=FolderOptions,
            description="one sub-folder per class, any container; broken files skipped and listed",
        )
    ]
