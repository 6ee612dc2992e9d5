"""Checks of the loaded data before any model is built (split out of training/classifier.py's train()):
the task's checks, leakage, notes, the few-label tip, and truncation notes."""
from __future__ import annotations

from finpeft.data.doctor import leakage_between


def check_data(data, recipe, method, task, say) -> dict:
    """The loaded data against the recipe and the method, before any model: the task's own checks (method
    support, objectives it cannot take, the classes' polarity), leakage, notes, the few-label tip; returns the
    run.json entries the task adds."""
    task_info = task.check(data, recipe, method, say)
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
    return task_info


def say_truncation(tokenizer, data, max_length: int, say) -> None:
    """Truncation is never silent: how many texts of each split are cut to max_length."""
    from finpeft.data.batching import truncation_note
    for split in ("train", "test") if data.valid_from_train else ("train", "valid", "test"):
        note = truncation_note(tokenizer, getattr(data, split)["text"].tolist(), max_length, f"{split} texts")
        if note:
            say(note)
