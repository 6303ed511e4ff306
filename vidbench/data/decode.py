"""Video decoding behind one small interface: probe (metadata), open, read frames by index.

Two backends: decord (fast random access) and PyAV (FFmpeg; keyframe-aware seeking, counts what it
decodes). Both return ``uint8`` RGB arrays shaped ``T x H x W x 3`` in presentation order; by default
upright (the container's display-matrix rotation applied) and, on request, with square pixels (the
sample aspect ratio applied). Metadata comes from PyAV's demuxer, so a container without a frame
count (matroska) still gets one, and variable frame rate is detected from the packet timestamps.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
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


DecodeMode = Literal["exact", "sequential", "seek", "keyframes", "nonref"]
DECODE_MODES: tuple[DecodeMode, ...] = ("exact", "sequential", "seek", "keyframes", "nonref")
INEXACT_MODES = ("keyframes", "nonref")


@dataclass(frozen=True)
class DecodePolicy:
    """How a clip's frames are decoded: which frames the decoder produces, with how many threads, at what size.

    ``mode``:

    - ``exact``: the backend's frame-accurate reader (decord; or PyAV, choosing per GOP between decoding on
      and seeking to the keyframe before the next wanted frame);
    - ``sequential``: PyAV, one forward pass from the first frame to the last wanted one, no seek;
    - ``seek``: PyAV, a seek to the keyframe before every wanted frame;
    - ``keyframes``: PyAV decodes keyframes only (FFmpeg ``skip_frame=NONKEY``); each wanted frame is the
      nearest keyframe, so a clip with one GOP repeats one picture (inexact: an accuracy cost);
    - ``nonref``: PyAV skips non-reference frames (``skip_frame=NONREF``); each wanted frame is the nearest
      decoded one (inexact).

    ``threads``: the decoder's threads (FFmpeg frame and slice threading; decord's ``num_threads``).
    ``short_side``: frames scaled at decode (FFmpeg's bilinear swscale) so that their short side is this many
    pixels, before any rotation or transform; ``None`` keeps the coded size.
    """

    mode: DecodeMode = "exact"
    threads: int = 1
    short_side: int | None = None

    def __post_init__(self) -> None:
        if self.mode not in DECODE_MODES:
            raise ValueError(f"unknown decode mode {self.mode!r}; allowed: {', '.join(DECODE_MODES)}")
        if self.threads < 1 or (self.short_side is not None and self.short_side < 2):
            raise ValueError(f"decode threads must be >= 1 and short_side >= 2 (got {self.threads}, {self.short_side})")

    @property
    def label(self) -> str:
        """The policy's name as a suite writes it: ``mode``, with ``+scaled`` when frames are scaled at decode (the
        rows' ``decode_policy``; :func:`policy_from_label` reads it back)."""
        return self.mode + ("+scaled" if self.short_side else "")

    @property
    def key(self) -> str:
        """What decides the decoded pixels: the label and the short side scaled to (cache keys)."""
        return self.label + (str(self.short_side) if self.short_side else "")


def policy_from_label(label: str, threads: int = 1, scaled_side: int | None = None) -> DecodePolicy:
    """The policy a suite names: a mode, and ``+scaled`` to scale frames at decode to ``scaled_side`` (the
    short side the eval transforms resize to), e.g. ``keyframes+scaled``."""
    mode, _, extra = label.partition("+")
    if mode not in DECODE_MODES or extra not in ("", "scaled"):
        allowed = ", ".join(f"{m}[+scaled]" for m in DECODE_MODES)
        raise ValueError(f"unknown decode policy {label!r}; allowed: {allowed}")
    return DecodePolicy(mode, threads, scaled_side if extra else None)  # type: ignore[arg-type]


def _scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int] | None:
    """Even width and height with the short side at ``short_side``, or None to keep the size."""
    if short_side is None or min(width, height) <= short_side:
        return None
    scale = short_side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def _rgb(frame: object, size: tuple[int, int] | None) -> np.ndarray:
    """A PyAV frame as ``H x W x 3`` uint8 RGB, scaled at conversion when ``size`` is given."""
    if size is None:
        return frame.to_ndarray(format="rgb24")  # type: ignore[attr-defined]
    width, height = size
    scaled = frame.reformat(width=width, height=height, format="rgb24", interpolation="BILINEAR")  # type: ignore[attr-defined]
    return scaled.to_ndarray()


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


def _with_tail_filled(
    found: dict[int, np.ndarray],
    indices: Sequence[int],
    frames: int,
    path: str,
    tail: tuple[int, Callable[[], np.ndarray]] | None,
) -> np.ndarray:
    """The frames at ``indices``; wanted frames past the last frame that decoded (``tail``: its index and how to
    get its pixels; a container that promises more frames than it holds) repeat that frame, within
    :data:`SHORTFALL_TOLERANCE`."""
    missing = sorted({i for i in indices if i not in found})
    if missing:
        last = tail[0] if tail is not None else -1
        allowed = max(2, int(frames * SHORTFALL_TOLERANCE))
        if tail is None or missing[0] <= last or frames - 1 - last > allowed:
            raise DecodeError(f"{path}: {len(missing)} wanted frame(s) could not be decoded")
        pixels = tail[1]()
        for i in missing:
            found[i] = pixels
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
        self,
        path: str | Path,
        upright: bool = True,
        square_pixels: bool = False,
        meta: VideoMeta | None = None,
        policy: DecodePolicy | None = None,
    ) -> None:
        self.path = str(path)
        self.meta = meta or probe(path)
        self.upright = upright
        self.square_pixels = square_pixels
        self.policy = policy or DecodePolicy()
        self.size = _scaled_size(self.meta.coded_width, self.meta.coded_height, self.policy.short_side)
        """The decoded frames' (width, height) when the policy scales them at decode."""
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
    """decord backend: frame-accurate random access with keyframe-aware seeking (exact, full-size frames only)."""

    backend: Backend = "decord"
    returns_upright = True

    def __init__(self, path: str | Path, **kwargs: object) -> None:
        import decord

        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        if self.policy.mode != "exact" or self.size is not None:
            raise ValueError(f"decord reads exact, full-size frames only; decode policy {self.policy.label} needs PyAV")
        try:
            self._vr = decord.VideoReader(self.path, ctx=decord.cpu(0), num_threads=self.policy.threads)
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
    """PyAV backend, in every decode mode (:class:`DecodePolicy`); ``exact`` seeks to the keyframe before a
    wanted frame unless that frame is close ahead."""

    backend: Backend = "pyav"

    def _open_stream(self, container: object, skip: str | None = None) -> object:
        stream = container.streams.video[0]  # type: ignore[attr-defined]
        stream.thread_type = "AUTO"  # frame and slice threads, as many as the policy gives
        stream.thread_count = self.policy.threads
        if skip is not None:
            stream.codec_context.skip_frame = skip
        return stream

    def _frames_from(self, container: object, stream: object, start_pts: int | None) -> Iterator[object]:
        if start_pts is not None:
            container.seek(start_pts, stream=stream, backward=True, any_frame=False)  # type: ignore[attr-defined]
        for frame in container.decode(stream):  # type: ignore[attr-defined]
            self.decoded_frames += 1
            yield frame

    def _keyframes(self, container: object, stream: object) -> Iterator[object]:
        """The keyframes only, in order: the decoder is sent the keyframe packets alone (each decodes on its own),
        so the packets between them are demuxed but never parsed."""
        for packet in container.demux(stream):  # type: ignore[attr-defined]
            if packet.is_keyframe and packet.size:
                for frame in stream.decode(packet):  # type: ignore[attr-defined]
                    self.decoded_frames += 1
                    yield frame
        for frame in stream.decode(None):  # type: ignore[attr-defined]  # what the decoder still holds
            self.decoded_frames += 1
            yield frame

    def _read_raw(self, indices: list[int]) -> np.ndarray:
        mode = self.policy.mode
        if mode in INEXACT_MODES:
            return self._read_nearest(indices, "NONKEY" if mode == "keyframes" else "NONREF")
        if mode == "sequential" or not self.meta.pts or not self.meta.seekable:
            return self._read_sequential(indices)
        try:
            return self._read_seeking(indices, always=mode == "seek")
        except _SeekOvershot:
            return self._read_sequential(indices)

    def _read_seeking(self, indices: list[int], always: bool) -> np.ndarray:
        """Frames are numbered by decoder output order from the seek point: containers such as AVI
        label reordered frames with their decode timestamps, so a frame's own pts cannot be trusted;
        only the first frame after a seek (a keyframe) is located by its pts. ``always``: a seek before
        every wanted frame, even one a few frames ahead."""
        import av

        meta = self.meta
        wanted = sorted(set(indices))
        found: dict[int, np.ndarray] = {}
        try:
            with av.open(self.path) as container:
                stream = self._open_stream(container)
                decoder: Iterator[object] | None = None
                position = -1  # index of the last decoded frame
                last: tuple[int, object] | None = None  # it and its frame
                for target in wanted:
                    if target in found:
                        continue
                    keyframe = _keyframe_before(meta.keyframe_pts, meta.pts[target])
                    keyframe_index = bisect.bisect_left(meta.pts, keyframe)
                    if always or decoder is None or keyframe_index > position + 1 or target <= position:
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
                            found[position] = _rgb(frame, self.size)
                        last = (position, frame)
                        if position >= target:
                            break
        except _SeekOvershot:
            raise
        except Exception as exc:
            raise DecodeError(f"{self.path}: PyAV failed after {len(found)} frames: {exc}") from exc
        return _with_tail_filled(found, indices, meta.frames, self.path, self._tail(last))

    def _read_sequential(self, indices: list[int]) -> np.ndarray:
        import av

        wanted, found = set(indices), {}
        last: tuple[int, object] | None = None
        try:
            with av.open(self.path) as container:
                for i, frame in enumerate(self._frames_from(container, self._open_stream(container), None)):
                    if i in wanted:
                        found[i] = _rgb(frame, self.size)
                    last = (i, frame)
                    if i >= max(wanted):
                        break
        except Exception as exc:
            raise DecodeError(f"{self.path}: PyAV failed after {len(found)} frames: {exc}") from exc
        return _with_tail_filled(found, indices, self.meta.frames, self.path, self._tail(last))

    def _tail(self, last: tuple[int, object] | None) -> tuple[int, Callable[[], np.ndarray]] | None:
        """The last decoded frame's index and its pixels when asked, to stand in for frames the container
        promised past it."""
        if last is None:
            return None
        index, frame = last
        return index, lambda: _rgb(frame, self.size)

    def _read_nearest(self, indices: list[int], skip: str) -> np.ndarray:
        """One forward pass decoding only the frames FFmpeg's ``skip_frame`` keeps; each wanted index gets
        the decoded frame nearest to it (located by its pts; without pts, counted as keyframes)."""
        import av

        meta = self.meta
        wanted = sorted(set(indices))
        found: dict[int, np.ndarray] = {}
        previous: tuple[int, object] | None = None
        pending = 0  # wanted[pending] is the first wanted index not yet given a frame
        pixels: dict[int, np.ndarray] = {}  # each decoded frame converted once, however many indices take it

        def rgb(position: int, frame: object) -> np.ndarray:
            if position not in pixels:
                pixels[position] = _rgb(frame, self.size)
            return pixels[position]

        try:
            with av.open(self.path) as container:
                stream = self._open_stream(container, skip)
                frames = self._keyframes(container, stream) if skip == "NONKEY" else self._frames_from(
                    container, stream, None)  # fmt: skip
                for count, frame in enumerate(frames):
                    stamp = frame.pts if frame.pts is not None else _nth(meta.keyframe_pts, count)
                    position = min(bisect.bisect_left(meta.pts, stamp), meta.frames - 1) if meta.pts else count
                    while pending < len(wanted) and wanted[pending] <= position:
                        target = wanted[pending]
                        closer = previous is not None and target - previous[0] < position - target
                        found[target] = rgb(*previous) if closer else rgb(position, frame)  # type: ignore[misc]
                        pending += 1
                    if pending == len(wanted):
                        break
                    previous = (position, frame)
        except Exception as exc:
            raise DecodeError(f"{self.path}: PyAV failed after {len(found)} frames: {exc}") from exc
        if previous is not None:  # wanted frames after the last decoded one take it
            for target in wanted[pending:]:
                found[target] = rgb(*previous)
        if not found:
            raise DecodeError(f"{self.path}: PyAV decoded no frame with skip_frame={skip}")
        return np.stack([found[i] for i in indices])


def _nth(values: Sequence[int], n: int) -> int:
    return values[min(n, len(values) - 1)] if values else n


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


def reader_backend(backend: Backend, policy: DecodePolicy) -> Backend:
    """The backend that reads under ``policy``: decord reads exact, full-size frames only, PyAV every policy."""
    return "pyav" if backend == "decord" and (policy.mode != "exact" or policy.short_side is not None) else backend


def open_video(
    path: str | Path,
    backend: Backend = "decord",
    *,
    upright: bool = True,
    square_pixels: bool = False,
    meta: VideoMeta | None = None,
    policy: DecodePolicy | None = None,
) -> VideoReader:
    """Open ``path`` with the named backend; a policy that decord cannot follow (an inexact mode, a seek or
    sequential mode, scaling at decode) opens with PyAV."""
    policy = policy or DecodePolicy()
    backend = reader_backend(backend, policy)
    kwargs = {"upright": upright, "square_pixels": square_pixels, "meta": meta, "policy": policy}
    if backend == "decord":
        return DecordReader(path, **kwargs)
    if backend == "pyav":
        return PyAVReader(path, **kwargs)
    raise ValueError(f"unknown decode backend {backend!r}; allowed: {', '.join(BACKENDS)}")
