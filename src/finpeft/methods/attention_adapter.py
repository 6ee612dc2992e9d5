"""attention-adapter: the mamba-adapter stack with self-attention blocks in place of Mamba2 (the ablation that
asks whether the state-space mixer matters)."""
from typing import Literal

from finpeft.methods import mamba_adapter
from finpeft.methods.mamba_adapter import ARTIFACT, TRAIN_DEFAULTS, build_head  # noqa: F401

ONNX = True  # exports, checked against torch in tests/test_export.py


class Options(mamba_adapter.Options):
    block: Literal["mamba", "attention", "mixed"] = "attention"
