"""Feature store and FAISS index: real tiny model, real encoded files, the real CLI where it matters."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.conftest import REAL_CLIPS
from tests.serve_helpers import trained_run
from vidbench.cli import app
from vidbench.hashing import file_sha256
from vidbench.serve.artifact import ArtifactError, load_served, parse_ref
from vidbench.serve.features import FeatureStore, StoreError, embed_files
from vidbench.serve.index import VectorIndex, build_index, ivfpq_params, measure_recall, recall_at_k


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, data_root: Path) -> Path:
    return trained_run(tmp_path_factory.getbasetemp(), data_root)


@pytest.fixture(scope="module")
def served(run_dir: Path):
    return load_served(parse_ref(f"{run_dir}/r2plus1d@eager"), threads=1, prepare=False)


def cli(*args: str):
    """The real ``vidbench`` command line, run in this process (no interpreter start per call)."""
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def _clips(data_root: Path, count: int) -> list[Path]:
    return sorted((data_root / "synthetic-motion").rglob("*.mp4"))[:count]


def _folder(tmp_path: Path, files: list[Path]) -> Path:
    folder = tmp_path / "videos"
    folder.mkdir()
    for i, file in enumerate(files):
        shutil.copy(file, folder / f"clip{i}{file.suffix}")
    return folder


def test_embed_cli_lists_bad_files_and_a_rerun_decodes_nothing(tmp_path: Path, run_dir: Path, data_root: Path) -> None:
    folder = _folder(tmp_path, _clips(data_root, 4))
    (folder / "notes.mp4").write_text("this is a text file, not a video\n")
    bad = {"notes.mp4"}
    if (REAL_CLIPS / "odd" / "corrupted.mp4").exists():
        shutil.copy(REAL_CLIPS / "odd" / "corrupted.mp4", folder / "corrupted.mp4")
        shutil.copy(REAL_CLIPS / "asl_gestures" / "book.mkv", folder / "book.mkv")
        bad.add("corrupted.mp4")
    store = tmp_path / "store"
    args = ("embed", str(folder), "--artifact", f"{run_dir}/r2plus1d@onnx", "--out", str(store), "--workers", "0")
    first = cli(*args, "--quiet")
    assert first.exit_code == 0, first.output[-2000:]
    assert "embedding " in first.stdout and not re.search(r"^embedded \d+/\d+$", first.stdout, re.M)  # no progress
    good = len(list(folder.iterdir())) - len(bad)
    assert f"{good} embedded" in first.stdout and f"decoded {good + len(bad)}" in first.stdout, first.stdout
    assert f"{len(bad)} skipped" in first.stdout
    for name in bad:
        assert f"skipped {folder / name}" in first.stdout
    vectors = np.load(store / "embeddings.npy")
    assert vectors.shape[0] == good and vectors.dtype == np.float32
    assert set(json.loads((store / "store.json").read_text())["identity"]) >= {"checkpoint_sha", "frames", "crop"}
    again = cli(*args)
    assert again.exit_code == 0, again.output[-2000:]
    assert "decoded 0" in again.stdout and f"{good} unchanged" in again.stdout, again.stdout
    assert f"{len(bad)} skipped" in again.stdout, "known-bad files must stay listed"
    assert np.array_equal(np.load(store / "embeddings.npy"), vectors)


def test_rerun_processes_only_new_or_changed_files(tmp_path: Path, served, data_root: Path) -> None:
    files = _clips(data_root, 6)
    folder = _folder(tmp_path, files[:4])
    store = tmp_path / "store"
    inputs = lambda: [(p.resolve(), "") for p in sorted(folder.iterdir())]  # noqa: E731
    first = embed_files(served, inputs(), store, batch_size=3, workers=0)
    assert (first.decoded, first.embedded, first.unchanged, first.dim) == (4, 4, 0, 128)
    before = FeatureStore(store)
    assert embed_files(served, inputs(), store, workers=0).decoded == 0
    os.utime(folder / "clip0.mp4", ns=(1, 10**18))  # new mtime, same bytes: hashed again, not decoded
    touched = embed_files(served, inputs(), store, workers=0)
    assert (touched.decoded, touched.unchanged) == (0, 4)
    shutil.copy(folder / "clip1.mp4", folder / "copy-of-1.mp4")  # same bytes under a new name
    copied = embed_files(served, inputs(), store, workers=0)
    assert (copied.decoded, copied.reused) == (0, 1)
    shutil.copy(files[4], folder / "clip2.mp4")  # changed bytes: decoded again
    shutil.copy(files[5], folder / "new.mp4")  # a new file
    (folder / "clip3.mp4").unlink()  # gone: its row goes
    changed = embed_files(served, inputs(), store, workers=0)
    assert (changed.decoded, changed.embedded, changed.removed) == (2, 2, 1)
    after = FeatureStore(store)
    assert after.meta["rows"] == 5 and len(after.entries) == 5
    row = after.rows
    unchanged = str((folder / "clip1.mp4").resolve())
    assert np.array_equal(row[unchanged][1], before.rows[unchanged][1])
    assert np.array_equal(row[str((folder / "copy-of-1.mp4").resolve())][1], row[unchanged][1])
    assert after.rows[str((folder / "clip2.mp4").resolve())][0].sha256 == file_sha256(files[4])
    direct = served.embed(served.load_clip(folder / "new.mp4").unsqueeze(0))[0].numpy()
    assert np.allclose(after.rows[str((folder / "new.mp4").resolve())][1], direct, atol=1e-5)


def test_a_store_refuses_another_model(tmp_path: Path, served, data_root: Path) -> None:
    folder = _folder(tmp_path, _clips(data_root, 1))
    store = tmp_path / "store"
    embed_files(served, [(p, "") for p in folder.iterdir()], store, workers=0)
    meta = json.loads((store / "store.json").read_text())
    meta["identity"]["checkpoint_sha"] = "0" * 16
    (store / "store.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="another model"):
        embed_files(served, [(p, "") for p in folder.iterdir()], store, workers=0)


def test_artifact_references_fail_clearly(run_dir: Path) -> None:
    with pytest.raises(ArtifactError, match=r"matches no trained model.*r2plus1d"):
        load_served(parse_ref(f"{run_dir}/x3d@eager"))
    with pytest.raises(ArtifactError, match=r"unknown optimization 'nope'; allowed: .*eager"):
        load_served(parse_ref(f"{run_dir}/r2plus1d@nope"))
    with pytest.raises(ArtifactError, match="expected RUN_DIR/model@optimization"):
        parse_ref("/no/such/run/r2plus1d@eager")
    # this run's suite lists only onnx, so it has no baseline: serving must name the optimization, while
    # embeddings (which never use an optimization's artifact) still load
    with pytest.raises(ArtifactError, match=r"the run has no baseline; name an optimization"):
        load_served(parse_ref(f"{run_dir}/r2plus1d"))
    assert load_served(parse_ref(f"{run_dir}/r2plus1d"), threads=1, prepare=False).optimization == ""


def _clustered(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    return (centres[rng.integers(0, 50, count)] + 0.3 * rng.normal(size=(count, dim))).astype(np.float32)


def test_flat_is_exact_and_ivfpq_recall_is_measured() -> None:
    vectors = _clustered(2000, 64)
    flat, info = build_index(vectors, "auto", ivfpq_above=5000)
    assert info.kind == "flat" and measure_recall(flat, vectors, 10, queries=200) == 1.0
    ivf, info = build_index(vectors, "auto", ivfpq_above=1000)
    assert info.kind == "ivfpq" and (info.nlist, info.m, info.nbits) == ivfpq_params(2000, 64) == (51, 32, 8)
    assert 0.5 < measure_recall(ivf, vectors, 10, queries=300) < 1.0
    assert recall_at_k(np.array([[1, 2, 3]]), np.array([[3, 2, 9]]), 3) == pytest.approx(2 / 3)


def test_index_cli_builds_saves_reloads_and_queries(tmp_path: Path, served, run_dir: Path, data_root: Path) -> None:
    clips = _clips(data_root, 24)
    store = tmp_path / "store"
    embed_files(served, [(p.resolve(), p.parent.name) for p in clips], store, batch_size=12, workers=0)
    built = cli("index", "build", str(store), "--kind", "ivfpq")
    assert built.exit_code == 0, built.output[-2000:]
    assert "ivfpq index: 24 x 128" in built.stdout and "recall@10 vs flat" in built.stdout
    flat = VectorIndex.from_store(store, "flat")
    flat.save(tmp_path / "flat")
    again = VectorIndex.load(tmp_path / "flat")
    vectors = FeatureStore(store).vectors
    assert [h.path for h in again.search(vectors[:3], 5)[0]] == [h.path for h in flat.search(vectors[:3], 5)[0]]
    assert again.search(vectors[7], 1)[0][0].path == str(clips[7].resolve())
    query = cli("index", "query", str(tmp_path / "flat"), str(clips[7]), "-k", "3")
    assert query.exit_code == 0, query.output[-2000:]
    first = query.stdout.split("┃ path")[1].splitlines()[2]
    assert "1.0000" in first and clips[7].parent.name in first, query.stdout
    as_json = cli("index", "query", str(tmp_path / "flat"), str(clips[7]), "-k", "3", "--json")
    assert as_json.exit_code == 0, as_json.output[-2000:]
    neighbours = json.loads(as_json.stdout)["neighbours"]
    assert len(neighbours) == 3 and neighbours[0]["path"] == str(clips[7].resolve())
    assert abs(neighbours[0]["score"] - 1.0) < 1e-4 and neighbours[0]["label"] == clips[7].parent.name
