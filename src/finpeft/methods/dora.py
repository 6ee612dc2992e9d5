"""DoRA (weight-decomposed LoRA) via peft: LoRA with use_dora=True."""
from pydantic import Field

from finpeft.methods import lora

ARTIFACT = "peft"
ONNX = True  # exports, checked against torch in tests/test_export.py
TRAIN_DEFAULTS = lora.TRAIN_DEFAULTS


class Options(lora.Options):
    use_dora: bool = Field(True, frozen=True)


def build(model_path, labels, opts, model_cfg):
    return lora.build(model_path, labels, opts, model_cfg)
