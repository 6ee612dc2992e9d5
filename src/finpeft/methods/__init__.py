"""Method registry. A method is one module exposing:

    Options   pydantic model of its recipe options (method.<option>=...)
    ARTIFACT  "hf" (a standard transformers model dir), "peft" (an adapter dir over the backbone) or
              "frozen" (a head over the frozen backbone's states, trained from the feature cache)
    check(opts)                              fail early (before data and model are loaded)
    build(model_path, labels, opts, model_cfg) -> torch.nn.Module for sequence classification   ("hf", "peft")
    build_head(hidden_size, n_labels, opts)  -> head module, see methods/frozen.py                ("frozen")
    TRAIN_DEFAULTS (optional)  train.* values used where the recipe does not set them
    TASKS (optional)  the data.task values it supports (default both: "classification", "regression"; a
              regression model has one output, trained with MSE on standardised scores)

Adding a method = one module + one line below.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from pydantic import ValidationError

from finpeft.errors import FinpeftError
from finpeft.core.recipe import format_validation_error

METHODS: dict[str, str] = {
    "full": "finpeft.methods.full",
    "head": "finpeft.methods.head",
    "lora": "finpeft.methods.lora",
    "dora": "finpeft.methods.dora",
    "qlora": "finpeft.methods.qlora",
    "ia3": "finpeft.methods.ia3",
    "prompt-tuning": "finpeft.methods.prompt_tuning",
    "mamba-adapter": "finpeft.methods.mamba_adapter",
    "mamba-adapter-seq": "finpeft.methods.mamba_adapter_seq",
    "attention-adapter": "finpeft.methods.attention_adapter",
    "gamba": "finpeft.methods.gamba",
    "bilstm": "finpeft.methods.bilstm",
    "cnn-lstm": "finpeft.methods.cnn_lstm",
    "t5-head": "finpeft.methods.t5_head",  # the four below need a backbone from `finpeft pretrain objective=...`
    "t5-text": "finpeft.methods.t5_text",
    "mamba-lm": "finpeft.methods.mamba_lm",
    "mamba-bilstm": "finpeft.methods.mamba_bilstm",
}


def get_method(name: str) -> ModuleType:
    if name not in METHODS:
        raise FinpeftError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
    return importlib.import_module(METHODS[name])


def method_options(module: ModuleType, method_cfg) -> object:
    opts = {k: v for k, v in method_cfg.model_dump().items() if k != "name"}
    try:
        return module.Options.model_validate(opts)
    except ValidationError as e:
        raise FinpeftError(f"method {method_cfg.name}: {format_validation_error(e, module.Options)}") from None


def supports(module: ModuleType, task: str) -> bool:
    return task in getattr(module, "TASKS", ("classification", "regression"))


def checked_method(method_cfg) -> tuple[ModuleType, object]:
    """The method module and its validated options, after the method's own early checks."""
    module = get_method(method_cfg.name)
    opts = method_options(module, method_cfg)
    module.check(opts)
    return module, opts
