"""QLoRA (4-bit NF4, bitsandbytes) against LoRA on a CUDA GPU, through `finpeft llm train`: GPU memory and tokens/s.

Each method trains in its own process (a clean peak-memory count) on the same recipe, seed and FPB rows:

    python bench/bench_qlora_gpu.py [--backbone smollm2-135m] [--steps 60] [--batch 16] [--json out.json]
    python bench/bench_qlora_gpu.py --random-init DIR ...   # DIR: a model dir whose config + tokenizer to use,
                                                             # weights drawn at random (memory and speed only)

Reported: the model's memory footprint once loaded (weights; 4-bit for QLoRA), peak GPU memory allocated during
training, training tokens/s (non-padding tokens of the rows the steps consumed / training time), the final
training loss and the FPB test accuracy on `--eval` rows (constrained label scoring).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

OVERRIDES = ["tasks=[fpb]", "train.logging_steps=10"]


def _worker(backbone: str, method: str, steps: int, batch: int, n_eval: int, out: str) -> None:
    import torch
    from finpeft.llm.data import task_splits
    from finpeft.llm.tasks import load_task
    from finpeft.llm.train import load_backbone, load_llm_recipe, train_llm, training_rows
    recipe = load_llm_recipe(None, OVERRIDES + [f"backbone={backbone}", f"method.name={method}",
                                                f"train.max_steps={steps}", f"train.batch_size={batch}",
                                                f"train.max_eval_samples={n_eval}"])
    tok, model = load_backbone(recipe.backbone, recipe.method)
    footprint = model.get_memory_footprint()
    tasks = [load_task(t) for t in recipe.tasks]
    rows, _ = training_rows(recipe, tasks, {t.name: task_splits(t) for t in tasks}, tok)
    used = rows.select(range(min(len(rows), steps * batch)))
    tokens = sum(len(r) for r in used["input_ids"])
    del model
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    run = train_llm(recipe, os.path.join(os.path.dirname(out), f"run-{method}"))
    info = json.load(open(run / "run.json"))
    metrics = json.load(open(run / "metrics.json"))["fpb"]
    with open(out, "w") as f:
        json.dump({"method": method, "weights_footprint_mb": round(footprint / 2**20, 1),
                   "peak_train_memory_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1),
                   "train_seconds": info["train_seconds"], "train_tokens": tokens,
                   "tokens_per_second": round(tokens / info["train_seconds"]), "train_loss": info["train_loss"],
                   "trainable_params": info["trainable_params"], "fpb_accuracy": metrics.get("accuracy"),
                   "device": torch.cuda.get_device_name(), "torch": torch.__version__}, f)


def _random_backbone(src: str, dst: str) -> str:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(src))
    model.save_pretrained(dst)
    AutoTokenizer.from_pretrained(src).save_pretrained(dst)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default="smollm2-135m")
    ap.add_argument("--random-init", metavar="DIR", help="config + tokenizer from DIR, random weights")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--eval", type=int, default=200, help="FPB test rows scored after training")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "OUT"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        return _worker(a.backbone, a.worker[0], a.steps, a.batch, a.eval, a.worker[1])
    import torch
    if not torch.cuda.is_available():
        sys.exit("bench_qlora_gpu: needs a CUDA GPU (bitsandbytes 4-bit)")
    tmp = tempfile.mkdtemp()
    backbone = _random_backbone(a.random_init, os.path.join(tmp, "random-init")) if a.random_init else a.backbone
    rows = []
    for method in ("lora", "qlora"):
        out = os.path.join(tmp, f"{method}.json")
        subprocess.run([sys.executable, __file__, "--backbone", backbone, "--steps", str(a.steps), "--batch",
                        str(a.batch), "--eval", str(a.eval), "--worker", method, out], check=True)
        rows.append(json.load(open(out)))
    what = f"{a.random_init} (random init)" if a.random_init else a.backbone
    print(f"# LoRA vs QLoRA on {what}, {rows[0]['device']}, {a.steps} steps x batch {a.batch}, FPB (seed 42)")
    keys = [k for k in rows[0] if k not in ("method", "device", "torch")]
    print("| method | " + " | ".join(keys) + " |")
    for r in rows:
        print(f"| {r['method']} | " + " | ".join(str(r[k]) for k in keys) + " |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"backbone": what, "steps": a.steps, "batch": a.batch, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
