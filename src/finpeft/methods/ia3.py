"""(IA)^3 via peft (Liu et al., 2022, "Few-Shot Parameter-Efficient Fine-Tuning is Better and Cheaper than
In-Context Learning"): learned vectors rescale the keys, values and feed-forward activations; ~0.1% of the
weights train. The classifier (and BERT's pooler) train in full and are saved with the adapter; the vectors
fold into the weights for inference (predict merges them)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from finpeft.methods.common import load_classifier
from finpeft.methods.lora import HEAD_MODULES

ARTIFACT = "peft"
TRAIN_DEFAULTS = {"lr": 3e-3}  # the paper's step size: scaling vectors start at 1 and move slowly at 5e-5

# (targets, feed-forward targets) where peft's own table has none; suffix-matched like LoRA's.
TARGETS = {"mpnet": (["k", "v", "output.dense"], ["output.dense"])}


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target_modules: list[str] | Literal["auto"] = "auto"
    feedforward_modules: list[str] | Literal["auto"] = "auto"


def check(opts) -> None:
    if (opts.target_modules == "auto") != (opts.feedforward_modules == "auto"):
        from finpeft.errors import FinpeftError
        raise FinpeftError("method ia3: set method.target_modules and method.feedforward_modules together")


def build(model_path, labels, opts, model_cfg):
    from peft import IA3Config, TaskType, get_peft_model
    model = load_classifier(model_path, labels, model_cfg)
    targets, ff = opts.target_modules, opts.feedforward_modules
    if targets == "auto":  # peft's per-architecture table, or ours
        targets, ff = TARGETS.get(model.config.model_type, (None, None))
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    full = {n for n, _ in model.named_modules()}
    # peft's IA3 merge cannot unload a saved module that is a container (BERT's pooler): save its Linear
    heads = [f"{m}.dense" if any(n.endswith(f"{m}.dense") for n in full) and m == "pooler" else m
             for m in HEAD_MODULES if m in names]
    config = IA3Config(task_type=TaskType.SEQ_CLS, target_modules=targets, feedforward_modules=ff,
                       modules_to_save=heads)
    return get_peft_model(model, config)
