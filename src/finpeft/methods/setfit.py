"""setfit: few-shot training (Tunstall et al. 2022). Stage 1 fine-tunes the sentence-transformer body
contrastively on pairs of the few labelled texts (same label: similar, different label: dissimilar) through the
`setfit` library's own pair sampler and trainer; stage 2 fits a linear head on the tuned body's sentence vectors
(the feature cache + the Trainer, as every frozen-encoder head). The run dir holds the tuned body in
model/body (a sentence-transformers dir) and the head beside it, so a setfit run loads, predicts, serves and
exports like any frozen-encoder run.

Why `setfit` for stage 1 only: its own head stage is a scikit-learn LogisticRegression, a second artifact kind
that finpeft's predict / serve / ONNX export could not load; a linear torch head trained on the cached vectors
is the same model (multinomial logistic regression) in the run format every other method uses.

Start from what a finished run already knows with `model.init_from=RUN` (a full fine-tune on the same backbone):
its encoder is the body that stage 1 tunes."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from torch import nn

from finpeft.methods.frozen import ARTIFACT, FrozenOptions  # noqa: F401  (the method's interface)

ONNX = True  # exports, checked against torch in tests/test_fewshot.py
TASKS = ("classification",)
# The head: multinomial logistic regression on fixed (cached) vectors, cheap enough for many epochs; a
# larger step than an adapter's because it is one linear layer; no early stop (a few-label valid split is noise).
TRAIN_DEFAULTS = {"lr": 1e-2, "epochs": 30, "batch_size": 16, "early_stopping_patience": 0, "weight_decay": 0.0}


class Options(FrozenOptions):
    dropout: float = Field(0.0, ge=0, lt=1)
    # Stage 1 (the body). num_iterations: pairs drawn per labelled text (SetFit's default is 20).
    num_iterations: int = Field(20, ge=0)
    body_epochs: int = Field(1, ge=1)
    body_lr: float = Field(2e-5, gt=0)
    body_batch_size: int = Field(16, ge=2)
    max_pairs: int | None = Field(None, ge=1)  # cap on the pairs (cost grows with labels x num_iterations)
    loss: Literal["cosine"] = "cosine"


class LinearHead(nn.Module):
    """A linear layer on the sentence vector: (B, H) -> (B, n_labels)."""
    inputs = "vector"

    def __init__(self, hidden: int, n_labels: int, dropout: float):
        super().__init__()
        self.dropout, self.classifier = nn.Dropout(dropout), nn.Linear(hidden, n_labels)

    def forward(self, vec, tokens=None, mask=None) -> dict:
        return {"logits": self.classifier(self.dropout(vec)), "representation": vec}


def build_head(hidden: int, n_labels: int, opts):
    return LinearHead(hidden, n_labels, opts.dropout)


def adapt_body(model_path: str, texts: list[str], label_ids: list[int], opts, recipe, dest: Path, say) -> str:
    """Stage 1: contrastive fine-tuning of the body on pairs of the labelled texts; saves it to dest (a
    sentence-transformers dir) and returns that path. num_iterations=0 keeps the body as it is."""
    if opts.num_iterations == 0:
        return model_path
    import logging
    import torch
    from sentence_transformers import SentenceTransformer
    from setfit import SetFitModel, Trainer, TrainingArguments
    for name in ("setfit", "sentence_transformers"):
        logging.getLogger(name).setLevel(logging.WARNING)
    body = SentenceTransformer(model_path, device="cpu" if not torch.cuda.is_available() else None,
                               trust_remote_code=recipe.model.trust_remote_code)
    body.max_seq_length = recipe.model.max_length
    model = SetFitModel(model_body=body, model_head=None)
    args = TrainingArguments(
        batch_size=opts.body_batch_size, num_epochs=opts.body_epochs, body_learning_rate=opts.body_lr,
        num_iterations=opts.num_iterations, seed=recipe.seed, report_to="none", show_progress_bar=False,
        max_steps=-1 if opts.max_pairs is None else max(1, opts.max_pairs // opts.body_batch_size),
        output_dir=str(dest.parent / "setfit-checkpoints"), save_strategy="no", logging_strategy="no")
    trainer = Trainer(model=model, args=args)
    say(f"setfit: contrastive training of the body on {len(texts)} labelled texts ({opts.num_iterations} pair "
        f"iterations, {opts.body_epochs} epoch(s), lr {opts.body_lr})")
    trainer.train_embeddings(list(texts), list(label_ids))
    dest.mkdir(parents=True, exist_ok=True)
    body.save(str(dest), create_model_card=False, safe_serialization=True)
    import shutil
    shutil.rmtree(dest.parent / "setfit-checkpoints", ignore_errors=True)
    return str(dest)
