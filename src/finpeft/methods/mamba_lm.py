"""mamba-lm: a Mamba2 language model pretrained from scratch (finpeft pretrain objective=clm), fine-tuned in
full (or with LoRA: `method.lora_r=8`, merged when saved) with a linear head on the last token's state."""
from finpeft.methods.scratch_common import (TRAIN_DEFAULTS, TASKS, Options, from_config, saved_model,  # noqa: F401
                             scratch_config, with_lora)

ARTIFACT = "hf"


def build(model_path, labels, opts, model_cfg):
    config = scratch_config(model_path, labels, "mamba2", "mamba-lm", model_cfg)
    config.finpeft_head = "last"
    return with_lora(from_config(model_path, config), opts, "mamba2", ["score"])
