"""The Trainer's pieces that finpeft adds: the clock that
survives a resume, the step counter, the peak-memory reading."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from finpeft.core.runs import write_atomic


def peak_memory() -> dict:
    """Peak resident memory of this process (and peak GPU memory allocated by torch, when on a GPU), in MiB."""
    import torch
    out = {}
    try:
        import resource
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        out["peak_rss_mb"] = round(rss / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)
    except ImportError:  # Windows
        pass
    if torch.cuda.is_available():
        out["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


class Clock(TrainerCallback):
    """Keeps the training time spent up to each checkpoint in the work dir, so a resumed run's train_seconds
    include the time spent before the interruption (up to the checkpoint it continues from)."""

    def __init__(self, path: Path, resume: bool):
        self.path, self.t0 = path, time.perf_counter()
        self.before = 0.0
        if resume and path.is_file():
            try:
                self.before = float(json.loads(path.read_text(encoding="utf-8"))["seconds"])
            except (OSError, ValueError, KeyError):
                pass

    def on_save(self, args, state, control, **kw):
        if state.is_world_process_zero:
            write_atomic(self.path, json.dumps({"seconds": self.before + time.perf_counter() - self.t0,
                                                "step": state.global_step}))


class StepCounter(TrainerCallback):
    """Remembers the step training (re)started from (on resume, the checkpoint's)."""
    first: int | None = None

    def on_step_begin(self, args, state, control, **kw):
        if self.first is None:
            self.first = state.global_step
