"""DoRA (weight-decomposed LoRA) via peft: LoRA with use_dora=True."""
from pydantic import Field

from finpeft.methods import lora

ARTIFACT = "peft"
TRAIN_DEFAULTS = lora.TRAIN_DEFAULTS
check = lora.check


class Options(lora.Options):
    use_dora: bool = Field(True, frozen=True)


def build(model_path, labels, opts, model_cfg):
    return lora.build(model_path, labels, opts, model_cfg)
