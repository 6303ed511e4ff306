"""Running a suite: its config, its cells, the orchestration, the launching of child processes, the executors
(local, Ray) and the child's entry point.

What other layers may use: :mod:`vidbench.run.config` (suites), :mod:`vidbench.run.cells` (jobs and cells),
:mod:`vidbench.run.context` (one job's context) and :mod:`vidbench.run.cluster` (joining Ray); the rest is the
run machinery's own (import-linter keeps ``serve`` out of it).
"""
