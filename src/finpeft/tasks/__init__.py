"""Task registry. A task is what a model predicts for a text - one class, a number, a set of labels - and one
module owns everything that differs between tasks (as a method does, see methods/__init__.py):

  what it is     name (data.task, run.json "task"); output: "softmax" | "raw" | "sigmoid", what predict_outputs
                 applies to the logits; classes: the outputs are per-label probabilities (predict_proba,
                 ensembles); select_metric / greater_is_better: the valid metric that picks the checkpoint
  data           read_labels(raw, frames, cfg): the label column(s) as read -> `label` values the task works
                 with; prepare(raw, frames, cfg, notes) -> (frames, labels, label_names): the label set and
                 checked targets, once empty texts are dropped; strata(labels): what splits stratify on (None: the labels);
                 check_train(train, name); doctor_split / doctor_all: `finpeft data check`'s target checks;
                 data_config(info, cfg): data.* a saved run reads other data with (multilabel: its columns)
  training       targets(data): label -> model target (indexable, len() = outputs); check(data, recipe, method,
                 say) -> run.json entries (refusals first: methods / objectives it cannot take);
                 valid_metrics(targets): the Trainer's compute_metrics; loss(logits, labels): the loss of the
                 heads finpeft builds (transformers' heads pick theirs by problem type); calibrate(targets,
                 valid_outputs, valid): what is chosen on valid after training (multilabel thresholds);
                 run_info(targets) / load_targets(info): those targets in run.json and back
  evaluation     gold(frame, targets); evaluate(out, texts, labels, outputs, info, context) -> metrics
                 (metrics.json, report.md); summary(metrics, seconds) -> lines; board / headline / plot_metric /
                 metric_columns: its leaderboard, one-line and results.csv metrics
  prediction     records(outputs, run) -> one dict per text; columns(outputs, filled, run, existing) -> a scored
                 file's columns; parity(ref, got, gold, info): an ONNX export's agreement with torch

`run` is the loaded run (inference.Predictor: labels, display_labels, polarity, info). Adding a task = one module
(exposing TASK) + one line below. Methods support every registered task unless their module's TASKS says
otherwise (setfit's contrastive pairs and the from-scratch heads classify only).
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
    output: str
    classes: bool
    select_metric: str
    greater_is_better: bool
    metric_columns: tuple[str, ...]
    board: tuple[tuple[str, str], ...]
    headline: tuple[str, ...]
    plot_metric: tuple[str, str]
    summary_rows: int | None

    def read_labels(self, raw, frames: dict, cfg) -> dict: ...
    def prepare(self, raw, frames: dict, cfg, notes: list[str]) -> tuple[dict, list[str], dict[str, str]]: ...
    def strata(self, labels) -> Any: ...
    def check_train(self, train, name: str) -> None: ...
    def doctor_split(self, df, norm, empty, raw, label_map: dict) -> tuple[dict, list[str], Any]: ...
    def doctor_all(self, raw, label_map: dict) -> list[str]: ...
    def data_config(self, info: dict, cfg) -> dict: ...
    def targets(self, data) -> Any: ...
    def load_targets(self, info: dict) -> Any: ...
    def gold(self, frame, targets) -> Any: ...
    def check(self, data, recipe, method, say) -> dict: ...
    def valid_metrics(self, targets): ...
    def calibrate(self, targets, valid_outputs, frame) -> Any: ...
    def loss(self, logits, labels): ...
    def run_info(self, targets) -> dict: ...
    def evaluate(self, out, texts: list[str], labels, outputs, info: dict, context: dict) -> dict: ...
    def summary(self, metrics: dict, seconds: float | None) -> list[str]: ...
    def records(self, outputs, run) -> list[dict]: ...
    def columns(self, outputs, filled, run, existing) -> dict: ...
    def parity(self, ref, got, gold, info: dict) -> dict: ...


def get_task(name: str | None) -> Task:
    """The task `name` names (None: classification); an unknown name is one FinpeftError."""
    name = name or "classification"
    if name not in TASKS:
        raise FinpeftError(f"unknown task {name!r}: data.task is one of {', '.join(TASKS)}")
    return importlib.import_module(TASKS[name]).TASK
