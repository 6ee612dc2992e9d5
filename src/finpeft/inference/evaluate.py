"""`finpeft evaluate`: score a saved run on a labelled dataset (its own test split, or another: cross-dataset)."""
from __future__ import annotations

import os
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from finpeft.core.runs import append_result
from finpeft.data import load_dataset_splits
from finpeft.data.load import load_labelled_rows
from finpeft.tasks import get_task
from finpeft.report.classification import (classification_metrics, expected_calibration_error, majority_baseline,  # noqa: F401
                     render_report, warnings_for, write_evaluation)


def evaluate_run(run_dir: str | Path, data_cfg, split: str = "test") -> tuple[Path, dict]:
    """Score a saved run on a labelled dataset (its own, or another: cross-dataset evaluation) and write
    RUN_DIR/eval/<dataset>-<split>/. data_cfg is a recipe.DataConfig; split "test" uses the same split rules
    as training (so a run's own test split is the one it was scored on), "valid" the validation rows of those
    same rules (to compare runs on the split choices are made on), "all" scores every row. The data is read
    as the run's task reads it (a class, a score, 0/1 label columns) and scored and reported by that task."""
    from finpeft.errors import FinpeftError
    from finpeft.inference.predictor import Predictor, read_run_info
    info = read_run_info(run_dir)  # a bad run dir fails before any data or model work
    if info.get("task") == "generation":
        raise FinpeftError(f"{run_dir}: an LLM run whose task ({info.get('llm_task')}) answers in free text; score "
                           "it with `finpeft llm evaluate`")
    kind = get_task(info.get("task"))
    df, name, source = _rows(data_cfg.model_copy(update={"task": kind.name, **kind.data_config(info, data_cfg)}), split)
    kept = df["text"].str.strip() != ""
    if not kept.all():  # an empty text has nothing to score; said, never silent
        print(f"finpeft: {name}: {int((~kept).sum())} of {len(df)} rows have an empty text and are not scored",
              file=sys.stderr)
    df = df[kept]
    _check_labels(df, info, name)
    predictor = Predictor(run_dir)
    outputs = predictor.outputs(df["text"].tolist())
    note = predictor.truncation_note(df["text"].tolist(), f"{name} texts")
    if note:
        print(f"finpeft: {note}", file=sys.stderr)
    context = {"dataset": name, "split": split, "method": info["method"], "backbone": info["backbone"],
               "seed": _seed(run_dir), "data_source": source,
               "label_names": info.get("label_names") or None,  # the run's own words for its classes, in reports
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    out = Path(run_dir) / "eval" / f"{name}-{split}"
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    metrics = predictor.kind.evaluate(tmp, df["text"].tolist(), df["label"], outputs, info, context)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    append_result(Path(run_dir).parent / "results.csv", {**metrics, "run_dir": str(run_dir)})
    return out, metrics


def _rows(cfg, split: str) -> tuple[pd.DataFrame, str, str]:
    """(rows with text + label, dataset name, source): a split by the training rules, or every row."""
    if split == "all":
        raw, df, _ = load_labelled_rows(cfg)
        return df, raw.name, raw.source
    data = load_dataset_splits(cfg)
    return data.valid if split == "valid" else data.test, data.name, data.source


def _check_labels(df: pd.DataFrame, info: dict, name: str) -> None:
    """Classes the run does not know are one clear error naming the run's own labels (a score has none)."""
    from finpeft.errors import FinpeftError
    if info.get("task", "classification") != "classification":
        return
    unknown = sorted(set(df["label"]) - set(info["labels"]))
    if unknown:
        raise FinpeftError(f"{name}: label(s) {', '.join(unknown)} are not among the model's labels "
                           f"({', '.join(info['labels'])}); map them with --label-map, e.g. --label-map "
                           f"'{{{unknown[0]}: {info['labels'][0]}}}'")


def _seed(run_dir) -> int | None:
    import yaml
    recipe_file = Path(run_dir) / "recipe.yaml"
    return (yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}).get("seed") if recipe_file.is_file() else None
