"""The one owner of a run directory's layout: every path inside ``results/<suite>/<run_id>/`` is named here.

::

    results.jsonl  results.csv  env.json  suite.json  skipped.csv  summary.md  report.md  report.html
    run.lock                            held (flock) by the one process writing the run; holds its pid
    report_files/                       the report's figures as PNG files
    datasets/<name>-<hash>.json         a prepared dataset's index (files, labels, mirror map)
    models/<dataset>__<model>__<preset>/   JobDir: job.json, checkpoint.pt, eval.npz, train.json, ...
    artifacts/<job>/<optimization>/     what an optimization prepared (model.pt, model.onnx + .data, ...)
    logs/<job>/<train|optimization>/    TaskDir: task.json, log.txt, error.txt of one child process
    features/<job>/                     the default feature store of ``vidbench embed``
    serve/<job>/<optimization>/         artifacts prepared by ``vidbench serve``

Other code asks these classes for a path and never spells a file name of the run directory itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidbench.hashing import json_digest
from vidbench.results import ResultStore

RENAMED_SUMMARY_KEYS = {"epochs_done": "epochs_run", "stopped": "stopped_by"}
"""``train.json`` keys renamed to the row's names, old name -> new (older runs stay readable)."""


def job_slug(dataset: str, model: str, preset: str, seed: int | None = None) -> str:
    """The folder name of one trained model job: ``<dataset>__<model>__<preset>``, with ``__seed<n>`` when the
    suite trains it under several seeds."""
    return f"{dataset}__{model}__{preset}" + (f"__seed{seed}" if seed is not None else "")


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> Path:
    """Write a JSON file under a temporary name, fsync it and rename it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        fh.write(json.dumps(data, indent=2, default=str) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object file, or ``None`` when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class RunDirBusy(RuntimeError):
    """Another process is writing the run directory."""


@dataclass(frozen=True)
class JobDir:
    """The files of one trained model job (``models/<slug>/``)."""

    root: Path

    @property
    def slug(self) -> str:
        return self.root.name

    def phase(self, name: str) -> JobDir:
        """The files of one extra training phase of the job (a pre-training): ``phases/<name>/``, laid out like
        the job's own training files."""
        return JobDir(self.root / "phases" / name)

    @property
    def job_file(self) -> Path:
        """``job.json``: what rebuilds the job (suite, plugins, clip settings) without the logs."""
        return self.root / "job.json"

    @property
    def checkpoint(self) -> Path:
        return self.root / "checkpoint.pt"

    @property
    def reference_logits(self) -> Path:
        """``eval.npz``: the trained model's own test-split logits, the reference of every parity check."""
        return self.root / "eval.npz"

    @property
    def best_weights(self) -> Path:
        """The weights of the best validation epoch so far (kept with ``until: plateau``)."""
        return self.root / "best.pt"

    @property
    def summary(self) -> Path:
        """``train.json``, written last: its presence marks the job trained and evaluated."""
        return self.root / "train.json"

    @property
    def train_state(self) -> Path:
        """The whole training state of the last finished epoch (resume)."""
        return self.root / "train_state.pt"

    @property
    def metrics(self) -> Path:
        """``metrics.jsonl``: one line per finished epoch."""
        return self.root / "metrics.jsonl"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def analysis(self) -> Path:
        return self.root / "analysis.json"

    @property
    def confusion(self) -> Path:
        return self.root / "confusion.csv"

    @property
    def embeddings(self) -> Path:
        return self.root / "embeddings.npy"

    @property
    def embedding_labels(self) -> Path:
        return self.root / "embedding_labels.npy"

    @property
    def tsne(self) -> Path:
        return self.root / "tsne.png"

    def sample_log(self, rank: int) -> Path:
        """Where a DDP rank lists the sample indices it trained on (when asked to)."""
        return self.root / "samples" / f"rank{rank}.jsonl"

    @staticmethod
    def scratch(target: Path) -> Path:
        """A temporary file beside ``target``, renamed onto it when complete."""
        return target.with_name(f".{target.name}.{os.getpid()}.tmp")

    def read_summary(self) -> dict[str, Any] | None:
        """``train.json`` as a dict, or ``None`` when absent or unreadable; a file written before its training keys
        took the row's names (``epochs_done``, ``stopped``) reads as written after."""
        summary = read_json(self.summary)
        if summary is not None:
            for old, new in RENAMED_SUMMARY_KEYS.items():
                if old in summary and new not in summary:
                    summary[new] = summary.pop(old)
        return summary


@dataclass(frozen=True)
class TaskDir:
    """The folder of one child process (``logs/<slug>/<task>/``): its task, its output and its error."""

    root: Path

    @property
    def task_file(self) -> Path:
        return self.root / "task.json"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def error(self) -> Path:
        """The exception line of a failed child, which becomes the rows' reason."""
        return self.root / "error.txt"

    @property
    def rows(self) -> Path:
        """The rows a measure task settles itself (its ``rows_file``), read back for the run's ledger."""
        return self.root / "results.jsonl"

    def latency_samples(self, batch_size: int) -> Path:
        """Every timed call's milliseconds of one measured batch size (``.npy``, in call order)."""
        return self.root / f"latency_ms_bs{batch_size}.npy"

    def latency_rounds(self, batch_size: int) -> Path:
        """The same calls round by round, with the interleaved order and the baseline's rounds (``.json``)."""
        return self.root / f"latency_rounds_bs{batch_size}.json"

    def operator_profile(self, batch_size: int) -> Path:
        """The artifact's operator profile at one batch size, from its engine's own profiler (``.json``: the
        profile and the row's p50, or the reason there is none)."""
        return self.root / f"operators_bs{batch_size}.json"

    @property
    def cascade_logits(self) -> Path:
        """A cascade task's two models' logits and labels on the validation and test splits (``.npz``)."""
        return self.root / "cascade_logits.npz"

    @property
    def untimed(self) -> Path:
        """A measure task's rows that passed its gate and wait for the job's interleaved timing, with how to
        start the artifact's timing process."""
        return self.root / "untimed.json"

    @property
    def timer(self) -> TaskDir:
        """The folder of the artifact's warm timing process (its task, log and error)."""
        return TaskDir(self.root / "timer")


@dataclass(frozen=True)
class RunDir:
    """One run directory and every path inside it."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @staticmethod
    def for_suite(output_dir: str | Path, suite: str, run_id: str) -> RunDir:
        return RunDir(Path(output_dir) / suite / run_id)

    @staticmethod
    def new(output_dir: str | Path, suite: str, run_id: str) -> RunDir:
        """A run directory that did not exist, created now: ``run_id``, or ``run_id-1``, ``-2``... when another
        run started in the same second (the suffixed names still sort after it)."""
        parent = Path(output_dir) / suite
        parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(1000):
            root = parent / (run_id if attempt == 0 else f"{run_id}-{attempt}")
            try:
                root.mkdir()
            except FileExistsError:
                continue
            return RunDir(root)
        raise RunDirBusy(f"{parent}: no free run id after {run_id}")

    @staticmethod
    def latest(output_dir: str | Path, suite: str) -> RunDir | None:
        """The newest run directory of a suite, by name (run ids sort by time)."""
        runs = sorted(p for p in (Path(output_dir) / suite).glob("*") if RunDir(p).env.exists())
        return RunDir(runs[-1]) if runs else None

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def results(self) -> Path:
        return self.root / "results.jsonl"

    @property
    def results_csv(self) -> Path:
        return self.root / "results.csv"

    @property
    def env(self) -> Path:
        return self.root / "env.json"

    @property
    def suite(self) -> Path:
        """``suite.json``: the validated suite, its baseline resolved."""
        return self.root / "suite.json"

    @property
    def skipped(self) -> Path:
        """``skipped.csv``: every video left out of the run, with the reason."""
        return self.root / "skipped.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.md"

    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def parquet(self) -> Path:
        """``results.parquet``: the table with typed columns (``vidbench export --to parquet``)."""
        return self.root / "results.parquet"

    @property
    def mlflow_db(self) -> Path:
        """The local MLflow tracking database of ``vidbench export --to mlflow``."""
        return self.root / "mlflow" / "mlflow.db"

    @property
    def mlflow_artifacts(self) -> Path:
        """Where that local MLflow store keeps the runs' artifacts."""
        return self.root / "mlflow" / "artifacts"

    @property
    def wandb_dir(self) -> Path:
        """Where ``vidbench export --to wandb`` writes its offline runs (W&B adds ``wandb/offline-run-*``)."""
        return self.root / "wandb-offline"

    @property
    def report_markdown(self) -> Path:
        return self.root / "report.md"

    @property
    def report_files(self) -> Path:
        return self.root / "report_files"

    @property
    def lock_file(self) -> Path:
        return self.root / "run.lock"

    def busy(self, holder: str) -> RunDirBusy:
        """The error of a second writer."""
        return RunDirBusy(
            f"run directory {self.root} is being written by another vidbench process (pid {holder}): "
            "wait for it to end, or stop it, before running or resuming into it"
        )

    def writer_pid(self) -> str | None:
        """The pid of the process writing this run directory now, or ``None`` (a cheap check before loading
        anything; :meth:`writer` is what holds it)."""
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        return None

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Hold the run directory as its one writer until the block ends; raises :class:`RunDirBusy`, naming the
        holder's pid, when another process holds it. The lock is an ``flock``: it goes with its process, so a
        killed run leaves nothing stale behind."""
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise self.busy(holder) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)

    def exists(self) -> bool:
        """True when the folder holds a run's results."""
        return self.results.exists()

    def store(self) -> ResultStore:
        """The run's result rows (``results.jsonl``, mirrored to ``results.csv``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return ResultStore(self.results, self.results_csv)

    def cascade(self, name: str) -> Path:
        """One cascade's record (``cascades/<name>.json``): its threshold, validation sweep, test figures."""
        return self.root / "cascades" / f"{name}.json"

    def cascades(self) -> list[Path]:
        """Every cascade record of the run."""
        return sorted((self.root / "cascades").glob("*.json"))

    def dataset_index(self, name: str, options: Mapping[str, Any]) -> Path:
        """Where a prepared dataset's index is saved for the children (one per name and options)."""
        return self.root / "datasets" / f"{name}-{json_digest(dict(options), 10)}.json"

    def job(self, slug: str) -> JobDir:
        return JobDir(self.root / "models" / slug)

    def jobs(self) -> list[JobDir]:
        """Every model job of the run that has a checkpoint, by slug."""
        models = self.root / "models"
        found = sorted(p for p in models.iterdir() if p.is_dir()) if models.is_dir() else []
        return [JobDir(p) for p in found if JobDir(p).checkpoint.exists()]

    def task(self, slug: str, task: str) -> TaskDir:
        """The log folder of one child process: ``task`` is ``train`` or an optimization's name."""
        return TaskDir(self.root / "logs" / slug / task)

    def artifacts(self, slug: str, optimization: str) -> Path:
        """The work folder an optimization prepares its artifact in."""
        return self.root / "artifacts" / slug / optimization

    def artifact_card(self, slug: str, optimization: str) -> tuple[Path, Path]:
        """The model card of a measured artifact, beside its files: ``card.json`` and its ``README.md``."""
        folder = self.artifacts(slug, optimization)
        return folder / "card.json", folder / "README.md"

    def features(self, slug: str) -> Path:
        """The default feature store of a job's embeddings."""
        return self.root / "features" / slug

    def served_artifacts(self, slug: str, optimization: str) -> Path:
        """Where ``vidbench serve`` prepares an artifact (the measured files stay as they are)."""
        return self.root / "serve" / slug / optimization

    def read_env(self) -> dict[str, Any]:
        return read_json(self.env) or {}

    def read_suite(self) -> dict[str, Any]:
        return read_json(self.suite) or {}
