"""mamba-lm: a Mamba2 language model pretrained from scratch (finpeft pretrain objective=clm), fine-tuned in
full with a linear head on the last token's state."""
from pydantic import BaseModel, ConfigDict

from .scratch_common import TRAIN_DEFAULTS, from_config, scratch_config  # noqa: F401

ARTIFACT = "hf"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")


def check(opts) -> None:
    pass


def build(model_path, labels, opts, model_cfg):
    config = scratch_config(model_path, labels, "mamba2", "mamba-lm", model_cfg)
    config.finpeft_head = "last"
    return from_config(model_path, config)
