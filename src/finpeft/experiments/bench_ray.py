"""`finpeft bench GRID --engine ray`: every cell of the grid is one Ray task that runs its `finpeft train` child
(its own process, `cpus_per_cell` threads) on whichever node has the CPUs free. The grid's dir, the run dirs and
the logs must be on a path every node sees (a shared filesystem); the leaderboard is written by this process as
each cell ends, exactly as in the one-machine loop (bench.py), so resume and --retry-failed are unchanged."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def run_cell(args: list[str], log: str, threads: int) -> tuple[int, float]:
    """The Ray task: one cell's child process with this node's Python; (exit code, seconds). A cancelled task
    (the grid stopped) stops its child (child.run_child)."""
    from finpeft.experiments.child import run_child
    os.environ["OMP_NUM_THREADS"] = str(threads)
    extra = [f"train.num_threads={threads}"] if args[2] == "train" else []
    started = time.perf_counter()
    code = run_child([sys.executable, *args, *extra], Path(log))
    return code, time.perf_counter() - started


def run_on_ray(jobs: list[dict], finished, progress, *, address: str | None = None, cpus_per_cell: int = 1,
               every: float = 60.0) -> None:
    """Submit every job, then hand each result to `finished(job, exit_code, seconds)` as it comes back."""
    from finpeft.core.cluster import cluster_cpus, ray_session
    if not jobs:
        return
    with ray_session(address) as ray:
        task = ray.remote(run_cell).options(num_cpus=cpus_per_cell, max_retries=2)  # a lost node: run it again
        refs = {}
        for job in jobs:
            refs[task.remote(job["args"], str(job["log"].resolve()), cpus_per_cell)] = job
        progress(f"bench: {len(jobs)} cells submitted to Ray ({cluster_cpus(ray)} CPUs, {cpus_per_cell} per cell)")
        started = time.perf_counter()
        try:
            while refs:
                ready, _ = ray.wait(list(refs), num_returns=1, timeout=every)
                if not ready:
                    progress(f"bench: {len(refs)} cells still running or queued | {time.perf_counter() - started:.0f} s")
                    continue
                job = refs.pop(ready[0])
                code, seconds = ray.get(ready[0])
                finished(job, code, seconds)
        except BaseException:  # Ctrl-C / SIGTERM: the queued cells never start, the running ones stop their child
            for ref in refs:
                ray.cancel(ref)
            raise
