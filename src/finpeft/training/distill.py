"""Knowledge distillation (Hinton et al., 2015) into the model being trained: `train.distill_from=RUN_OR_ENSEMBLE`.

The teacher (any saved run or `finpeft ensemble` dir) scores the training rows once before training; each batch
then carries the teacher's probabilities and the loss is
    (1 - alpha) * CE(student, gold) + alpha * T^2 * KL(teacher^(1/T) || softmax(student / T)).
Written here because transformers has no distillation trainer for classifiers; the teacher-probability column
rides through the Trainer's column filter and the method's own collator untouched.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Trainer

from finpeft.errors import FinpeftError

COLUMN = "teacher_probs"
GOLD = "has_gold"  # 1.0: a labelled row (both loss terms); 0.0: an unlabelled transfer row (teacher term only)
HELD_OUT = ("fpb", "tfns", "fiqa-sa")  # benchmark datasets no transfer text may come from


def teacher_probabilities(teacher_dir: str, texts: list[str], labels: list[str], load_teacher) -> tuple[np.ndarray, bool]:
    """(n, n_labels) teacher probabilities in the student's label order, and whether they came from the cache.
    `load_teacher(run_dir)` returns a model with `.labels` and `.predict_proba(texts)` (finpeft.load's Predictor:
    passed in by the API, since training sits below inference in the pipeline).

    Scoring is the teacher's one-off cost: the result is kept under $FINPEFT_CACHE_DIR/teacher, keyed by the
    teacher's files and the texts, so every later student (another seed, another recipe) reuses it."""
    import hashlib
    import os
    from pathlib import Path
    from finpeft.models.cache import model_fingerprint
    from finpeft.core.runs import apply_umask
    key = hashlib.sha256((model_fingerprint(Path(teacher_dir)) + "\x00".join(texts)).encode()).hexdigest()[:24]
    root = Path(os.environ.get("FINPEFT_CACHE_DIR", Path.home() / ".cache" / "finpeft")) / "teacher"
    cached = root / f"{key}.npz"
    if cached.is_file():
        z = np.load(cached, allow_pickle=False)
        order, probs = list(z["labels"]), z["probs"]
        if set(order) == set(labels):
            return probs[:, [order.index(l) for l in labels]], True
    teacher = load_teacher(teacher_dir)
    if set(teacher.labels) != set(labels):
        raise FinpeftError(f"train.distill_from {teacher_dir}: teacher labels {teacher.labels} differ from the "
                           f"data's {labels}")
    probs = teacher.predict_proba(texts)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{key}.partial.npz"
    np.savez(tmp, probs=probs, labels=np.array(teacher.labels))
    apply_umask(tmp)
    os.replace(tmp, cached)
    return probs[:, [teacher.labels.index(l) for l in labels]], False


def transfer_texts(corpus: str, held: list, limit: int | None, seed: int) -> tuple[list[str], dict]:
    """Unlabelled transfer texts: `corpus` less every text of the benchmark datasets (HELD_OUT, all splits) and
    of the frames in `held` (this data's valid/test), after normalising; a seeded sample of `limit` rows."""
    import random
    from finpeft.data.text import normalise_text
    from finpeft.training.mlm import corpus_texts
    texts, stats = corpus_texts(corpus, list(HELD_OUT))
    keys = {normalise_text(t) for f in held for t in f["text"]}
    kept = [t for t in texts if normalise_text(t) not in keys]
    stats["excluded"]["this data's valid/test"] = len(texts) - len(kept)
    if limit is not None and len(kept) > limit:
        kept = random.Random(seed).sample(kept, limit)
    stats["used"] = len(kept)
    return kept, stats


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(log(p) / T): the teacher's distribution at temperature T (from probabilities, not logits)."""
    return torch.softmax(torch.log(probs.clamp_min(1e-8)) / temperature, -1)


def distill_loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, alpha: float,
                 temperature: float, label_smoothing: float = 0.0, gold: torch.Tensor | None = None) -> torch.Tensor:
    # logits (B, C), labels (B,), teacher (B, C) probabilities, gold (B,) 1.0 where the row has a real label
    hard_rows = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="none")  # (B,)
    if gold is None:
        hard = hard_rows.mean()
    else:  # unlabelled transfer rows learn from the teacher alone
        hard = (hard_rows * gold).sum() / gold.sum().clamp_min(1.0)
    soft = F.kl_div(F.log_softmax(logits.float() / temperature, -1), sharpen(teacher.float(), temperature),
                    reduction="batchmean") * temperature ** 2
    return (1 - alpha) * hard + alpha * soft


class TeacherCollator:
    """Wraps the method's collator: pulls `teacher_probs` out of each row, puts them back as one (B, C) tensor."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, rows: list[dict]) -> dict:
        teacher = [r.pop(COLUMN) for r in rows] if rows and COLUMN in rows[0] else None
        gold = [r.pop(GOLD) for r in rows] if rows and GOLD in rows[0] else None
        batch = self.inner(rows)
        if teacher is not None:
            batch[COLUMN] = torch.tensor(np.asarray(teacher), dtype=torch.float32)
        if gold is not None:
            batch[GOLD] = torch.tensor(gold, dtype=torch.float32)
        return batch


class DistillTrainer(Trainer):
    def __init__(self, *args, alpha: float, temperature: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.temperature = alpha, temperature

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for col in (COLUMN, GOLD):
            if col not in self._signature_columns:
                self._signature_columns.append(col)  # keep the column through remove_unused_columns

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = inputs.pop(COLUMN, None)
        gold = inputs.pop(GOLD, None)
        if teacher is None:  # evaluation batches: plain cross-entropy from the model
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = distill_loss(outputs.logits, labels, teacher.to(outputs.logits.device), self.alpha, self.temperature,
                            self.args.label_smoothing_factor, None if gold is None else gold.to(outputs.logits.device))
        return (loss, outputs) if return_outputs else loss


def add_teacher_columns(train_ds, data, recipe, frozen: bool, tokenize, say, load_teacher):
    """The training dataset with the teacher's probabilities (and the gold mask) added, plus the unlabelled
    transfer rows when `train.distill_unlabelled` is set. Returns (dataset, teacher seconds or None when the
    probabilities came from the cache, transfer stats)."""
    import time
    import pandas as pd
    from datasets import concatenate_datasets
    t = recipe.train
    texts = data.train["text"].tolist()
    extra, stats = [], None
    if t.distill_unlabelled:
        check_transfer(recipe, frozen)
        # sampled with the split seed: every training seed sees the same rows (and reuses the cached teacher)
        extra, stats = transfer_texts(t.distill_unlabelled, [data.valid, data.test], t.distill_unlabelled_max,
                                      recipe.data.split_seed)
    began = time.perf_counter()
    soft, hit = teacher_probabilities(t.distill_from, texts + extra, data.labels, load_teacher)
    seconds = None if hit else round(time.perf_counter() - began, 2)
    n = len(texts)
    train_ds = train_ds.add_column(GOLD, [1.0] * n)
    if extra:
        pseudo = pd.DataFrame({"text": extra, "label": [data.labels[i] for i in soft[n:].argmax(1)]})
        train_ds = concatenate_datasets([train_ds, tokenize(pseudo).add_column(GOLD, [0.0] * len(extra))])
    train_ds = train_ds.add_column(COLUMN, soft.tolist())
    say(f"distilling from {t.distill_from} (alpha {t.distill_alpha}, T {t.distill_temperature}); teacher "
        + (f"probabilities of {len(soft)} rows from the cache" if hit else f"scored {len(soft)} rows in {seconds:.0f}s")
        + (f"; {len(extra)} unlabelled {t.distill_unlabelled} rows added" if extra else ""))
    return train_ds, seconds, stats


def check_transfer(recipe, frozen: bool) -> None:
    if recipe.train.distill_unlabelled and not recipe.train.distill_from:
        raise FinpeftError("train.distill_unlabelled needs train.distill_from (the teacher that labels those rows)")
    if recipe.train.distill_unlabelled and frozen:
        raise FinpeftError("train.distill_unlabelled needs a method that runs the encoder on each text (full, "
                           "head, lora, dora, ...): frozen-encoder heads train on cached features of the labelled rows")
