"""A FAISS index over a feature store, for similar-video search by cosine similarity.

Vectors are scaled to unit length and searched by inner product, so a score is the cosine similarity.
Below ``ivfpq_above`` vectors the index is exact (``IndexFlatIP``); above it, IVF-PQ
(``IndexIVFPQ``): ``nlist`` coarse cells (about 4 x sqrt(n), at least 39 training vectors per cell),
``m`` sub-quantizers of ``nbits`` bits each, ``nprobe`` cells visited per query. Building an IVF-PQ
index also measures its recall@10 against the exact search over the same vectors.

Index folder: ``index.faiss``, ``ids.csv`` (row -> path, sha256, label), ``index.json`` (kind,
parameters, the model identity of the store, recall).
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vidbench.serve.features import Entry, as_unit, load_vectors

Kind = Literal["auto", "flat", "ivfpq"]
DEFAULT_IVFPQ_ABOVE = 20_000
"""Exact search of 20k vectors takes a few ms; above that IVF-PQ pays for its recall loss."""


class VectorIndexError(Exception):
    """An index that cannot be built, loaded or queried as asked; the message says why."""


@dataclass
class IndexInfo:
    """What kind of index was built, with which parameters, over which store."""

    kind: Literal["flat", "ivfpq"]
    dim: int
    count: int
    metric: str = "cosine"
    nlist: int = 0
    m: int = 0
    nbits: int = 0
    nprobe: int = 0
    identity: dict[str, Any] = field(default_factory=dict)
    recall_at_10: float | None = None
    """Mean overlap of IVF-PQ's top 10 with the exact top 10, every stored vector used as a query."""
    store: str = ""


@dataclass(frozen=True)
class Neighbour:
    """One search hit: the file, its label and its cosine similarity to the query."""

    path: str
    label: str
    score: float
    row: int


def ivfpq_params(count: int, dim: int) -> tuple[int, int, int]:
    """``(nlist, m, nbits)`` for ``count`` vectors of width ``dim``.

    nlist ~ 4 sqrt(n) but every cell keeps >= 39 training vectors (FAISS's k-means minimum);
    m is the largest divisor of dim <= min(64, dim / 2) (>= 2 dimensions per sub-vector);
    nbits 8 (256 centroids per sub-quantizer) when there are enough vectors to train them, else fewer.
    """
    nlist = max(1, min(round(4 * math.sqrt(count)), count // 39))
    m = max(d for d in range(1, max(1, min(64, dim // 2)) + 1) if dim % d == 0)
    nbits = max(1, min(8, int(math.log2(max(count, 2) / 4))))
    return nlist, m, nbits


def build_index(
    vectors: np.ndarray,
    kind: Kind = "auto",
    ivfpq_above: int = DEFAULT_IVFPQ_ABOVE,
    nprobe: int | None = None,
) -> tuple[Any, IndexInfo]:
    """A trained FAISS index over the unit-length ``vectors`` and its description."""
    import faiss

    unit = as_unit(vectors)
    count, dim = unit.shape
    if count == 0:
        raise VectorIndexError("no vectors to index: the feature store is empty")
    chosen = kind if kind != "auto" else ("ivfpq" if count > ivfpq_above else "flat")
    if chosen == "flat":
        index = faiss.IndexFlatIP(dim)
        index.add(unit)
        return index, IndexInfo("flat", dim, count)
    nlist, m, nbits = ivfpq_params(count, dim)
    if count < 2**nbits or count < nlist:
        raise VectorIndexError(f"IVF-PQ needs more vectors than {count} (nlist {nlist}, 2^nbits {2**nbits}); use flat")
    quantizer = faiss.IndexFlatIP(dim)
    index = faiss.IndexIVFPQ(quantizer, dim, nlist, m, nbits, faiss.METRIC_INNER_PRODUCT)
    index.train(unit)
    index.add(unit)
    index.nprobe = min(nlist, nprobe or max(1, nlist // 4))
    return index, IndexInfo("ivfpq", dim, count, nlist=nlist, m=m, nbits=nbits, nprobe=index.nprobe)


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int = 10) -> float:
    """Mean fraction of each exact top-``k`` found in the approximate top-``k`` (ids, one row per query)."""
    hits = [len(set(a[:k]) & set(e[:k]) - {-1}) / min(k, len(e)) for a, e in zip(approx, exact, strict=True)]
    return float(np.mean(hits)) if hits else 0.0


def measure_recall(index: Any, vectors: np.ndarray, k: int = 10, queries: int | None = None) -> float:
    """recall@k of ``index`` against exact inner-product search over the same vectors."""
    import faiss

    unit = as_unit(vectors)
    chosen = unit if queries is None else unit[:queries]
    exact = faiss.IndexFlatIP(unit.shape[1])
    exact.add(unit)
    _, truth = exact.search(chosen, k)
    _, found = index.search(chosen, k)
    return recall_at_k(found, truth, k)


class VectorIndex:
    """A FAISS index with the file behind each row; built from a feature store, saved and reloaded."""

    def __init__(self, index: Any, info: IndexInfo, entries: list[Entry]) -> None:
        self.index = index
        self.info = info
        self.entries = entries

    @classmethod
    def from_store(
        cls, store_dir: Path, kind: Kind = "auto", ivfpq_above: int = DEFAULT_IVFPQ_ABOVE, nprobe: int | None = None
    ) -> VectorIndex:
        """Build over every vector of a feature store (IVF-PQ builds also measure recall@10)."""
        vectors, entries, meta = load_vectors(store_dir)
        index, info = build_index(vectors, kind, ivfpq_above, nprobe)
        info.identity, info.store = meta.get("identity", {}), str(Path(store_dir).resolve())
        if info.kind == "ivfpq":
            info.recall_at_10 = measure_recall(index, vectors, 10)
        return cls(index, info, entries)

    def save(self, folder: Path) -> Path:
        """Write ``index.faiss``, ``ids.csv`` and ``index.json`` (last, renamed into place)."""
        import faiss

        folder.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(folder / "index.tmp.faiss"))
        os.replace(folder / "index.tmp.faiss", folder / "index.faiss")
        with open(folder / "ids.tmp.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["row", "path", "sha256", "label"])
            writer.writerows([i, e.path, e.sha256, e.label] for i, e in enumerate(self.entries))
        os.replace(folder / "ids.tmp.csv", folder / "ids.csv")
        (folder / "index.tmp.json").write_text(json.dumps(asdict(self.info), indent=2) + "\n")
        os.replace(folder / "index.tmp.json", folder / "index.json")
        return folder

    @classmethod
    def load(cls, folder: Path) -> VectorIndex:
        """Read what :meth:`save` wrote."""
        import faiss

        folder = Path(folder)
        if not (folder / "index.json").exists():
            raise VectorIndexError(f"{folder}: no index here (index.json); build one with `vidbench index build`")
        info = IndexInfo(**json.loads((folder / "index.json").read_text()))
        index = faiss.read_index(str(folder / "index.faiss"))
        if info.kind == "ivfpq":
            index.nprobe = info.nprobe
        with open(folder / "ids.csv", newline="") as fh:
            entries = [Entry(r["path"], r["sha256"], -1, -1, r["label"]) for r in csv.DictReader(fh)]
        if len(entries) != index.ntotal:
            raise VectorIndexError(f"{folder}: ids.csv has {len(entries)} rows but the index holds {index.ntotal}")
        return cls(index, info, entries)

    def search(self, queries: np.ndarray, k: int = 10) -> list[list[Neighbour]]:
        """The ``k`` nearest stored files of each query vector, best first."""
        unit = as_unit(np.atleast_2d(queries))
        if unit.shape[1] != self.info.dim:
            raise VectorIndexError(f"query width {unit.shape[1]} != index width {self.info.dim}")
        scores, rows = self.index.search(unit, min(k, self.index.ntotal))
        return [
            [
                Neighbour(self.entries[r].path, self.entries[r].label, float(s), int(r))
                for s, r in zip(srow, rrow, strict=True)
                if r >= 0
            ]
            for srow, rrow in zip(scores, rows, strict=True)
        ]
