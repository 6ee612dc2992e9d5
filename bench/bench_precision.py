"""Training throughput on this CPU: MiniLM and MPNet, fp32 vs bf16 autocast, frozen token embeddings and
torch.compile, side by side in one run; plus the padding that sequence packing could remove at most.

Each cell is a real `finpeft train` (FPB FinLoRA split, full fine-tune, batch 16, dynamic padding with
length-grouped batches) cut to `--steps` optimizer steps; rows/s is the Trainer's own train throughput
(metrics.json `train_samples_per_second`). Accuracy of a cut run means nothing: the accuracy side of the
fp32-vs-bf16 choice is measured with full runs (docs/benchmarks.md, "MPNet").

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_precision.py --steps 40

Sequence packing is not a training option: an encoder classifier attends over the whole packed row unless the
attention kernel takes per-sequence boundaries (flash-attention varlen, which MPNet/BERT's eager and SDPA paths
on a CPU do not), so packing here would change the model. What it could save is measured instead: the share of
pad tokens in finpeft's length-grouped batches (and in random batches, for scale), an upper bound on packing's gain.
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


VARIANTS = {"fp32": ["train.precision=fp32"], "bf16": ["train.precision=bf16"],
            "bf16 + frozen token embeddings": ["train.precision=bf16", "train.freeze_embeddings=true"],
            "bf16 + torch.compile": ["train.precision=bf16", "train.compile=true"]}


def cell(backbone: str, variant: str, steps: int, max_length: int, workdir: Path) -> dict:
    run = workdir / f"{backbone}-{list(VARIANTS).index(variant)}"
    proc = subprocess.run([sys.executable, "-m", "finpeft.cli", "train", f"model.backbone={backbone}", *VARIANTS[variant],
                    f"train.max_steps={steps}", f"model.max_length={max_length}",
                    "data.max_eval_samples=64", "train.report_to=[]", "train.progress_bar=false",
                    "train.early_stopping_patience=null", "--output", str(run)],
                   capture_output=True, text=True)
    if not (run / "metrics.json").exists():  # e.g. torch.compile without a working C++ toolchain: say so, go on
        print(f"<!-- {backbone} / {variant} failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]} -->")
        return {"rows_per_s": None}
    m = json.loads((run / "metrics.json").read_text())
    return {"rows_per_s": m["train_samples_per_second"], "infer_per_s": m["test_sentences_per_second"]}


def padding_share(backbone: str, dataset: str, max_length: int, batch: int = 16) -> tuple[float, float]:
    """Pad tokens / all tokens over one epoch of batches: length-grouped (finpeft's default) and random."""
    import torch
    from transformers import AutoTokenizer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from finpeft.core.recipe import DataConfig
    from finpeft.data import load_dataset_splits
    from finpeft.models.backbones import resolve_backbone
    texts = load_dataset_splits(DataConfig(dataset=dataset)).train["text"].tolist()
    tok = AutoTokenizer.from_pretrained(resolve_backbone(backbone))
    lengths = [len(ids) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    out = []
    for order in (list(LengthGroupedSampler(batch, lengths=lengths, generator=torch.Generator().manual_seed(0))),
                  torch.randperm(len(lengths), generator=torch.Generator().manual_seed(0)).tolist()):
        real = padded = 0
        for i in range(0, len(order), batch):
            chunk = [lengths[j] for j in order[i:i + batch]]
            real, padded = real + sum(chunk), padded + max(chunk) * len(chunk)
        out.append(1 - real / padded)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--backbones", nargs="+", default=["minilm-l6", "mpnet-base"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--padding", nargs="*", default=["fpb", "tfns", "fiqa-sa"], help="datasets for the pad share")
    args = ap.parse_args()
    print(f"# {date.today()} | {platform.processor() or platform.machine()} | {args.steps} steps of batch 16, "
          f"FPB train, max_length {args.max_length}")
    print("| backbone | " + " | ".join(f"{v} rows/s" for v in args.variants) + " | best / fp32 |")
    print("|---" * (len(args.variants) + 2) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for backbone in args.backbones:
            r = {v: cell(backbone, v, args.steps, args.max_length, Path(tmp))["rows_per_s"] for v in args.variants}
            ok = [x for x in r.values() if x]
            base = r.get("fp32") or min(ok)
            print(f"| {backbone} | " + " | ".join(f"{r[v]:.1f}" if r[v] else "failed" for v in args.variants) +
                  f" | {max(ok) / base:.2f}x |", flush=True)
    if args.padding:
        print("\n| backbone | dataset (train) | pad share, length-grouped batches | pad share, random batches |")
        print("|---|---|---|---|")
        for backbone in args.backbones:
            for ds in args.padding:
                grouped, rand = padding_share(backbone, ds, args.max_length)
                print(f"| {backbone} | {ds} | {grouped:.1%} | {rand:.1%} |", flush=True)


if __name__ == "__main__":
    main()
