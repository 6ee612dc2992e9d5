"""t5-text: the from-scratch T5 as a text-to-text classifier: "sentiment: <text>" -> the label word. Trained
with the LM loss on the label word; predictions are the most likely label word (scratch/classify.py).
`method.lora_r=8` trains LoRA adapters instead of every weight; `method.slim_attention=true` makes decoding
(`generate_labels`) cache keys only (scratch/slim_attention.py)."""
from finpeft.methods.scratch_common import TRAIN_DEFAULTS, TASKS, saved_model, with_lora  # noqa: F401
from finpeft.methods.scratch_common import Options as ScratchOptions

ARTIFACT = "hf"


class Options(ScratchOptions):
    prefix: str = "sentiment: "
    slim_attention: bool = False


def build(model_path, labels, opts, model_cfg):
    import torch
    from transformers import AutoTokenizer
    from finpeft.models.scratch import T5TextClassifier, T5TextConfig
    from finpeft.methods.scratch_common import scratch_config
    base = scratch_config(model_path, labels, "t5", "t5-text", model_cfg, opts.dropout)
    tok = AutoTokenizer.from_pretrained(model_path)
    config = T5TextConfig(**{k: v for k, v in base.to_dict().items() if k not in ("model_type", "architectures")},
                          label_token_ids=[tok(l)["input_ids"] for l in labels],  # word + </s>
                          prefix_ids=tok(opts.prefix, add_special_tokens=False)["input_ids"] if opts.prefix else [],
                          finpeft_slim_attention=opts.slim_attention)
    model = T5TextClassifier.from_pretrained(model_path, config=config, dtype=torch.float32)
    return with_lora(model, opts, "t5", [])
