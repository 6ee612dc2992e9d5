"""`finpeft evaluate`: score a saved run on a labelled dataset (its own test split, or another: cross-dataset)."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

from finpeft.report.classification import (classification_metrics, expected_calibration_error, majority_baseline,  # noqa: F401
                     render_report, warnings_for, write_evaluation)


def evaluate_run(run_dir: str | Path, data_cfg, split: str = "test") -> tuple[Path, dict]:
    """Score a saved run on a labelled dataset (its own, or another: cross-dataset evaluation) and write
    RUN_DIR/eval/<dataset>-<split>/. data_cfg is a recipe.DataConfig; split "test" uses the same split rules
    as training (so a run's own test split is the one it was scored on), "valid" the validation rows of those
    same rules (to compare runs on the split choices are made on), "all" scores every row."""
    import os
    import shutil

    from finpeft.data import load_dataset_splits
    from finpeft.data.load import load_raw, normalise_frames
    from finpeft.errors import FinpeftError
    from finpeft.inference.predictor import Predictor, read_run_info
    from finpeft.core.runs import append_result

    info = read_run_info(run_dir)  # a bad run dir fails before any data or model work
    if info.get("task") == "regression":
        return _evaluate_scores(run_dir, info, data_cfg, split)
    if info.get("task") == "generation":
        raise FinpeftError(f"{run_dir}: an LLM run whose task ({info.get('llm_task')}) answers in free text; score "
                           "it with `finpeft llm evaluate`")
    if split == "all":
        raw = load_raw(data_cfg.dataset, data_cfg.text_column, data_cfg.label_column, data_cfg.encoding)
        if not raw.labelled:
            raise FinpeftError(f"{raw.name} is unlabelled; evaluation needs labels")
        df = pd.concat(normalise_frames(raw, data_cfg.label_map).values(), ignore_index=True)
        name, source = raw.name, raw.source
    else:
        data = load_dataset_splits(data_cfg)
        df, name, source = data.valid if split == "valid" else data.test, data.name, data.source
    kept = df["text"].str.strip() != ""
    if not kept.all():  # an empty text has nothing to score; said, never silent
        print(f"finpeft: {name}: {int((~kept).sum())} of {len(df)} rows have an empty text and are not scored",
              file=sys.stderr)
    df = df[kept]
    unknown = sorted(set(df["label"]) - set(info["labels"]))
    if unknown:
        raise FinpeftError(f"{name}: label(s) {', '.join(unknown)} are not among the model's labels "
                           f"({', '.join(info['labels'])}); map them with --label-map, e.g. --label-map "
                           f"'{{{unknown[0]}: {info['labels'][0]}}}'")
    predictor = Predictor(run_dir)
    probs = predictor.predict_proba(df["text"].tolist())
    note = predictor.truncation_note(df["text"].tolist(), f"{name} texts")
    if note:
        print(f"finpeft: {note}", file=sys.stderr)
    y = np.array([predictor.labels.index(l) for l in df["label"]])
    out = Path(run_dir) / "eval" / f"{name}-{split}"
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    from datetime import datetime, timezone
    import yaml
    recipe_file = Path(run_dir) / "recipe.yaml"
    seed = (yaml.safe_load(recipe_file.read_text(encoding="utf-8")) or {}).get("seed") if recipe_file.is_file() else None
    context = {"dataset": name, "split": split, "method": info["method"], "backbone": info["backbone"],
               "seed": seed, "data_source": source, "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    metrics = write_evaluation(tmp, df["text"].tolist(), y, probs, predictor.labels, context)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    append_result(Path(run_dir).parent / "results.csv", {**metrics, "run_dir": str(run_dir)})
    return out, metrics


def _evaluate_scores(run_dir, info: dict, data_cfg, split: str) -> tuple[Path, dict]:
    """A regression run on a dataset with a numeric target: MSE, R², Pearson, ... and the scatter plot."""
    import os
    import shutil
    from datetime import datetime, timezone

    from finpeft.data import load_dataset_splits
    from finpeft.inference.predictor import Predictor
    from finpeft.report.regression import write_regression_evaluation
    from finpeft.core.runs import append_result
    cfg = data_cfg.model_copy(update={"task": "regression"})
    if split == "all":  # every row: one split of everything (the split sizes do not matter here)
        from finpeft.data.load import load_raw
        from finpeft.data.regression import checked_scores
        raw = load_raw(cfg.dataset, cfg.text_column, cfg.label_column, cfg.encoding)
        df = pd.concat([checked_scores(f, raw.name, s, raw.label_column, cfg.score_range or raw.score_range)
                        for s, f in raw.frames.items()], ignore_index=True)
        name, source = raw.name, raw.source
    else:
        data = load_dataset_splits(cfg)
        df, name, source = data.valid if split == "valid" else data.test, data.name, data.source
    df = df[df["text"].str.strip() != ""]
    pred = Predictor(run_dir).predict_scores(df["text"].tolist())
    out = Path(run_dir) / "eval" / f"{name}-{split}"
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    context = {"dataset": name, "split": split, "method": info["method"], "backbone": info["backbone"],
               "data_source": source, "train_mean": info["target"]["mean"],
               "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    metrics = write_regression_evaluation(tmp, df["text"].tolist(), df["label"].to_numpy(dtype=float), pred, context)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    append_result(Path(run_dir).parent / "results.csv", {**metrics, "run_dir": str(run_dir)})
    return out, metrics
