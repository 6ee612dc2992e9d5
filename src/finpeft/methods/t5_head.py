"""t5-head: a T5 pretrained from scratch (finpeft pretrain objective=span) with transformers'
T5ForSequenceClassification head (the </s> state of the decoder), fine-tuned in full."""
from .common import NoOptions as Options  # noqa: F401
from .scratch_common import TRAIN_DEFAULTS, check, from_config, scratch_config  # noqa: F401

ARTIFACT = "hf"


def build(model_path, labels, opts, model_cfg):
    config = scratch_config(model_path, labels, "t5", "t5-head", model_cfg)
    # the Trainer's evaluation must gather the logits only, not the encoder states (ragged across batches)
    config.use_cache, config.keys_to_ignore_at_inference = False, ["past_key_values", "encoder_last_hidden_state"]
    return from_config(model_path, config)
