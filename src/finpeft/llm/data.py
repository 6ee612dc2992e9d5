"""Rows of an LLM task: train and test frames with every column the task's template needs.

A catalog `dataset` is split exactly as the classifier track splits it (so scores compare); `files` are read
whole (all columns as strings), de-duplicated, expanded into yes/no questions, and, when no train+test pair is
given, split by groups so that rows sharing a text never straddle train and test.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from finpeft.errors import FinpeftError
from finpeft.llm.tasks import Task

SPLIT_SEED = 42  # fixed like the classifier's data.split_seed: the training seed never moves the test set


@dataclass
class TaskSplits:
    train: pd.DataFrame
    test: pd.DataFrame
    notes: list[str]


def task_splits(task: Task, seed: int = SPLIT_SEED) -> TaskSplits:
    if task.dataset is not None:
        return _catalog_splits(task, seed)
    frames = {split: _read(task, rel) for split, rel in task.files.items()}
    unknown = set(frames) - {"train", "test", "all"}
    if unknown:
        raise FinpeftError(f"task {task.name}: files has split(s) {sorted(unknown)}; use train, test or all")
    notes = []
    if task.dedupe:
        for split, f in frames.items():
            _need(task, f, task.dedupe)
            kept = f.drop_duplicates(task.dedupe)
            if len(kept) < len(f):
                notes.append(f"{split}: {len(f) - len(kept)} duplicate rows dropped (same {', '.join(task.dedupe)})")
            frames[split] = kept
    if task.expand:
        frames = {s: _expand(task, f) for s, f in frames.items()}
    if "train" in frames and "test" in frames:
        train, test = frames["train"], frames["test"]
    else:
        whole = pd.concat(list(frames.values()), ignore_index=True)
        train, test = _group_split(task, whole)
        notes.append(f"no train+test pair: {task.test_size:.0%} of the groups held out as test (seed {SPLIT_SEED})")
    need = [task.label_column] if task.choices else [task.answer_column]
    _need(task, train, need + task.input_columns)
    _need(task, test, need + task.input_columns)
    if task.choices:
        for f in (train, test):
            stray = sorted(set(f[task.label_column]) - set(task.choices))
            if stray:
                raise FinpeftError(f"task {task.name}: labels {stray[:5]} have no entry in choices")
    return TaskSplits(train.reset_index(drop=True), test.reset_index(drop=True), notes)


def _catalog_splits(task: Task, seed: int) -> TaskSplits:
    from finpeft.data import load_dataset_splits
    from finpeft.core.recipe import validate_recipe
    cfg = validate_recipe({"data": {"dataset": task.dataset, "text_column": task.text_column,
                                    "label_column": task.label_column}, "seed": seed}, f"task {task.name}").data
    data = load_dataset_splits(cfg)
    if task.choices and set(data.labels) - set(task.choices):
        raise FinpeftError(f"task {task.name}: labels {sorted(set(data.labels) - set(task.choices))} have no choice")
    _need(task, data.test, task.input_columns)
    # the classifier's valid split is training data for an LLM (no early stopping on it)
    return TaskSplits(pd.concat([data.train, data.valid], ignore_index=True), data.test, data.notes)


def _read(task: Task, rel: str) -> pd.DataFrame:
    from finpeft.data.catalog import data_dir
    from finpeft.data.load import read_table
    path = Path(rel).expanduser()
    if not path.is_absolute():
        root = data_dir()
        if root is None:
            raise FinpeftError(f"task {task.name}: {rel} is relative to the datasets folder; set FINPEFT_DATA_DIR "
                               f"(e.g. FINPEFT_DATA_DIR=../shared/datasets) or give an absolute path in files:")
        path = root / rel
    if not path.is_file():
        raise FinpeftError(f"task {task.name}: {path} not found (files: in the task YAML; FINPEFT_DATA_DIR)")
    return read_table(path)


def _need(task: Task, df: pd.DataFrame, columns) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise FinpeftError(f"task {task.name}: column(s) {missing} not in the data (has {', '.join(df.columns)})")


def _expand(task: Task, df: pd.DataFrame) -> pd.DataFrame:
    """One row per (row, question): `question` holds the question, label yes/no from the 0/1 column."""
    _need(task, df, list(task.expand))
    parts = []
    for column, question in task.expand.items():
        values = df[column].astype(str).str.strip()
        bad = sorted(set(values) - {"0", "1"})
        if bad:
            raise FinpeftError(f"task {task.name}: expand column {column!r} must be 0/1, found {bad[:3]}")
        parts.append(df.assign(question=question, question_column=column,
                               **{task.label_column: values.map({"1": "yes", "0": "no"})}))
    return pd.concat(parts, ignore_index=True)


def _group_split(task: Task, df: pd.DataFrame):
    from sklearn.model_selection import GroupShuffleSplit
    keys = task.group_by or [task.text_column]
    _need(task, df, keys)
    groups = df[keys].astype(str).agg("\x1f".join, axis=1).str.strip().str.lower()
    if groups.nunique() < 2:
        raise FinpeftError(f"task {task.name}: too few distinct rows to split ({groups.nunique()})")
    tr, te = next(GroupShuffleSplit(n_splits=1, test_size=task.test_size, random_state=SPLIT_SEED)
                  .split(df, groups=groups))
    # shuffled: expanded rows come question by question, and a first-N cap must see every question
    return (df.iloc[tr].sample(frac=1, random_state=SPLIT_SEED), df.iloc[te].sample(frac=1, random_state=SPLIT_SEED))
