"""Method registry. A method is one module exposing:

    Options   pydantic model of its recipe options (method.<option>=...)
    ARTIFACT  "hf" (a standard transformers model dir), "peft" (an adapter dir over the backbone) or
              "frozen" (a head over the frozen backbone's states, trained from the feature cache)
    build(model_path, labels, opts, model_cfg) -> torch.nn.Module for sequence classification   ("hf", "peft")
    build_head(hidden_size, n_labels, opts)  -> head module, see methods/frozen.py                ("frozen")
  optional (MethodSpec supplies the default):
    check(opts)       fail early, before data and model are loaded (default: nothing to check)
    TRAIN_DEFAULTS    train.* values used where the recipe does not set them (default: none)
    TASKS             the data.task values it supports (default: every task of finpeft.tasks - a regression
                      model has one output trained with MSE on standardised scores, a multilabel one a sigmoid
                      per label trained with BCE; transformers' heads and frozen.py's choose the loss by task)
    saved_model(m)    the module to save_pretrained after training (default: the trained model itself)
    adapt_body(model_path, texts, label_ids, opts, recipe, dest, say) -> str   ("frozen" only)
                      tunes the encoder on the training rows before the head is trained (setfit); the tuned
                      encoder is saved in model/body and the run loads it from there
    ONNX              True: exports to ONNX and is tested against torch; False: cannot export; None
                      (default): not tested, the export is tried and checked for parity

Adding a method = one module + one line below. `method_spec` reads a module once into a typed MethodSpec, so
the rest of finpeft never probes a module with getattr.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import Callable, Literal

from pydantic import ValidationError

from finpeft.errors import FinpeftError
from finpeft.core.recipe import format_validation_error
from finpeft.tasks import TASKS as TASK_NAMES

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
    "setfit": "finpeft.methods.setfit",  # few-shot: contrastive body tuning + a linear head
    "t5-head": "finpeft.methods.t5_head",  # the four below need a backbone from `finpeft pretrain objective=...`
    "t5-text": "finpeft.methods.t5_text",
    "mamba-lm": "finpeft.methods.mamba_lm",
    "mamba-bilstm": "finpeft.methods.mamba_bilstm",
}


def _no_check(opts) -> None:
    pass


def _as_saved(model):
    return model


@dataclass(frozen=True)
class MethodSpec:
    """A method module read once, its optional parts filled with their defaults (see the module docstring)."""
    name: str
    module: ModuleType
    ARTIFACT: Literal["hf", "peft", "frozen"]
    Options: type
    build: Callable | None = None
    build_head: Callable | None = None
    check: Callable = _no_check
    TRAIN_DEFAULTS: dict = field(default_factory=dict)
    TASKS: tuple = tuple(TASK_NAMES)
    saved_model: Callable = _as_saved
    ONNX: bool | None = None
    adapt_body: Callable | None = None


def method_spec(name: str, module: ModuleType) -> MethodSpec:
    from pydantic import BaseModel
    artifact = getattr(module, "ARTIFACT", None)
    options = getattr(module, "Options", None)
    needed = "build_head" if artifact == "frozen" else "build"
    if artifact not in ("hf", "peft", "frozen") or not (isinstance(options, type) and issubclass(options, BaseModel)) \
            or not callable(getattr(module, needed, None)):
        raise TypeError(f"method module {module.__name__} breaks the method protocol: it needs ARTIFACT "
                        f"(hf/peft/frozen), an Options pydantic model and {needed}()")
    optional = {k: getattr(module, k) for k in ("check", "TRAIN_DEFAULTS", "TASKS", "saved_model", "ONNX", "adapt_body")
                if hasattr(module, k)}
    return MethodSpec(name=name, module=module, ARTIFACT=artifact, Options=options,
                      build=getattr(module, "build", None), build_head=getattr(module, "build_head", None),
                      **{**optional, **({"TASKS": tuple(optional["TASKS"])} if "TASKS" in optional else {})})


def get_method(name: str) -> MethodSpec:
    if name not in METHODS:
        raise FinpeftError(f"unknown method {name!r}: use one of {', '.join(METHODS)}")
    return method_spec(name, importlib.import_module(METHODS[name]))


def method_options(module: MethodSpec, method_cfg) -> object:
    opts = {k: v for k, v in method_cfg.model_dump().items() if k != "name"}
    try:
        return module.Options.model_validate(opts)
    except ValidationError as e:
        raise FinpeftError(f"method {method_cfg.name}: {format_validation_error(e, module.Options)}") from None


def supports(method: MethodSpec, task: str) -> bool:
    return task in method.TASKS


def checked_method(method_cfg) -> tuple[MethodSpec, object]:
    """The method and its validated options, after the method's own early checks."""
    module = get_method(method_cfg.name)
    opts = method_options(module, method_cfg)
    module.check(opts)
    return module, opts
