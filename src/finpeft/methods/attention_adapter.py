"""attention-adapter: the mamba-adapter stack with self-attention blocks in place of Mamba2 (the ablation that
asks whether the state-space mixer matters)."""
from typing import Literal

from finpeft.methods import mamba_adapter
from finpeft.methods.mamba_adapter import ARTIFACT, TRAIN_DEFAULTS, build_head, check  # noqa: F401


class Options(mamba_adapter.Options):
    block: Literal["mamba", "attention", "mixed"] = "attention"
