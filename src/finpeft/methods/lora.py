"""LoRA via peft, target modules chosen per architecture; the classifier (and BERT's pooler) are trained
in full and saved with the adapter (modules_to_save), avoiding the random-head trap of peft #310/#577."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from finpeft.methods.common import load_classifier

ARTIFACT = "peft"
ONNX = True  # exports, checked against torch in tests/test_export.py
TRAIN_DEFAULTS = {"lr": 1e-3}  # adapters from zero need a larger step than full fine-tuning (5e-5)

# Suffix-matched by peft. "output.dense" catches attention.output.dense and the FFN output, not pooler.dense.
TARGETS = {
    "bert": ["query", "key", "value", "output.dense", "intermediate.dense"],
    "roberta": ["query", "key", "value", "output.dense", "intermediate.dense"],
    "xlm-roberta": ["query", "key", "value", "output.dense", "intermediate.dense"],
    "electra": ["query", "key", "value", "output.dense", "intermediate.dense"],
    "deberta-v2": ["query_proj", "key_proj", "value_proj", "output.dense", "intermediate.dense"],
    "distilbert": ["q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"],
    "modernbert": ["Wqkv", "Wo", "Wi"],
    "mpnet": ["q", "k", "v", "o", "intermediate.dense", "output.dense"],
    "t5": ["q", "k", "v", "o", "wi_0", "wi_1", "wo"],  # finpeft pretrain objective=span (gated-GELU FFN)
    "mamba2": ["in_proj"],  # peft refuses LoRA on Mamba's out_proj and conv1d
}
HEAD_MODULES = ["classifier", "score", "pooler", "pre_classifier", "head", "classification_head"]  # last: T5


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.1, ge=0, lt=1)
    target_modules: list[str] | Literal["auto", "all-linear"] = "auto"
    use_rslora: bool = False
    use_dora: bool = False


def lora_config(model, opts):
    from peft import LoraConfig, TaskType
    model_type = model.config.model_type
    targets = opts.target_modules
    if targets == "auto":
        targets = TARGETS.get(model_type, "all-linear")
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    head = [m for m in HEAD_MODULES if m in names]
    return LoraConfig(task_type=TaskType.SEQ_CLS, r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                      target_modules=targets, modules_to_save=head, use_rslora=opts.use_rslora,
                      use_dora=opts.use_dora)


def wrap(model, opts):
    from peft import get_peft_model
    return get_peft_model(model, lora_config(model, opts))


def build(model_path, labels, opts, model_cfg):
    return wrap(load_classifier(model_path, labels, model_cfg), opts)
