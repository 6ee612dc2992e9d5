"""QLoRA: the backbone loaded in 4-bit NF4 (bitsandbytes, CUDA only), LoRA adapters trained in bf16/fp32."""
from typing import Literal

from finpeft.models.quant import check_qlora, quantization_config
from finpeft.methods import lora
from finpeft.methods.common import load_classifier

ARTIFACT = "peft"
TRAIN_DEFAULTS = lora.TRAIN_DEFAULTS


class Options(lora.Options):
    bits: Literal[4, 8] = 4
    double_quant: bool = True


def check(opts) -> None:
    check_qlora()


def build(model_path, labels, opts, model_cfg):
    from peft import prepare_model_for_kbit_training
    # The head (classifier, BERT's pooler) stays unquantised: it is trained in full and saved with the adapter.
    # (transformers matches these as regexes from the start of the module path: "bert.pooler.dense".)
    quant = quantization_config(opts.bits, opts.double_quant, [rf"(?:.*\.)?{m}" for m in lora.HEAD_MODULES])
    model = load_classifier(model_path, labels, model_cfg, quantization_config=quant, device_map={"": 0})
    model = prepare_model_for_kbit_training(model)
    return lora.wrap(model, opts)
