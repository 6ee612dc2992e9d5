"""QLoRA's quantisation, written once for the classifier method and the LLM track: the CUDA + bitsandbytes check
and the BitsAndBytesConfig (4-bit NF4 with double quantisation, or LLM.int8)."""
from __future__ import annotations

from finpeft.errors import FinpeftError


def check_qlora() -> None:
    import torch
    if not torch.cuda.is_available():
        raise FinpeftError("method qlora needs a CUDA GPU (bitsandbytes 4/8-bit); on CPU use method=lora")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise FinpeftError("method qlora needs bitsandbytes: pip install 'finpeft[qlora]'") from None


def compute_dtype():
    import torch
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def quantization_config(bits: int = 4, double_quant: bool = True, skip: list[str] | None = None):
    """bits 4: NF4 weights, bf16 (else fp16) compute; bits 8: LLM.int8. `skip`: module-path regexes kept
    unquantised (a classifier head that trains in full)."""
    from transformers import BitsAndBytesConfig
    check_qlora()
    if bits == 4:
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=double_quant,
                                  bnb_4bit_compute_dtype=compute_dtype(), llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
