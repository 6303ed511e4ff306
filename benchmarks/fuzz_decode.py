"""Mutation fuzz of the server's decode path: mutated video files through the decode processes.

Seeds: small files generated here (H.264 in MP4, MPEG-4 Part 2 in AVI, VP9 in WebM, MJPEG in Matroska)
plus the small real clips of ``../shared/data/real-clips`` when present. Each mutation (seeded: bit
flips, overwritten runs, truncation, a duplicated or deleted span, a header byte set to an extreme) is
decoded exactly as an upload is (:class:`vidbench.serve.decoding.DecodePool`: worker processes with a
time and memory limit). The outcome of every file is counted; this process must finish, whatever the
decoders did. Prints one JSON line.

Run: ``python benchmarks/fuzz_decode.py --count 10000`` (the test suite runs 1,000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from vidbench.data.decode import DecodeLimits
from vidbench.data.loader import ClipDataset
from vidbench.data.sampling import ClipSpec
from vidbench.serve.decoding import DecodePool, DecodeSettings, UploadPolicy, UploadRefused

REAL_CLIPS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-clips"
SEED_FORMATS = (("mp4", "libx264"), ("avi", "mpeg4"), ("webm", "libvpx-vp9"), ("mkv", "mjpeg"))


def generated_seeds(folder: Path) -> list[Path]:
    """Four short clips of moving noise, one per container and codec of :data:`SEED_FORMATS`."""
    import av

    rng = np.random.default_rng(0)
    seeds = []
    for suffix, codec in SEED_FORMATS:
        path = folder / f"seed.{suffix}"
        with av.open(str(path), "w") as container:
            stream = container.add_stream(codec, rate=16)
            stream.width, stream.height = 48, 32
            stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
            for _ in range(12):
                image = rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)
                for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
        seeds.append(path)
    return seeds


def real_seeds(max_bytes: int = 64 * 1024) -> list[Path]:
    """The small real clips (container variety: rotated MOV, corrupt MP4), when the shared data is here."""
    if not REAL_CLIPS.is_dir():
        return []
    return sorted(
        p for p in REAL_CLIPS.rglob("*") if p.suffix in {".mov", ".mp4", ".mkv"} and p.stat().st_size <= max_bytes
    )


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One to three random mutations of ``data``."""
    out = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        if not out:
            break
        kind = int(rng.integers(6))
        at = int(rng.integers(len(out)))
        if kind == 0:  # flip a few bits
            for i in rng.integers(0, len(out), int(rng.integers(1, 16))):
                out[int(i)] ^= 1 << int(rng.integers(8))
        elif kind == 1:  # overwrite a run with random bytes
            run = int(rng.integers(1, 64))
            out[at : at + run] = rng.bytes(min(run, len(out) - at))
        elif kind == 2:  # truncate
            del out[max(1, at) :]
        elif kind == 3:  # duplicate a span
            span = out[at : at + int(rng.integers(1, 512))]
            out[at:at] = span
        elif kind == 4:  # delete a span
            del out[at : at + int(rng.integers(1, 512))]
        else:  # an extreme value in the first bytes (sizes, counts, dimensions in headers)
            out[int(rng.integers(min(len(out), 256)))] = int(rng.choice([0x00, 0x7F, 0x80, 0xFF]))
    return bytes(out)


async def fuzz(count: int, seed: int, workers: int) -> dict[str, object]:
    """Decode ``count`` mutated files; the outcome counts and the time taken."""
    folder = Path(tempfile.mkdtemp(prefix="vidbench-fuzz-"))
    seeds = [p.read_bytes() for p in generated_seeds(folder) + real_seeds()]
    rng = np.random.default_rng(seed)
    reader = ClipDataset([], ClipSpec(8), 32, train=False)
    policy = UploadPolicy(DecodeLimits(max_pixels=4096 * 4096, max_frames=2000), ("mov", "matroska", "avi", "webm"))
    pool = DecodePool(DecodeSettings(workers=workers, timeout_s=5.0, memory_mb=512))
    outcomes: Counter[str] = Counter()
    gate = asyncio.Semaphore(2 * workers)

    async def one(index: int, data: bytes) -> None:
        path = folder / f"case-{index}.bin"
        path.write_bytes(data)
        async with gate:
            try:
                await pool.decode(reader, path, path.name, policy)
                outcomes["decoded"] += 1
            except UploadRefused as exc:
                outcomes[exc.code] += 1
        path.unlink()

    started = time.perf_counter()
    try:
        cases = [mutate(seeds[int(rng.integers(len(seeds)))], rng) for _ in range(count)]
        await asyncio.gather(*(one(i, data) for i, data in enumerate(cases)))
    finally:
        pool.close()
    seconds = time.perf_counter() - started
    return {"files": count, "seeds": len(seeds), "outcomes": dict(outcomes), "seconds": round(seconds, 1),
            "files_per_s": round(count / seconds, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(asyncio.run(fuzz(args.count, args.seed, args.workers))))


if __name__ == "__main__":
    main()
