"""Recipes: a YAML file plus `key=value` overrides, validated by pydantic.

A recipe is the whole description of a run; the resolved recipe is saved in the run dir so a run can be
repeated exactly.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finpeft.errors import FinpeftError

class Strict(BaseModel):
    """The base of every recipe section (classifier, LLM, from-scratch pretraining): unknown keys are errors."""
    model_config = ConfigDict(extra="forbid")


_Strict = Strict


def _label_map_keys_as_text(v):  # YAML reads `{0: negative}` with int keys; files hold text
    return {str(k): str(val) for k, val in v.items()} if isinstance(v, dict) else v


class MixedDataset(_Strict):
    """A further training set (`data.mix`): its train + valid rows join training, its test split is scored."""
    dataset: str
    text_column: str = "text"
    label_column: str = "label"
    label_map: dict[str, str] = Field(default_factory=dict)  # e.g. {none: neutral} for gold-headlines

    _keys_as_text = field_validator("label_map", mode="before")(_label_map_keys_as_text)


class DataConfig(_Strict):
    dataset: str = "fpb"  # catalog id, a file, or a directory holding train/valid/test files
    text_column: str = "text"
    label_column: str = "label"
    labels: list[str] | None = None  # fixes the label set and its order; other labels are an error
    label_map: dict[str, str] = Field(default_factory=dict)  # raw label -> label, e.g. {"0": negative}
    # label -> the sign `score` gives it, e.g. {up: 1, flat: 0, down: -1}; left out: inferred for sentiment
    # words (positive/negative, bullish/bearish, up/down, ...), else predictions carry no score
    label_polarity: dict[str, float] | None = None
    encoding: str = "auto"  # auto: UTF-8, else detected (charset-normalizer) with a warning; or e.g. cp1252
    drop_empty: bool = False  # drop empty/NaN texts instead of failing
    # 0: no valid split; every labelled row trains and the last epoch is kept (model selection off)
    valid_size: float = Field(0.1, ge=0, lt=0.5)
    # a labelled set with fewer training rows than this (and no valid file) gets valid_size 0: few labels are
    # too precious to cut a valid split from (128 labels would train on ~90); 0 turns this off
    few_labels: int = Field(500, ge=0)
    test_size: float = Field(0.2, gt=0, lt=0.5)
    split_seed: int = 42  # fixed apart from the training seed, so every seed sees the same test set
    max_train_samples: int | None = Field(None, ge=1)  # stratified subsample, for quick runs and tests
    max_eval_samples: int | None = Field(None, ge=1)
    # Multi-dataset training: catalog ids / files (or {dataset, label_map, ...}) whose labels map onto ours.
    mix: list[MixedDataset] = Field(default_factory=list)
    # what is predicted (finpeft.tasks): classification; regression (label_column holds a number per text, e.g.
    # a sentiment score); multilabel (label_columns name 0/1 columns, any number may apply). Left out: the
    # catalog dataset's own task (fiqa-sa-score is regression), else classification
    task: str | None = None
    label_columns: list[str] | None = None  # multilabel: the 0/1 columns, one per label
    score_range: tuple[float, float] | None = None  # regression: scores outside it are refused (catalog: its own)

    @field_validator("mix", mode="before")
    @classmethod
    def _plain_ids(cls, v):
        return [{"dataset": d} if isinstance(d, str) else d for d in v] if isinstance(v, list) else v

    @field_validator("task")
    @classmethod
    def _known_task(cls, v):
        from finpeft.tasks import TASKS
        if v is not None and v not in TASKS:
            raise ValueError(f"unknown task {v!r}: one of {', '.join(TASKS)}")
        return v

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v):
        from finpeft.data.encoding import check_encoding
        try:
            return check_encoding(v)
        except FinpeftError as e:
            raise ValueError(str(e)) from None

    _keys_as_text = field_validator("label_map", mode="before")(_label_map_keys_as_text)


class ModelConfig(_Strict):
    backbone: str = "minilm-l6"
    max_length: int = Field(128, ge=8, le=8192)
    trust_remote_code: bool = False  # never implicit
    # how a text longer than max_length is cut: head (keep its start; headlines, short news) or head_tail (keep
    # the first quarter and last three quarters of the budget; articles, filings - Sun et al. 2019)
    truncation: Literal["head", "head_tail"] = "head"
    # A finished full fine-tune (run dir) or a recipe .yaml trained first: start from its weights, head included
    # (intermediate-task transfer). Same backbone and labels; see finpeft.training.prerequisite.
    init_from: str | None = None


class MethodConfig(BaseModel):
    # Options beyond `name` belong to the method and are validated by its own config class.
    model_config = ConfigDict(extra="allow")
    name: str = "full"


class TrainConfig(_Strict):
    epochs: float = Field(3, gt=0)
    max_steps: int = -1
    batch_size: int = Field(16, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                       "inverse_sqrt", "cosine_with_min_lr", "warmup_stable_decay"] = "linear"
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    layer_lr_decay: float | None = Field(None, gt=0, le=1)  # e.g. 0.8: each encoder layer 0.8x the lr of the one above
    max_grad_norm: float = 1.0
    # e.g. 0.995: evaluate, checkpoint and keep the exponential moving average of the weights (training/ema.py)
    ema_decay: float | None = Field(None, gt=0, lt=1)
    rdrop_alpha: float | None = Field(None, gt=0)  # R-Drop: two dropout passes, + alpha * symmetric KL
    early_stopping_patience: int | None = Field(2, ge=1)
    group_by_length: bool = True
    freeze_embeddings: bool = False  # keep the token-embedding matrix fixed (no gradient, no AdamW update)
    compile: bool = False  # torch.compile the model (TrainingArguments.torch_compile); pays off only on long runs
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    num_threads: int | None = Field(None, ge=1)  # default: the cores of this machine (split across processes)
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio", "comet_ml", "clearml", "dvclive"]] = Field(
        default_factory=lambda: ["tensorboard"])
    logging_steps: int = Field(25, ge=1)
    # tqdm bars; null (default): only on a terminal - a log sent to a file gets one line per logging step / epoch
    progress_bar: bool | None = None
    # frozen-encoder heads: gate weights and a t-SNE plot of the test rows (encodes the test split once more);
    # false for many cheap runs (finpeft label curve)
    inspect: bool = True
    feature_cache: bool = True  # frozen-encoder methods: train on cached encoder states (false: --no-cache)
    cache_dir: str | None = None  # default $FINPEFT_CACHE_DIR or ~/.cache/finpeft/features
    distill_from: str | None = None  # a run or `finpeft ensemble` dir whose probabilities the model learns from
    distill_alpha: float = Field(0.5, ge=0, le=1)  # weight of the teacher term (1 - alpha on the gold labels)
    distill_temperature: float = Field(2.0, gt=0)
    # extra transfer rows the teacher labels softly: an unlabelled corpus (e.g. fin-news) whose texts found in
    # any split of fpb / tfns / fiqa-sa or in this data's valid/test split are removed; capped at _max rows
    distill_unlabelled: str | None = None
    distill_unlabelled_max: int | None = Field(None, ge=1)


class SearchParam(_Strict):
    """One dimension of a `finpeft tune` search space (Optuna's suggest_float / suggest_int / suggest_categorical)."""
    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    def model_post_init(self, _ctx) -> None:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs choices: [...]")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} parameter needs low <= high")
        elif self.log and self.low <= 0:
            raise ValueError("log: true needs low > 0")


class Recipe(_Strict):
    name: str | None = None
    seed: int = 42
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    results_csv: str | None = None  # default: results.csv beside the run dir
    # `finpeft tune`: recipe key (e.g. train.lr) -> range; `finpeft train` ignores it.
    search: dict[str, SearchParam] = Field(default_factory=dict)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


# `method=lora` is the common case; it means method.name=lora.
_SHORTHANDS = {"method": "method.name", "backbone": "model.backbone", "dataset": "data.dataset",
               "data": "data.dataset", "epochs": "train.epochs", "lr": "train.lr"}


def parse_override(item: str, shorthands: dict[str, str] | None = None) -> tuple[list[str], Any]:
    if "=" not in item:
        raise FinpeftError(f"override {item!r} is not key=value (e.g. train.epochs=3)"
                           + (f"; did you mean {item.strip()}=...? (write key=value, no space)"
                              if "." in item and " " not in item.strip() else ""))
    key, raw = item.split("=", 1)
    key = (_SHORTHANDS if shorthands is None else shorthands).get(key.strip(), key.strip())
    if not key:
        raise FinpeftError(f"override {item!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def apply_overrides(tree: dict, overrides: list[str], shorthands: dict[str, str] | None = None) -> dict:
    """key=value overrides into a recipe tree; `shorthands` maps short keys to full ones (default: the classifier
    recipe's, e.g. backbone -> model.backbone)."""
    for item in overrides:
        path, value = parse_override(item, shorthands)
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FinpeftError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return tree


def read_yaml(path: str | Path):
    """A recipe file's YAML tree; a missing or unreadable file is a one-line error."""
    src = Path(path)
    if not src.is_file():
        import re
        key = re.fullmatch(r"[a-z_]+(\.[a-z_]+)+", str(path))  # `data.text_column headline`: a missing '='
        raise FinpeftError(f"recipe {src} not found" + (f" (an override is key=value: did you mean {path}=...?)"
                                                          if key else ""))
    try:
        return yaml.safe_load(src.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise FinpeftError(f"recipe {src} is not valid YAML: {str(e).splitlines()[0]}") from None


def load_model_recipe(model: type[BaseModel], path: str | Path | None, overrides: list[str] | None,
                      shorthands: dict[str, str] | None = None):
    """Any recipe kind from one loader: YAML (or nothing: the model's defaults), then `key=value` overrides (with
    that kind's shorthands), then strict validation; every problem is one FinpeftError line."""
    tree = (read_yaml(path) or {}) if path else {}
    if not isinstance(tree, dict):
        raise FinpeftError(f"recipe {path} must be a YAML mapping of keys")
    tree = apply_overrides(tree, list(overrides or []), shorthands)
    try:
        return model.model_validate(tree)
    except ValidationError as e:
        raise FinpeftError(f"{path or 'recipe'}: {format_validation_error(e, model)}") from None


def load_recipe(path: str | Path | None = None, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe, apply overrides, validate. No path: the defaults (MiniLM + FPB + full = recipes/fpb.yaml)."""
    src = Path(path) if path else None
    tree: Any = read_yaml(src) if src is not None else {}
    if src is not None and tree is None:  # most likely the wrong file; running the defaults would hide that
        raise FinpeftError(f"recipe {src} is empty (to train with the defaults, give no recipe)")
    if not isinstance(tree, dict):
        raise FinpeftError(f"recipe {src} must be a mapping of sections (data, model, method, train)")
    if isinstance(tree.get("method"), str):
        tree["method"] = {"name": tree["method"]}
    overrides = list(overrides or [])
    new_method = [parse_override(o)[1] for o in overrides if parse_override(o)[0] == ["method", "name"]]
    if new_method and new_method[-1] != tree.get("method", {}).get("name", "full"):
        tree["method"] = {}  # the file's options belong to its method (e.g. lora's r); start clean
    tree = apply_overrides(tree, overrides)
    return validate_recipe(tree, str(src) if src else "recipe")


def with_method_defaults(recipe: Recipe, defaults: dict) -> Recipe:
    """The method's train.* defaults (e.g. a larger LR for LoRA) where the recipe leaves them unset."""
    unset = {k: v for k, v in defaults.items() if k not in recipe.train.model_fields_set}
    if not unset:
        return recipe
    return recipe.model_copy(update={"train": recipe.train.model_copy(update=unset)})


def validate_recipe(tree: dict, where: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(tree)
    except ValidationError as e:
        raise FinpeftError(f"{where}: {format_validation_error(e, Recipe)}") from None


def _known_keys(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys valid beside the last part of `loc` (for "did you mean")."""
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return list(model.model_fields)


def format_validation_error(e: ValidationError, model: type[BaseModel] | None = None) -> str:
    import difflib
    problems = []
    for err in e.errors():
        loc = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(str(err["loc"][-1]), _known_keys(model, err["loc"]) if model else [], n=1)
            prefix = ".".join(str(p) for p in err["loc"][:-1])
            hint = f" (did you mean {'.'.join(filter(None, [prefix, close[0]]))!r}?)" if close else ""
            problems.append(f"unknown key {loc!r}{hint}")
        else:
            problems.append(f"{loc}: {err['msg']} (got {err.get('input')!r})")
    return "; ".join(problems)
