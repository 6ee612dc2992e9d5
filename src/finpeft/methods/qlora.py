"""QLoRA: the backbone loaded in 4-bit NF4 (bitsandbytes, CUDA only), LoRA adapters trained in bf16/fp32."""
from typing import Literal

from ..errors import FinpeftError
from . import lora
from .common import load_classifier

ARTIFACT = "peft"
TRAIN_DEFAULTS = lora.TRAIN_DEFAULTS


class Options(lora.Options):
    bits: Literal[4, 8] = 4
    double_quant: bool = True


def check(opts) -> None:
    import torch
    if not torch.cuda.is_available():
        raise FinpeftError("method qlora needs a CUDA GPU (bitsandbytes 4/8-bit); on CPU use method=lora")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise FinpeftError("method qlora needs bitsandbytes: pip install 'finpeft[qlora]'") from None


def build(model_path, labels, opts, model_cfg):
    import torch
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig
    compute = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    # The head (classifier, BERT's pooler) stays unquantised: it is trained in full and saved with the adapter.
    # (transformers matches these as regexes from the start of the module path: "bert.pooler.dense".)
    skip = [rf"(?:.*\.)?{m}" for m in lora.HEAD_MODULES]
    if opts.bits == 4:
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", llm_int8_skip_modules=skip,
                                   bnb_4bit_use_double_quant=opts.double_quant, bnb_4bit_compute_dtype=compute)
    else:
        quant = BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    model = load_classifier(model_path, labels, model_cfg, quantization_config=quant, device_map={"": 0})
    model = prepare_model_for_kbit_training(model)
    return lora.wrap(model, opts)
