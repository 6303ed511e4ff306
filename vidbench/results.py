"""The result schema and the store of result rows: a JSONL file (append-only) mirrored to a CSV table.

Every row is appended to the JSONL file and fsynced the moment the run's ledger has it (its task ended,
or its job's timing did), so a kill loses nothing already written; the CSV is rewritten from the JSONL
(atomically) after each row. Where the files lie is :class:`vidbench.rundir.RunDir`'s business.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd

from vidbench.hashing import json_digest
from vidbench.stats import with_seed_spread

SCHEMA: tuple[str, ...] = (
    "suite",
    "run_id",
    "dataset",
    "model",
    "preset",
    "optimization",
    "device",
    "threads",
    "frames",
    "crop",
    "batch_size",
    "params_m",
    "gflops_per_clip",
    "size_mb",
    "top1",
    "top5",
    "mean_class_acc",
    "agreement_top1",
    "max_abs_logit_diff",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
    "latency_cv_pct",
    "clips_per_s",
    "frames_per_s",
    "peak_rss_mb",
    "train_s",
    "prepare_s",
    "status",
    "reason",
    "map",
    "ece",
    "top1_reversed",
    "top1_shuffled",
    "top1_frame_drop",
    "top1_frozen",
)
"""Columns every results file has, in this order (the first plan's result schema, then the evaluation columns:
multi-label mAP, calibration error and the temporal probes); the rest of :class:`Row`'s follow them."""

STATUSES = ("ok", "unsupported", "failed")


class RowIdentity(TypedDict, total=False):
    """Which cell a row measures: the suite, run, job and its input, the optimization, batch and threads, and its
    key (config, environment and trained weights); its status and, unless ok, why."""

    suite: str
    run_id: str
    dataset: str
    model: str
    preset: str
    optimization: str
    device: str
    threads: int
    measure_task: str
    decode_policy: str
    decode_threads: int
    frames: int
    crop: int
    batch_size: int
    job: str
    seed: int | None
    cell_key: str
    status: str
    reason: str


class RowTraining(TypedDict, total=False):
    """How the row's model was trained (the job summary's figures, the same for every row of the job)."""

    recipe: str | None
    trainer: str
    trainer_default: bool
    label_fraction: float
    teacher: str | None
    lr: float
    train_s: float | None
    epochs_run: int | None
    best_epoch: int | None
    stopped_by: str | None
    converged: bool | None
    train_clips: int | None
    train_pflops: float | None


class RowMeasurement(TypedDict, total=False):
    """What the measure task found: the artifact's size and cost, its parity with the trained model, its accuracy
    (single view, views, temporal probes) and the end-to-end throughput over the test files."""

    params_m: float
    gflops_per_clip: float
    size_mb: float
    prepare_s: float
    precision: str
    dispatch: str
    top1: float
    top1_ci95_low: float
    top1_ci95_high: float
    test_clips: int
    top5: float
    mean_class_acc: float
    map: float | None
    ece: float | None
    agreement_top1: float
    max_abs_logit_diff: float
    top1_reversed: float | None
    top1_shuffled: float | None
    top1_frame_drop: float | None
    top1_frozen: float | None
    views: str
    views_error: str
    top1_single_view: float
    notes: dict[str, Any]
    e2e_clips_per_s: float | None
    e2e_decode_ms: float | None
    e2e_transform_ms: float | None
    e2e_model_ms: float | None
    peak_rss_mb: float
    cell_wall_s: float
    engine: str
    engine_file: str | None


class RowTiming(TypedDict, total=False):
    """The job's interleaved timing of the artifact: latency percentiles over its rounds, throughput, the speedup
    over the baseline with its 95 % interval, and the share of the machine's matmul peak."""

    latency_ms_p50: float
    latency_ms_p90: float
    latency_ms_p99: float
    latency_cv_pct: float
    clips_per_s: float
    frames_per_s: float
    latency_ms_cold: float | None
    latency_iterations: int
    latency_p99_trusted: bool
    timing: str
    timing_rounds: int
    speedup: float | None
    speedup_ci95_low: float | None
    speedup_ci95_high: float | None
    speedup_uncertain: bool | None
    timed_alone: bool
    achieved_gmacs_per_s: float
    peak_gmacs_per_s: float | None
    roofline_pct: float | None


class Row(RowIdentity, RowTraining, RowMeasurement, RowTiming, total=False):
    """One result row, one cell: identity, training, measurement, timing. The files hold these columns only
    (SCHEMA's first, in its order); a failed or unsupported row leaves the measurement and timing it lacks empty."""


ROW_GROUPS: dict[str, type] = {
    "identity": RowIdentity,
    "training": RowTraining,
    "measurement": RowMeasurement,
    "timing": RowTiming,
}
"""The row's columns by what sets them: the scheduler (identity, training), the measure task, the timing."""

COLUMNS: tuple[str, ...] = (*SCHEMA, *(name for name in Row.__annotations__ if name not in SCHEMA))
"""Every column a row may have: SCHEMA's, then the rest of :class:`Row`'s."""

KEY_COLUMN = "cell_key"


def row_with(row: Mapping[str, Any], **fields: Any) -> Row:
    """``row`` with ``fields`` set (a cell's identity row completed by a task, or settled with a status)."""
    return Row(**{**row, **fields})  # type: ignore[typeddict-item]


def failed_row(row: Mapping[str, Any], reason: str) -> Row:
    """``row`` as ``failed`` with ``reason``."""
    return row_with(row, status="failed", reason=reason)


def cell_key(cell: Mapping[str, Any], env_hash: str, checkpoint_hash: str) -> str:
    """The identity of a measurement: the cell's config, the environment and the trained weights."""
    return json_digest({"cell": dict(cell), "env": env_hash, "ckpt": checkpoint_hash}, 20)


def normalise_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Every schema column present (missing ones as None), schema order first, extras after."""
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    out = {col: row.get(col) for col in SCHEMA}
    out.update({k: v for k, v in row.items() if k not in out})
    return out


SLOT_COLUMNS = ("job", "optimization", "batch_size", "threads", "measure_task")
"""What a cell measures, without the weights and the environment its key also names."""


def _without_superseded_failures(frame: pd.DataFrame) -> pd.DataFrame:
    """Drop a ``failed`` row when a later row measures the same slot: a cell retried after a failed training
    (``--resume --retry-failed``) gets a new key (its checkpoint now exists), and its old failure is history
    (kept in ``results.jsonl``), not a result beside the new row."""
    if "job" not in frame.columns:  # not a schema column: without it a slot could span models
        return frame
    slot = [column for column in SLOT_COLUMNS if column in frame.columns]  # measure_task: not in the oldest rows
    superseded = frame[slot].astype(str).duplicated(keep="last")
    named = frame["job"].fillna("").astype(str) != ""  # a row with an empty job names no slot either
    return frame[~(superseded & (frame["status"] == "failed") & named)]


def with_decode_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a further decode policy (``data.decode_policy``'s second and later) with ``optimization``
    naming it (``<baseline>@keyframes``): the same artifact on other frames is another entry of every table, never a
    second baseline row (the row's ``decode_policy`` column stays)."""
    if "measure_task" not in frame or "decode_policy" not in frame or frame.empty:
        return frame
    further = frame["measure_task"].astype(str).str.contains("@", regex=False)
    frame = frame.copy()
    frame.loc[further, "optimization"] = (
        frame.loc[further, "optimization"].astype(str) + "@" + frame.loc[further, "decode_policy"].astype(str)
    )
    return frame


def with_trainer_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows with ``preset`` naming the trainer where it is not the default one (``tiny+distill``): one preset
    trained two ways is two models to every table, figure and seed group (the row's ``trainer`` column stays)."""
    if "trainer_default" not in frame or frame.empty:
        return frame
    named = [
        default is False and isinstance(trainer, str) and not str(preset).endswith(f"+{trainer}")
        for preset, trainer, default in zip(frame["preset"], frame["trainer"], frame["trainer_default"], strict=True)
    ]
    other = pd.Series(named, index=frame.index, dtype=bool)
    frame = frame.copy()
    frame.loc[other, "preset"] = frame.loc[other, "preset"].astype(str) + "+" + frame.loc[other, "trainer"].astype(str)
    return frame


INPUT_VARIANT = re.compile(r"@\d+x\d+$")
"""The end of the preset of an input-cost sweep's job: ``tiny@8x32`` (frames x crop)."""


def input_variant(frames: Any, crop: Any) -> str:
    """How a job of an input-cost sweep names its input after the preset: ``@<frames>x<crop>``."""
    return f"@{frames}x{crop}"


def with_input_variants(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of an input-cost sweep's jobs (whose folder names their input, ``tiny@8x32``) with ``preset``
    naming it too: one preset at two inputs is two models to every table and figure (``frames`` and ``crop``
    stay)."""
    if "job" not in frame or frame.empty:
        return frame
    tags = [
        input_variant(int(f), int(c)) if pd.notna(f) and pd.notna(c) else "\0"  # no input: matches no folder
        for f, c in zip(frame["frames"], frame["crop"], strict=True)
    ]
    swept = [
        isinstance(job, str) and tag in job and not str(preset).endswith(tag)
        for job, tag, preset in zip(frame["job"], tags, frame["preset"], strict=True)
    ]
    frame = frame.copy()
    frame["preset"] = [f"{p}{t}" if s else p for p, t, s in zip(frame["preset"], tags, swept, strict=True)]
    return frame


class ResultStore:
    """Rows in ``jsonl`` (the record), mirrored to the table ``csv`` after each append when one is given."""

    def __init__(self, jsonl: Path, csv: Path | None = None) -> None:
        self.jsonl = Path(jsonl)
        self.csv = Path(csv) if csv is not None else None

    def rows(self) -> list[dict[str, Any]]:
        """Every readable row; a line that is not one (torn by a kill or a full disk) is skipped, never merged
        with the next (:meth:`unreadable_lines` names them)."""
        return [row for _, row in self._lines() if row is not None]

    def unreadable_lines(self) -> list[int]:
        """Line numbers (from 1) of the lines that are not a JSON row."""
        return [number for number, row in self._lines() if row is None]

    def _lines(self) -> list[tuple[int, dict[str, Any] | None]]:
        if not self.jsonl.exists():
            return []
        out: list[tuple[int, dict[str, Any] | None]] = []
        for number, line in enumerate(self.jsonl.read_bytes().decode(errors="replace").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            out.append((number, row if isinstance(row, dict) else None))
        return out

    def _starts_on_a_fresh_line(self) -> bool:
        """Whether the file is empty or ends with a newline (a torn append leaves it without one)."""
        try:
            with open(self.jsonl, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                return fh.read(1) == b"\n"
        except OSError:  # missing, or empty (seek before the start)
            return True

    def keys(self, statuses: Iterable[str] = STATUSES) -> set[str]:
        """Cell keys already stored with one of ``statuses``."""
        wanted = set(statuses)
        return {r[KEY_COLUMN] for r in self.rows() if r.get(KEY_COLUMN) and r.get("status") in wanted}

    def append(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """Write one row durably, then refresh the CSV."""
        clean = normalise_row(row)
        self.jsonl.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(clean, default=str) + "\n"
        with open(self.jsonl, "a") as fh:
            fh.write(line if self._starts_on_a_fresh_line() else "\n" + line)
            fh.flush()
            os.fsync(fh.fileno())
        self.write_csv()
        return clean

    def frame(self) -> pd.DataFrame:
        """The rows as a table, the latest row winning for a cell measured twice (resume, re-run)."""
        rows = self.rows()
        frame = pd.DataFrame(rows, columns=list(SCHEMA)) if not rows else pd.DataFrame(rows)
        for col in SCHEMA:
            if col not in frame.columns:
                frame[col] = None
        if KEY_COLUMN in frame.columns and len(frame):
            frame = frame.drop_duplicates(subset=[KEY_COLUMN], keep="last")
            frame = _without_superseded_failures(frame)
        extras = [c for c in frame.columns if c not in SCHEMA]
        frame = frame[list(SCHEMA) + extras].reset_index(drop=True)
        frame = with_decode_variants(with_input_variants(with_trainer_variants(frame)))
        return with_seed_spread(frame)

    def write_csv(self) -> None:
        """Rewrite the CSV table from the rows (under a temporary name, then renamed)."""
        if self.csv is None:
            return
        tmp = self.csv.with_name(f".{self.csv.name}.{os.getpid()}.tmp")
        self.frame().to_csv(tmp, index=False)
        os.replace(tmp, self.csv)


class Ledger:
    """The one writer of a run's rows, in the parent process whatever executor ran the tasks: each row is
    appended to the run's store (``results.jsonl``, fsynced, mirrored to ``results.csv``) the moment it is
    settled. A measure task settles its unsupported and gate-failed rows into its own task folder and leaves
    the rows that passed in ``untimed.json``; the parent reads both back once the child has ended, and every
    row passes through here. Safe to call from the threads that run jobs side by side on a cluster."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store
        self._lock = threading.Lock()

    def write(self, row: Row) -> None:
        """Append one finished row (its ``status`` set)."""
        with self._lock:
            self.store.append(row)

    def write_all(self, rows: Iterable[Row]) -> None:
        for row in rows:
            self.write(row)

    def failed(self, row: Row, reason: str) -> None:
        """Append ``row`` as ``failed`` with ``reason``."""
        self.write(failed_row(row, reason))

    def unsupported(self, row: Row, reason: str) -> None:
        """Append ``row`` as ``unsupported`` (the optimization cannot run here) with ``reason``."""
        self.write(row_with(row, status="unsupported", reason=reason))

    def keys(self, statuses: tuple[str, ...]) -> set[str]:
        """The cell keys already stored with one of ``statuses`` (what ``--resume`` skips)."""
        return self.store.keys(statuses)

    def unreadable_lines(self) -> list[int]:
        return self.store.unreadable_lines()


def keys_of(rows: Iterable[Mapping[str, Any]]) -> set[str]:
    """The cell keys of ``rows``."""
    return {str(row.get(KEY_COLUMN)) for row in rows}
