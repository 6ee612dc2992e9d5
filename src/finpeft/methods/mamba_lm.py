"""mamba-lm: a Mamba2 language model pretrained from scratch (finpeft pretrain objective=clm), fine-tuned in
full with a linear head on the last token's state."""
from .common import NoOptions as Options  # noqa: F401
from .scratch_common import TRAIN_DEFAULTS, check, from_config, scratch_config  # noqa: F401

ARTIFACT = "hf"


def build(model_path, labels, opts, model_cfg):
    config = scratch_config(model_path, labels, "mamba2", "mamba-lm", model_cfg)
    config.finpeft_head = "last"
    return from_config(model_path, config)
