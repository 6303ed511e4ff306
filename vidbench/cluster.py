"""Joining a Ray cluster, for the Ray executor and for distributed embedding (Ray is imported only here)."""

from __future__ import annotations

import os


def connect() -> None:
    """Join the cluster at ``RAY_ADDRESS`` when it is set, else start a local Ray with this machine's cores."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, log_to_driver=False)
