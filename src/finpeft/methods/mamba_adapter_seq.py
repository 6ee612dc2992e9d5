"""mamba-adapter-seq: the Mamba2 adapter stack run over the frozen encoder's token states (masked), each
block's output mean-pooled, then gated fusion as in mamba-adapter: Mamba used as a sequence model.
A 192-wide bottleneck keeps a CPU epoch short (the scan runs over every token)."""
from typing import Literal

from pydantic import Field

from finpeft.methods import mamba_adapter
from finpeft.methods.mamba_adapter import ARTIFACT, TRAIN_DEFAULTS, build_head  # noqa: F401


class Options(mamba_adapter.Options):
    inputs: Literal["cls", "tokens"] = "tokens"
    num_adapter_layers: int = Field(2, ge=1, le=60)
    d_model: int | None = Field(192, ge=8)
