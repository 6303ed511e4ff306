"""Evaluation shared by every model: outputs over a split (with temporal probes and embeddings),
accuracy metrics, parity between two outputs, and the per-model analysis files."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from vidbench.learn import analysis
from vidbench.rundir import JobDir

Predict = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class SplitOutputs:
    """Everything one pass over a split produced; skipped (undecodable) clips are absent."""

    logits: np.ndarray
    labels: np.ndarray
    embeddings: np.ndarray | None = None
    probes: dict[str, np.ndarray] = field(default_factory=dict)
    """Logits on the probe-edited clips, by probe name (see analysis.TEMPORAL_PROBES)."""


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return torch.as_tensor(x).float().cpu().numpy()


@torch.inference_mode()
def run_split(
    predict: Predict, loader: DataLoader, embed: Predict | None = None, probes: Sequence[str] = ()
) -> SplitOutputs:
    """Run ``predict`` (and ``embed``, and each temporal probe) over every batch of ``loader``."""
    logits, labels, features = [], [], []
    probed: dict[str, list[np.ndarray]] = {name: [] for name in probes}
    for batch in loader:
        if batch is None:  # every clip of the batch was skipped as undecodable
            continue
        clips, target = batch
        logits.append(_numpy(predict(clips)))
        labels.append(np.asarray(target))
        if embed is not None:
            features.append(_numpy(embed(clips)))
        for name in probes:
            probed[name].append(_numpy(predict(analysis.TEMPORAL_PROBES[name](clips))))
    return SplitOutputs(
        logits=np.concatenate(logits),
        labels=np.concatenate(labels),
        embeddings=np.concatenate(features) if features else None,
        probes={name: np.concatenate(parts) for name, parts in probed.items()},
    )


def multiview_scores(predict: Predict, loader: DataLoader) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities averaged over each video's views (batches of ``B x V x C x T x H x W``), and the
    labels: mmaction2's score averaging."""
    scores, labels = [], []
    for batch in loader:
        if batch is None:
            continue
        views, target = batch
        b, v = views.shape[:2]
        logits = torch.as_tensor(_numpy(predict(views.reshape(b * v, *views.shape[2:])))).float()
        scores.append(torch.softmax(logits, dim=1).reshape(b, v, -1).mean(1).numpy())
        labels.append(np.asarray(target))
    return np.concatenate(scores), np.concatenate(labels)


@dataclass(frozen=True)
class Accuracy:
    """Top-1, top-5 and mean per-class accuracy as fractions; for multi-label targets top-1 / top-5 are
    hit rates (the top prediction / one of the top five is a true label) and ``map`` is macro mAP."""

    top1: float
    top5: float
    mean_class_acc: float | None
    map: float | None = None


def accuracy(logits: np.ndarray, labels: np.ndarray) -> Accuracy:
    """Accuracy metrics of ``logits`` against integer labels (or multi-hot rows for multi-label)."""
    k = min(5, logits.shape[1])
    topk = np.argsort(-logits, axis=1, kind="stable")[:, :k]  # stable: ties resolve like argmax
    if labels.ndim == 2:
        hits = np.take_along_axis(labels, topk, axis=1) > 0
        return Accuracy(
            float(hits[:, 0].mean()),
            float(hits.any(axis=1).mean()),
            None,
            analysis.mean_average_precision(logits, labels),
        )
    top1_hits = topk[:, 0] == labels
    top5_hits = (topk == labels[:, None]).any(axis=1)
    per_class = [top1_hits[labels == c].mean() for c in np.unique(labels)]
    return Accuracy(float(top1_hits.mean()), float(top5_hits.mean()), float(np.mean(per_class)))


def probe_accuracy(outputs: SplitOutputs) -> dict[str, float]:
    """``top1_<probe>`` for each temporal probe that was run."""
    return {f"top1_{name}": accuracy(logits, outputs.labels).top1 for name, logits in outputs.probes.items()}


@dataclass(frozen=True)
class Parity:
    """How closely an artifact's logits follow the reference logits (the trained model's own) on the same clips."""

    agreement_top1: float
    max_abs_logit_diff: float


def parity(reference: np.ndarray, candidate: np.ndarray) -> Parity:
    """Share of clips whose top-1 class is the same, and the largest absolute logit difference."""
    if reference.shape != candidate.shape:
        raise ValueError(f"logit shapes differ: {reference.shape} vs {candidate.shape}")
    agree = float((reference.argmax(1) == candidate.argmax(1)).mean())
    return Parity(agree, float(np.abs(reference - candidate).max()))


def write_analysis(
    files: JobDir, outputs: SplitOutputs, class_names: Sequence[str], clip_ids: Sequence[str], tsne: bool = True
) -> dict[str, object]:
    """Write a model's analysis files into its job folder (per-class accuracy and confusion, embeddings, the
    t-SNE figure) and return the summary numbers."""
    files.root.mkdir(parents=True, exist_ok=True)
    acc = accuracy(outputs.logits, outputs.labels)
    summary: dict[str, object] = {**asdict(acc), **probe_accuracy(outputs)}
    single = outputs.labels.ndim == 1
    if single:
        confusion = analysis.confusion_matrix(outputs.logits, outputs.labels, len(class_names))
        per_class = analysis.per_class_accuracy(confusion)
        summary["ece"] = analysis.expected_calibration_error(outputs.logits, outputs.labels)
        details = {
            "per_class_accuracy": {
                n: (None if np.isnan(a) else float(a)) for n, a in zip(class_names, per_class, strict=True)
            },
            "confusion": confusion.tolist(),
            "most_confused": analysis.most_confused_pairs(confusion, class_names),
            "worst_clips": analysis.worst_clips(outputs.logits, outputs.labels, clip_ids, class_names),
        }
        np.savetxt(files.confusion, confusion, fmt="%d", delimiter=",", header=",".join(class_names), comments="")
    else:
        details = {}
    if outputs.embeddings is not None:
        np.save(files.embeddings, outputs.embeddings)
        np.save(files.embedding_labels, outputs.labels)
        if single and len(outputs.labels) > 2:
            summary.update(analysis.knn_retrieval(outputs.embeddings, outputs.labels, k=5))
            if tsne:
                plot_tsne(outputs.embeddings, outputs.labels, class_names, files.tsne)
    files.analysis.write_text(json.dumps({**summary, **details}, indent=2) + "\n")
    return summary


def plot_tsne(features: np.ndarray, labels: np.ndarray, class_names: Sequence[str], path: Path) -> None:
    """A 2D t-SNE of the embeddings, one colour per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.manifold import TSNE

    perplexity = float(min(30, max(2, (len(labels) - 1) // 3)))
    points = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=0).fit_transform(features)
    fig, ax = plt.subplots(figsize=(6, 6), dpi=100)
    cmap = plt.get_cmap("tab20", max(len(class_names), 1))
    for c in np.unique(labels):
        mask = labels == c
        ax.scatter(points[mask, 0], points[mask, 1], s=10, color=cmap(int(c)), label=class_names[int(c)])
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"t-SNE of test-split embeddings ({len(labels)} clips)")
    if len(class_names) <= 20:
        ax.legend(fontsize=6, markerscale=1.5, loc="best", ncol=2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
