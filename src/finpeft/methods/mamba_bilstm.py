"""mamba-bilstm: the from-scratch Mamba2 LM with a BiLSTM over all its token states, fine-tuned in full or
with LoRA on the Mamba blocks (`method.lora_r=8`; the BiLSTM and the linear head always train in full)."""
from pydantic import Field

from finpeft.methods.scratch_common import (TRAIN_DEFAULTS, TASKS, from_config, saved_model, scratch_config,  # noqa: F401
                             with_lora)
from finpeft.methods.scratch_common import Options as ScratchOptions

ARTIFACT = "hf"


class Options(ScratchOptions):
    lstm_hidden: int = Field(128, ge=1)


def build(model_path, labels, opts, model_cfg):
    config = scratch_config(model_path, labels, "mamba2", "mamba-bilstm", model_cfg)
    config.finpeft_head, config.finpeft_lstm_hidden = "bilstm", opts.lstm_hidden
    return with_lora(from_config(model_path, config), opts, "mamba2", ["lstm", "score"])
