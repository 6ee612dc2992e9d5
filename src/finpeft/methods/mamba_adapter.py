"""mamba-adapter: N residual Mamba2 blocks over the frozen encoder's [CLS] vector, every block's output fused
by a softmax gate on [CLS], added back to [CLS], then a linear head. Options switch on the ablations:
inputs=tokens (the sequence variant), gate=false (mean fusion), num_adapter_layers=1, block=attention|mixed."""
from typing import Literal

from pydantic import Field

from finpeft.methods.frozen import ARTIFACT, TRAIN_DEFAULTS, FrozenOptions  # noqa: F401  (the method's interface)

ONNX = True  # exports, checked against torch in tests/test_export.py


class Options(FrozenOptions):
    inputs: Literal["cls", "tokens"] = "cls"
    block: Literal["mamba", "attention", "mixed"] = "mamba"
    num_adapter_layers: int = Field(4, ge=1, le=60)
    gate: bool = True
    # Adapter width (in/out projections around the stack); null = the encoder's hidden size, as in the seed
    # design. 192 on MiniLM: FPB accuracy within noise of 384 at 1/4 of the parameters and CPU time.
    d_model: int | None = Field(192, ge=8)
    d_state: int = Field(16, ge=1)
    d_conv: int = Field(4, ge=1)
    expand: int = Field(2, ge=1)
    head_dim: int = Field(64, ge=1)
    attention_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    rmsnorm_eps: float = Field(1e-5, gt=0)


def check_widths(hidden: int, opts) -> None:
    d = opts.d_model or hidden
    if (d * opts.expand) % opts.head_dim:
        raise ValueError(f"adapter width {d} x expand {opts.expand} is not a multiple of head_dim {opts.head_dim}")
    if opts.block != "mamba" and d % opts.attention_heads:
        raise ValueError(f"adapter width {d} is not a multiple of attention_heads {opts.attention_heads}")


def build_head(hidden: int, n_labels: int, opts):
    from finpeft.models.adapters.stack import AdapterStack
    check_widths(hidden, opts)
    return AdapterStack(hidden, n_labels, opts)
