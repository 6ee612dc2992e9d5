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

from .errors import FinpeftError

COLUMN = "teacher_probs"


def teacher_probabilities(teacher_dir: str, texts: list[str], labels: list[str]) -> np.ndarray:
    """(n, n_labels) teacher probabilities in the student's label order."""
    from . import load
    teacher = load(teacher_dir)
    if set(teacher.labels) != set(labels):
        raise FinpeftError(f"train.distill_from {teacher_dir}: teacher labels {teacher.labels} differ from the "
                           f"data's {labels}")
    probs = teacher.predict_proba(texts)
    return probs[:, [teacher.labels.index(l) for l in labels]]


def sharpen(probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """softmax(log(p) / T): the teacher's distribution at temperature T (from probabilities, not logits)."""
    return torch.softmax(torch.log(probs.clamp_min(1e-8)) / temperature, -1)


def distill_loss(logits: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor, alpha: float,
                 temperature: float, label_smoothing: float = 0.0) -> torch.Tensor:
    # logits (B, C), labels (B,), teacher (B, C) probabilities
    hard = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)
    soft = F.kl_div(F.log_softmax(logits.float() / temperature, -1), sharpen(teacher.float(), temperature),
                    reduction="batchmean") * temperature ** 2
    return (1 - alpha) * hard + alpha * soft


class TeacherCollator:
    """Wraps the method's collator: pulls `teacher_probs` out of each row, puts them back as one (B, C) tensor."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, rows: list[dict]) -> dict:
        teacher = [r.pop(COLUMN) for r in rows] if rows and COLUMN in rows[0] else None
        batch = self.inner(rows)
        if teacher is not None:
            batch[COLUMN] = torch.tensor(np.asarray(teacher), dtype=torch.float32)
        return batch


class DistillTrainer(Trainer):
    def __init__(self, *args, alpha: float, temperature: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.alpha, self.temperature = alpha, temperature

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if COLUMN not in self._signature_columns:
            self._signature_columns.append(COLUMN)  # keep the column through remove_unused_columns

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        teacher = inputs.pop(COLUMN, None)
        if teacher is None:  # evaluation batches: plain cross-entropy from the model
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = distill_loss(outputs.logits, labels, teacher.to(outputs.logits.device), self.alpha, self.temperature,
                            self.args.label_smoothing_factor)
        return (loss, outputs) if return_outputs else loss
