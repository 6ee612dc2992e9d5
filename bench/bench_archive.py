"""Rows/s of scoring an archive: `predict_file` in one process vs `predict --engine ray` with 1, 2, ... workers, on
the same rows in one run (issue 41). Also: a worker killed mid-job (rows in = rows out, no duplicate, labels equal).

    python bench/bench_archive.py --run RUN [--rows 100000] [--workers 1,2] [--kill]

RUN is any finished run or export (e.g. an int8 ONNX export: `finpeft export RUN --quantize int8`; its dynamic
int8 activations depend on the batch, so its labels match predict_file's on most rows, not all; a torch fp32 run
matches exactly, as the tests check). The rows are
FPB training sentences drawn with replacement (FPB-like length), with an id column, as one Parquet file of 10,000-
row groups. Times are wall-clock of the whole call (Ray start and model loads included). Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd


def make_rows(n: int, path: Path) -> None:
    data = Path(os.environ.get("FINPEFT_DATA_DIR", "../shared/datasets"))
    texts = pd.read_csv(data / "financial_phrasebank/finlora_split/train.csv").text
    df = pd.DataFrame({"id": [f"r{i}" for i in range(n)], "text": texts.sample(n, replace=True, random_state=0).values})
    df.to_parquet(path, row_group_size=10_000)
    df.to_csv(path.with_suffix(".csv"), index=False)


def kill_a_worker_after_first_part(out: Path, done: list) -> None:
    import psutil
    while not list(out.glob("part-*")):
        time.sleep(0.2)
    for p in psutil.process_iter(["cmdline"]):
        if "ShardScorer" in " ".join(p.info["cmdline"] or []):
            os.kill(p.pid, signal.SIGKILL)
            done.append(p.pid)
            return


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--shard-rows", type=int, default=10_000)
    ap.add_argument("--kill", action="store_true", help="also: kill one worker mid-job (2 workers)")
    a = ap.parse_args()
    from finpeft import predict_archive, predict_file
    tmp = Path(tempfile.mkdtemp(prefix="finpeft-archive-"))
    src = tmp / "rows.parquet"
    make_rows(a.rows, src)
    rows = []
    t0 = time.perf_counter()
    predict_file(a.run, src.with_suffix(".csv"), tmp / "one.csv", progress=False)
    s = time.perf_counter() - t0
    ref = pd.read_csv(tmp / "one.csv", keep_default_na=False).set_index("id")
    rows.append(("predict_file, one process", os.cpu_count(), a.rows, s, "reference"))
    for w in [int(x) for x in a.workers.split(",")]:
        out = tmp / f"ray-{w}"
        t0 = time.perf_counter()
        m = predict_archive(a.run, str(src), out, workers=w, shard_rows=a.shard_rows, progress=False)
        s = time.perf_counter() - t0
        rows.append((f"--engine ray, {w} worker(s)", w, m["rows"], s, _compare(out, ref)))
    if a.kill:
        out, killed = tmp / "ray-kill", []
        threading.Thread(target=kill_a_worker_after_first_part, args=(out, killed), daemon=True).start()
        t0 = time.perf_counter()
        m = predict_archive(a.run, str(src), out, workers=2, shard_rows=a.shard_rows, progress=False)
        rows.append((f"--engine ray, 2 workers, one killed mid-job (pid {killed[0] if killed else '?'})", 2,
                     m["rows"], time.perf_counter() - t0, _compare(out, ref) + "; vs the 2-worker run: " +
                     _compare(out, _parts(tmp / "ray-2").set_index("id"))))
    print(f"\n{a.rows} FPB-like rows, run {a.run}, shards of {a.shard_rows} rows, {os.cpu_count()} CPUs\n")
    print("| how | workers | rows out | seconds | rows/s | vs predict_file |")
    print("|---|---|---|---|---|---|")
    for how, w, n, s, check in rows:
        print(f"| {how} | {w} | {n} | {s:.1f} | {n / s:.0f} | {check} |")
    shutil.rmtree(tmp, ignore_errors=True)


def _parts(out: Path) -> pd.DataFrame:
    return pd.concat([pd.read_parquet(p) for p in sorted(out.glob("part-*.parquet"))], ignore_index=True)


def _compare(out: Path, ref: pd.DataFrame) -> str:
    got = _parts(out)
    dup = int(got.id.duplicated().sum())
    got = got.drop_duplicates("id").set_index("id")
    lost = len(ref.index.difference(got.index))
    same = int((got.label.reindex(ref.index) == ref.label).sum())
    return f"{dup} duplicate(s), {lost} lost, labels equal {same}/{len(ref)}"


if __name__ == "__main__":
    main()
