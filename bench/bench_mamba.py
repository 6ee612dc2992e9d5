"""Fin-Mamba on this CPU: (1) the feature cache vs recomputing the frozen encoder every step, (2) every
frozen-encoder method next to full fine-tuning and LoRA, 3 seeds, on FPB (FinLoRA split).

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_mamba.py

Each run is a `finpeft train` subprocess with the method's default recipe (no recipe file: the method's own
train defaults apply, e.g. lr 1e-3 and up to 10 epochs for the frozen-encoder heads). Results accumulate in
bench/results/bench_mamba.json (a re-run skips finished (method, seed) pairs; --fresh starts over) and the
tables are rewritten into docs/benchmarks.md after every method.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "bench_mamba.json"
START, END = "<!-- bench_mamba:start -->", "<!-- bench_mamba:end -->"

# name -> overrides. The order is the order of the table.
METHODS = {
    "mamba-adapter": ["method=mamba-adapter"],
    "mamba-adapter, no gate (mean fusion)": ["method=mamba-adapter", "method.gate=false"],
    "mamba-adapter, N=1": ["method=mamba-adapter", "method.num_adapter_layers=1"],
    "mamba-adapter-seq": ["method=mamba-adapter-seq"],
    "attention-adapter": ["method=attention-adapter"],
    "gamba": ["method=gamba"],
    "bilstm": ["method=bilstm"],
    "cnn-lstm": ["method=cnn-lstm"],
    "lora (r=8)": ["method=lora"],
    "full fine-tune": ["method=full"],
}
KEYS = ("accuracy", "macro_f1", "train_seconds", "epochs_run", "trainable_params", "total_params")


def train(overrides: list[str], seed: int, workdir: Path, cache_dir: Path) -> dict:
    run = workdir / f"run-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "finpeft.cli", "train", "data=fpb", *overrides, f"seed={seed}",
           "train.report_to=[]", "train.progress_bar=false", "--output", str(run)]
    p = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "FINPEFT_CACHE_DIR": str(cache_dir)})
    if p.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
    m = json.loads((run / "metrics.json").read_text())
    return {k: m[k] for k in KEYS}


def encode_seconds(cache_dir: Path) -> float:
    """Wall time of the one-off encoding (train + valid sentence vectors) into an empty cache."""
    from transformers import AutoModel, AutoTokenizer
    from finpeft.models import features as fc
    from finpeft.models.backbones import resolve_backbone
    from finpeft.data import load_dataset_splits
    from finpeft.core.recipe import load_recipe
    data = load_dataset_splits(load_recipe(None, ["data=fpb"]).data)
    path = resolve_backbone("minilm-l6")
    tok, enc = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path)
    started = time.perf_counter()
    for split in (data.train, data.valid):
        fc.cached_encode(enc, tok, path, split["text"].tolist(), 128, "mean", cache_dir, 128)
    return time.perf_counter() - started


def full_rows_from_bench_train(seeds: list[int]) -> list[dict]:
    """bench_train.py ran `finpeft train` with the default (full fine-tune) recipe on the same split and seeds."""
    from finpeft.models.backbones import resolve_backbone
    from finpeft.methods.common import count_parameters, load_classifier
    from finpeft.core.recipe import ModelConfig
    bt = json.loads((RESULTS.parent / "bench_train.json").read_text())
    assert bt["args"]["seeds"] == seeds, "bench_train.json was run with other seeds"
    params = count_parameters(load_classifier(resolve_backbone("minilm-l6"), ["negative", "neutral", "positive"],
                                              ModelConfig()))
    return [{"seed": seed, **{k: r.get(k) for k in KEYS}, "trainable_params": params[0], "total_params": params[1],
             "source": "bench/bench_train.py"} for seed, r in zip(seeds, bt["rows"]["finpeft train (recipes/fpb.yaml)"])]


def ms(values: list[float], digits: int = 4) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f} (1 seed)"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def render(res: dict, seeds: list[int]) -> str:
    cmd = "FINPEFT_DATA_DIR=../shared/datasets python bench/bench_mamba.py"
    lines = [START, f"### Fin-Mamba and the frozen-encoder heads on a 2-core CPU ({res.get('date')})", "",
             f"Command: `{cmd}` (results: `bench/results/bench_mamba.json`)  ",
             f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, no GPU, torch CPU "
             "build (Mamba2 runs transformers' pure-PyTorch scan).  ",
             "Data: FPB 50%-agree, FinLoRA split: train 3,634 (3,269 train + 365 valid carved, split seed 42) / test "
             "1,212 (scored). Backbone: packaged all-MiniLM-L6-v2, max length 128. Each method's default recipe "
             "(`finpeft train data=fpb method=NAME seed=S`): frozen-encoder heads lr 1e-3, batch 32, up to 10 epochs, "
             "early stopping patience 3 on valid macro-F1; LoRA lr 1e-3, full fine-tune lr 5e-5, 3 epochs.", ""]
    c = res.get("cache")
    if c:
        cached, uncached = c["cached"], c["uncached"]
        per_c = statistics.mean(r["train_seconds"] / r["epochs_run"] for r in cached)
        per_u = statistics.mean(r["train_seconds"] / r["epochs_run"] for r in uncached)
        same = [r for r in cached if r["seed"] in {u["seed"] for u in uncached}]
        lines += ["#### Feature cache: mamba-adapter trained on cached states vs the frozen encoder run every step", "",
                  "| | seeds | seconds per epoch (train + valid eval) | test accuracy | test macro-F1 |",
                  "|---|---|---|---|---|",
                  f"| with cache | {[r['seed'] for r in cached]} | {per_c:.1f} | {ms([r['accuracy'] for r in cached])} | "
                  f"{ms([r['macro_f1'] for r in cached])} |",
                  f"| `--no-cache` | {[r['seed'] for r in uncached]} | {per_u:.1f} | "
                  f"{ms([r['accuracy'] for r in uncached])} | {ms([r['macro_f1'] for r in uncached])} |", "",
                  f"Per epoch the cache is **{per_u / per_c:.1f}× faster**; the one-off encoding of train + valid "
                  f"(3,634 rows, fp16 sentence vectors) took {c['encode_seconds']:.1f} s and is reused by every later run and seed."
                  + (f" Same seed, cached vs not: accuracy {same[0]['accuracy']:.4f} vs {uncached[0]['accuracy']:.4f} "
                     "(the cache stores fp16 states)." if same else ""), ""]
    t = res.get("table", {})
    if t:
        lines += ["#### Methods on FPB (test split), mean ± std over the seeds run (of 42, 43, 44)", "",
                  "| method | test accuracy | test macro-F1 | trainable params | train seconds | epochs run |",
                  "|---|---|---|---|---|---|"]
        for name in METHODS:
            rs = t.get(name, [])
            if rs:
                label = name + (f" (from `{rs[0]['source']}`)" if rs[0].get("source") else "")
                lines.append(f"| {label} | {ms([r['accuracy'] for r in rs])} | "
                             f"{ms([r['macro_f1'] for r in rs])} | {rs[0]['trainable_params']:,} | "
                             f"{statistics.mean(r['train_seconds'] for r in rs):.0f} | "
                             f"{statistics.mean(r['epochs_run'] for r in rs):.1f} |")
        lines.append("")
    return "\n".join(lines + [END])


def write_doc(res: dict, seeds: list[int]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    from finpeft.core.runs import publish_block
    block = render(res, seeds)
    publish_block(DOC, "bench_mamba", block[len(START):-len(END)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--no-cache-seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), help="names from the table (default: all)")
    ap.add_argument("--skip-cache-part", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--full-from-bench-train", action="store_true",
                    help="take the full fine-tune row from bench/results/bench_train.json (same recipe, split and "
                         "seeds) instead of training it again")
    args = ap.parse_args()
    res = {} if args.fresh or not RESULTS.is_file() else json.loads(RESULTS.read_text())
    res["date"] = date.today().isoformat()
    with tempfile.TemporaryDirectory() as tmp:
        work, cache = Path(tmp) / "runs", Path(tmp) / "cache"
        if not args.skip_cache_part and "cache" not in res:
            c = {"encode_seconds": encode_seconds(cache), "cached": [], "uncached": []}
            for seed in args.seeds:
                c["cached"].append({"seed": seed, **train(METHODS["mamba-adapter"], seed, work, cache)})
                print("cached", c["cached"][-1], flush=True)
            for seed in args.no_cache_seeds:
                c["uncached"].append({"seed": seed, **train(METHODS["mamba-adapter"] + ["train.feature_cache=false"],
                                                            seed, work, cache)})
                print("uncached", c["uncached"][-1], flush=True)
            res["cache"] = c
            res.setdefault("table", {})["mamba-adapter"] = [dict(r) for r in c["cached"]]
            write_doc(res, args.seeds)
        table = res.setdefault("table", {})
        if args.full_from_bench_train and "full fine-tune" not in table:
            table["full fine-tune"] = full_rows_from_bench_train(args.seeds)
            write_doc(res, args.seeds)
        for name in args.methods:
            done = {r["seed"] for r in table.get(name, [])}
            for seed in args.seeds:
                if seed not in done:
                    table.setdefault(name, []).append({"seed": seed, **train(METHODS[name], seed, work, cache)})
                    print(name, table[name][-1], flush=True)
                    write_doc(res, args.seeds)


if __name__ == "__main__":
    main()
