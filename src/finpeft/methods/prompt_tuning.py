"""Prompt tuning via peft (Lester et al., 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning"):
`num_virtual_tokens` trainable embeddings are prepended to every input; the encoder stays frozen, the classifier
trains in full. Nothing folds into the weights, so inference runs the adapter (no merge, no ONNX export)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from finpeft.methods.common import load_classifier
from finpeft.methods.lora import HEAD_MODULES

ARTIFACT = "peft"
TRAIN_DEFAULTS = {"lr": 3e-2, "epochs": 5}  # soft prompts need a large step and more epochs than weights do


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    num_virtual_tokens: int = Field(20, ge=1, le=200)
    init: Literal["random", "text"] = "text"  # text: start from the embeddings of `init_text`
    init_text: str = "Classify the financial sentiment of this sentence as negative, neutral or positive:"


def build(model_path, labels, opts, model_cfg):
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model
    model = load_classifier(model_path, labels, model_cfg)
    names = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    text = opts.init == "text"
    config = PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=opts.num_virtual_tokens,
                                prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
                                prompt_tuning_init_text=opts.init_text if text else None,
                                tokenizer_name_or_path=model_path if text else None,
                                modules_to_save=[m for m in HEAD_MODULES if m in names])
    return get_peft_model(model, config)
