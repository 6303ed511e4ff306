"""Distributed embedding extraction (``vidbench embed --executor ray``): ``ray.data`` over the file list.

The driver does what the local path does around the model (fingerprints, the store's plan, reuse by
hash, saving): see :func:`vidbench.serve.features.embed_files`. Only the files to decode come here: a
``ray.data`` dataset of their paths is decoded by CPU actors (the job's evaluation reader and
transforms) and embedded in batches by model actors (one per GPU when the cluster has GPUs); the
vectors stream back to the driver, which writes them into the same feature store. A file that fails to
decode is listed with its reason and skipped. The weights travel through the Ray object store; the
videos and the run directory (its prepared dataset index) must be readable on every node.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray
import torch

from vidbench.cluster import connect
from vidbench.data.decode import DecodeError
from vidbench.data.transforms import frames_to_clip
from vidbench.job.context import Context
from vidbench.specs import VideoSample

Batch = dict[str, np.ndarray]


class Decoder:
    """A CPU actor: paths to clips with the job's evaluation reader; a failure becomes an ``error`` string."""

    def __init__(self, task: dict[str, Any]) -> None:
        ctx = Context(task)
        torch.set_num_threads(1)
        self.reader = ctx.reader([])
        self.shape = (3, ctx.job.frames, ctx.job.crop, ctx.job.crop)

    def __call__(self, batch: Batch) -> Batch:
        clips = np.zeros((len(batch["path"]), *self.shape), dtype=np.float32)
        errors = []
        for i, path in enumerate(batch["path"]):
            try:
                frames = self.reader.decode(VideoSample(Path(str(path)), 0), None)
                clips[i] = frames_to_clip(frames, self.reader.transform).numpy()
                errors.append("")
            except (DecodeError, IndexError) as exc:  # what the local reader skips
                errors.append(str(exc).replace("\n", " ") or type(exc).__name__)
        return {"row": batch["row"], "clip": clips, "error": np.array(errors, dtype=object)}


class Embedder:
    """A model actor (on a GPU when it was given one): clips to the model's ``embed()`` vectors."""

    def __init__(self, task: dict[str, Any], state: Any, threads: int) -> None:
        ctx = Context(task)
        torch.set_num_threads(threads)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model = ctx.build_model()
        weights = ray.get(state) if isinstance(state, ray.ObjectRef) else state
        self.model.load_state_dict(weights, strict=True)
        self.model.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, batch: Batch) -> Batch:
        good = np.array([not error for error in batch["error"]], dtype=bool)
        vectors = None
        if good.any():
            clips = torch.from_numpy(np.ascontiguousarray(batch["clip"][good])).to(self.device)
            out = self.model.embed(clips).float().cpu().numpy()
            vectors = np.zeros((len(good), out.shape[1]), dtype=np.float32)
            vectors[good] = out
        if vectors is None:
            vectors = np.zeros((len(good), 1), dtype=np.float32)
        return {"row": batch["row"], "error": batch["error"], "vector": vectors}


def plan_actors(resources: dict[str, float]) -> dict[str, Any]:
    """How many actors of each kind: a model actor per GPU (else one per 4 CPUs, at least one), and the
    CPUs left over decode (at least one)."""
    cpus, gpus = int(resources.get("CPU", 1)), int(resources.get("GPU", 0))
    embedders = gpus or max(1, cpus // 4)
    return {"embedders": embedders, "gpus": 1 if gpus else 0, "decoders": max(1, cpus - (0 if gpus else embedders))}


def embed_todo(
    served: Any,
    store: Any,
    todo: list[Any],
    identity: dict[str, Any],
    report: Any,
    batch_size: int,
    workers: int,
    save_every: int,
    progress: Any,
) -> None:
    """The Ray counterpart of ``vidbench.serve.features._embed_todo`` (same arguments, ``workers`` unused: the cluster's
    CPUs decode): embed the files of ``todo`` into ``store``, record the ones that fail to decode."""
    since_save = 0
    rows = embed_rows(served, [entry.path for entry in todo], batch_size)
    for done, (row, error, vector) in enumerate(rows, start=1):
        entry = todo[row]
        if error:
            store.bad[entry.path] = (entry.sha256, error)
        else:
            store.put(entry, vector)
            report.embedded += 1
            since_save += 1
        if progress is not None and (done % batch_size == 0 or done == len(todo)):
            progress(done, len(todo))
        if since_save >= save_every:
            store.save(identity)
            since_save = 0
    report.decoded = len(todo)


def embed_rows(served: Any, paths: list[str], batch_size: int) -> Iterator[tuple[int, str, np.ndarray]]:
    """``(index in paths, decode error or '', vector)`` for every path, in the order batches come back."""
    connect()
    plan = plan_actors(ray.cluster_resources())
    state = ray.put({name: tensor.detach().cpu() for name, tensor in served.model.state_dict().items()})
    task = served.ctx.task
    items = ray.data.from_items([{"row": i, "path": path} for i, path in enumerate(paths)])
    decoded = items.map_batches(
        Decoder,
        fn_constructor_args=(task,),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=plan["decoders"],
        num_cpus=1,
    )
    embedded = decoded.map_batches(
        Embedder,
        fn_constructor_args=(task, state, 1),
        batch_size=batch_size,
        batch_format="numpy",
        concurrency=plan["embedders"],
        num_cpus=1,
        num_gpus=plan["gpus"],
    )
    for batch in embedded.iter_batches(batch_size=None, batch_format="numpy"):
        for row, error, vector in zip(batch["row"], batch["error"], batch["vector"], strict=True):
            yield int(row), str(error), vector
