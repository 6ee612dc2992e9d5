"""finpeft's default recipe vs a plain transformers-Trainer script, side by side in one run on this machine.

Same backbone (packaged all-MiniLM-L6-v2), same FPB FinLoRA split (3,634 train / 1,212 test), same epochs and
max length. Reports test accuracy / macro-F1 (mean ± std over seeds) and training throughput, and writes the
table into docs/benchmarks.md.

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_train.py --seeds 42 43 44
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
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
START, END = "<!-- bench_train:start -->", "<!-- bench_train:end -->"


def run_plain(seed: int, epochs: int, max_length: int, *extra: str) -> dict:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "plain_trainer.py"), "--seed", str(seed),
                          "--epochs", str(epochs), "--max-length", str(max_length), *extra],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# The stronger peer (issue 19): the same script with a tuned recipe, all 3,634 rows, no model selection.
STRONG = "plain Trainer script, strong (4 epochs, max length 64, batch 32, lr 5e-5, 10% warmup)"


def run_finpeft(seed: int, epochs: int, max_length: int, workdir: Path) -> dict:
    run = workdir / f"finpeft-s{seed}"
    subprocess.run([sys.executable, "-m", "finpeft.cli", "train", str(ROOT / "recipes" / "fpb.yaml"),
                    f"seed={seed}", f"train.epochs={epochs}", f"model.max_length={max_length}",
                    "train.report_to=[]", "train.progress_bar=false", "--output", str(run)],
                   capture_output=True, text=True, check=True)
    m = json.loads((run / "metrics.json").read_text())
    return {k: m[k] for k in ("accuracy", "macro_f1", "train_seconds", "train_samples_per_second", "epochs_run")}


def mean_std(values: list[float], digits: int = 4) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.{digits}f} ± {sd:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, nargs="+", default=[42, 43, 44])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--no-strong", action="store_true", help="Leave out the stronger plain-Trainer peer.")
    ap.add_argument("--carry-tutorial", action="store_true",
                    help="Do not re-run the tutorial peer: carry its rows from bench/results/bench_train.json "
                         "(same seeds), saying so in the table.")
    args = ap.parse_args()
    rows: dict[str, list[dict]] = {"plain Trainer script": [], "finpeft train (recipes/fpb.yaml)": [], STRONG: []}
    results = ROOT / "bench" / "results" / "bench_train.json"
    carried = ""
    if args.carry_tutorial:
        old = json.loads(results.read_text())
        if old["args"]["seeds"] != args.seeds:
            sys.exit(f"error: {results} holds seeds {old['args']['seeds']}, not {args.seeds}")
        rows["plain Trainer script"] = old["rows"]["plain Trainer script"]
        carried = old.get("tutorial_date", "2026-11-23")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:  # interleaved, so all see the same machine state
            for name, fn in (("plain Trainer script", lambda: run_plain(seed, args.epochs, args.max_length)),
                             ("finpeft train (recipes/fpb.yaml)",
                              lambda: run_finpeft(seed, args.epochs, args.max_length, Path(tmp))),
                             (STRONG, lambda: run_plain(seed, 4, 64, "--batch-size", "32", "--lr", "5e-5",
                                                        "--warmup-ratio", "0.1"))):
                if (name == STRONG and args.no_strong) or (name == "plain Trainer script" and carried):
                    continue
                r = fn()
                rows[name].append(r)
                print(f"{name} seed {seed}: {json.dumps(r)}", flush=True)
    if args.no_strong:
        rows.pop(STRONG)

    plain, ours = list(rows.values())[:2]
    speedup = statistics.mean(r["train_samples_per_second"] for r in ours) / \
        statistics.mean(r["train_samples_per_second"] for r in plain)
    cmd = "FINPEFT_DATA_DIR=../shared/datasets python bench/bench_train.py --seeds " + " ".join(map(str, args.seeds)) \
        + (" --carry-tutorial" if carried else "")
    lines = [START, f"### finpeft default recipe vs plain transformers Trainer ({date.today().isoformat()})", "",
             f"Command: `{cmd}`  ",
             f"Machine: {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}, no GPU.  ",
             f"Data: FPB 50%-agree, FinLoRA split: train 3,634 / test 1,212 (test scored). Backbone: packaged "
             f"all-MiniLM-L6-v2. {args.epochs} epochs, max length {args.max_length}, seeds {args.seeds}.", "",
             "| | test accuracy | test macro-F1 | train seconds | train samples/s |", "|---|---|---|---|---|"]
    for name, rs in rows.items():
        label = f"{name} (carried from the {carried} run)" if carried and name == "plain Trainer script" else name
        lines.append(f"| {label} | {mean_std([r['accuracy'] for r in rs])} | {mean_std([r['macro_f1'] for r in rs])} "
                     f"| {statistics.mean(r['train_seconds'] for r in rs):.0f} | "
                     f"{mean_std([r['train_samples_per_second'] for r in rs], 1)} |")
    pairs = ", ".join(f"{o['train_samples_per_second'] / p['train_samples_per_second']:.2f}" for p, o in zip(plain, ours))
    if carried:
        pairs += f"; the tutorial peer's rows were measured on {carried}, the rest in this run"
    if STRONG in rows:  # what matters to a user: the model's cost in wall-clock seconds, side by side
        wall = statistics.mean(r["train_seconds"] for r in rows[STRONG]) / statistics.mean(r["train_seconds"] for r in ours)
        pairs += f"; the strong peer takes {wall:.2f}x finpeft's train seconds"
    lines += ["", f"Throughput ratio finpeft / plain: **{speedup:.2f}×** (per seed, run back to back: {pairs}).", "",
              "The plain script is the Hugging Face tutorial recipe (lr 2e-5, batch 16, weight decay 0.01, "
              "dynamic padding with random batches, all 3,634 rows, no model selection). finpeft's default trains "
              "on about 3,270 rows (10% carved off for validation, stratified, duplicates kept together), batch 16, lr 5e-5 with 10% warmup, "
              "length-grouped batches, validation macro-F1 each epoch, early stopping (patience 2) and the best "
              "epoch restored. finpeft's train seconds include its per-epoch validation and checkpointing; "
              "samples/s counts the training rows actually processed (fewer epochs when early stopping fires).",
              "", "Per seed: " + "; ".join(
                  f"{n.split(' (')[0]} s{s}: acc {r['accuracy']:.4f}, {r['train_samples_per_second']:.1f}/s"
                  for n, rs in rows.items() for s, r in zip(args.seeds, rs)), END]
    from finpeft.core.runs import publish_block
    block = publish_block(DOC, "bench_train", "\n".join(lines[1:-1]))
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "bench_train.json").write_text(json.dumps({"args": vars(args), "tutorial_date": carried or date.today().isoformat(),
                                                      "rows": rows}, indent=2))
    print(block)


if __name__ == "__main__":
    main()
