"""Clip embeddings written to a feature store keyed by file hash, so a re-run only decodes new or changed files.

Store layout (one folder)::

    store.json       the model identity (run, job, checkpoint sha, clip settings), dim, row count
    embeddings.npy   float32, rows x dim, row i belongs to line i of index.csv
    index.csv        path, sha256, size, mtime_ns, label
    skipped.csv      path, sha256, reason: files that could not be decoded (not retried until they change)

The files are written to temporary names and renamed, ``store.json`` last; a run saves every
``save_every`` clips, so an interrupted run keeps what it embedded.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vidbench.data.loader import make_loader, read_skip_log
from vidbench.data.scan import find_files
from vidbench.hashing import file_sha256
from vidbench.rundir import write_json_atomic
from vidbench.specs import VideoSample

INDEX_FIELDS = ("path", "sha256", "size", "mtime_ns", "label")


class StoreError(Exception):
    """A feature store that cannot be used as asked (another model, inconsistent files); says why."""


@dataclass(frozen=True)
class Entry:
    """One input file: where it is, what its bytes hash to, and its label (if the source has one)."""

    path: str
    sha256: str
    size: int
    mtime_ns: int
    label: str = ""


@dataclass
class EmbedReport:
    """What one ``embed`` run did."""

    files: int = 0
    unchanged: int = 0
    reused: int = 0
    """Files whose bytes were already embedded under another path (renamed or duplicated): no decoding."""
    decoded: int = 0
    """Files handed to the decoder (embedded + newly failed)."""
    embedded: int = 0
    removed: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Every file of the input left out, with the reason (including ones that failed before)."""
    dim: int = 0
    rows: int = 0


def identity_diff(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The fields that make two model identities embed differently (where the run lies is not one of them)."""
    return sorted(k for k in set(a) | set(b) if k != "run_dir" and a.get(k) != b.get(k))


class FeatureStore:
    """The embeddings of one model, one row per file path, keyed by the file's content hash."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.meta: dict[str, Any] = {}
        self.rows: dict[str, tuple[Entry, np.ndarray]] = {}
        self.bad: dict[str, tuple[str, str]] = {}
        if (self.root / "store.json").exists():
            self._load()

    def _load(self) -> None:
        self.meta = json.loads((self.root / "store.json").read_text())
        with open(self.root / "index.csv", newline="") as fh:
            entries = [_entry(row) for row in csv.DictReader(fh)]
        vectors = np.load(self.root / "embeddings.npy")
        if not len(entries) == len(vectors) == self.meta.get("rows"):
            raise StoreError(
                f"{self.root}: index.csv has {len(entries)} rows, embeddings.npy {len(vectors)}, "
                f"store.json says {self.meta.get('rows')}: the store is inconsistent; embed into a new folder"
            )
        self.rows = {e.path: (e, v) for e, v in zip(entries, vectors, strict=True)}
        skipped = self.root / "skipped.csv"
        if skipped.exists():
            with open(skipped, newline="") as fh:
                self.bad = {r["path"]: (r["sha256"], r["reason"]) for r in csv.DictReader(fh)}

    @property
    def entries(self) -> list[Entry]:
        """Rows in store order."""
        return [entry for entry, _ in self.rows.values()]

    @property
    def vectors(self) -> np.ndarray:
        """``rows x dim`` float32, aligned with :attr:`entries`."""
        if not self.rows:
            return np.zeros((0, int(self.meta.get("dim", 0))), dtype=np.float32)
        return np.stack([vector for _, vector in self.rows.values()]).astype(np.float32, copy=False)

    @property
    def dim(self) -> int:
        """Embedding width (0 while empty)."""
        return int(next(iter(self.rows.values()))[1].shape[0]) if self.rows else int(self.meta.get("dim", 0))

    def check_identity(self, identity: dict[str, Any]) -> None:
        """Refuse to mix embeddings of another model or other clip settings into this store."""
        stored = self.meta.get("identity")
        diff = identity_diff(stored, identity) if stored else []
        if diff:
            raise StoreError(f"{self.root} holds embeddings of another model or clip settings ({', '.join(diff)})")

    def save(self, identity: dict[str, Any]) -> None:
        """Write every file under a temporary name and rename it; ``store.json`` goes last."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "embeddings.tmp.npy", "wb") as fh:
            np.save(fh, self.vectors)
        rows = ([getattr(e, f) for f in INDEX_FIELDS] for e in self.entries)
        _write_csv(self.root / "index.tmp.csv", INDEX_FIELDS, rows)
        bad_rows = ([path, sha, reason] for path, (sha, reason) in sorted(self.bad.items()))
        _write_csv(self.root / "skipped.tmp.csv", ("path", "sha256", "reason"), bad_rows)
        os.replace(self.root / "embeddings.tmp.npy", self.root / "embeddings.npy")
        os.replace(self.root / "index.tmp.csv", self.root / "index.csv")
        os.replace(self.root / "skipped.tmp.csv", self.root / "skipped.csv")
        self.meta = {"identity": identity, "dim": self.dim, "rows": len(self.rows), "metric": "cosine"}
        write_json_atomic(self.root / "store.json", self.meta)

    def put(self, entry: Entry, vector: np.ndarray) -> None:
        """Add or replace the row of ``entry.path``."""
        self.bad.pop(entry.path, None)
        self.rows[entry.path] = (entry, np.asarray(vector, dtype=np.float32).reshape(-1).copy())

    def drop(self, paths: set[str]) -> int:
        """Remove the rows (and skip records) of ``paths``; returns how many rows went."""
        removed = sum(self.rows.pop(path, None) is not None for path in paths)
        for path in paths:
            self.bad.pop(path, None)
        return removed


def _entry(row: dict[str, str]) -> Entry:
    return Entry(row["path"], row["sha256"], int(row["size"]), int(row["mtime_ns"]), row["label"])


def _write_csv(path: Path, header: Iterable[str], rows: Iterable[Iterable[Any]]) -> None:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(list(header))
        writer.writerows(rows)


def list_inputs(folder: Path) -> list[tuple[Path, str]]:
    """Files under ``folder`` (recursive, not hidden), sorted, with an empty label: which are videos is found
    from their content when they are read (a file that is not one is recorded as unreadable)."""
    files = find_files(folder)
    return [(p.resolve(), "") for p in files]


def fingerprint(inputs: list[tuple[Path, str]], store: FeatureStore) -> list[Entry]:
    """An Entry per input; a file whose path, size and mtime match its stored row keeps its stored hash."""
    known = {path: entry for path, (entry, _) in store.rows.items()}
    known.update({p: Entry(p, sha, -1, -1) for p, (sha, _) in store.bad.items() if p not in known})
    entries = []
    for path, label in inputs:
        stat = path.stat()
        old = known.get(str(path))
        same = old is not None and (old.size, old.mtime_ns) == (stat.st_size, stat.st_mtime_ns)
        sha = old.sha256 if same else file_sha256(path)
        entries.append(Entry(str(path), sha, stat.st_size, stat.st_mtime_ns, label))
    return entries


Progress = Callable[[int, int], None]
"""Called with (done, total) after each batch."""


def embed_files(
    served: Any,
    inputs: list[tuple[Path, str]],
    store_dir: Path,
    batch_size: int = 16,
    workers: int = 2,
    save_every: int = 512,
    progress: Progress | None = None,
    executor: str = "local",
) -> EmbedReport:
    """Embed every input file that the store does not hold yet (by content hash) and save the store.

    ``served`` is a :class:`vidbench.serve.artifact.ServedModel`. Unchanged files are not decoded,
    files whose bytes the store already holds under another path reuse that vector, files that failed
    before are not retried until they change, and rows of files that no longer exist are dropped.
    ``executor="ray"`` decodes and embeds the new files with ``ray.data`` (:mod:`vidbench.serve.ray_features`).
    """
    store = FeatureStore(store_dir)
    identity = served.identity()
    store.check_identity(identity)
    report = EmbedReport(files=len(inputs))
    entries = fingerprint(inputs, store)
    report.removed = store.drop({path for path in store.rows if not Path(path).exists()})
    todo, copies = _plan(store, entries, report)
    if todo:
        embed_todo = _embed_todo
        if executor == "ray":
            from vidbench.serve.ray_features import embed_todo
        embed_todo(served, store, todo, identity, report, batch_size, workers, save_every, progress)
    _fill_copies(store, todo, copies, report)
    store.save(identity)
    wanted = {e.path for e in entries}
    report.skipped = [(p, reason) for p, (_, reason) in sorted(store.bad.items()) if p in wanted]
    report.dim, report.rows = store.dim, len(store.rows)
    return report


def _plan(store: FeatureStore, entries: list[Entry], report: EmbedReport) -> tuple[list[Entry], list[Entry]]:
    """Sort entries into unchanged, reused (same bytes elsewhere), still-bad, to decode, and copies of a
    file to decode (same bytes under a second path: decoded once)."""
    vector_of_sha = {e.sha256: v for e, v in store.rows.values()}
    todo, copies, queued = [], [], set()
    for entry in entries:
        old = store.rows.get(entry.path)
        if old is not None and old[0].sha256 == entry.sha256:
            report.unchanged += 1
            store.put(entry, old[1])  # same bytes: refresh mtime or label, keep the vector
        elif entry.sha256 in vector_of_sha:
            store.put(entry, vector_of_sha[entry.sha256])
            report.reused += 1
        elif store.bad.get(entry.path, ("", ""))[0] == entry.sha256:
            continue
        elif entry.sha256 in queued:
            copies.append(entry)
        else:
            todo.append(entry)
            queued.add(entry.sha256)
    return todo, copies


def _embed_todo(
    served: Any,
    store: FeatureStore,
    todo: list[Entry],
    identity: dict[str, Any],
    report: EmbedReport,
    batch_size: int,
    workers: int,
    save_every: int,
    progress: Progress | None,
) -> None:
    """Decode the files of ``todo`` through the job's eval reader in a DataLoader, embed in batches."""
    skip_log = store.root / ".skips.tmp.csv"
    store.root.mkdir(parents=True, exist_ok=True)
    skip_log.unlink(missing_ok=True)
    dataset = served.ctx.reader([VideoSample(Path(e.path), i) for i, e in enumerate(todo)], skip_log)
    loader = make_loader(dataset, batch_size, workers if len(todo) > batch_size else 0, shuffle=False)
    since_save = 0
    for number, batch in enumerate(loader):
        if batch is not None:  # None: every file of the batch failed to decode
            clips, rows = batch
            vectors = served.embed(clips).float().numpy()
            for row, vector in zip(rows.tolist(), vectors, strict=True):
                store.put(todo[row], vector)
            report.embedded += len(rows)
            since_save += len(rows)
        if progress is not None:
            progress(min((number + 1) * batch_size, len(todo)), len(todo))
        if since_save >= save_every:
            store.save(identity)
            since_save = 0
    report.decoded = len(todo)  # every file of todo went through the decoder once, and no other file did
    by_path = {e.path: e for e in todo}
    for path, reason in read_skip_log(skip_log):
        if path in by_path and path not in store.rows:
            store.bad[path] = (by_path[path].sha256, reason)
    skip_log.unlink(missing_ok=True)


def _fill_copies(store: FeatureStore, todo: list[Entry], copies: list[Entry], report: EmbedReport) -> None:
    """Give each second path of a file decoded in this run the vector (or the failure) of the first."""
    first = {e.sha256: e.path for e in todo}
    for entry in copies:
        original = first[entry.sha256]
        if original in store.rows:
            store.put(entry, store.rows[original][1])
            report.reused += 1
        elif original in store.bad:
            store.bad[entry.path] = store.bad[original]


def summary_line(report: EmbedReport) -> str:
    """A one-line summary of a report."""
    return (
        f"{report.files} file(s): {report.embedded} embedded, {report.unchanged} unchanged, {report.reused} reused "
        f"by hash, {len(report.skipped)} skipped, {report.removed} removed; decoded {report.decoded}; "
        f"store: {report.rows} x {report.dim}"
    )


def load_vectors(store_dir: Path) -> tuple[np.ndarray, list[Entry], dict[str, Any]]:
    """A store's vectors, entries and ``store.json`` (raises StoreError when there is no store)."""
    if not (Path(store_dir) / "store.json").exists():
        raise StoreError(f"{store_dir}: no feature store here (store.json); run `vidbench embed` first")
    store = FeatureStore(store_dir)
    return store.vectors, store.entries, store.meta


def as_unit(vectors: np.ndarray | torch.Tensor) -> np.ndarray:
    """Rows scaled to unit length (cosine similarity becomes an inner product); zero rows stay zero."""
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return np.ascontiguousarray(array / np.maximum(norms, 1e-12))
