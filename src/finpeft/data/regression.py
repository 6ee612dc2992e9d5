"""Regression data: a numeric target per text (e.g. FiQA-2018 task 1's sentiment score in [-1, 1]).

Parsing and checking the target column (one wording for `data check`, which warns, and training, which refuses),
seeded splits that keep duplicate texts on one side, and the standardisation the model trains on.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from finpeft.errors import FinpeftError

SIGN_BAND = 0.1  # |score| < 0.1 counts as neutral for the sign accuracy (FinGPT/FinLoRA's 3-class FiQA rule)


def parse_scores(values: pd.Series) -> tuple[pd.Series, list[int]]:
    """(float scores, positions of cells that are not numbers). Empty cells become NaN, not errors."""
    text = values.astype(str).str.strip()
    nums = pd.to_numeric(text.where(text != "", None), errors="coerce")
    bad = [i for i, (t, v) in enumerate(zip(text, nums)) if t != "" and pd.isna(v)]
    return nums.astype(float), bad


def score_problems(scores: pd.Series, bad: list[int], raw_values: pd.Series, column: str,
                   score_range: tuple[float, float] | None) -> list[str]:
    """Everything training refuses about a numeric target column, one line each (file rows count the header)."""
    problems = []
    if bad:
        shown = ", ".join(f"row {i + 2} {raw_values.iloc[i]!r}" for i in bad[:3])
        problems.append(f"{len(bad)} non-numeric value(s) in the score column {column!r} ({shown}"
                        f"{', ...' if len(bad) > 3 else ''}); a regression target must be a number")
    missing = scores.isna() & ~scores.index.isin(scores.index[bad])
    if missing.all():
        problems.append(f"the score column {column!r} has no numbers (all empty / NaN)")
        return problems
    if missing.any():
        rows = ", ".join(str(i + 2) for i in np.flatnonzero(missing.to_numpy())[:5])
        problems.append(f"{int(missing.sum())} empty / NaN score(s) (file rows {rows}); fix or remove those rows")
    finite = scores.dropna()
    if np.isinf(finite).any():
        problems.append(f"{int(np.isinf(finite).sum())} infinite score(s) in {column!r}")
    if finite.nunique() < 2:
        problems.append(f"the score column {column!r} is constant ({finite.iloc[0]}): nothing to learn")
    if score_range is not None:
        lo, hi = score_range
        out = finite[(finite < lo) | (finite > hi)]
        if len(out):
            problems.append(f"{len(out)} score(s) outside data.score_range [{lo}, {hi}] (e.g. {out.iloc[0]}); "
                            "fix them or widen data.score_range")
    return problems


def checked_scores(frame: pd.DataFrame, name: str, split: str, column: str,
                   score_range: tuple[float, float] | None) -> pd.DataFrame:
    """The frame with `label` as float scores, or one FinpeftError naming the first problem."""
    scores, bad = parse_scores(frame["label"])
    problems = score_problems(scores.reset_index(drop=True), bad, frame["label"].reset_index(drop=True), column,
                              score_range)
    if problems:
        raise FinpeftError(f"{name} ({split}): {problems[0]}")
    return frame.assign(label=scores.to_numpy())


def score_bins(scores: pd.Series) -> pd.Series:
    """Sign bands (negative / neutral / positive) to stratify splits on, so every split spans the score range."""
    return pd.Series(np.where(scores <= -SIGN_BAND, "neg", np.where(scores >= SIGN_BAND, "pos", "neu")),
                     index=scores.index)


class Standardiser:
    """Targets the model trains on: (score - mean) / std of the training scores (a one-output head learns a
    unit-scale target best; predictions are mapped back). Indexable like a label -> id map, so the batching
    code that encodes labels encodes scores too."""

    def __init__(self, train_scores, mean: float | None = None, std: float | None = None):
        values = np.asarray(train_scores, dtype=np.float64)
        self.mean = float(values.mean()) if mean is None else float(mean)
        self.std = (float(values.std()) or 1.0) if std is None else float(std)

    def __getitem__(self, score) -> float:
        return (float(score) - self.mean) / self.std

    def __len__(self) -> int:  # the number of model outputs
        return 1

    def inverse(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(z, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}


def sign_band(v):
    """-1 / 0 / 1: negative, neutral (|score| < SIGN_BAND) or positive."""
    return np.sign(v) * (np.abs(v) >= SIGN_BAND)


def regression_metrics(y: np.ndarray, pred: np.ndarray, train_mean: float | None = None) -> dict:
    """MSE, RMSE, MAE, R², Pearson, Spearman, the sign accuracy (negative / neutral / positive bands), and the
    baseline that always answers the training mean (the floor a model must clear: R² <= 0 is no better)."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
    y, pred = np.asarray(y, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    mse = float(mean_squared_error(y, pred))
    constant = np.ptp(pred) == 0 or np.ptp(y) == 0
    return {"mse": mse, "rmse": float(np.sqrt(mse)), "mae": float(mean_absolute_error(y, pred)),
            "r2": float(r2_score(y, pred)),
            "pearson": float("nan") if constant else float(pearsonr(y, pred)[0]),
            "spearman": float("nan") if constant else float(spearmanr(y, pred)[0]),
            "sign_accuracy": float((sign_band(y) == sign_band(pred)).mean()), "n": int(len(y)),
            "baseline": None if train_mean is None else
            {"predict": "the training mean", "value": float(train_mean),
             "mse": float(mean_squared_error(y, np.full_like(y, train_mean))),
             "r2": float(r2_score(y, np.full_like(y, train_mean)))}}


def regression_splits(frames: dict[str, pd.DataFrame], column: str, cfg, name: str, score_range, notes: list[str]):
    """(train, valid, test) frames with float `label`s: the given splits, else seeded ones stratified on the
    score's sign bands with duplicate texts kept on one side (as classification's splits)."""
    from finpeft.data.splits import stratified, subsample
    frames = {s: checked_scores(f, name, s, column, score_range) for s, f in frames.items()}
    seed = cfg.split_seed

    def split(df, size, what):
        return stratified(df, size, seed, what, name, strata=score_bins(df["label"]))
    if "all" in frames:
        rest, test = split(frames["all"], cfg.test_size, "test")
        train, valid = split(rest, cfg.valid_size / (1 - cfg.test_size), "valid")
        notes.append(f"no split given: {1 - cfg.test_size - cfg.valid_size:.0%}/{cfg.valid_size:.0%}/"
                     f"{cfg.test_size:.0%} train/valid/test stratified on the score's sign (seed {seed})")
    else:
        train, valid, test = frames["train"], frames.get("valid"), frames.get("test")
        if valid is None:
            train, valid = split(train, cfg.valid_size, "valid")
            notes.append(f"valid carved from train: {cfg.valid_size:.0%} stratified on the score's sign (seed {seed})")
        if test is None:
            train, test = split(train, cfg.test_size, "test")
            notes.append(f"no test split: {cfg.test_size:.0%} of train held out as test (seed {seed})")
    if train["label"].nunique() < 2:
        raise FinpeftError(f"{name}: the training scores are constant ({train['label'].iloc[0]}): nothing to learn")
    train = subsample(train, cfg.max_train_samples, seed, strata=score_bins(train["label"]))
    valid = subsample(valid, cfg.max_eval_samples, seed, strata=score_bins(valid["label"]))
    test = subsample(test, cfg.max_eval_samples, seed, strata=score_bins(test["label"]))
    return [f.reset_index(drop=True)[["text", "label"]] for f in (train, valid, test)]
