"""Training-step throughput of a model preset on random clips: where a suite's training minutes go.

One process per measurement (threads are a process setting); ``--pair`` runs two such processes at once, to
see what training two jobs side by side on this machine would give. Each line: the model, its settings, train
clips/s (forward, backward, AdamW step) and eval clips/s. On a drifting host alternate the settings you
compare (``--repeat``) rather than trusting one pair of lines.

Run: ``python benchmarks/train_step.py r2plus1d --threads 2 --channels-last --repeat 3``
     ``python benchmarks/train_step.py r2plus1d --threads 1 --pair x3d``
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import torch
from torch import nn

from vidbench.plugins import load_plugins


def step_rates(model_name: str, preset: str, threads: int, channels_last: bool, batch: int, steps: int) -> str:
    """One line: the preset's train and eval clips/s on random ``batch x 3 x T x crop x crop`` clips."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    spec = load_plugins().model(model_name)
    chosen = spec.presets[preset]
    model = spec.build(chosen, 20)
    shape = (batch, 3, chosen.input.frames, chosen.input.crop, chosen.input.crop)
    clips, labels = torch.randn(shape), torch.randint(0, 20, (batch,))
    if channels_last:
        model, clips = (
            model.to(memory_format=torch.channels_last_3d),
            clips.contiguous(memory_format=torch.channels_last_3d),
        )
    optimizer, loss_fn = torch.optim.AdamW(model.parameters(), lr=1e-3), nn.CrossEntropyLoss()

    def train_step() -> None:
        loss_fn(model(clips), labels).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(3):
        train_step()
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    train_s = (time.perf_counter() - start) / steps
    model.eval()
    with torch.inference_mode():
        model(clips)
        start = time.perf_counter()
        for _ in range(steps):
            model(clips)
        eval_s = (time.perf_counter() - start) / steps
    layout = "channels_last" if channels_last else "NCDHW"
    return (
        f"{model_name}/{preset} threads={threads} {layout} batch={batch}: "
        f"train {batch / train_s:.0f} clips/s, eval {batch / eval_s:.0f} clips/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--channels-last", action="store_true", help="also channels_last_3d (3D conv models)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=1, help="with --channels-last: alternate both layouts")
    parser.add_argument("--pair", help="another model trained at the same time in its own process")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # a single measurement, printed
    args = parser.parse_args()
    if args.one:
        print(step_rates(args.model, args.preset, args.threads, args.channels_last, args.batch, args.steps))
        return
    base = [sys.executable, __file__, "--one", "--preset", args.preset, "--threads", str(args.threads)]
    base += ["--batch", str(args.batch), "--steps", str(args.steps)]
    if args.pair:
        runs = [subprocess.Popen([*base, name], stdout=subprocess.PIPE, text=True) for name in (args.model, args.pair)]
        print("at the same time:")
        for run in runs:
            print("  " + run.communicate()[0].strip())
        return
    layouts = [False, True] if args.channels_last else [False]
    for _ in range(args.repeat):
        for channels_last in layouts:
            command = [*base, args.model, *(["--channels-last"] if channels_last else [])]
            print(subprocess.run(command, stdout=subprocess.PIPE, text=True, check=True).stdout.strip())


if __name__ == "__main__":
    main()
