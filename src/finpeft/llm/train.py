"""Instruction-tune a causal LM with LoRA / rsLoRA / DoRA (peft) on classification tasks, and score it (or the
untuned backbone, zero- or few-shot) by constrained label scoring.

Run dir: model/ (the PEFT adapter + tokenizer), recipe.yaml, run.json (artifact "llm"), metrics.json (per task),
report.md. Loss is on answer tokens only (tasks.encode_example).
"""
from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .. import __version__
from ..errors import FinpeftError
from ..recipe import apply_overrides, format_validation_error
from ..runs import default_output, finish, prepare, write_atomic
from .tasks import Task, load_task, render_prompt, encode_example


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LLMMethod(_Strict):
    name: Literal["lora", "rslora", "dora"] = "lora"
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: list[str] = Field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])


class LLMTrain(_Strict):
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(2e-4, gt=0)
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    gradient_checkpointing: bool = False
    max_train_samples: int | None = Field(None, ge=1)  # per task
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


def load_llm_recipe(path: str | None = None, overrides: list[str] | None = None) -> LLMRecipe:
    tree = {}
    if path:
        if not Path(path).is_file():
            raise FinpeftError(f"recipe {path} not found")
        try:
            tree = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise FinpeftError(f"recipe {path} is not valid YAML: {str(e).splitlines()[0]}") from None
    tree = apply_overrides(tree, [o.replace("method=", "method.name=", 1) if o.startswith("method=") else o
                                  for o in overrides or []])
    try:
        recipe = LLMRecipe.model_validate(tree)
    except ValidationError as e:
        raise FinpeftError(f"{path or 'recipe'}: {format_validation_error(e)}") from None
    for t in recipe.tasks:
        load_task(t)  # an unknown task fails now
    return recipe


def task_splits(task: Task, seed: int):
    """The task's train/valid/test rows, split exactly as the classifier track splits its dataset."""
    from ..data import load_dataset_splits
    from ..recipe import validate_recipe
    cfg = validate_recipe({"data": {"dataset": task.dataset, "text_column": task.text_column,
                                    "label_column": task.label_column}, "seed": seed}, f"task {task.name}").data
    data = load_dataset_splits(cfg)
    if task.choices and set(data.labels) - set(task.choices):
        raise FinpeftError(f"task {task.name}: labels {sorted(set(data.labels) - set(task.choices))} have no choice")
    return data


def pick_shots(train_df, task: Task, k: int, seed: int) -> list[dict]:
    """k training rows, cycling through the labels so every class is shown (k >= number of classes)."""
    if k == 0:
        return []
    rng = np.random.default_rng(seed)
    by_label = {l: g.sample(frac=1, random_state=int(rng.integers(1 << 31))).to_dict("records")
                for l, g in train_df.groupby("label")}
    labels = [l for l in task.choices if l in by_label] if task.choices else list(by_label)
    return [by_label[labels[i % len(labels)]][i // len(labels)] for i in range(k)]


def score_task(model, tokenizer, task: Task, rows, shots: list[dict], max_length: int, batch_size: int = 8):
    """(probabilities over the task's labels, metrics) of the model on `rows` by constrained scoring."""
    from ..evaluate import classification_metrics
    from .scorer import choice_logprobs
    labels = list(task.choices)
    prompts = [render_prompt(task, tokenizer, r, shots) for r in rows.to_dict("records")]
    logp = choice_logprobs(model, tokenizer, prompts, [task.choices[l] for l in labels], batch_size, max_length)
    probs = np.exp(logp - logp.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)  # renormalised over the choices
    y = np.array([labels.index(l) for l in rows["label"]])
    return probs, classification_metrics(y, probs, labels)


def load_backbone(name: str):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from ..backbones import resolve_backbone
    path = resolve_backbone(name)
    try:
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except (OSError, ValueError) as e:
        why = str(e).splitlines()[0][:160]
        raise FinpeftError(f"backbone {name}: cannot be loaded as a causal LM ({why})") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    return tok, model


def _say(msg: str) -> None:
    print(f"[finpeft] {msg}", file=sys.stderr, flush=True)


def train_llm(recipe: LLMRecipe, output: str | Path | None = None, overwrite: bool = False) -> Path:
    import torch
    from datasets import Dataset, concatenate_datasets
    from peft import LoraConfig, get_peft_model
    from transformers import DataCollatorForSeq2Seq, Trainer, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    tasks = [load_task(t) for t in recipe.tasks]
    splits = {t.name: task_splits(t, recipe.seed) for t in tasks}
    stem = recipe.name or f"llm-{'+'.join(t.name for t in tasks)}-{recipe.method.name}-{Path(recipe.backbone).name}"
    out = Path(output) if output else default_output(Path("runs"), f"{stem}-s{recipe.seed}")
    work = prepare(out, overwrite, resume=False)
    set_seed(recipe.seed)
    tok, model = load_backbone(recipe.backbone)
    m = recipe.method
    model = get_peft_model(model, LoraConfig(task_type="CAUSAL_LM", r=m.r, lora_alpha=m.alpha, lora_dropout=m.dropout,
                                             target_modules=m.target_modules, use_rslora=m.name == "rslora",
                                             use_dora=m.name == "dora"))
    if recipe.train.gradient_checkpointing:
        model.gradient_checkpointing_enable()
        model.enable_input_require_grads()
    parts = []
    for t in tasks:
        df = splits[t.name].train
        if recipe.train.max_train_samples:
            df = df.sample(n=min(len(df), recipe.train.max_train_samples), random_state=recipe.seed)
        parts.append(Dataset.from_list([encode_example(tok, render_prompt(t, tok, r), t.answer(r), recipe.max_length)
                                        for r in df.to_dict("records")]))
    train_ds = concatenate_datasets(parts).shuffle(seed=recipe.seed)
    _say(f"tasks {', '.join(t.name for t in tasks)}: {len(train_ds)} training rows | {recipe.method.name} r={m.r} on "
         f"{recipe.backbone} | working in {work}")
    args = TrainingArguments(output_dir=str(work / "checkpoints"), num_train_epochs=recipe.train.epochs,
                             max_steps=recipe.train.max_steps, per_device_train_batch_size=recipe.train.batch_size,
                             gradient_accumulation_steps=recipe.train.grad_accum, learning_rate=recipe.train.lr,
                             warmup_steps=recipe.train.warmup_ratio, weight_decay=recipe.train.weight_decay,
                             logging_steps=recipe.train.logging_steps, save_strategy="no", report_to=[],
                             seed=recipe.seed, disable_tqdm=True, use_cpu=not torch.cuda.is_available())
    trainer = Trainer(model=model, args=args, train_dataset=train_ds,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    metrics = {}
    for t in tasks:
        test = splits[t.name].test
        if recipe.train.max_eval_samples:
            test = test.iloc[:recipe.train.max_eval_samples]
        shots = pick_shots(splits[t.name].train, t, recipe.shots, recipe.seed)
        _, metrics[t.name] = score_task(model, tok, t, test, shots, recipe.max_length)
        _say(f"{t.name} test (n={len(test)}): accuracy {metrics[t.name]['accuracy']:.4f} | macro-F1 "
             f"{metrics[t.name]['macro_f1']:.4f} | weighted-F1 {metrics[t.name]['weighted_f1']:.4f}")
    model.save_pretrained(work / "model")
    tok.save_pretrained(work / "model")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    info = {"finpeft_version": __version__, "artifact": "llm", "backbone": recipe.backbone, "method": m.name,
            "tasks": [t.model_dump() for t in tasks], "max_length": recipe.max_length, "shots": recipe.shots,
            "seed": recipe.seed, "train_seconds": round(train_seconds, 1), "trainable_params": trainable,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_atomic(work / "run.json", json.dumps(info, indent=2))
    write_atomic(work / "recipe.yaml", yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    write_atomic(work / "metrics.json", json.dumps(metrics, indent=2))
    write_atomic(work / "report.md", render_report(info, metrics))
    finish(work, out)
    return out


def render_report(info: dict, metrics: dict) -> str:
    lines = [f"# {info['method']} on {info['backbone']} ({info['date']})", "",
             f"Trainable parameters {info['trainable_params']:,}; train {info['train_seconds']} s; "
             f"seed {info['seed']}; {info['shots']}-shot prompts at evaluation.", "",
             "| task | n | accuracy | macro-F1 | weighted-F1 |", "|---|---|---|---|---|"]
    lines += [f"| {t} | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['weighted_f1']:.4f} |"
              for t, m in metrics.items()]
    return "\n".join(lines) + "\n"


def load_llm_run(run_dir: str | Path):
    """(tokenizer, model with the run's adapter, run info)."""
    from peft import PeftModel
    run_dir = Path(run_dir)
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        assert info["artifact"] == "llm"
    except (OSError, ValueError, KeyError, AssertionError):
        raise FinpeftError(f"{run_dir}: not a finpeft LLM run dir (no run.json with artifact llm)") from None
    tok, base = load_backbone(info["backbone"])
    return tok, PeftModel.from_pretrained(base, run_dir / "model"), info
