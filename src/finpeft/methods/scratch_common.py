"""Loading the from-scratch models (finpeft pretrain objective=span|denoise|clm) as classifiers, optionally with
LoRA."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from finpeft.errors import FinpeftError

TRAIN_DEFAULTS = {"lr": 5e-4}  # small models, fully trained: a larger step than BERT fine-tuning's 5e-5
TASKS = ("classification",)  # their heads (and t5-text's label words) classify; no score output


class Options(BaseModel):
    """`method.lora_r=8` trains LoRA adapters (peft) instead of every weight; the run saves the merged model,
    so it loads like a fully fine-tuned one (these models are small: an adapter dir would save little)."""
    model_config = ConfigDict(extra="forbid")
    lora_r: int | None = Field(None, ge=1)
    lora_alpha: float = Field(16, gt=0)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    # T5 fine-tunes with dropout 0.1 (pretraining here runs without); mamba2 has none, the option is ignored
    dropout: float = Field(0.1, ge=0, lt=1)


def scratch_config(model_path: str, labels: list[str], model_type: str, method: str, model_cfg,
                   dropout: float | None = None):
    from transformers import AutoConfig
    from finpeft.models.scratch import register
    register()
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=model_cfg.trust_remote_code)
    if config.model_type != model_type:
        hint = "objective=span" if model_type == "t5" else "objective=clm"
        raise FinpeftError(f"method {method} needs a {model_type} backbone (finpeft pretrain {hint}), got "
                           f"{config.model_type}")
    if dropout is not None and model_type == "t5":
        config.dropout_rate = dropout
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {l: i for i, l in enumerate(labels)}
    return config


def from_config(model_path: str, config):
    import torch
    from transformers import AutoModelForSequenceClassification
    return AutoModelForSequenceClassification.from_pretrained(model_path, config=config, dtype=torch.float32)


def with_lora(model, opts, arch: str, head: list[str]):
    """LoRA on the architecture's usual targets (methods/lora.py); `head` modules train in full."""
    if opts.lora_r is None:
        return model
    from peft import LoraConfig, get_peft_model
    from finpeft.methods.lora import TARGETS
    cfg = LoraConfig(r=opts.lora_r, lora_alpha=opts.lora_alpha, lora_dropout=opts.lora_dropout,
                     target_modules=TARGETS[arch], modules_to_save=head or None)
    return get_peft_model(model, cfg)


def saved_model(model):
    """What the run dir keeps: a LoRA-trained model merged into plain weights (loads with the Auto API)."""
    from peft import PeftModel
    return model.merge_and_unload() if isinstance(model, PeftModel) else model
