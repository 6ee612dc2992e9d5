"""`finpeft data check DATA --label-issues OUT.csv`: rows whose given label is probably wrong.

Confident learning (Northcutt et al. 2021) through cleanlab: k-fold out-of-fold class probabilities from a fast
model - a logistic regression on the frozen sentence vectors of one or more packaged encoders (concatenated),
read from the feature cache - then cleanlab's `find_label_issues` decides which rows are issues and
`get_label_quality_scores` ranks them (low score = most suspect). Only the model is ours: a
cross-validated scikit-learn classifier on cached vectors costs seconds where a fine-tune per fold costs minutes.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from finpeft.errors import FinpeftError


def labelled_rows(dataset: str, text_column: str = "text", label_column: str = "label",
                  encoding: str = "auto") -> tuple[pd.DataFrame, str]:
    """Every labelled row of a catalog dataset or a user's file/folder (all splits), with a `split` column and
    the file's other columns kept. Labels are the user's own strings, stripped (no mapping)."""
    from finpeft.data.load import _user_files, load_raw, read_table
    raw = load_raw(dataset, text_column, label_column, encoding)
    if not raw.labelled or raw.task != "classification":
        raise FinpeftError(f"{raw.name}: --label-issues needs class labels (this is a "
                           f"{raw.task if raw.labelled else 'unlabelled'} dataset)")
    frames = [f.assign(split=s) for s, f in raw.frames.items()]
    if Path(dataset).exists():  # a user's file: keep its ids and other columns beside text and label
        frames = [read_table(p, encoding).rename(columns={text_column: "text", label_column: "label"}).assign(split=s)
                  for s, p in _user_files(Path(dataset)).items()]
    df = pd.concat(frames, ignore_index=True)
    df["label"] = df["label"].astype(str).str.strip()
    df = df[(df["text"].str.strip() != "") & (df["label"] != "")].reset_index(drop=True)
    if df.empty:
        raise FinpeftError(f"{raw.name}: no labelled rows")
    return df, raw.name


def out_of_fold_probs(vectors: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """(N, C) probabilities of each row from a model that never saw it: stratified k-fold logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    smallest = np.bincount(y).min()
    k = min(folds, int(smallest))
    if k < 2:
        raise FinpeftError("--label-issues: every label needs at least 2 rows for cross-validation")
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cross_val_predict(model, vectors, y, cv=cv, method="predict_proba")


def find_label_issues(dataset: str, output, *, backbones: list[str] | None = None, folds: int = 5, seed: int = 42,
                      text_column: str = "text", label_column: str = "label", encoding: str = "auto",
                      max_length: int = 128, rank_by: str = "normalized_margin") -> dict:
    """Write the suspect rows to `output` (CSV), most suspect first, with `text`, `label` (given),
    `suggested_label`, `score` (cleanlab's label quality, 0..1, low = suspect) and the file's other columns.
    Returns {"output", "rows", "issues", "backbones", "ranking"} where ranking is every row index, most
    suspect first (for measuring)."""
    from cleanlab.filter import find_label_issues as cl_find
    from cleanlab.rank import get_label_quality_scores
    from finpeft.experiments.labelling import _write_table
    from finpeft.models.backbones import resolve_backbone
    from finpeft.models.features import sentence_embeddings
    out = Path(output)
    if out.suffix.lower() != ".csv":
        raise FinpeftError(f"--label-issues {out}: write a .csv file")
    df, name = labelled_rows(dataset, text_column, label_column, encoding)
    classes = sorted(df["label"].unique())
    if len(classes) < 2:
        raise FinpeftError(f"{name}: one label only ({classes[0]!r}); nothing to compare")
    y = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    backbones = backbones or ["minilm-l6"]
    texts = df["text"].tolist()
    vectors = np.hstack([sentence_embeddings(resolve_backbone(b), texts, max_length) for b in backbones])
    probs = out_of_fold_probs(vectors, y, folds, seed)
    scores = get_label_quality_scores(y, probs, method=rank_by)
    issue = cl_find(y, probs)  # cleanlab's own decision (prune by noise rate), then ranked by the score
    ranking = np.argsort(scores, kind="stable")
    flagged = ranking[issue[ranking]]
    rows = df.iloc[flagged].copy()
    rows.insert(2, "suggested_label", [classes[i] for i in probs[flagged].argmax(1)])
    rows.insert(3, "score", np.round(scores[flagged], 4))
    _write_table(rows.rename(columns={"text": "text", "label": "label"}), out)
    return {"output": str(out), "rows": len(df), "issues": int(issue.sum()), "backbones": backbones,
            "ranking": ranking, "probs": probs, "frame": df}
