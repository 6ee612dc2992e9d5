"""Pieces shared by the methods: the classifier model and parameter counts."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


def load_classifier(model_path: str, labels: list[str], model_cfg, **kwargs):
    """The backbone with a fresh classification head, in fp32 master weights (a checkpoint stored in fp16/bf16
    would otherwise load in that dtype and train badly; mixed precision is the Trainer's autocast job)."""
    import torch
    from transformers import AutoModelForSequenceClassification
    from finpeft.models.scratch import register
    register()  # from-scratch Mamba2 / T5 text-to-text classifiers load through the Auto API too
    kwargs.setdefault("dtype", torch.float32)
    return AutoModelForSequenceClassification.from_pretrained(
        model_path, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={l: i for i, l in enumerate(labels)}, trust_remote_code=model_cfg.trust_remote_code, **kwargs)


def count_parameters(model) -> tuple[int, int]:
    """(trainable, total)."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())
