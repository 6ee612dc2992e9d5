"""`finpeft pretrain`: domain-adaptive masked-LM pretraining (DAPT, Gururangan et al., 2020) of an encoder on
an unlabelled corpus, e.g. the `fin-news` headlines. The result is a backbone dir for `model.backbone=DIR`.

Texts that also occur in labelled datasets (by default FPB, TFNS and FiQA-SA, all splits) are removed first:
the Reuters headlines share 57 texts with TFNS train and 13 with its test split, and pretraining on test text
would leak. A held-out 2% measures the masked-LM loss before and after.
"""
from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path

from typing import Literal

import yaml
from pydantic import Field
from transformers import Trainer

from finpeft.errors import FinpeftError
from finpeft.core.recipe import Strict
from finpeft.core.runs import finish, prepare, write_atomic


class MLMTrain(Strict):
    epochs: float = Field(1.0, gt=0)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(64, ge=1)
    mlm_probability: float = Field(0.15, gt=0, lt=1)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"  # bf16: CPU autocast, as for `finpeft train`


class MLMRecipe(Strict):
    """`finpeft pretrain objective=mlm ...` (the default without a recipe): domain-adaptive MLM of an encoder."""
    objective: Literal["mlm"] = "mlm"
    backbone: str = "minilm-l6"
    corpus: str = "fin-news"
    exclude: list[str] = Field(default_factory=lambda: ["fpb", "tfns", "fiqa-sa"])  # their texts are removed
    max_texts: int | None = Field(None, ge=50, description="pretrain on a seeded random subset")
    max_length: int = Field(64, ge=8)
    seed: int = 42
    train: MLMTrain = Field(default_factory=MLMTrain)


def load_mlm_recipe(path: str | None = None, overrides: list[str] | None = None) -> MLMRecipe:
    from finpeft.core.recipe import load_model_recipe
    return load_model_recipe(MLMRecipe, path, overrides, {"epochs": "train.epochs", "lr": "train.lr"})


def _say(msg: str) -> None:
    print(f"[finpeft] {msg}", file=sys.stderr, flush=True)


def corpus_texts(corpus: str, exclude: list[str], text_column: str = "text") -> tuple[list[str], dict]:
    """The corpus's distinct non-empty texts minus those found in the `exclude` datasets; and the counts."""
    from finpeft.data.text import normalise_text
    from finpeft.data.load import load_raw
    raw = load_raw(corpus, text_column, None)
    texts = [t.strip() for f in raw.frames.values() for t in f["text"] if t.strip()]
    seen, unique = set(), []
    for t in texts:
        k = normalise_text(t)
        if k and k not in seen:
            seen.add(k)
            unique.append(t)
    stats = {"corpus": corpus, "rows": len(texts), "distinct": len(unique), "excluded": {}}
    for name in exclude:
        other = load_raw(name)
        keys = {normalise_text(t) for f in other.frames.values() for t in f["text"]}
        before = len(unique)
        unique = [t for t in unique if normalise_text(t) not in keys]
        stats["excluded"][name] = before - len(unique)
    stats["kept"] = len(unique)
    return unique, stats


def _mlm_head(model):
    """The prediction head of a *ForMaskedLM model (BERT: cls, RoBERTa: lm_head), or None when unknown."""
    for name in ("cls", "lm_head"):
        if hasattr(model, name):
            return getattr(model, name)
    return None


def _sparse_mlm_loss(model, inputs):
    """Masked-LM loss with the vocabulary projection applied to the masked positions only.

    transformers' *ForMaskedLM projects every position onto the ~30k-word vocabulary, though only ~15% carry a
    label; on a CPU that projection is most of the step. Same loss, several times less work."""
    import torch.nn.functional as F
    labels = inputs.pop("labels")  # (B, L), -100 where not masked
    hidden = model.base_model(**inputs).last_hidden_state  # (B, L, H)
    picked = labels != -100
    logits = _mlm_head(model)(hidden[picked])  # (M, V) for the M masked tokens
    return F.cross_entropy(logits.float(), labels[picked])


class SparseMLMTrainer(Trainer):
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if _mlm_head(model) is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        loss = _sparse_mlm_loss(model, dict(inputs))
        return (loss, {}) if return_outputs else loss  # evaluation is loss-only (prediction_loss_only)


def pretrain_mlm(recipe: MLMRecipe, output: str | Path = "runs/dapt-minilm-l6", overwrite: bool = False,
                 command: str | None = None) -> Path:
    """Pretrain recipe.backbone with masked-LM on recipe.corpus; the output dir is a backbone (+ recipe.yaml,
    pretrain.json)."""
    backbone, corpus, seed, max_length = recipe.backbone, recipe.corpus, recipe.seed, recipe.max_length
    epochs, lr, batch_size = recipe.train.epochs, recipe.train.lr, recipe.train.batch_size
    mlm_probability, max_texts, exclude = recipe.train.mlm_probability, recipe.max_texts, recipe.exclude
    from finpeft.training.runtime import precision_args
    precision = precision_args(recipe.train.precision)  # a bad choice fails here, before any work
    from finpeft.models.backbones import load_config, resolve_backbone
    model_path = resolve_backbone(backbone)
    texts, stats = corpus_texts(corpus, list(exclude))
    if max_texts:
        import random
        texts = random.Random(seed).sample(texts, min(max_texts, len(texts)))
    if len(texts) < 50:
        raise FinpeftError(f"{corpus}: {len(texts)} texts left to pretrain on; need at least 50")
    out = Path(output)
    work = prepare(out, overwrite, resume=False)
    load_config(model_path)

    import torch
    from datasets import Dataset
    from transformers import (AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling,
                              TrainingArguments, set_seed)
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    set_seed(seed)
    tok = AutoTokenizer.from_pretrained(model_path)
    # A sentence-transformers checkpoint has no MLM head: BertForMaskedLM initialises its transform layer and
    # ties the decoder to the word embeddings, so only the small transform starts from random.
    model = AutoModelForMaskedLM.from_pretrained(model_path, dtype=torch.float32)
    n_valid = max(20, len(texts) // 50)
    split = Dataset.from_dict({"text": texts}).train_test_split(test_size=n_valid, seed=seed)
    ds = split.map(lambda b: tok(b["text"], truncation=True, max_length=max_length, return_special_tokens_mask=True),
                   batched=True, remove_columns=["text"])
    args = TrainingArguments(output_dir=str(work / "checkpoints"), num_train_epochs=epochs, learning_rate=lr,
                             per_device_train_batch_size=batch_size, per_device_eval_batch_size=128,
                             warmup_steps=0.06, weight_decay=0.01, save_strategy="no", eval_strategy="no",
                             logging_steps=50, report_to=[], prediction_loss_only=True, seed=seed,
                             disable_tqdm=not sys.stderr.isatty(),
                             dataloader_pin_memory=torch.cuda.is_available(), **precision)
    trainer = SparseMLMTrainer(model=model, args=args, train_dataset=ds["train"], eval_dataset=ds["test"],
                               data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=mlm_probability, seed=seed))
    _say(f"pretraining {backbone} on {len(ds['train'])} {corpus} texts (held out {len(ds['test'])}); excluded "
         f"{stats['excluded']} texts shared with labelled datasets")
    before = trainer.evaluate()["eval_loss"]
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    after = trainer.evaluate()["eval_loss"]
    work.mkdir(parents=True, exist_ok=True)
    trainer.model.save_pretrained(work)
    tok.save_pretrained(work)
    # keep its sentence-transformers files: `method.sentence_vector=auto` reads the pooling from them
    for extra in ("1_Pooling", "modules.json", "sentence_bert_config.json", "config_sentence_transformers.json"):
        src = Path(model_path) / extra
        if src.is_dir():
            shutil.copytree(src, work / extra)
        elif src.is_file():
            shutil.copyfile(src, work / extra)
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    record = {**stats, "backbone": backbone, "backbone_path": model_path, "train_texts": len(ds["train"]),
              "valid_texts": len(ds["test"]), "epochs": epochs, "lr": lr, "batch_size": batch_size,
              "max_length": max_length, "mlm_probability": mlm_probability, "precision": recipe.train.precision,
              "seed": seed, "train_seconds": round(seconds, 1), "valid_mlm_loss_before": before,
              "valid_mlm_loss_after": after,
              "valid_perplexity_before": math.exp(min(before, 50)), "valid_perplexity_after": math.exp(min(after, 50)),
              "command": command}
    write_atomic(work / "pretrain.json", json.dumps(record, indent=2))
    write_atomic(work / "recipe.yaml", yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    finish(work, out)
    _say(f"held-out masked-LM loss {before:.3f} -> {after:.3f} in {seconds:.0f} s; backbone saved to {out} "
         f"(use model.backbone={out})")
    return out
