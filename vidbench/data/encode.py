"""Encoding frames into real video files, and the tables of a generated set, for the dataset plugins that render
or cut their clips."""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def _x264_params(gop: int | None) -> str:
    """x264's settings: no macroblock-tree (see write_mp4) and, with ``gop``, a keyframe exactly every ``gop``
    frames (mmaction2's dense encoding: a clip of ``gop`` frames or more always holds a keyframe to seek to)."""
    return "mbtree=0" + (f":keyint={gop}:min-keyint={gop}:scenecut=0" if gop else "")


def write_mp4(frames: np.ndarray, path: Path, fps: int, crf: int = 14, gop: int | None = None) -> None:
    """Encode ``frames`` (``T x H x W x 3`` uint8, even sides) as H.264 (yuv420p) in MP4 with PyAV; written to a
    temp name, then renamed, so a reader never sees half a file. ``gop``: a keyframe every ``gop`` frames
    (default: x264's, 250)."""
    import av

    tmp = path.with_name(path.stem + ".part.mp4")
    with av.open(str(tmp), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        # x264's output must depend on nothing but the frames, so that two generations of a set are the same
        # bytes and a seed reproduces a training run. Its automatic thread count made a full test run's two
        # builds differ; with one thread, its macroblock-tree rate control still encoded about 5 % of the clips
        # differently from one generation to the next under a process pool (up to 45 levels on decode,
        # 1,500-clip set, 2026-12-03); with mbtree off, 900 encodes of 300 clips were identical.
        stream.options = {"crf": str(crf), "preset": "fast", "threads": "1", "x264-params": _x264_params(gop)}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(tmp, path)


def reencode(source: Path, path: Path, gop: int, crf: int = 18) -> None:
    """Re-encode a video file as H.264 MP4 with a keyframe every ``gop`` frames (a short-GOP copy: seeking to any
    frame then decodes at most ``gop`` frames), frame by frame, upright (the display rotation applied, since the
    copy carries no display matrix), at the source's average frame rate; odd sides lose their last pixel row or
    column (4:2:0 needs even ones). Written to a temp name, then renamed."""
    import av

    from vidbench.data.decode import probe

    meta = probe(source)
    turns = meta.rotation // 90
    tmp = path.with_name(path.stem + ".part.mp4")
    with av.open(str(source)) as reader, av.open(str(tmp), mode="w") as container:
        stream = None
        for frame in reader.decode(video=0):
            array = np.rot90(frame.to_ndarray(format="rgb24"), k=-turns) if turns else frame.to_ndarray(format="rgb24")
            array = np.ascontiguousarray(array[: array.shape[0] // 2 * 2, : array.shape[1] // 2 * 2])
            if stream is None:
                stream = container.add_stream("libx264", rate=round(meta.fps) or 25)
                stream.height, stream.width = array.shape[:2]
                stream.pix_fmt = "yuv420p"
                stream.options = {"crf": str(crf), "preset": "fast", "threads": "1", "x264-params": _x264_params(gop)}
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        if stream is not None:
            for packet in stream.encode():
                container.mux(packet)
    os.replace(tmp, path)


def write_split_tables(
    out: Path, class_names: Sequence[str], rows: Mapping[str, Sequence[Sequence[object]]], columns: Sequence[str]
) -> None:
    """Finish a generated set: ``classes.csv`` (index, name), one ``<split>.csv`` per split (``columns``, then
    ``rows[split]``), and last ``.complete``, whose presence tells a later preparation that the set is whole."""
    with open(out / "classes.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([("index", "name"), *enumerate(class_names)])
    for split, items in rows.items():
        with open(out / f"{split}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([tuple(columns), *items])
    (out / ".complete").write_text("ok\n")
