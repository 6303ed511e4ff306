"""``folder``: one sub-folder per class, any container; every file is probed before training.

``split: hash`` assigns each file to train / val / test by a stable hash of its name; ``subfolders``
expects ``train/``, ``val/`` and ``test/`` folders each holding the class folders; ``all`` puts every
file in every split (a plumbing check on tiny folders, not an accuracy figure).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

from pydantic import Field

from vidbench import hookimpl
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
    splits: dict[str, list[VideoSample]] = {s: [] for s in SPLITS}
    for label, name in enumerate(classes):
        for path, split in layout[name]:
            if path in good:
                splits[split].append(VideoSample(path, label))
    return PreparedDataset(root=base, class_names=classes, splits=splits, skipped=skipped)


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
