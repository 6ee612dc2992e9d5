"""Two `finpeft tune` processes sharing one study on PostgreSQL vs one process, the same total of trials (issue 41).

    python bench/bench_tune_shared.py [--trials 8]

Starts its own PostgreSQL server (Debian's postgresql package; tests/pgserver.py), runs `finpeft tune` once with
--trials N on study "one", then two processes at once on study "two" with the same --trials N (a total), and
prints trial counts, the best valid macro-F1 and the wall time of each. The recipe: a linear head on the frozen
MiniLM (FPB, 600 training rows), lr and warmup searched. Runs one thread per process (2 cores, 2 processes).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from pgserver import postgres_server  # noqa: E402

RECIPE = {"method": {"name": "head"}, "data": {"dataset": "fpb", "max_train_samples": 600, "max_eval_samples": 300},
          "train": {"epochs": 4, "progress_bar": False, "report_to": []},
          "search": {"train.lr": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
                     "train.warmup_ratio": {"type": "categorical", "choices": [0.0, 0.1]}}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="finpeft-tune-shared-"))
    (tmp / "tune.yaml").write_text(yaml.safe_dump(RECIPE))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    with postgres_server() as url:
        def cmd(study, out):
            return [sys.executable, "-m", "finpeft.cli", "tune", str(tmp / "tune.yaml"), "--trials", str(a.trials),
                    "--storage", url, "--study-name", study, "--output", str(tmp / out), "train.num_threads=1"]
        for study, procs in (("one", 1), ("two", 2)):
            t0 = time.perf_counter()
            ps = [subprocess.Popen(cmd(study, f"{study}-{i}"), env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL) for i in range(procs)]
            codes = [p.wait() for p in ps]
            s = optuna.load_study(study_name=study, storage=url.replace("postgresql:", "postgresql+psycopg:"))
            states = [t.state.name for t in s.trials]
            workers = [t.user_attrs.get("worker") for t in s.trials if t.state.name in ("COMPLETE", "PRUNED")]
            per = sorted((workers.count(w) for w in set(workers)), reverse=True)
            rows.append((procs, codes, states.count("COMPLETE") + states.count("PRUNED"), len(states), per,
                         s.best_value, time.perf_counter() - t0))
    print(f"\nfinpeft tune, {a.trials} trials in all, one PostgreSQL study each, {os.cpu_count()} CPUs\n")
    print("| processes | exit codes | finished trials (complete + pruned) | trials in the study | finished trials per process | best valid macro-F1 | wall s |")
    print("|---|---|---|---|---|---|---|")
    for procs, codes, done, total, per, best, s in rows:
        print(f"| {procs} | {codes} | {done} | {total} | {per} | {best:.4f} | {s:.0f} |")


if __name__ == "__main__":
    main()
