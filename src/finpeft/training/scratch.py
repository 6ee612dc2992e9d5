"""`finpeft pretrain objective=span|denoise|clm`: a tokenizer and a T5 (span corruption, or BART-style text
infilling) or Mamba2 (causal LM) trained from scratch on an unlabelled corpus; the output dir is a backbone for
`finpeft train` (t5-head, t5-text, mamba-lm, ...).

Texts shared with the labelled datasets are removed first (as for DAPT); 2% of the texts (at least 20) are held
out and their loss is measured before, during and after training. AdamW (or Adafactor with relative steps) with an
inverse-square-root schedule after a linear warmup, bf16 autocast on a GPU, checkpoints every `save_steps` in the
partial dir so `--resume` continues an interrupted run, tokens/s in the log, a loss-curve plot.
"""
from __future__ import annotations

import json
import math
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from finpeft.core.recipe import Strict as _Strict
from finpeft.errors import FinpeftError
from finpeft.core.runs import finish, last_checkpoint, prepare, write_atomic


class ScratchTrain(_Strict):
    epochs: float = Field(1.0, gt=0)
    max_steps: int = Field(-1, ge=-1, description="-1: epochs decide; 0: no training, the random-init baseline")
    batch_size: int = Field(32, ge=1)
    grad_accum: int = Field(1, ge=1)
    # adafactor: Adafactor with steps relative to each weight's scale (scale_parameter, T5's recipe: std-1
    # embeddings and d^-0.5-scale projections move alike). adamw: AdamW (weight decay 0.01). adafactor-absolute:
    # absolute steps of size lr (the first default; kept for the Mamba2 LM, which it suits: +8.7 points on FPB).
    # All: linear warmup, then inverse square root. Default: adafactor for span (T5), adafactor-absolute for clm.
    optimizer: Literal["adafactor", "adamw", "adafactor-absolute"] | None = None
    lr: float | None = Field(None, gt=0, description="peak lr; default 1e-3 for adamw, 1e-2 for adafactor")
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    logging_steps: int = Field(20, ge=1)
    eval_steps: int = Field(200, ge=1)
    save_steps: int = Field(200, ge=1)


class ScratchRecipe(_Strict):
    # span: T5's span corruption (the decoder writes only the hidden spans). denoise: BART's text infilling (Lewis
    # et al., 2020): the same corrupted encoder input, but the decoder rewrites the whole original text - so it is
    # trained on what t5-head feeds it when fine-tuning (the full text, shifted right), the way BART's classifier
    # reuses its pretrained decoder. clm: Mamba2 causal LM.
    objective: Literal["span", "denoise", "clm"] = "span"
    arch: Literal["t5", "mamba2"] | None = None  # default: t5 for span and denoise, mamba2 for clm
    size: Literal["tiny", "mini", "small"] = "tiny"
    corpus: str = "fin-news"
    text_column: str = "text"
    exclude: list[str] = Field(default_factory=lambda: ["fpb", "tfns", "fiqa-sa"])
    max_texts: int | None = Field(None, ge=50)
    tokenizer: str | None = Field(None, description="a tokenizer dir to reuse (default: train one on the corpus)")
    vocab_size: int = Field(8000, ge=200)
    max_length: int = Field(128, ge=16, description="span: encoder input tokens; clm: tokens per sequence")
    # default: 0.15 for span (T5), 0.3 for denoise (BART's text infilling masks 30 %)
    noise_density: float | None = Field(None, gt=0, lt=1)
    mean_span: float = Field(3.0, ge=1)
    # pack: texts joined end to end into full-length chunks (T5 / GPT practice for long documents; the default for
    # clm); false: one text per example (truncated to the chunk), the unit fine-tuning sees - the default for span.
    # Short headlines packed seven to a chunk leave a masked span its own ~19-token headline as context among six
    # unrelated ones, and the tiny T5's decoder never learned to read its encoder (issue 21, docs/benchmarks.md).
    pack: bool | None = None
    seed: int = 42
    train: ScratchTrain = Field(default_factory=ScratchTrain)

    @property
    def packed(self) -> bool:
        return self.objective == "clm" if self.pack is None else self.pack

    @property
    def density(self) -> float:
        return self.noise_density or (0.3 if self.objective == "denoise" else 0.15)

    @property
    def architecture(self) -> str:
        return self.arch or ("mamba2" if self.objective == "clm" else "t5")


def load_scratch_recipe(path: str | None, overrides: list[str]) -> ScratchRecipe:
    from finpeft.core.recipe import load_model_recipe
    r = load_model_recipe(ScratchRecipe, path, overrides, {"epochs": "train.epochs", "lr": "train.lr"})
    if (r.objective == "clm") != (r.architecture == "mamba2"):
        raise FinpeftError(f"objective {r.objective} needs arch {'mamba2' if r.objective == 'clm' else 't5'}")
    return r


def _say(msg: str) -> None:
    print(f"[finpeft] {msg}", file=sys.stderr, flush=True)


def _throughput_callback(tokens_per_step: int):
    from transformers import TrainerCallback

    class Throughput(TrainerCallback):
        """tokens/s since the previous log line, added to the log (and so to log_history and the plot data)."""
        def on_train_begin(self, args, state, control, **kw):
            self.t, self.step = time.perf_counter(), state.global_step

        def on_log(self, args, state, control, logs=None, **kw):
            if logs is None or "loss" not in logs:
                return
            now = time.perf_counter()
            logs["tokens_per_second"] = round((state.global_step - self.step) * tokens_per_step / max(now - self.t, 1e-9))
            if state.log_history and state.log_history[-1].get("step") == state.global_step:
                state.log_history[-1]["tokens_per_second"] = logs["tokens_per_second"]  # history holds a copy
            self.t, self.step = now, state.global_step
            _say(f"step {state.global_step}/{state.max_steps}: loss {logs['loss']:.4f}, "
                 f"{logs['tokens_per_second']} tokens/s")

    return Throughput()


def plot_losses(history: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    valid = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if train:
        ax.plot(*zip(*train), label="train", lw=1)
    if valid:
        ax.plot(*zip(*valid), "o-", label="held-out", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (nats / target token)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _optimizer(model, t: ScratchTrain, objective: str):
    import torch
    from transformers.optimization import Adafactor
    kind = t.optimizer or ("adafactor-absolute" if objective == "clm" else "adafactor")
    if kind == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=t.lr or 1e-3, betas=(0.9, 0.98), eps=1e-6, weight_decay=0.01)
    return Adafactor(model.parameters(), lr=t.lr or 1e-2, scale_parameter=kind == "adafactor",
                     relative_step=False, warmup_init=False)


def pretrain_scratch(recipe: ScratchRecipe, output: str | Path, overwrite: bool = False, resume: bool = False,
                     command: str | None = None) -> Path:
    """corpus -> tokenizer -> chunks (packed or one per text) -> a T5 or Mamba2 from random init -> Trainer ->
    held-out loss before/after (+ how much a T5 decoder reads its encoder) -> pretrain.json and the model."""
    from transformers import set_seed
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    out = Path(output)
    work = prepare(out, overwrite, resume)
    work.mkdir(parents=True, exist_ok=True)
    set_seed(recipe.seed)
    train_texts, valid_texts, stats = _split_corpus(recipe)
    t0 = time.perf_counter()
    tok = _tokenizer(recipe, work, train_texts)
    tokenizer_seconds = time.perf_counter() - t0
    d = _datasets(recipe, tok, train_texts, valid_texts)
    model = d.Model(d.cfg)
    n_params = sum(p.numel() for p in model.parameters())
    trainer, total, warmup = _trainer(recipe, work, model, d)
    ckpt = last_checkpoint(out) if resume else None
    _say(f"{recipe.architecture}-{recipe.size} ({n_params / 1e6:.1f}M params, vocab {len(tok)}) from scratch on "
         f"{len(train_texts)} {recipe.corpus} texts = {len(d.train_chunks)} "
         + (f"packed chunks of {d.chunk} tokens" if recipe.packed else f"examples of <= {d.chunk} tokens") + "; held out "
         f"{len(valid_texts)} texts; {total} steps, warmup {warmup}"
         + (f"; resuming from {Path(ckpt).name}" if ckpt else ""))
    before = None if ckpt else trainer.evaluate()["eval_loss"]
    started = time.perf_counter()
    if total:  # max_steps=0 keeps the initial weights: the same model and tokenizer, not pretrained
        trainer.train(resume_from_checkpoint=ckpt)
    seconds = time.perf_counter() - started
    after = trainer.evaluate()["eval_loss"]
    history = trainer.state.log_history
    usage = _encoder_usage(recipe, trainer.model, tok, d) if d.seq2seq else None
    trainer.model.save_pretrained(work, safe_serialization=True)
    tok.save_pretrained(work)
    plot_losses(history, work / "loss_curve.png", f"{recipe.architecture}-{recipe.size} {recipe.objective} on "
                                                   f"{recipe.corpus}")
    tps = [h["tokens_per_second"] for h in history if "tokens_per_second" in h]
    record = {**stats, "objective": recipe.objective, "arch": recipe.architecture, "size": recipe.size,
              "params": n_params, "vocab_size": len(tok), "train_texts": len(train_texts), "valid_texts": len(valid_texts),
              "train_chunks": len(d.train_chunks), "packed": recipe.packed, "chunk_tokens": d.chunk, "steps": total,
              "noise_density": recipe.density if d.seq2seq else None, "warmup_steps": warmup,
              "tokenizer_seconds": round(tokenizer_seconds, 1), "train_seconds": round(seconds, 1),
              "tokens_per_second_median": float(np.median(tps)) if tps else None, "valid_loss_before": before,
              "valid_loss_after": after, "encoder_usage": usage, "resumed_from": Path(ckpt).name if ckpt else None,
              "recipe": recipe.model_dump(mode="json"), "command": command,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_atomic(work / "pretrain.json", json.dumps(record, indent=2))
    write_atomic(work / "log_history.json", json.dumps(history, indent=2))
    import shutil
    shutil.rmtree(work / "checkpoints", ignore_errors=True)
    finish(work, out)
    _say(f"held-out loss {before if before is None else round(before, 3)} -> {after:.3f} in {seconds:.0f} s; "
         f"saved to {out}")
    return out


def _split_corpus(recipe: ScratchRecipe) -> tuple[list[str], list[str], dict]:
    """(train texts, held-out texts, corpus stats): 2 % held out (at least 20), after the eval texts are removed."""
    from finpeft.training.mlm import corpus_texts
    texts, stats = corpus_texts(recipe.corpus, recipe.exclude, recipe.text_column)
    if recipe.max_texts:
        import random
        texts = random.Random(recipe.seed).sample(texts, min(recipe.max_texts, len(texts)))
    if len(texts) < 50:
        raise FinpeftError(f"{recipe.corpus}: {len(texts)} texts left to pretrain on; need at least 50")
    order = np.random.default_rng(recipe.seed).permutation(len(texts))
    n_valid = max(20, len(texts) // 50)
    return [texts[i] for i in order[n_valid:]], [texts[i] for i in order[:n_valid]], stats


def _tokenizer(recipe: ScratchRecipe, work: Path, train_texts: list[str]):
    from finpeft.training.tokenizer import load_tokenizer, train_tokenizer
    if recipe.tokenizer:
        return load_tokenizer(recipe.tokenizer)
    if (work / "tokenizer.json").is_file():  # resuming: the tokenizer the checkpoints were trained with
        return load_tokenizer(work)
    tok = train_tokenizer(train_texts, recipe.vocab_size)  # held-out texts unseen by the tokenizer too
    tok.save_pretrained(work)
    return tok


def _datasets(recipe: ScratchRecipe, tok, train_texts: list[str], valid_texts: list[str]):
    """The model class and config, the chunks, the train / held-out datasets and their collators."""
    from types import SimpleNamespace
    from datasets import Dataset
    from finpeft.models.scratch_sizes import mamba2_config, t5_config
    from finpeft.training.span_corruption import (CausalCollator, SpanCorruptionCollator, corrupt, expanded_length,
                                                  one_per_example, pack)
    from finpeft.training.tokenizer import sentinel_ids
    d = SimpleNamespace(seq2seq=recipe.objective != "clm",  # a T5 with a corrupted encoder input (span or denoise)
                        full=recipe.objective == "denoise", pairs=None, sentinels=None)  # denoise: whole-text targets
    if d.seq2seq:
        d.chunk, _ = expanded_length(recipe.max_length, recipe.density, recipe.mean_span)
        d.sentinels = sentinel_ids(tok)
        d.cfg = t5_config(recipe.size, len(tok), tok.pad_token_id, tok.eos_token_id)
        from transformers import T5ForConditionalGeneration as Model
        d.collator = SpanCorruptionCollator(d.sentinels, tok.eos_token_id, tok.pad_token_id, recipe.density,
                                            recipe.mean_span, seed=recipe.seed, full_targets=d.full)
    else:
        d.chunk = recipe.max_length
        d.cfg = mamba2_config(recipe.size, len(tok), tok.pad_token_id, tok.eos_token_id)
        from transformers import Mamba2ForCausalLM as Model
        d.collator = CausalCollator(tok.pad_token_id)
    d.Model = Model
    encode = lambda batch: tok(batch, add_special_tokens=True)["input_ids"]  # noqa: E731  (ends with </s>)
    split = pack if recipe.packed else one_per_example
    d.train_chunks = split(encode(train_texts), d.chunk, tok.eos_token_id)
    valid_chunks = split(encode(valid_texts), d.chunk, tok.eos_token_id)
    if d.seq2seq:  # the held-out set is corrupted once, so every evaluation scores the same targets
        vr = np.random.default_rng(recipe.seed + 1)
        d.pairs = [corrupt(np.asarray(c), d.sentinels, tok.eos_token_id, recipe.density, recipe.mean_span, vr, d.full)
                   for c in valid_chunks]
        d.valid_ds = Dataset.from_dict({"input_ids": [p[0] for p in d.pairs], "labels": [p[1] for p in d.pairs]})
        from transformers import DataCollatorForSeq2Seq
        d.eval_collator = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    else:
        d.valid_ds, d.eval_collator = Dataset.from_dict({"ids": valid_chunks}), d.collator
    d.train_ds = Dataset.from_dict({"ids": d.train_chunks})
    return d


def _trainer(recipe: ScratchRecipe, work: Path, model, d):
    """(Trainer, total steps, warmup steps): inverse-sqrt schedule after a linear warmup, the held-out set with
    its own fixed collator, a tokens/s callback."""
    import torch
    from transformers import Trainer, TrainingArguments
    from transformers.optimization import get_inverse_sqrt_schedule
    steps_per_epoch = math.ceil(len(d.train_ds) / (recipe.train.batch_size * recipe.train.grad_accum))
    total = recipe.train.max_steps if recipe.train.max_steps >= 0 else math.ceil(steps_per_epoch * recipe.train.epochs)
    warmup = max(1, int(total * recipe.train.warmup_ratio))
    optimizer = _optimizer(model, recipe.train, recipe.objective)
    scheduler = get_inverse_sqrt_schedule(optimizer, num_warmup_steps=warmup)  # lr * sqrt(warmup / step)
    cuda = torch.cuda.is_available()
    args = TrainingArguments(output_dir=str(work / "checkpoints"), max_steps=total,
                             per_device_train_batch_size=recipe.train.batch_size, per_device_eval_batch_size=64,
                             gradient_accumulation_steps=recipe.train.grad_accum, logging_steps=recipe.train.logging_steps,
                             eval_strategy="steps", eval_steps=recipe.train.eval_steps, save_strategy="steps",
                             save_steps=recipe.train.save_steps, save_total_limit=2, report_to=[], seed=recipe.seed,
                             disable_tqdm=True, use_cpu=not cuda, bf16=cuda and torch.cuda.is_bf16_supported(),
                             remove_unused_columns=False, prediction_loss_only=True)

    class _Trainer(Trainer):
        def get_eval_dataloader(self, eval_dataset=None):  # the held-out set has its own (fixed) collator
            saved, self.data_collator = self.data_collator, d.eval_collator
            try:
                return super().get_eval_dataloader(eval_dataset)
            finally:
                self.data_collator = saved

    per_example = recipe.max_length if recipe.packed else float(np.mean([len(c) for c in d.train_chunks]))
    tokens_per_step = recipe.train.batch_size * recipe.train.grad_accum * per_example
    trainer = _Trainer(model=model, args=args, train_dataset=d.train_ds, eval_dataset=d.valid_ds,
                       data_collator=d.collator, optimizers=(optimizer, scheduler),
                       callbacks=[_throughput_callback(tokens_per_step)])
    return trainer, total, warmup


def _encoder_usage(recipe: ScratchRecipe, model, tok, d) -> dict:
    """Does the T5 decoder read its encoder? (training/encoder_usage.py), on 2,000 training chunks."""
    from finpeft.training.encoder_usage import encoder_usage, usage_line
    from finpeft.training.span_corruption import corrupt
    tr = np.random.default_rng(recipe.seed + 2)
    sample = [d.train_chunks[i] for i in tr.permutation(len(d.train_chunks))[:2000]]
    train_targets = [corrupt(np.asarray(c), d.sentinels, tok.eos_token_id, recipe.density, recipe.mean_span,
                             tr, d.full)[1] for c in sample]
    usage = encoder_usage(model, d.pairs, train_targets, tok.pad_token_id, len(tok))
    _say(usage_line(usage))
    return usage
