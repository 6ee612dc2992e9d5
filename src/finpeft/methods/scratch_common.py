"""Loading the from-scratch models (finpeft pretrain objective=span|clm) as classifiers."""
from __future__ import annotations

from ..errors import FinpeftError

TRAIN_DEFAULTS = {"lr": 5e-4}  # small models, fully trained: a larger step than BERT fine-tuning's 5e-5


def check(opts) -> None:  # the backbone is checked when it is loaded (scratch_config)
    pass


def scratch_config(model_path: str, labels: list[str], model_type: str, method: str, model_cfg):
    from transformers import AutoConfig
    from ..scratch.classify import register
    register()
    config = AutoConfig.from_pretrained(model_path, trust_remote_code=model_cfg.trust_remote_code)
    if config.model_type != model_type:
        hint = "objective=span" if model_type == "t5" else "objective=clm"
        raise FinpeftError(f"method {method} needs a {model_type} backbone (finpeft pretrain {hint}), got "
                           f"{config.model_type}")
    config.num_labels = len(labels)
    config.id2label = dict(enumerate(labels))
    config.label2id = {l: i for i, l in enumerate(labels)}
    return config


def from_config(model_path: str, config):
    import torch
    from transformers import AutoModelForSequenceClassification
    return AutoModelForSequenceClassification.from_pretrained(model_path, config=config, dtype=torch.float32)
