"""Checks of the loaded data before any model is built (split out of training/classifier.py's train()):
task support, leakage, notes, the few-label tip, the classes' polarity, and truncation notes."""
from __future__ import annotations

from finpeft.data.doctor import leakage_between
from finpeft.errors import FinpeftError


def check_data(data, recipe, method, say) -> dict | None:
    """The loaded data against the recipe and the method, before any model: task support, leakage, notes, the
    few-label tip; returns the classes' polarity for `score` (None: regression, or classes without one)."""
    regression = data.task == "regression"
    polarity = None
    if not regression:
        from finpeft.data.load import label_polarity
        polarity = label_polarity(data.labels, recipe.data.label_polarity, recipe.data.label_map)
        if polarity is None:
            say(f"note: labels {', '.join(data.label_names.get(l, l) for l in data.labels)} have no known polarity: "
                "predictions carry score null (data.label_polarity='{up: 1, flat: 0, down: -1}' gives one)")
    if regression:
        from finpeft.methods import supports
        if not supports(method, "regression"):
            raise FinpeftError(f"method {recipe.method.name} classifies only; for a score (data.task=regression) "
                               "use full, head, lora, dora, qlora, ia3 or a frozen-encoder head (mamba-adapter, ...)")
        if recipe.train.distill_from:
            raise FinpeftError("train.distill_from: distillation learns class probabilities; not for regression")
        if recipe.train.rdrop_alpha:
            raise FinpeftError("train.rdrop_alpha: R-Drop compares class probabilities; not for regression")
    checked = {"train": data.train, "test": data.test, **({} if data.valid_from_train else {"valid": data.valid})}
    for pair, n in leakage_between(checked).items():
        say(f"warning: leakage {pair}: {n} normalised text(s) shared (run `finpeft data check {data.name}`)")
    for note in data.notes:
        say(note)
    if data.valid_from_train and recipe.method.name != "setfit":
        say(f"tip: {len(data.train)} labels is a few-label set: continue a finished run whose classes map onto "
            "yours (model.init_from=RUN), else method=setfit (method.num_iterations=0: a head on the frozen "
            "encoder); a default fine-tune learned only the majority class from 64-256 FPB labels. "
            "`finpeft label suggest` picks the next rows worth labelling (docs/few-labels.md, measured)")
    return polarity


def say_truncation(tokenizer, data, max_length: int, say) -> None:
    """Truncation is never silent: how many texts of each split are cut to max_length."""
    from finpeft.data.batching import truncation_note
    for split in ("train", "test") if data.valid_from_train else ("train", "valid", "test"):
        note = truncation_note(tokenizer, getattr(data, split)["text"].tolist(), max_length, f"{split} texts")
        if note:
            say(note)
