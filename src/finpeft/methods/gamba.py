"""gamba: an expert ensemble over the frozen token states. Experts are small stacks (3 x Mamba2, 3 x attention,
Mamba-attention-Mamba); a softmax gate on the sentence vector weighs their pooled outputs; the weighted sum is
added to the sentence vector and classified."""
from typing import Literal

from pydantic import Field

from finpeft.methods import mamba_adapter
from finpeft.methods.mamba_adapter import ARTIFACT, TRAIN_DEFAULTS  # noqa: F401


class Options(mamba_adapter.Options):
    inputs: Literal["cls", "tokens"] = "tokens"
    experts: list[Literal["mamba", "attention", "mixed"]] = Field(
        default_factory=lambda: ["mamba", "attention", "mixed"], min_length=1)
    d_model: int | None = Field(128, ge=8)


def build_head(hidden: int, n_labels: int, opts):
    from finpeft.models.adapters.stack import Gamba
    mamba_adapter.check_widths(hidden, opts.model_copy(update={"block": "mixed"}))  # experts hold both kinds
    return Gamba(hidden, n_labels, opts)
