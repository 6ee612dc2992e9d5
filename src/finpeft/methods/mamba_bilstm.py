"""mamba-bilstm: the from-scratch Mamba2 LM with a BiLSTM over all its token states, fine-tuned in full."""
from pydantic import BaseModel, ConfigDict, Field

from .scratch_common import TRAIN_DEFAULTS, from_config, scratch_config  # noqa: F401

ARTIFACT = "hf"


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lstm_hidden: int = Field(128, ge=1)


def check(opts) -> None:
    pass


def build(model_path, labels, opts, model_cfg):
    config = scratch_config(model_path, labels, "mamba2", "mamba-bilstm", model_cfg)
    config.finpeft_head, config.finpeft_lstm_hidden = "bilstm", opts.lstm_hidden
    return from_config(model_path, config)
