"""Regression: a number per text (e.g. FiQA-2018 task 1's sentiment score in [-1, 1]). One output trained with
MSE on scores standardised on the training rows (mapped back on prediction); MSE / R² / Pearson / sign accuracy
(the valid MSE picks the checkpoint), a scatter-plot report, and a prediction that is the score alone.

Parsing and checking the target column has one wording for `data check` (which warns) and training (refuses)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from finpeft.errors import FinpeftError
from finpeft.report.regression import SIGN_BAND, regression_metrics, sign_band, summary_lines, write_regression_evaluation


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


class Regression:
    name = "regression"
    select_metric, greater_is_better = "mse", False
    classes = False
    output = "raw"  # a standardised score; targets.inverse maps it back
    metric_columns = ("mse", "r2", "pearson")
    board = (("mse", "MSE"), ("rmse", "RMSE"), ("r2", "R²"), ("pearson", "Pearson"), ("spearman", "Spearman"),
             ("sign_accuracy", "sign accuracy"))  # leaderboards, best (lowest MSE) first
    plot_metric = ("r2", "test R²")
    headline = ("mse", "r2")  # the metrics of a one-line summary (bench progress, finpeft.summarise)
    summary_rows = None  # how many of summary()'s lines finpeft.summarise shows (None: all)

    # data
    def read_labels(self, raw, frames: dict, cfg) -> dict:
        return frames  # checked as numbers by prepare, once empty texts are dropped

    def prepare(self, raw, frames: dict, cfg, notes: list[str]):
        score_range = cfg.score_range or raw.score_range
        return ({s: checked_scores(f, raw.name, s, raw.label_column, score_range) for s, f in frames.items()},
                ["score"], {})

    def strata(self, labels: pd.Series):
        return score_bins(labels)  # every split spans the score range

    def check_train(self, train: pd.DataFrame, name: str) -> None:
        if train["label"].nunique() < 2:
            raise FinpeftError(f"{name}: the training scores are constant ({train['label'].iloc[0]}): nothing to learn")

    def doctor_split(self, df: pd.DataFrame, norm: pd.Series, empty: pd.Series, raw, label_map: dict):
        """`finpeft data check` of one split: the same problems, in the same words, that training refuses."""
        frame = df.reset_index(drop=True)
        scores, bad = parse_scores(frame["label"])
        warns = score_problems(scores, bad, frame["label"], raw.label_column, raw.score_range)
        stats = {"score": {k: float(getattr(scores, k)()) for k in ("min", "mean", "median", "max", "std")}} \
            if scores.notna().any() else {}
        return stats, warns, None

    def doctor_all(self, raw, label_map: dict) -> list[str]:
        return []

    def data_config(self, info: dict, cfg) -> dict:
        """data.* a saved run of this task reads other data with, where the user did not say."""
        return {}

    # training
    def targets(self, data) -> "Standardiser":
        return Standardiser(data.train["label"])

    def load_targets(self, info: dict) -> "Standardiser":
        return Standardiser([], **info["target"])

    def gold(self, frame: pd.DataFrame, targets) -> np.ndarray:
        return frame["label"].to_numpy(dtype=float)

    def check(self, data, recipe, method, say) -> dict:
        if self.name not in method.TASKS:
            raise FinpeftError(f"method {recipe.method.name} classifies only; for a score (data.task=regression) "
                               "use full, head, lora, dora, qlora, ia3 or a frozen-encoder head (mamba-adapter, ...)")
        if recipe.train.distill_from:
            raise FinpeftError("train.distill_from: distillation learns class probabilities; not for regression")
        if recipe.train.rdrop_alpha:
            raise FinpeftError("train.rdrop_alpha: R-Drop compares class probabilities; not for regression")
        return {}

    def valid_metrics(self, targets):
        """Valid-split metrics on the score scale (model selection uses the MSE)."""
        def metrics(pred) -> dict:
            y = targets.inverse(np.asarray(pred.label_ids).reshape(-1))
            m = regression_metrics(y, targets.inverse(np.asarray(pred.predictions).reshape(-1)))
            return {k: m[k] for k in ("mse", "r2", "pearson", "sign_accuracy")}
        return metrics

    def calibrate(self, targets, valid_outputs, frame):
        return targets  # nothing is chosen on valid after training

    def loss(self, logits, labels):
        import torch
        return torch.nn.functional.mse_loss(logits.squeeze(-1).float(), labels.float())

    def run_info(self, targets) -> dict:
        return {"target": targets.to_dict()}

    # evaluation
    def evaluate(self, out, texts: list[str], labels: pd.Series, outputs: np.ndarray, info: dict,
                 context: dict) -> dict:
        targets = self.load_targets(info)
        return write_regression_evaluation(out, texts, labels.to_numpy(dtype=float), targets.inverse(outputs[:, 0]),
                                           {**context, "train_mean": targets.mean})

    def summary(self, metrics: dict, seconds: float | None) -> list[str]:
        return summary_lines(metrics, seconds)

    # prediction
    def scores(self, outputs: np.ndarray, run) -> np.ndarray:
        return self.load_targets(run.info).inverse(outputs[:, 0]).astype(np.float32)

    def records(self, outputs: np.ndarray, run) -> list[dict]:
        return [{"score": round(float(s), 6)} for s in self.scores(outputs, run)]

    def columns(self, outputs: np.ndarray, filled: np.ndarray, run, existing) -> dict:
        scores = np.full(len(outputs), np.nan, dtype=np.float32)
        scores[filled] = self.scores(outputs[filled], run)
        return {"predicted_score" if "score" in existing else "score": scores.round(6)}  # never overwrite gold

    def parity(self, ref: np.ndarray, got: np.ndarray, gold: pd.Series, info: dict) -> dict:
        """Agreement = the share of rows whose score lands in the same sign band (negative / neutral /
        positive) both ways, plus the largest score difference and each side's MSE."""
        t = self.load_targets(info)
        s_ref, s_got = t.inverse(ref[:, 0]), t.inverse(got[:, 0])
        y = gold.to_numpy(dtype=float)
        return {"agreement": round(float((sign_band(s_ref) == sign_band(s_got)).mean()), 6) if len(ref) else 1.0,
                "max_abs_score_diff": float(np.abs(s_ref - s_got).max()) if len(ref) else 0.0,
                "torch_mse": round(float(np.mean((s_ref - y) ** 2)), 6),
                "onnx_mse": round(float(np.mean((s_got - y) ** 2)), 6)}


TASK = Regression()
