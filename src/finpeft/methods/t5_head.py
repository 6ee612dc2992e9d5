"""t5-head: a T5 pretrained from scratch (finpeft pretrain objective=span or denoise) with a classification head,
fine-tuned in full or with LoRA (`method.lora_r=8`, merged when saved).

`method.decoder_input` picks what the decoder reads and the head reads (default "mean"):
- "text" (transformers' T5ForSequenceClassification): the whole text again, shifted right; the head reads the
  decoder state at the last </s>.
- "start" (models/scratch.py T5StartClassifier): only the start token - one decoder step that reads the text
  through cross-attention, as a span-pretrained decoder does when it writes its first token.
- "mean" (models/scratch.py T5MeanClassifier): the whole text, as "text", but the head reads the mean of the
  decoder states instead of the last one (which pretraining teaches to predict </s> for every text).
"""
from typing import Literal

from finpeft.methods.scratch_common import (TRAIN_DEFAULTS, TASKS, from_config, saved_model,  # noqa: F401
                                            scratch_config, with_lora)
from finpeft.methods.scratch_common import Options as ScratchOptions

ARTIFACT = "hf"


class Options(ScratchOptions):
    # mean: the default since 2026-12-06 - equal to "text" at random init, ahead of it over a pretrained T5
    # (docs/benchmarks.md, issue 21)
    decoder_input: Literal["text", "start", "mean"] = "mean"


def build(model_path, labels, opts, model_cfg):
    config = scratch_config(model_path, labels, "t5", "t5-head", model_cfg, opts.dropout)
    if opts.decoder_input != "text":
        from finpeft.models.scratch import T5MeanConfig, T5StartConfig
        kind = T5StartConfig if opts.decoder_input == "start" else T5MeanConfig
        config = kind(**{k: v for k, v in config.to_dict().items() if k not in ("model_type", "architectures")})
    # the Trainer's evaluation must gather the logits only, not the encoder states (ragged across batches)
    config.use_cache, config.keys_to_ignore_at_inference = False, ["past_key_values", "encoder_last_hidden_state"]
    return with_lora(from_config(model_path, config), opts, "t5", ["classification_head"])
