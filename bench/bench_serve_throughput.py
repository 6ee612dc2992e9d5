"""Serving throughput on this CPU: a plain transformers pipeline vs finpeft's torch backend vs its ONNX exports
(fp32 and dynamic int8), side by side in one process on the FPB test split (FinLoRA split, 1,212 rows).

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_serve_throughput.py [RUN_DIR]

RUN_DIR: a trained run (default: the FPB full fine-tune of the accuracy study). Its ONNX exports (RUN_DIR/onnx,
RUN_DIR/onnx-int8) are made first when absent. Every backend gets the same texts, batch size, max length and
thread count, one warm-up pass, then one timed pass. The full split writes the table into docs/benchmarks.md
and bench/results/bench_serve_throughput.json; a partial run (--rows N) only prints it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "benchmarks.md"
RESULTS = ROOT / "bench" / "results" / "bench_serve_throughput.json"
START, END = "<!-- serve_throughput:start -->", "<!-- serve_throughput:end -->"
DEFAULT_RUNS = [ROOT / "runs/accuracy-fpb/default/minilm-l6-s42",
                ROOT / "runs/accuracy-fpb/fpb/full_default_recipe/minilm-l6-s42"]


def fpb_test(rows: int | None):
    from finpeft.data import load_dataset_splits
    from finpeft.core.recipe import validate_recipe
    test = load_dataset_splits(validate_recipe({"data": {"dataset": "fpb"}}).data).test
    return test.iloc[:rows] if rows else test


def pipeline_backend(run: Path, batch_size: int, max_length: int, labels: list[str]):
    """transformers' text-classification pipeline as its docs show it: no length sorting."""
    from transformers import pipeline
    pipe = pipeline("text-classification", model=str(run / "model"), tokenizer=str(run / "model"), device=-1,
                    top_k=None)

    def proba(texts):
        out = pipe(texts, batch_size=batch_size, truncation=True, max_length=max_length)
        return np.array([[{d["label"]: d["score"] for d in row}[l] for l in labels] for row in out], dtype=np.float32)
    return proba


def timed(proba, texts: list[str], batch_size: int) -> tuple[np.ndarray, float]:
    proba(texts)  # warm-up pass: first-call allocations and per-shape setup (onnxruntime) are not timed
    t0 = time.perf_counter()
    probs = proba(texts)
    return probs, time.perf_counter() - t0


def size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.suffix in (".onnx", ".safetensors")) / 1e6


def lora_backends(run: Path, batch_size: int, finpeft_proba) -> dict:
    """A LoRA run two ways: the PeftModel as peft loads it (adapter applied in every forward) and merged."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from finpeft.inference.artifacts import read_run_info
    from finpeft.models.backbones import resolve_backbone
    from finpeft.data.batching import predict_proba
    info = read_run_info(run)
    labels = info["labels"]
    tok = AutoTokenizer.from_pretrained(run / "model")
    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_backbone(info["backbone"]), num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)})
    unmerged = PeftModel.from_pretrained(base, run / "model").eval()
    mb = size_mb(run / "model")
    return {f"finpeft, {info['method']} run, adapter unmerged (PeftModel)":
            (lambda texts: predict_proba(unmerged, tok, texts, info["max_length"], batch_size), mb),
            f"finpeft, {info['method']} run, merged (what finpeft serves)": (finpeft_proba(run), mb)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run", nargs="?", type=Path, default=next((r for r in DEFAULT_RUNS if r.is_dir()), None))
    ap.add_argument("--rows", type=int, default=None, help="Score only the first N test rows (a quick check).")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lora", type=Path, default=None, help="Also a LoRA run of the same backbone: served with the "
                    "adapter unmerged (PeftModel) and merged (what finpeft serves).")
    args = ap.parse_args()
    if args.run is None:
        ap.error("no run dir given and none of the default runs exists")
    import torch
    import finpeft
    from finpeft.inference.onnx import INT8_BATCH, export_onnx
    from finpeft.inference.predictor import read_run_info
    from finpeft.core.runs import publish_block, write_atomic
    from sklearn.metrics import f1_score

    run = args.run.resolve()
    info = read_run_info(run)
    labels, max_length = info["labels"], info["max_length"]
    df = fpb_test(args.rows)
    texts, gold = df["text"].tolist(), np.array([labels.index(l) for l in df["label"]])
    exports = {}
    for q, sub in ((None, "onnx"), ("int8", "onnx-int8")):
        if not (run / sub / "model.onnx").is_file():
            print(f"exporting {run / sub}", flush=True)
            export_onnx(run, run / sub, quantize=q, parity_rows=0)
        exports[q] = run / sub

    def finpeft_proba(path):
        p = finpeft.load(path)
        p.batch_size = args.batch_size
        return p.predict_proba

    backends = {}
    if info["artifact"] == "hf":
        # As its docs show it (batch_size left at its default, 1), and batched like the others.
        backends["transformers pipeline, defaults (batch 1)"] = (pipeline_backend(run, 1, max_length, labels),
                                                                 size_mb(run / "model"))
        backends[f"transformers pipeline, batch {args.batch_size}"] = (
            pipeline_backend(run, args.batch_size, max_length, labels), size_mb(run / "model"))
    backends["finpeft, torch backend"] = (finpeft_proba(run), size_mb(run / "model"))
    backends["finpeft, ONNX fp32"] = (finpeft_proba(exports[None]), size_mb(exports[None]))
    backends["finpeft, ONNX int8 (dynamic)"] = (finpeft_proba(exports["int8"]), size_mb(exports["int8"]))
    if args.lora:
        backends.update(lora_backends(args.lora.resolve(), args.batch_size, finpeft_proba))

    rows, ref = {}, None
    for name, (proba, mb) in backends.items():
        probs, secs = timed(proba, texts, args.batch_size)
        pred = probs.argmax(1)
        ref = pred if name == "finpeft, torch backend" else ref  # (a LoRA run's rows compare with this run's)
        rows[name] = {"sentences_per_second": len(texts) / secs, "seconds": secs, "size_mb": mb,
                      "accuracy": float((pred == gold).mean()),
                      "macro_f1": float(f1_score(gold, pred, labels=list(range(len(labels))), average="macro")),
                      "pred": pred}
        print(f"{name}: {rows[name]['sentences_per_second']:.1f} sentences/s, accuracy {rows[name]['accuracy']:.4f}",
              flush=True)
    for r in rows.values():
        r["agreement_with_torch"] = float((r.pop("pred") == ref).mean())

    threads = torch.get_num_threads()
    base = rows["finpeft, torch backend"]["sentences_per_second"]
    plain = rows.get("transformers pipeline, defaults (batch 1)", {}).get("sentences_per_second", float("nan"))
    cmd = "FINPEFT_DATA_DIR=../shared/datasets python bench/bench_serve_throughput.py" + \
        (f" {args.run}" if args.run not in DEFAULT_RUNS else "") + (f" --rows {args.rows}" if args.rows else "") + \
        (f" --lora {args.lora}" if args.lora else "")
    lines = [START, f"### Serving throughput: pipeline vs finpeft torch vs ONNX ({date.today().isoformat()})", "",
             f"Command: `{cmd}`  ",
             f"Machine: {os.cpu_count()} CPU cores ({threads} thread{'s' * (threads > 1)} used by every backend), "
             f"{platform.processor() or platform.machine()}, no GPU.  ",
             f"Model: `{run.relative_to(ROOT) if run.is_relative_to(ROOT) else run}` ({info['method']}, "
             f"{info['backbone']}). Data: FPB FinLoRA test split, {len(texts)} rows, max length {max_length}, "
             f"batch {args.batch_size}; one warm-up pass, then one timed pass.", "",
             "| backend | sentences/s | × pipeline (defaults) | × torch backend | accuracy | macro-F1 | "
             "agreement with torch | model MB |",
             "|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['sentences_per_second']:.1f} | {r['sentences_per_second'] / plain:.2f} | "
                     f"{r['sentences_per_second'] / base:.2f} | "
                     f"{r['accuracy']:.4f} | {r['macro_f1']:.4f} | {r['agreement_with_torch']:.4f} | "
                     f"{r['size_mb']:.1f} |")
    lines += ["", "The pipeline batches rows in input order (padding to the longest row of each batch); finpeft "
              "tokenizes once and batches rows of equal or near-equal token count. ONNX runs on onnxruntime's CPU "
              "provider (`finpeft export RUN --format onnx [--quantize int8]`); BERT-family graphs are exported with "
              "eager attention and fused by onnxruntime's transformer optimizer (one Attention op per layer, "
              "quantised to QAttention); int8 is dynamic quantization with per-channel int8 weights, run in "
              f"sub-batches of at most {INT8_BATCH} rows (one activation scale per call: tighter, less padding). Agreement of a LoRA run's rows is with the full run's torch "
              "predictions (another model), so it is not a parity number.", END]
    block = "\n".join(lines)
    print(block)
    if args.rows:
        print("(partial run: docs/benchmarks.md and bench/results left unchanged)")
        return
    publish_block(DOC, "serve_throughput", "\n".join(lines[1:-1]))
    RESULTS.parent.mkdir(exist_ok=True)
    write_atomic(RESULTS, json.dumps({"date": date.today().isoformat(), "command": cmd, "run": str(run),
                                      "rows": len(texts), "threads": threads, "backends": rows}, indent=2))


if __name__ == "__main__":
    main()
