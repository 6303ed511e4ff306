"""``kinetics``: Kinetics-400/600/700 in the layout the official download scripts write.

    <root>/train.csv, <root>/val.csv          columns: label, youtube_id, time_start, time_end[, split, ...]
    <root>/train/<label>/<youtube_id>_<time_start:06d>_<time_end:06d>.mp4
    <root>/val/<label>/...

The test split is ``val`` (Kinetics' test labels are not public). ``classes`` restricts the label
set: a list of names, ``all``, or ``kinetics50`` (the built-in 50-class list below). Videos listed in
a CSV but missing or unreadable on disk are skipped and listed, as every Kinetics copy misses some.
"""

from __future__ import annotations

import csv
from pathlib import Path

from pydantic import Field

from vidbench import hookimpl
from vidbench.data.scan import DatasetError, probe_files
from vidbench.specs import DatasetOptions, DatasetSpec, PreparedDataset, VideoSample

# vidbench's Kinetics-50: 50 Kinetics-400 classes chosen for distinct, common human actions (the seed
# names a 50-class subset but no list). Names are Kinetics-400's own spelling.
KINETICS50 = (
    "abseiling",
    "archery",
    "arm wrestling",
    "bench pressing",
    "blowing out candles",
    "bowling",
    "brushing teeth",
    "canoeing or kayaking",
    "catching or throwing baseball",
    "cooking egg",
    "cutting watermelon",
    "dancing ballet",
    "dribbling basketball",
    "driving car",
    "eating spaghetti",
    "flipping pancake",
    "golf driving",
    "hammer throw",
    "high jump",
    "hula hooping",
    "ice skating",
    "juggling balls",
    "jumping into pool",
    "kicking field goal",
    "knitting",
    "mowing lawn",
    "playing basketball",
    "playing cello",
    "playing drums",
    "playing guitar",
    "playing piano",
    "playing tennis",
    "playing violin",
    "pole vault",
    "pull ups",
    "push up",
    "riding a bike",
    "riding or walking with horse",
    "rock climbing",
    "salsa dancing",
    "shooting goal (soccer)",
    "skateboarding",
    "skiing (not slalom or crosscountry)",
    "skydiving",
    "surfing water",
    "swimming backstroke",
    "tai chi",
    "tying tie",
    "walking the dog",
    "yoga",
)
SPLIT_SOURCES = {"train": "train", "val": "val", "test": "val"}
LAYOUT = "<root>/{train,val}.csv and <root>/{train,val}/<label>/<youtube_id>_<start:06d>_<end:06d>.mp4"


class KineticsOptions(DatasetOptions):
    """Options of ``kinetics``."""

    root: str
    classes: list[str] | str = "all"
    """A list of class names, ``all``, or ``kinetics50``."""
    max_per_class: int | None = Field(None, ge=1)
    workers: int = Field(2, ge=1)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    needed = {"label", "youtube_id", "time_start", "time_end"}
    if rows and not needed <= set(rows[0]):
        raise DatasetError(f"{path}: needs columns {', '.join(sorted(needed))}; has {', '.join(rows[0])}")
    return rows


def video_path(root: Path, split: str, row: dict[str, str]) -> Path:
    """Where the download scripts put one CSV row's clip."""
    start, end = int(float(row["time_start"])), int(float(row["time_end"]))
    return root / split / row["label"] / f"{row['youtube_id']}_{start:06d}_{end:06d}.mp4"


def _class_list(choice: list[str] | str, train_labels: set[str]) -> list[str]:
    if choice == "all":
        return sorted(train_labels)
    names = list(KINETICS50) if choice == "kinetics50" else choice
    if isinstance(names, str):
        raise DatasetError(f"kinetics classes: {names!r} is not a list, 'all' or 'kinetics50'")
    unknown = [n for n in names if n not in train_labels]
    if unknown:
        raise DatasetError(f"kinetics classes not in train.csv: {', '.join(unknown[:5])}")
    return sorted(names)


def prepare(root: Path, options: KineticsOptions | dict) -> PreparedDataset:
    """Read the CSVs, keep the chosen classes, probe the files that exist; clear errors on bad layout."""
    opts = KineticsOptions.model_validate(options)
    base = Path(opts.root).expanduser()
    missing = [name for name in ("train.csv", "val.csv") if not (base / name).is_file()]
    if not base.is_dir() or missing:
        raise DatasetError(
            f"kinetics data not found at {base} (missing {', '.join(missing) or 'folder'}); expected layout: {LAYOUT}"
        )
    tables = {split: _read_csv(base / f"{split}.csv") for split in ("train", "val")}
    train_labels = {row["label"] for row in tables["train"]}
    unknown = sorted({row["label"] for row in tables["val"]} - train_labels)
    if unknown:
        raise DatasetError(f"{base / 'val.csv'}: label(s) not in train.csv: {', '.join(unknown[:5])}")
    classes = _class_list(opts.classes, train_labels)
    index = {name: i for i, name in enumerate(classes)}
    wanted: dict[str, list[tuple[Path, int]]] = {}
    skipped: list[tuple[str, str]] = []
    for split, source in SPLIT_SOURCES.items():
        counts: dict[str, int] = {}
        items = []
        for row in tables[source]:
            label = row["label"]
            if label not in index or (opts.max_per_class and counts.get(label, 0) >= opts.max_per_class):
                continue
            path = video_path(base, source, row)
            if not path.exists():
                skipped.append((str(path), "listed in CSV, not on disk"))
                continue
            counts[label] = counts.get(label, 0) + 1
            items.append((path, index[label]))
        wanted[split] = items
    unique = sorted({p for items in wanted.values() for p, _ in items})
    if not unique:
        raise DatasetError(
            f"kinetics at {base}: none of the listed videos of the chosen classes exist; expected layout: {LAYOUT}"
        )
    good, bad = probe_files(unique, opts.workers)
    splits = {split: [VideoSample(p, y) for p, y in items if p in good] for split, items in wanted.items()}
    return PreparedDataset(root=base, class_names=classes, splits=splits, skipped=sorted(set(skipped)) + bad)


@hookimpl
def vidbench_datasets() -> list[DatasetSpec]:
    return [
        DatasetSpec(
            name="kinetics",
            prepare=prepare,
            options=KineticsOptions,
            description="Kinetics CSVs + <split>/<label>/<id>_<start>_<end>.mp4; classes: all, kinetics50 or a list",
        )
    ]
