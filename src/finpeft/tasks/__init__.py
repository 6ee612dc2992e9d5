"""Task registry. A task is what a model predicts for a text - one class, a number, a set of labels - and one
module owns everything that differs between tasks (like a method, see methods/__init__.py):

    name              the data.task value and run.json's "task"
    select_metric     the valid metric that picks the best checkpoint; greater_is_better its direction
    classes           True: the outputs are per-label probabilities (predict_proba, ensembles, tune, label issues)
    metric_columns    its results.csv / leaderboard metrics, the first the one leaderboards rank by
    prepare(raw, frames, cfg, notes) -> (frames, labels, label_names)
                      the label column(s) as read -> `label` values the task trains on, the output names
    strata(labels)    what seeded splits stratify on (None: the labels themselves)
    check_train(train, name)  refuse a training split with nothing to learn
    targets(data)     label -> model target (indexable; len() = the number of outputs), saved as run_info
    check(data, recipe, method, say) -> dict   refusals and notes before any model; run.json entries it adds
    valid_metrics(targets)  the Trainer's compute_metrics on the valid split
    activation(outputs) raw model outputs (n, k) -> what predict_outputs returns (softmax, sigmoid, scores)
    loss(logits, labels)  the training loss of a head finpeft builds itself (frozen-encoder methods)
    evaluate(out, texts, labels, outputs, info, context) -> metrics  metrics.json + report.md in `out`
    summary(metrics, seconds) -> lines   what `finpeft train` prints at the end
    records(outputs, run) -> [dict]      one prediction per text (predict, serve)
    columns(outputs, filled, run) -> {column: values}  a scored file's added columns
    parity(torch_outputs, onnx_outputs, run) -> dict   an ONNX export's agreement with torch

`run` is the loaded run (inference.Predictor): labels, display_labels, polarity, info (run.json).
Adding a task = one module + one line below. Methods support every registered task unless their module's
TASKS says otherwise (a head that can only classify).
"""
from __future__ import annotations

import importlib
from typing import Any, Protocol

from finpeft.errors import FinpeftError

TASKS: dict[str, str] = {
    "classification": "finpeft.tasks.classification",
    "regression": "finpeft.tasks.regression",
    "multilabel": "finpeft.tasks.multilabel",
}


class Task(Protocol):
    name: str
    select_metric: str
    greater_is_better: bool
    classes: bool
    metric_columns: tuple[str, ...]

    def prepare(self, raw, frames: dict, cfg, notes: list[str]) -> tuple[dict, list[str], dict[str, str]]: ...
    def strata(self, labels) -> Any: ...
    def check_train(self, train, name: str) -> None: ...
    def targets(self, data) -> Any: ...
    def check(self, data, recipe, method, say) -> dict: ...
    def valid_metrics(self, targets): ...
    def activation(self, outputs): ...
    def loss(self, logits, labels): ...
    def evaluate(self, out, texts: list[str], labels, outputs, info: dict, context: dict) -> dict: ...
    def summary(self, metrics: dict, seconds: float | None) -> list[str]: ...
    def records(self, outputs, run) -> list[dict]: ...
    def columns(self, outputs, filled, run) -> dict: ...
    def parity(self, ref, got, run) -> dict: ...


def get_task(name: str | None) -> Task:
    """The task `name` names (None: classification); an unknown name is one FinpeftError."""
    name = name or "classification"
    if name not in TASKS:
        raise FinpeftError(f"unknown task {name!r}: data.task is one of {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name]).TASK
