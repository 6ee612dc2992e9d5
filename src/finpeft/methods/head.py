"""Frozen encoder, train the classification head only (and the pooler, which BERT-style heads sit on)."""
from pydantic import BaseModel, ConfigDict

from finpeft.methods.common import load_classifier

ARTIFACT = "hf"
ONNX = True  # exports, checked against torch in tests/test_export.py
# A linear head on frozen features needs a far larger step than full fine-tuning's 5e-5 to move in 3 epochs.
TRAIN_DEFAULTS = {"lr": 1e-3}


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    train_pooler: bool = True


def build(model_path, labels, opts, model_cfg):
    model = load_classifier(model_path, labels, model_cfg)
    encoder = getattr(model, model.base_model_prefix)
    for name, p in encoder.named_parameters():
        p.requires_grad = opts.train_pooler and name.startswith("pooler.")
    return model
