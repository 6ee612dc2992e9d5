"""One cell of a grid as a child process (`python -m finpeft.cli train ...`), whoever runs it: bench.py's loop on
this machine or a Ray task on another (bench_ray.py)."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from pathlib import Path


def run_child(cmd: list[str], log: Path, heartbeat=lambda: None, every: float = 60.0) -> int:
    """Run one cell, calling `heartbeat` every `every` seconds while it runs; if the grid itself is stopped
    (Ctrl-C, or `kill` = SIGTERM) the cell is stopped too, never left training as an orphan."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        with open(log, "w", encoding="utf-8") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy())
            try:
                while True:
                    try:
                        return proc.wait(timeout=every)
                    except subprocess.TimeoutExpired:
                        heartbeat()
            except BaseException:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
