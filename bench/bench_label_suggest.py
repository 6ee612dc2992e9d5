"""Time of `finpeft label suggest`: 100 rows from a 10,000-headline pool (Guardian + Reuters headlines of the
shared fin-news corpus, their date column kept), cold start (k-means on MiniLM vectors) and then with a run
(margin-kmeans: the run's probabilities + vectors). Each call runs in a fresh process with an empty feature cache,
so the encoding of the pool is in the time.

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_label_suggest.py --run RUN [--rows 10000 --n 100]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="A finished classifier run for the model-based round.")
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=100)
    a = ap.parse_args()
    src = Path(os.environ.get("FINPEFT_DATA_DIR", "../shared/datasets")) / "financial_news_unlabelled"
    pool = pd.concat([pd.read_csv(src / f, dtype=str) for f in ("guardian.csv", "reuters_tokenized.csv")])
    pool = pool.sample(n=a.rows, random_state=0).reset_index(drop=True)
    pool.insert(0, "id", [f"h{i}" for i in range(len(pool))])
    with tempfile.TemporaryDirectory() as tmp:
        pool.to_csv(Path(tmp) / "pool.csv", index=False)
        print("| call | pool rows | n | seconds (wall, fresh process, cold cache) |\n|---|---|---|---|")
        cases = [("cold start (kmeans)", [])] + ([("with --run (margin-kmeans)", ["--run", a.run])] if a.run else [])
        for k, (name, extra) in enumerate(cases):
            env = {**os.environ, "FINPEFT_CACHE_DIR": str(Path(tmp) / f"cache{k}"), "HF_HUB_OFFLINE": "1"}
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "finpeft.cli", "label", "suggest", str(Path(tmp) / "pool.csv"),
                            "--n", str(a.n), "--output", str(Path(tmp) / "next.csv"), *extra], env=env, check=True,
                           capture_output=True)
            print(f"| {name} | {len(pool)} | {a.n} | {time.perf_counter() - t0:.1f} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
