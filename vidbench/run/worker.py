"""The child process of a run: ``python -m vidbench.run.worker TASK.json``.

Four kinds of task, each a job-level step of :mod:`vidbench.job`: ``train`` (:func:`~vidbench.job.train.run_train`),
``measure`` (:func:`~vidbench.job.measure.run_measure`), ``timer`` (:func:`~vidbench.job.timer.run_timer`,
driven over ``channel`` by the job's interleaved timing) and ``cascade`` (:func:`~vidbench.job.cascade.run_cascade`,
two trained jobs run as a cascade). Any exception is written to the task's ``error.txt``
for the parent, which turns it into ``failed`` rows.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

from vidbench.job.cascade import run_cascade
from vidbench.job.context import Context
from vidbench.job.measure import run_measure
from vidbench.job.timer import run_timer
from vidbench.job.train import run_train
from vidbench.learn import distributed
from vidbench.measure.latency import Channel
from vidbench.run.lifeline import follow_launcher
from vidbench.rundir import TaskDir


def main(argv: list[str] | None = None, channel: Channel | None = None) -> int:
    """Run the task file named by ``argv``; a ``timer`` task talks over ``channel`` (default: stdin / stdout)."""
    args = sys.argv[1:] if argv is None else argv
    follow_launcher()  # a child of a run dies with the run, whatever killed it
    task_path = Path(args[0])
    task = json.loads(task_path.read_text())
    error_file = TaskDir(task_path.parent).error
    try:
        ctx = Context(task)
        distributed.setup(ctx.device)  # a no-op unless started by torchrun with several processes
        if task["kind"] == "timer":
            run_timer(ctx, channel)
        else:
            {"train": run_train, "measure": run_measure, "cascade": run_cascade}[task["kind"]](ctx)
    except BaseException as exc:
        lines = traceback.format_exception_only(type(exc), exc)
        error_file.write_text(lines[-1].strip() + "\n")
        traceback.print_exc()
        return 1
    finally:
        distributed.teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
