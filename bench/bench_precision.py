"""Training throughput on this CPU: MiniLM and MPNet, fp32 vs bf16 autocast, side by side in one run.

Each cell is a real `finpeft train` (FPB FinLoRA split, full fine-tune, batch 16, dynamic padding with
length-grouped batches) cut to `--steps` optimizer steps; rows/s is the Trainer's own train throughput
(metrics.json `train_samples_per_second`). Accuracy of a cut run means nothing: the accuracy side of the
fp32-vs-bf16 choice is measured with full runs (docs/benchmarks.md, "MPNet").

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_precision.py --steps 40
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path


def cell(backbone: str, precision: str, steps: int, max_length: int, workdir: Path) -> dict:
    run = workdir / f"{backbone}-{precision}"
    subprocess.run([sys.executable, "-m", "finpeft.cli", "train", f"model.backbone={backbone}",
                    f"train.precision={precision}", f"train.max_steps={steps}", f"model.max_length={max_length}",
                    "data.max_eval_samples=64", "train.report_to=[]", "train.progress_bar=false",
                    "train.early_stopping_patience=null", "--output", str(run)],
                   capture_output=True, text=True, check=True)
    m = json.loads((run / "metrics.json").read_text())
    return {"rows_per_s": m["train_samples_per_second"], "infer_per_s": m["test_sentences_per_second"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--backbones", nargs="+", default=["minilm-l6", "mpnet-base"])
    args = ap.parse_args()
    print(f"# {date.today()} | {platform.processor() or platform.machine()} | {args.steps} steps of batch 16, "
          f"FPB train, max_length {args.max_length}")
    print("| backbone | fp32 train rows/s | bf16 train rows/s | bf16 / fp32 |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            r = {p: cell(backbone, p, args.steps, args.max_length, Path(tmp)) for p in ("fp32", "bf16")}
            print(f"| {backbone} | {r['fp32']['rows_per_s']:.1f} | {r['bf16']['rows_per_s']:.1f} | "
                  f"{r['bf16']['rows_per_s'] / r['fp32']['rows_per_s']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
