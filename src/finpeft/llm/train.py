"""Instruction-tune a causal LM with LoRA / rsLoRA / DoRA / QLoRA (peft) on one or several tasks, and score it
(or the untuned backbone, zero- or few-shot): classification by constrained label scoring, free text by
generation + ROUGE / exact match / token F1.

Run dir: model/ (the PEFT adapter + tokenizer), recipe.yaml, run.json (artifact "llm"), metrics.json (per task),
predictions/<task>.csv, report.md. Loss is on answer tokens only (tasks.encode_example).
"""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import yaml
from pydantic import Field

from finpeft.core.recipe import Strict as _Strict, load_model_recipe
from finpeft.errors import FinpeftError
from finpeft.version import __version__
from finpeft.core.runs import default_output, finish, prepare, write_atomic
from finpeft.core.runinfo import write_run_info
from finpeft.llm.data import TaskSplits, task_splits
from finpeft.llm.generate import GenerationSettings, generate
from finpeft.llm.mixing import Mixing, mixture_counts
from finpeft.llm.tasks import Task, encode_example, load_task, render_prompt
from finpeft.models.quant import check_qlora


class LLMMethod(_Strict):
    name: Literal["lora", "rslora", "dora", "qlora"] = "lora"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])
    bits: Literal[4, 8] = 4  # qlora: NF4 4-bit (double quantised) or LLM.int8


class LLMTrain(_Strict):
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    gradient_checkpointing: bool = False
    max_train_samples: int | None = Field(None, ge=1)  # per task, before mixing
    max_eval_samples: int | None = Field(None, ge=1)  # per task
    logging_steps: int = Field(25, ge=1)


class LLMRecipe(_Strict):
    name: str | None = None
    seed: int = 42
    backbone: str = "smollm2-135m"
    tasks: list[str] = Field(default_factory=lambda: ["fpb"], min_length=1)
    max_length: int = Field(256, ge=16)
    shots: int = Field(0, ge=0, description="few-shot examples (from train) in each evaluation prompt")
    method: LLMMethod = Field(default_factory=LLMMethod)
    train: LLMTrain = Field(default_factory=LLMTrain)
    mixing: Mixing = Field(default_factory=Mixing)
    generation: GenerationSettings = Field(default_factory=GenerationSettings)



# backbone is a top-level key here (model.backbone in the classifier recipe)
LLM_SHORTHANDS = {"method": "method.name", "epochs": "train.epochs", "lr": "train.lr"}


def load_llm_recipe(path: str | None = None, overrides: list[str] | None = None) -> LLMRecipe:
    recipe = load_model_recipe(LLMRecipe, path, overrides, LLM_SHORTHANDS)
    names = [load_task(t).name for t in recipe.tasks]  # an unknown task fails now (a repeated one in train_llm)
    stray = set(recipe.mixing.weights) - set(names)
    if stray:
        raise FinpeftError(f"mixing.weights names tasks not in tasks: {sorted(stray)} (tasks are {', '.join(names)})")
    if recipe.method.name == "qlora":
        check_qlora()
    return recipe


def pick_shots(train_df, task: Task, k: int, seed: int) -> list[dict]:
    """k training rows; for classification cycling through the labels so every class is shown."""
    if k == 0:
        return []
    rng = np.random.default_rng(seed)
    if not task.is_classification:
        return train_df.sample(n=min(k, len(train_df)), random_state=int(rng.integers(1 << 31))).to_dict("records")
    by_label = {l: g.sample(frac=1, random_state=int(rng.integers(1 << 31))).to_dict("records")
                for l, g in train_df.groupby(task.label_column)}
    if k > len(train_df):
        raise FinpeftError(f"task {task.name}: {k} shots asked, the train split has {len(train_df)} rows")
    queues = [by_label[l] for l in task.choices if l in by_label]
    shots, i = [], 0
    while len(shots) < k:  # round robin over the labels; a label that runs out is skipped
        q = queues[i % len(queues)]
        if q:
            shots.append(q.pop())
        i += 1
    return shots


# content-free inputs of "Calibrate Before Use" (Zhao et al., 2021): what the model answers to them is its
# label prior (a small model's zero-shot answer is mostly this prior: SmolLM2-135M says "negative" to most of FPB)
CONTENT_FREE = ("N/A", "", "[MASK]")


def _choice_probs(model, tokenizer, task: Task, prompts: list[str], batch_size: int, max_length: int) -> np.ndarray:
    from finpeft.llm.scorer import choice_logprobs
    logp = choice_logprobs(model, tokenizer, prompts, list(task.choices.values()), batch_size, max_length)
    probs = np.exp(logp - logp.max(1, keepdims=True))
    return probs / probs.sum(1, keepdims=True)  # renormalised over the choices


def label_prior(model, tokenizer, task: Task, shots: list[dict], max_length: int, keep: dict | None = None):
    """(k,) the mean choice distribution when every column the input template reads holds a content-free
    string, except the columns in `keep` (an expanded task's question is part of the prompt, not the input)."""
    prompts = [render_prompt(task, tokenizer, {**{c: cf for c in task.input_columns}, **(keep or {})}, shots)
               for cf in CONTENT_FREE]
    return _choice_probs(model, tokenizer, task, prompts, len(prompts), max_length).mean(0)


def calibrate_probs(model, tokenizer, task: Task, rows, shots: list[dict], max_length: int, probs: np.ndarray):
    """`probs` (n, k) of `rows` with the label prior divided out (label_prior; one per question for an
    expanded task), renormalised."""
    probs = probs.copy()
    if task.expand:  # the six headline questions have different yes/no base rates: a prior per question
        for q in rows["question"].unique():
            at = (rows["question"] == q).to_numpy()
            probs[at] /= label_prior(model, tokenizer, task, shots, max_length, keep={"question": q})
    else:
        probs /= label_prior(model, tokenizer, task, shots, max_length)
    return probs / probs.sum(1, keepdims=True)


def score_task(model, tokenizer, task: Task, rows, shots: list[dict], max_length: int, batch_size: int = 8,
               calibrate: bool = False):
    """(probabilities over the task's labels, metrics) of the model on `rows` by constrained scoring;
    `calibrate`: see calibrate_probs."""
    from finpeft.report.classification import classification_metrics
    labels = list(task.choices)
    prompts = [render_prompt(task, tokenizer, r, shots) for r in rows.to_dict("records")]
    probs = _choice_probs(model, tokenizer, task, prompts, batch_size, max_length)
    if calibrate:
        probs = calibrate_probs(model, tokenizer, task, rows, shots, max_length, probs)
    y = np.array([labels.index(l) for l in rows[task.label_column]])
    return probs, classification_metrics(y, probs, labels)


def evaluate_task(model, tokenizer, task: Task, rows, shots: list[dict], max_length: int,
                  generation: GenerationSettings | None = None, calibrate: bool = False) -> tuple[pd.DataFrame, dict]:
    """(per-row predictions, metrics): constrained scoring for choices (optionally calibrated), generation for
    free text."""
    from finpeft.llm.text_metrics import text_metrics
    if task.is_classification:
        probs, metrics = score_task(model, tokenizer, task, rows, shots, max_length, calibrate=calibrate)
        labels = list(task.choices)
        pred = pd.DataFrame({"reference": rows[task.label_column].to_numpy(),
                             "prediction": [labels[i] for i in probs.argmax(1)],
                             **{f"p_{l}": probs[:, j] for j, l in enumerate(labels)}})
    else:
        generation = generation or GenerationSettings()
        prompts = [render_prompt(task, tokenizer, r, shots) for r in rows.to_dict("records")]
        answers = generate(model, tokenizer, prompts, generation.max_new_tokens or task.max_new_tokens, generation,
                           max_length=max(max_length, 2048))
        refs = rows[task.answer_column].astype(str).tolist()
        metrics = text_metrics(answers, refs, task.metrics)
        pred = pd.DataFrame({"reference": refs, "prediction": answers})
    pred.insert(0, "input", [task.user_message(r)[-300:] for r in rows.to_dict("records")])
    return pred, metrics


def headline(metrics: dict, sep: str = " | ") -> str:
    """One line of the scores a task reports."""
    if "accuracy" in metrics:
        return sep.join([f"accuracy {metrics['accuracy']:.4f}", f"macro-F1 {metrics['macro_f1']:.4f}",
                         f"weighted-F1 {metrics['weighted_f1']:.4f}"])
    keys = [k for k in ("mse", "r2", "pearson", "rouge1", "rouge2", "rougeL", "rougeLsum", "exact_match", "token_f1")
            if k in metrics]
    if "unparseable" in metrics:  # a regression task: answers with no number are said, never hidden
        return sep.join([f"{k} {metrics[k]:.4f}" for k in keys] + [f"unparseable {metrics['unparseable']}/{metrics['n']}"])
    return sep.join(f"{k} {metrics[k]:.4f}" for k in keys)


def load_backbone(name: str, method: LLMMethod | None = None):
    """(tokenizer, causal LM); QLoRA loads it 4/8-bit on the GPU, otherwise fp32 (moved to the GPU if any)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from finpeft.models.backbones import resolve_backbone
    path = resolve_backbone(name)
    kwargs = {"dtype": torch.float32}
    if method is not None and method.name == "qlora":
        from finpeft.models.quant import compute_dtype, quantization_config
        kwargs = {"dtype": compute_dtype(), "quantization_config": quantization_config(method.bits),
                  "device_map": {"": 0}}
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as e:
        why = str(e).splitlines()[0][:160]
        raise FinpeftError(f"backbone {name}: cannot be loaded as a causal LM ({why})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if "device_map" not in kwargs and torch.cuda.is_available():
        model = model.to("cuda")
    return tok, model


def _say(msg: str) -> None:
    print(f"[finpeft] {msg}", file=sys.stderr, flush=True)


def training_rows(recipe: LLMRecipe, tasks: list[Task], splits: dict[str, TaskSplits], tok):
    """The mixed, encoded training set and how many rows each task got."""
    from datasets import Dataset
    frames = {}
    for t in tasks:
        df = splits[t.name].train
        if recipe.train.max_train_samples:
            df = df.sample(n=min(len(df), recipe.train.max_train_samples), random_state=recipe.seed)
        frames[t.name] = df
    counts = mixture_counts({n: len(f) for n, f in frames.items()}, recipe.mixing)
    rng = np.random.default_rng(recipe.seed)
    rows = []
    for t in tasks:
        df, want = frames[t.name], counts[t.name]
        # every row once while it lasts, then draws with replacement (upsampling a small task)
        idx = rng.permutation(len(df))[:want]
        if want > len(df):
            idx = np.concatenate([idx, rng.integers(0, len(df), want - len(df))])
        for r in df.iloc[idx].to_dict("records"):
            rows.append(encode_example(tok, render_prompt(t, tok, r), t.answer(r), recipe.max_length))
    order = rng.permutation(len(rows))
    return Dataset.from_list([rows[i] for i in order]), counts


def train_llm(recipe: LLMRecipe, output: str | Path | None = None, overwrite: bool = False) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    tasks = [load_task(t) for t in recipe.tasks]
    if len({t.name for t in tasks}) != len(tasks):
        raise FinpeftError(f"tasks: a task appears twice ({', '.join(t.name for t in tasks)})")
    splits = {t.name: task_splits(t) for t in tasks}
    stem = recipe.name or f"llm-{'+'.join(t.name for t in tasks)}-{recipe.method.name}-{Path(recipe.backbone).name}"
    out = Path(output) if output else default_output(Path("runs"), f"{stem}-s{recipe.seed}")
    work = prepare(out, overwrite, resume=False)
    set_seed(recipe.seed)
    m = recipe.method
    tok, model = load_backbone(recipe.backbone, m)
    if m.name == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.train.gradient_checkpointing)
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout,
                                             target_modules=m.target_modules, use_rslora=m.name == "rslora",
                                             use_dora=m.name == "dora"))
    if recipe.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    train_ds, counts = training_rows(recipe, tasks, splits, tok)
    _say(f"tasks {', '.join(f'{n} ({c} rows)' for n, c in counts.items())}, mixing {recipe.mixing.strategy}: "
         f"{len(train_ds)} training rows | {m.name} r={m.r} on {recipe.backbone} | working in {work}")
    cuda = torch.cuda.is_available()
    args = TrainingArguments(output_dir=str(work / "checkpoints"), num_train_epochs=recipe.train.epochs,
                             max_steps=recipe.train.max_steps, per_device_train_batch_size=recipe.train.batch_size,
                             gradient_accumulation_steps=recipe.train.grad_accum, learning_rate=recipe.train.lr,
                             warmup_steps=recipe.train.warmup_ratio, weight_decay=recipe.train.weight_decay,
                             logging_steps=recipe.train.logging_steps, save_strategy="no", report_to=[],
                             seed=recipe.seed, disable_tqdm=True, use_cpu=not cuda,
                             bf16=cuda and torch.cuda.is_bf16_supported())
    trainer = Trainer(model=model, args=args, train_dataset=train_ds,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    t0 = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - t0
    metrics = _evaluate_tasks(model, tok, tasks, splits, recipe, work, train_seconds)
    model.save_pretrained(work / "model")
    tok.save_pretrained(work / "model")
    import shutil
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = {"finpeft_version": __version__, "artifact": "llm", "backbone": recipe.backbone, "method": m.name,
            "tasks": [t.model_dump() for t in tasks], "mixing": recipe.mixing.model_dump(), "train_rows": counts,
            "max_length": recipe.max_length, "shots": recipe.shots, "seed": recipe.seed,
            "train_seconds": round(train_seconds, 1), "train_loss": round(float(result.training_loss), 4),
            "trainable_params": trainable, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_run_info(work, info)
    write_atomic(work / "recipe.yaml", yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    write_atomic(work / "metrics.json", json.dumps(metrics, indent=2))
    write_atomic(work / "report.md", render_report(info, metrics))
    finish(work, out)
    _append_results(out, recipe, tasks, metrics, info)
    return out


def _evaluate_tasks(model, tok, tasks, splits, recipe: LLMRecipe, work: Path, train_seconds: float) -> dict:
    """Every task's test split: predictions/TASK.csv, a classifier's report for a classification task; metrics."""
    metrics = {}
    (work / "predictions").mkdir(parents=True)
    for t in tasks:
        test = splits[t.name].test
        if recipe.train.max_eval_samples:
            test = test.iloc[:recipe.train.max_eval_samples]
        shots = pick_shots(splits[t.name].train, t, recipe.shots, recipe.seed)
        pred, metrics[t.name] = evaluate_task(model, tok, t, test, shots, recipe.max_length, recipe.generation)
        pred.to_csv(work / "predictions" / f"{t.name}.csv", index=False)
        if t.is_classification:  # the classifier's own report (per class, confusion matrix, misclassified rows)
            from finpeft.report.classification import write_evaluation
            labels = list(t.choices)
            write_evaluation(work / "eval" / t.name, pred["input"].tolist(),
                             np.array([labels.index(r) for r in pred["reference"]]),
                             pred[[f"p_{l}" for l in labels]].to_numpy(), labels,
                             {"dataset": t.dataset or t.name, "split": "test", "method": f"llm-{recipe.method.name}",
                              "backbone": recipe.backbone, "seed": recipe.seed, "train_seconds": round(train_seconds, 1)})
        _say(f"{t.name} test (n={len(test)}): {headline(metrics[t.name])}")
    return metrics


def _append_results(out: Path, recipe: LLMRecipe, tasks, metrics: dict, info: dict) -> None:
    """One results.csv row per task, beside the classifier runs' rows."""
    trainable = info["trainable_params"]
    from finpeft.core.runs import append_result
    for t in tasks:
        m = metrics[t.name]
        append_result(out.parent / "results.csv", {
            **{k: m[k] for k in ("accuracy", "macro_f1", "weighted_f1", "mse", "r2", "pearson") if k in m},
            "date": info["date"], "run_dir": str(out), "dataset": t.dataset or t.name, "split": "test",
            "method": f"llm-{m_name}" if (m_name := recipe.method.name) else "llm", "backbone": recipe.backbone,
            "seed": recipe.seed, "train_seconds": info["train_seconds"], "trainable_params": trainable,
            "task": t.kind})


def render_report(info: dict, metrics: dict) -> str:
    lines = [f"# {info['method']} on {info['backbone']} ({info['date']})", "",
             f"Trainable parameters {info['trainable_params']:,}; train {info['train_seconds']} s "
             f"(loss {info.get('train_loss')}); seed {info['seed']}; mixing {info.get('mixing', {}).get('strategy')} "
             f"{info.get('train_rows')}; {info['shots']}-shot prompts at evaluation.", "",
             "| task | n (test) | scores |", "|---|---|---|"]
    lines += [f"| {t} | {m['n']} | {headline(m, ', ')} |" for t, m in metrics.items()]
    full = [t for t, m in metrics.items() if "per_class" in m]
    if full:
        lines += ["", "Each classification task's full report, as a classifier run's (per-class scores, confusion "
                  "matrix, misclassified rows): " + ", ".join(f"[eval/{t}/report.md](eval/{t}/report.md)" for t in full)
                  + "."]
    return "\n".join(lines) + "\n"


def read_llm_run(run_dir: str | Path) -> dict:
    from finpeft.core.runinfo import read_run_info
    try:
        info = read_run_info(run_dir)
    except FinpeftError:
        info = None
    if info is None or info["artifact"] != "llm":
        raise FinpeftError(f"{run_dir}: not a finpeft LLM run dir (no run.json with artifact llm)")
    return info


def load_llm_run(run_dir: str | Path):
    """(tokenizer, model with the run's adapter, run info)."""
    from peft import PeftModel
    info = read_llm_run(run_dir)
    tok, base = load_backbone(info["backbone"])
    return tok, PeftModel.from_pretrained(base, Path(run_dir) / "model"), info


def merge_run(run_dir: str | Path, output: str | Path, overwrite: bool = False) -> Path:
    """The adapter folded into the base weights (peft merge_and_unload): a standalone transformers model dir
    (safetensors + tokenizer) that loads without peft and serves as a `backbone`."""
    output = Path(output)
    tok, model, info = load_llm_run(run_dir)
    if info["method"] == "qlora":
        raise FinpeftError("a QLoRA adapter is trained against 4-bit weights; merge it into the 16-bit base on a "
                           "GPU with peft, or serve it unmerged")
    work = prepare(output, overwrite, resume=False)
    work.mkdir(parents=True)
    model.merge_and_unload().save_pretrained(work, safe_serialization=True)
    tok.save_pretrained(work)
    write_atomic(work / "finpeft_merge.json", json.dumps({"merged_from": str(run_dir), **info}, indent=2))
    finish(work, output)
    return output
