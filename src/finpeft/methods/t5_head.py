"""t5-head: a T5 pretrained from scratch (finpeft pretrain objective=span) with transformers'
T5ForSequenceClassification head (the </s> state of the decoder), fine-tuned in full or with LoRA
(`method.lora_r=8`, merged when saved)."""
from finpeft.methods.scratch_common import (TRAIN_DEFAULTS, TASKS, Options, from_config, saved_model,  # noqa: F401
                             scratch_config, with_lora)

ARTIFACT = "hf"


def build(model_path, labels, opts, model_cfg):
    config = scratch_config(model_path, labels, "t5", "t5-head", model_cfg, opts.dropout)
    # the Trainer's evaluation must gather the logits only, not the encoder states (ragged across batches)
    config.use_cache, config.keys_to_ignore_at_inference = False, ["past_key_values", "encoder_last_hidden_state"]
    return with_lora(from_config(model_path, config), opts, "t5", ["classification_head"])
