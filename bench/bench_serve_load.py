"""Loopback load test of `finpeft serve`: torch backend vs ONNX int8 backend, side by side in one run.

For each backend: start `finpeft serve RUN --backend B` on 127.0.0.1 (a free port), wait for /readyz, send a
bounded number of requests (default 5,000, one FPB test sentence each) at a fixed concurrency (default 32)
with httpx, then stop the server. Reports errors, p50/p99 latency, requests/s and the mean micro-batch size
(from /metrics), and writes the table into docs/benchmarks.md. Client and server share this machine's cores.

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_serve_load.py RUN_DIR
"""
from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- serve_load:start -->", "<!-- serve_load:end -->"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def load(url: str, texts: list[str], n: int, concurrency: int, time_limit: float) -> dict:
    import httpx
    latencies, statuses, errors = [], {}, 0
    next_i = 0
    t_end = time.perf_counter() + time_limit

    async def worker(client):
        nonlocal next_i, errors
        while next_i < n and time.perf_counter() < t_end:  # bounded in count and in time: stops by itself
            i, next_i = next_i, next_i + 1
            t0 = time.perf_counter()
            try:
                r = await client.post(url + "/v1/predict", json={"texts": [texts[i % len(texts)]]})
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                if r.status_code == 200:
                    latencies.append(time.perf_counter() - t0)
            except httpx.HTTPError:
                errors += 1

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    sent = sum(statuses.values()) + errors
    return {"requests": sent, "ok": statuses.get(200, 0), "errors": sent - statuses.get(200, 0),
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
            "rps": statuses.get(200, 0) / wall, "wall_s": wall}


def batch_totals(url: str) -> tuple[float, float]:
    """(texts, forward passes) so far, from the server's /metrics."""
    import httpx
    text = httpx.get(url + "/metrics", timeout=10).text
    s = float(re.search(r"^finpeft_batch_size_sum ([\d.e+]+)", text, re.M).group(1))
    c = float(re.search(r"^finpeft_batch_size_count ([\d.e+]+)", text, re.M).group(1))
    return s, c


def run_backend(run: Path, backend: str, texts: list[str], args) -> dict:
    import httpx
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "finpeft.cli", "serve", str(run), "--backend", backend,
                               "--port", str(port), "--max-batch", str(args.max_batch)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.time()
        while True:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() - t0 > 180 or server.poll() is not None:
                raise SystemExit(f"{backend}: server did not become ready")
            time.sleep(0.5)
        asyncio.run(load(url, texts, 100, args.concurrency, 60))  # warm-up, not counted
        s0, c0 = batch_totals(url)
        res = asyncio.run(load(url, texts, args.requests, args.concurrency, args.time_limit))
        s1, c1 = batch_totals(url)
        return {**res, "mean_batch": (s1 - s0) / (c1 - c0) if c1 > c0 else float("nan")}
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", type=Path, help="a trained run dir (its onnx-int8/ export is made when absent)")
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--time-limit", type=float, default=600, help="seconds per backend, at most")
    ap.add_argument("--no-publish", action="store_true")
    args = ap.parse_args()
    data = Path(os.environ.get("FINPEFT_DATA_DIR", ROOT.parent / "shared" / "datasets"))
    texts = pd.read_csv(data / "financial_phrasebank/finlora_split/test.csv")["text"].astype(str).tolist()
    if not (args.run / "onnx-int8" / "run.json").is_file():
        subprocess.run([sys.executable, "-m", "finpeft.cli", "export", str(args.run), "--format", "onnx",
                        "--quantize", "int8"], check=True)
    rows = {}
    for backend in ("torch", "onnx"):
        rows[backend] = run_backend(args.run, backend, texts, args)
        print(backend, rows[backend], flush=True)
    cmd = (f"FINPEFT_DATA_DIR=../shared/datasets python bench/bench_serve_load.py {args.run} --requests "
           f"{args.requests} --concurrency {args.concurrency}")
    lines = [START, f"### Serving under load: torch vs ONNX int8 ({date.today().isoformat()})", "",
             f"`{cmd}` — {platform.machine()}, {os.cpu_count()} cores shared by server and client; one FPB test "
             f"sentence per request, micro-batching up to {args.max_batch} texts.", "",
             "| backend | requests | errors | p50 ms | p99 ms | requests/s | mean batch |", "|---|---|---|---|---|---|---|"]
    for b, r in rows.items():
        name = "torch" if b == "torch" else "onnx (int8)"
        lines.append(f"| {name} | {r['requests']} | {r['errors']} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['rps']:.1f} | {r['mean_batch']:.1f} |")
    block = "\n".join(lines + [END])
    print(block)
    if not args.no_publish:
        from finpeft.core.runs import publish_block
        publish_block(DOC, "serve_load", "\n".join(lines[1:]))


if __name__ == "__main__":
    main()
