"""Video decoding behind one small interface: probe (metadata), open, read frames by index.

Two backends: decord (fast random access) and PyAV (FFmpeg; keyframe-aware seeking, counts what it
decodes). Both return ``uint8`` RGB arrays shaped ``T x H x W x 3`` in presentation order; by default
upright (the container's display-matrix rotation applied) and, on request, with square pixels (the
sample aspect ratio applied). Metadata comes from PyAV's demuxer, so a container without a frame
count (matroska) still gets one, and variable frame rate is detected from the packet timestamps.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

Backend = Literal["decord", "pyav"]
BACKENDS: tuple[Backend, ...] = ("decord", "pyav")


class DecodeError(Exception):
    """A file that cannot be decoded (or not completely); the message says why."""


class LimitExceeded(DecodeError):
    """A file refused from its metadata, before any frame is decoded: ``limit`` names the limit
    (``pixels``, ``aspect``, ``frames`` or ``codec``)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(limit, message)
        self.limit = limit
        self.message = message

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class DecodeLimits:
    """What a file may cost, checked from its headers and packets before decoding (the server's defaults;
    ``None`` turns a limit off)."""

    max_pixels: int | None = 3840 * 2160
    """Coded width x height of one frame."""
    max_aspect: float | None = 6.0
    """Long side over short side: a 16384 x 2 frame is small, but resizing its short side is not."""
    max_frames: int | None = 3600
    """Frames to decode, counted from the packets (a timestamp-based duration can be faked)."""
    codecs: tuple[str, ...] | None = ("h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "mpeg2video", "mjpeg")
    """FFmpeg decoder names accepted."""

    def check_stream(self, codec: str, width: int, height: int) -> None:
        """Raise :class:`LimitExceeded` for a codec or frame size over the limits."""
        if self.codecs is not None and codec not in self.codecs:
            raise LimitExceeded("codec", f"codec {codec!r} is not accepted ({', '.join(self.codecs)})")
        if width <= 0 or height <= 0:
            return  # unknown until decoded: the decoder's own memory limit bounds it
        if self.max_pixels is not None and width * height > self.max_pixels:
            raise LimitExceeded("pixels", f"{width}x{height} is over the limit of {self.max_pixels} pixels a frame")
        if self.max_aspect is not None and max(width, height) / min(width, height) > self.max_aspect:
            raise LimitExceeded("aspect", f"{width}x{height} is over the aspect ratio limit of {self.max_aspect:g}")

    def check_frames(self, frames: int) -> None:
        if self.max_frames is not None and frames > self.max_frames:
            raise LimitExceeded("frames", f"over {self.max_frames} frames")


@dataclass(frozen=True)
class VideoMeta:
    """What a file holds, read from its container and packets (nothing here is guessed from the name)."""

    path: str
    container: str
    codec: str
    pix_fmt: str
    color_range: str
    coded_width: int
    coded_height: int
    rotation: int
    """Clockwise degrees (0, 90, 180, 270) that turn the coded picture upright."""
    sar: Fraction
    fps: float
    frames: int
    frames_from: Literal["container", "packets"]
    duration_s: float
    vfr: bool
    keyframes: int
    pts: tuple[int, ...] = field(repr=False, default=())
    """Presentation timestamps of every frame, sorted, in stream time base units."""
    keyframe_pts: tuple[int, ...] = field(repr=False, default=())
    time_base: Fraction = Fraction(1, 1)
    seekable: bool = True
    """False when seeking fails in the file (frames are then read forward from the start)."""

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as shown: sample aspect ratio applied, then the rotation."""
        width = round(self.coded_width * self.sar) if self.sar != 1 else self.coded_width
        height = self.coded_height
        return (height, width) if self.rotation in (90, 270) else (width, height)

    @property
    def timestamps_s(self) -> np.ndarray:
        """Presentation time of each frame in seconds from the first frame."""
        if not self.pts:
            return np.arange(self.frames) / (self.fps or 1.0)
        pts = np.asarray(self.pts, dtype=np.float64)
        return (pts - pts[0]) * float(self.time_base)

    def problems(self) -> list[str]:
        """Things a user should know before trusting this file."""
        found = []
        if self.frames_from == "packets":
            found.append("container has no frame count (counted from packets)")
        if self.vfr:
            found.append("variable frame rate (sampling uses timestamps)")
        if self.rotation:
            found.append(f"rotated {self.rotation} deg (display matrix)")
        if self.sar != 1:
            found.append(f"non-square pixels (SAR {self.sar})")
        if self.frames < 2:
            found.append(f"only {self.frames} frame(s)")
        if not self.seekable:
            found.append("seeking fails: frames are read forward from the start")
        return found


def _rotation_clockwise(frame: object, stream: object) -> int:
    """The display-matrix rotation as clockwise degrees; PyAV reports it counter-clockwise."""
    angle = getattr(frame, "rotation", None)
    if angle is None:
        angle = -int(getattr(stream, "metadata", {}).get("rotate", 0))
    return round(-float(angle)) % 360


def _is_vfr(sorted_pts: np.ndarray) -> bool:
    if len(sorted_pts) < 3:
        return False
    deltas = np.diff(sorted_pts)
    median = float(np.median(deltas))
    # One tick of jitter is rounding in the container, not a variable rate.
    return float(deltas.max() - deltas.min()) > max(2.0, 0.25 * median)


def probe(path: str | Path, limits: DecodeLimits | None = None) -> VideoMeta:
    """Read a file's metadata: demux every packet (no decoding) and decode the first frame. With ``limits``,
    the codec and frame size are checked from the headers and the frame count while demuxing, each before
    any decoding (:class:`LimitExceeded`)."""
    import av

    path = str(path)
    try:
        container_cm = av.open(path)
    except Exception as exc:
        raise DecodeError(f"{path}: not a file FFmpeg can read ({_first_line(exc)})") from exc
    try:
        with container_cm as container:
            if not container.streams.video:
                raise DecodeError(f"{path}: not a video: a {container.format.name} file with no video stream")
            stream = container.streams.video[0]
            ctx = stream.codec_context
            if limits is not None:
                limits.check_stream(ctx.name, ctx.width or 0, ctx.height or 0)
            pts, keyframe_pts, packets = [], [], 0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                packets += 1
                if limits is not None:
                    limits.check_frames(packets)
                stamp = packet.pts if packet.pts is not None else packet.dts
                if stamp is not None:
                    pts.append(int(stamp))
                    if packet.is_keyframe:
                        keyframe_pts.append(int(stamp))
            if len(pts) < packets:  # an elementary stream (raw .h264): no timestamps to index frames by
                pts, keyframe_pts = [], []
            seekable = True
            try:
                container.seek(0, stream=stream)
                first = next(container.decode(stream), None)
            except av.FFmpegError:  # seeking fails in some files that read fine forward
                seekable = False
                first = _first_frame_forward(path)
            if first is None:
                raise DecodeError(f"{path}: no decodable video frame")
            if limits is not None:  # the header may have lied about the size
                limits.check_stream(ctx.name, first.width, first.height)
            header_frames = int(stream.frames or 0)
            time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 1)
            rate = stream.average_rate or stream.guessed_rate or stream.base_rate
            sar = stream.sample_aspect_ratio or ctx.sample_aspect_ratio or Fraction(1, 1)
            colour = {1: "limited", 2: "full"}.get(int(getattr(first, "color_range", 0) or 0), "unspecified")
            if ctx.pix_fmt and ctx.pix_fmt.startswith("yuvj"):
                colour = "full"
            meta_args = dict(
                path=path,
                container=container.format.name.split(",")[0],
                codec=ctx.name,
                pix_fmt=ctx.pix_fmt or "?",
                color_range=colour,
                coded_width=ctx.width or first.width,
                coded_height=ctx.height or first.height,
                rotation=_rotation_clockwise(first, stream),
                sar=Fraction(sar) if sar else Fraction(1, 1),
            )
    except DecodeError:
        raise
    except Exception as exc:
        raise DecodeError(f"{path}: cannot read container: {exc}") from exc
    sorted_pts = np.sort(np.asarray(pts, dtype=np.int64))
    frames = len(sorted_pts) or packets or header_frames
    if frames == 0:
        raise DecodeError(f"{path}: zero video frames")
    vfr = _is_vfr(sorted_pts)
    if len(sorted_pts) >= 2:
        step = float(np.median(np.diff(sorted_pts))) * float(time_base)
        duration = float(sorted_pts[-1] - sorted_pts[0]) * float(time_base) + step
    else:
        duration = frames / float(rate or 1)
    fps = frames / duration if (vfr or not rate) and duration > 0 else float(rate)
    return VideoMeta(
        **meta_args,
        fps=fps,
        frames=frames,
        frames_from="container" if header_frames else "packets",
        duration_s=duration,
        vfr=vfr,
        keyframes=len(keyframe_pts),
        pts=tuple(int(p) for p in sorted_pts),
        keyframe_pts=tuple(sorted(keyframe_pts)),
        time_base=time_base,
        seekable=seekable,
    )


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__


def _first_frame_forward(path: str) -> object | None:
    """The first frame, read from a freshly opened container without seeking."""
    import av

    with av.open(path) as container:
        return next(container.decode(video=0), None)


SHORTFALL_TOLERANCE = 0.05
"""Frames a container may promise beyond what decodes (a share of them, at least 2) before a read fails."""


def _with_tail_filled(found: dict[int, np.ndarray], indices: Sequence[int], frames: int, path: str) -> np.ndarray:
    """The frames at ``indices``; wanted frames past the last one that decoded (a container that promises
    more frames than it holds) repeat that last frame, within :data:`SHORTFALL_TOLERANCE`."""
    missing = sorted({i for i in indices if i not in found})
    if missing:
        last = max(found, default=-1)
        allowed = max(2, int(frames * SHORTFALL_TOLERANCE))
        if last < 0 or missing[0] <= last or frames - 1 - last > allowed:
            raise DecodeError(f"{path}: {len(missing)} wanted frame(s) could not be decoded")
        for i in missing:
            found[i] = found[last]
    return np.stack([found[i] for i in indices])


def to_display(
    frames: np.ndarray, meta: VideoMeta, upright: bool = True, square_pixels: bool = False, rotated: bool = False
) -> np.ndarray:
    """Apply the sample aspect ratio (when asked) and the rotation to ``T x H x W x 3`` frames.

    ``rotated`` says the frames already come upright (decord applies the display matrix itself);
    with ``upright=False`` they are turned back to the coded orientation.
    """
    quarter_turns = meta.rotation // 90
    if rotated and not upright:
        frames, rotated = np.ascontiguousarray(np.rot90(frames, k=quarter_turns, axes=(1, 2))), False
    if square_pixels and meta.sar != 1:
        import torch
        from torchvision.transforms.v2 import functional as F

        height, width = frames.shape[1:3]
        # The SAR stretches the coded width, which is the height once a quarter turn was applied.
        size = [round(height * meta.sar), width] if rotated and quarter_turns % 2 else [height, round(width * meta.sar)]
        tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
        frames = F.resize(tensor, size, antialias=True).permute(0, 2, 3, 1).numpy()
    if upright and not rotated and quarter_turns:
        frames = np.ascontiguousarray(np.rot90(frames, k=-quarter_turns, axes=(1, 2)))
    return frames


class VideoReader:
    """An open video file; subclasses read raw frames, this class makes them upright / square."""

    backend: Backend
    returns_upright = False
    """Whether the library already applies the display rotation (decord does)."""

    def __init__(
        self, path: str | Path, upright: bool = True, square_pixels: bool = False, meta: VideoMeta | None = None
    ) -> None:
        self.path = str(path)
        self.meta = meta or probe(path)
        self.upright = upright
        self.square_pixels = square_pixels
        self.decoded_frames = 0
        """How many frames the decoder produced so far (PyAV counts each; decord does not report)."""

    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at ``indices`` (0-based, presentation order), repeated indices allowed."""
        if not len(indices):
            raise ValueError("no frame indices given")
        bad = [i for i in indices if not 0 <= i < self.meta.frames]
        if bad:
            raise IndexError(f"{self.path}: frame indices {bad[:5]} outside 0..{self.meta.frames - 1}")
        raw = self._read_raw(list(indices))
        return to_display(raw, self.meta, self.upright, self.square_pixels, rotated=self.returns_upright)

    def _read_raw(self, indices: list[int]) -> np.ndarray:
        raise NotImplementedError


class DecordReader(VideoReader):
    """decord backend: frame-accurate random access with keyframe-aware seeking, one thread."""

    backend: Backend = "decord"
    returns_upright = True

    def __init__(self, path: str | Path, threads: int = 1, **kwargs: object) -> None:
        import decord

        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=threads)
        except Exception as exc:
            raise DecodeError(f"{self.path}: decord cannot open: {exc}") from exc
        if len(self._vr) < self.meta.frames:
            # decord's index is built from the container; trust what both agree exists.
            self.meta = _with_frames(self.meta, len(self._vr))

    def _read_raw(self, indices: list[int]) -> np.ndarray:
        if self.meta.container == "avi":
            return self._read_forward(indices)
        try:
            frames = self._vr.get_batch(indices).asnumpy()
        except Exception as exc:
            raise DecodeError(f"{self.path}: decord failed: {str(exc).strip().splitlines()[-1][:200]}") from exc
        self.decoded_frames += len(indices)  # decord does not report its own count; a lower bound
        return frames

    def _read_forward(self, indices: list[int]) -> np.ndarray:
        """Decode from the first frame without seeking: AVI carries decode timestamps only, and
        decord's seeks in such files return neighbouring frames (seen on MPEG-4 Part 2 with B-frames)."""
        wanted, found = set(indices), {}
        try:
            self._vr.seek(0)
            for i in range(max(wanted) + 1):
                frame = self._vr.next()
                self.decoded_frames += 1
                if i in wanted:
                    found[i] = frame.asnumpy()
        except Exception as exc:
            raise DecodeError(f"{self.path}: decord failed after {len(found)} frames: {exc}") from exc
        return np.stack([found[i] for i in indices])


def _with_frames(meta: VideoMeta, frames: int) -> VideoMeta:
    from dataclasses import replace

    return replace(meta, frames=frames, pts=meta.pts[:frames])


class _SeekOvershot(Exception):
    """A seek landed after the frame it was for: the file is read forward instead."""


class PyAVReader(VideoReader):
    """PyAV backend: for each wanted frame, seek to the keyframe before it unless it is close ahead."""

    backend: Backend = "pyav"

    def _frames_from(self, container: object, stream: object, start_pts: int | None) -> Iterator[object]:
        if start_pts is not None:
            container.seek(start_pts, stream=stream, backward=True, any_frame=False)  # type: ignore[attr-defined]
        for frame in container.decode(stream):  # type: ignore[attr-defined]
            self.decoded_frames += 1
            yield frame

    def _read_raw(self, indices: list[int]) -> np.ndarray:
        """Frames are numbered by decoder output order from the seek point: containers such as AVI
        label reordered frames with their decode timestamps, so a frame's own pts cannot be trusted;
        only the first frame after a seek (a keyframe) is located by its pts."""
        import av

        meta = self.meta
        if not meta.pts or not meta.seekable:
            return self._read_sequential(indices)
        wanted = sorted(set(indices))
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                decoder: Iterator[object] | None = None
                position = -1  # index of the last decoded frame
                for target in wanted:
                    if target in found:
                        continue
                    keyframe = _keyframe_before(meta.keyframe_pts, meta.pts[target])
                    keyframe_index = bisect.bisect_left(meta.pts, keyframe)
                    if decoder is None or keyframe_index > position + 1 or target <= position:
                        decoder = self._frames_from(container, stream, keyframe)
                        position = None  # type: ignore[assignment]
                    for frame in decoder:
                        if position is None:
                            stamp = frame.pts if frame.pts is not None else keyframe
                            position = min(bisect.bisect_left(meta.pts, stamp), meta.frames - 1)
                            if position > target:  # the seek overshot (MPEG-PS/TS land on a later keyframe)
                                raise _SeekOvershot
                        else:
                            position += 1
                        if position in wanted and position not in found:
                            found[position] = frame.to_ndarray(format="rgb24")
                        if position >= target:
                            break
        except _SeekOvershot:
            return self._read_sequential(indices)
        except Exception as exc:
            raise DecodeError(f"{self.path}: PyAV failed after {len(found)} frames: {exc}") from exc
        return _with_tail_filled(found, indices, meta.frames, self.path)

    def _read_sequential(self, indices: list[int]) -> np.ndarray:
        import av

        wanted, found = set(indices), {}
        try:
            with av.open(self.path) as container:
                for i, frame in enumerate(self._frames_from(container, container.streams.video[0], None)):
                    if i in wanted:
                        found[i] = frame.to_ndarray(format="rgb24")
                    if i >= max(wanted):
                        break
        except Exception as exc:
            raise DecodeError(f"{self.path}: PyAV failed after {len(found)} frames: {exc}") from exc
        return _with_tail_filled(found, indices, self.meta.frames, self.path)


def _keyframe_before(keyframes: Sequence[int], target: int) -> int:
    position = bisect.bisect_right(keyframes, target) - 1
    return keyframes[position] if position >= 0 else (keyframes[0] if keyframes else 0)


def resolve_backend(name: str) -> Backend:
    """``auto`` is decord where it imports (fastest random access here), else PyAV."""
    if name != "auto":
        if name not in BACKENDS:
            raise ValueError(f"unknown decode backend {name!r}; allowed: auto, {', '.join(BACKENDS)}")
        return name  # type: ignore[return-value]
    try:
        import decord  # noqa: F401
    except ImportError:
        return "pyav"
    return "decord"


def open_video(
    path: str | Path,
    backend: Backend = "decord",
    *,
    upright: bool = True,
    square_pixels: bool = False,
    meta: VideoMeta | None = None,
) -> VideoReader:
    """Open ``path`` with the named backend."""
    if backend == "decord":
        return DecordReader(path, upright=upright, square_pixels=square_pixels, meta=meta)
    if backend == "pyav":
        return PyAVReader(path, upright=upright, square_pixels=square_pixels, meta=meta)
    raise ValueError(f"unknown decode backend {backend!r}; allowed: {', '.join(BACKENDS)}")
