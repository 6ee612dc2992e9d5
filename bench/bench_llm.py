"""The LLM track on a CPU: SmolLM2-135M-Instruct zero-shot vs few-shot vs LoRA on FPB, TFNS and FiQA-SA (accuracy,
weighted-F1) beside FinLoRA's Llama-3.1-8B LoRA numbers; single-task vs multi-task LoRA on the same tasks; and
the free-text / other tasks (headline, NER, XBRL term, ECTSum ROUGE, FinanceBench EM/F1) reported however low.

    FINPEFT_DATA_DIR=../shared/datasets python bench/bench_llm.py [--output runs/bench-llm] [--train-samples 1000]
        [--eval-samples N] [--other-samples N] [--shots 3] [--seed 42] [--publish docs/benchmarks.md]

Every step stores its result in OUTPUT/<step>.json and is skipped when re-run, so an interrupted bench resumes.
The LoRA runs (single and multi) are `finpeft llm compare` runs in OUTPUT/compare.
"""
from __future__ import annotations

import argparse
import functools
import json
import time
from datetime import date
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ["fpb", "tfns", "fiqa-sa"]
OTHER = {"headline": 1000, "ner": None, "xbrl-term": 200, "ectsum": None, "financebench": None}  # eval rows cap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", default="runs/bench-llm")
    ap.add_argument("--train-samples", type=int, default=1000, help="LoRA training rows per task (before mixing)")
    ap.add_argument("--eval-samples", type=int, default=None, help="test rows per sentiment task (default all)")
    ap.add_argument("--shots", type=int, default=3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--mixing", default="proportional")
    ap.add_argument("--skip-other", action="store_true", help="only the sentiment tasks")
    ap.add_argument("--other-samples", type=int, default=None,
                    help="cap the test rows of each other task too (a random draw; default the caps in OTHER)")
    ap.add_argument("--publish", default=None, help="markdown file to write the tables into")
    a = ap.parse_args()
    out = Path(a.output)
    out.mkdir(parents=True, exist_ok=True)
    # the cached steps are only valid for the settings that made them (training rows: `llm compare` checks)
    fixed = {"eval_samples": a.eval_samples, "other_samples": a.other_samples, "shots": a.shots, "seed": a.seed}
    made = out / "bench-args.json"
    if made.is_file() and json.loads(made.read_text()) != fixed:
        raise SystemExit(f"error: {out} holds results made with {made.read_text().strip()}; use another --output")
    made.write_text(json.dumps(fixed))
    from finpeft.llm.data import task_splits
    from finpeft.llm.tasks import load_task
    from finpeft.llm.train import evaluate_task, load_backbone, load_llm_recipe, pick_shots

    model_cache = {}

    def base():
        if not model_cache:
            model_cache["m"] = load_backbone("smollm2-135m")
        return model_cache["m"]

    def step(name, fn):
        path = out / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text())
        t0 = time.perf_counter()
        result = fn()
        result["seconds"] = round(time.perf_counter() - t0, 1)
        path.write_text(json.dumps(result, indent=2))
        print(f"{name}: {json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))})}",
              flush=True)
        return result

    def test_rows(task_name, cap):
        task = load_task(task_name)
        s = task_splits(task)
        test = s.test
        if cap and cap < len(test):  # sentiment: the first rows, as `llm compare` scores; others: a random draw
            test = test.iloc[:cap] if task_name in SENTIMENT else test.sample(n=cap, random_state=0)
        return task, s, test

    def score_zero_shot(task_name, cap):
        task, _, test = test_rows(task_name, cap)
        tok, model = base()
        _, m = evaluate_task(model, tok, task, test, [], 1024)
        return {k: v for k, v in m.items() if k not in ("per_class", "confusion_matrix")}

    @functools.cache
    def score_sentiment(task_name, shots):
        """Raw and calibrated metrics from one scoring pass (calibration only adds the content-free prompts)."""
        from finpeft.inference.evaluate import classification_metrics
        from finpeft.llm.train import calibrate_probs, score_task
        task, s, test = test_rows(task_name, a.eval_samples)
        tok, model = base()
        shot_rows = pick_shots(s.train, task, shots, a.seed)
        t0 = time.perf_counter()
        probs, raw = score_task(model, tok, task, test, shot_rows, 1024)
        t1 = time.perf_counter()
        cal = calibrate_probs(model, tok, task, test, shot_rows, 1024, probs)
        y = [list(task.choices).index(l) for l in test[task.label_column]]
        out = {"raw": raw, "calibrated": classification_metrics(np.array(y), cal, list(task.choices))}
        return {k: {**{n: v for n, v in m.items() if n not in ("per_class", "confusion_matrix")},
                    "scoring_seconds": round(t1 - t0, 1)} for k, m in out.items()}

    results = {}
    for t in SENTIMENT:
        for shots, key in ((0, "zero"), (a.shots, "few")):
            name = f"{t}-zero-shot" if shots == 0 else f"{t}-{shots}-shot"
            results[f"{t}-{key}"] = step(name, lambda: score_sentiment(t, shots)["raw"])
            results[f"{t}-{key}-cal"] = step(f"{name}-calibrated", lambda: score_sentiment(t, shots)["calibrated"])
    overrides = [f"tasks=[{','.join(SENTIMENT)}]", f"train.max_train_samples={a.train_samples}",
                 f"mixing.strategy={a.mixing}", f"seed={a.seed}", "train.batch_size=8", "train.lr=2e-4"]
    if a.eval_samples:
        overrides.append(f"train.max_eval_samples={a.eval_samples}")
    compare_dir = out / "compare"

    def run_compare():
        from finpeft.llm.compare import compare_single_multi
        compare_single_multi(load_llm_recipe(None, overrides), compare_dir)
        return json.loads((compare_dir / "compare.json").read_text())

    results["lora"] = step(f"lora-single-vs-multi-{a.train_samples}-rows", run_compare)  # llm compare resumes too
    if not a.skip_other:
        for t, cap in OTHER.items():
            cap = min(filter(None, (cap, a.other_samples)), default=None)
            results[t] = step(f"{t}-zero-shot", lambda: score_zero_shot(t, cap))
    body = render(results, a, overrides, compare_dir)
    print(body)
    if a.publish:
        from finpeft.core.runs import publish_block
        publish_block(Path(a.publish), "llm", body)


def _secs(result: dict) -> float:
    """Scoring time of a step (without the calibration prompts scored in the same pass)."""
    return result.get("scoring_seconds", result["seconds"])


def render(results: dict, a, overrides: list[str], compare_dir: Path) -> str:
    from finpeft.experiments.anchors import anchors_for
    lora = {k: v for k, v in results["lora"].items() if k != "seconds"}  # step() adds its timing
    info = {n: json.loads((compare_dir / n / "run.json").read_text()) for n in lora}
    cmd = ("FINPEFT_DATA_DIR=../shared/datasets python bench/bench_llm.py"
           + (f" --train-samples {a.train_samples}" if a.train_samples != 1000 else "")
           + (f" --eval-samples {a.eval_samples}" if a.eval_samples else "") + f" --shots {a.shots}"
           + (f" --other-samples {a.other_samples}" if a.other_samples else "")
           + (f" --mixing {a.mixing}" if a.mixing != "proportional" else ""))
    lines = [f"### LLM track: SmolLM2-135M-Instruct on a 2-core CPU ({date.today().isoformat()})", "",
             f"Command: `{cmd} --publish docs/benchmarks.md`. Test splits as the classifier track (FPB FinLoRA test "
             f"1,212; TFNS valid 2,388; FiQA-SA FinLoRA test 235){'; first ' + str(a.eval_samples) + ' rows' if a.eval_samples else ''}. "
             f"Labels by constrained scoring (log-likelihood of each answer word). LoRA r=8, alpha 16, all attention "
             f"and MLP projections, lr 2e-4, 1 epoch on {a.train_samples} training rows per task, seed {a.seed}; "
             f"{a.shots}-shot prompts use train rows cycling through the labels; *calibrated* divides out the label "
             "prior the model shows on content-free inputs (N/A, empty, [MASK]; Zhao et al. 2021, `finpeft llm "
             "evaluate --calibrate`).", "",
             "| task | zero-shot acc / w-F1 | zero-shot calibrated | " + f"{a.shots}-shot | {a.shots}-shot calibrated | "
             "LoRA single-task | LoRA multi-task (delta acc) | FinLoRA Llama-3.1-8B LoRA acc |",
             "|---|---|---|---|---|---|---|---|"]
    for t in SENTIMENT:
        z, f, zc, fc = (results[f"{t}-{k}"] for k in ("zero", "few", "zero-cal", "few-cal"))
        s, m = lora[f"single-{t}"][t], lora["multi"][t]
        anchor = next((f"{x.value:.4f}" for x in anchors_for(t) if x.system.startswith("FinLoRA")), "—")
        cell = lambda r: f"{r['accuracy']:.4f} / {r['weighted_f1']:.4f}"  # noqa: E731
        lines.append(f"| {t} | {cell(z)} | {cell(zc)} | {cell(f)} | {cell(fc)} | {cell(s)} | {cell(m)} "
                     f"({m['accuracy'] - s['accuracy']:+.4f}) "
                     f"| {anchor} |")
    secs = {n: i["train_seconds"] for n, i in info.items()}
    lines += ["", "Train seconds: " + ", ".join(f"{n} {s:.0f}" for n, s in secs.items())
              + "; multi-task rows " + " + ".join(f"{n} {t}" for t, n in info["multi"]["train_rows"].items())
              + f" (mixing {a.mixing}). Scoring seconds (zero / few): "
              + ", ".join(f"{t} {_secs(results[f'{t}-zero']):.0f} / {_secs(results[f'{t}-few']):.0f}"
                          for t in SENTIMENT) + "."]
    other = [t for t in OTHER if t in results]
    if other:
        lines += ["", "Other tasks, zero-shot, untuned SmolLM2-135M (greedy generation for free text):", "",
                  "| task | test rows | scores | seconds |", "|---|---|---|---|"]
        from finpeft.llm.train import headline
        for t in other:
            lines.append(f"| {t} | {results[t]['n']} | {headline(results[t], sep=', ')} | {results[t]['seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
