"""Multi-label classification: one text, any number of labels (e.g. gold headlines: price up / down / constant,
past / future information, an asset comparison). `data.task=multilabel` with `data.label_columns=[...]` naming
0/1 columns. One sigmoid output per label trained with binary cross-entropy (transformers' own
multi_label_classification loss for full / LoRA models; the same for finpeft's frozen-encoder heads); per-label
thresholds chosen on the valid split (each label's F1-maximising cut, 0.5 where there is no valid split);
per-label F1, micro / macro F1 and the exact-match (subset) accuracy; a prediction lists the labels that apply
with every label's probability.

Inside, a row's label set travels through loading and splitting as one string, the names joined by "|"
(`JOIN`), so splits, de-duplication and sub-sampling stay the data stage's one code path."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from finpeft.errors import FinpeftError

JOIN = "|"
GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)  # the thresholds tried per label on valid


class MultiHot:
    """label-set string -> (n_labels,) float 0/1 target; thresholds: each label's cut on its probability."""

    def __init__(self, labels: list[str], thresholds: dict[str, float] | None = None):
        self.labels, self.index = list(labels), {l: i for i, l in enumerate(labels)}
        self.thresholds = np.array([(thresholds or {}).get(l, 0.5) for l in self.labels], dtype=np.float32)

    def __getitem__(self, label_set: str) -> list[float]:
        y = [0.0] * len(self.labels)
        for name in filter(None, str(label_set).split(JOIN)):
            y[self.index[name]] = 1.0
        return y

    def __len__(self) -> int:
        return len(self.labels)

    def matrix(self, label_sets) -> np.ndarray:
        return np.array([self[s] for s in label_sets], dtype=np.float32).reshape(-1, len(self.labels))


def multilabel_metrics(y: np.ndarray, pred: np.ndarray, labels: list[str]) -> dict:
    """(n, L) 0/1 truth and prediction -> micro / macro F1, subset accuracy, Hamming loss, per-label P/R/F1."""
    from sklearn.metrics import f1_score, hamming_loss, precision_recall_fscore_support
    p, r, f, s = precision_recall_fscore_support(y, pred, zero_division=0)
    return {"micro_f1": float(f1_score(y, pred, average="micro", zero_division=0)),
            "macro_f1": float(f1_score(y, pred, average="macro", zero_division=0)),
            "subset_accuracy": float((y == pred).all(1).mean()) if len(y) else 0.0,
            "hamming_loss": float(hamming_loss(y, pred)) if len(y) else 0.0, "n": int(len(y)),
            "per_label": {l: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i]),
                              "predicted": int(pred[:, i].sum())} for i, l in enumerate(labels)}}


def best_thresholds(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict[str, float]:
    """Each label's F1-maximising threshold on GRID (ties: the one nearest 0.5); 0.5 for a label absent here."""
    from sklearn.metrics import f1_score
    out = {}
    for i, l in enumerate(labels):
        if not y[:, i].any():
            out[l] = 0.5
            continue
        f1 = [f1_score(y[:, i], probs[:, i] >= t, zero_division=0) for t in GRID]
        best = max(f1)
        out[l] = float(min((t for t, v in zip(GRID, f1) if v == best), key=lambda t: abs(t - 0.5)))
    return out


def _rare_to_first(sets: pd.Series) -> pd.Series:
    """What splits stratify on: the label set, a set seen under 4 times its first label, else "rare"."""
    counts = sets.value_counts()
    first = sets.where(sets.map(counts) >= 4, sets.str.split(JOIN).str[0].replace("", "(none)"))
    n = first.value_counts()
    return first.where(first.map(n) >= 4, "rare")


class Multilabel:
    name = "multilabel"
    select_metric, greater_is_better = "micro_f1", True
    classes = True  # per-label probabilities (independent sigmoids, they need not sum to one)
    output = "sigmoid"
    metric_columns = ("micro_f1", "macro_f1", "subset_accuracy")
    board = (("micro_f1", "micro-F1"), ("macro_f1", "macro-F1"), ("subset_accuracy", "subset accuracy"))
    plot_metric = ("micro_f1", "test micro-F1")
    headline = ("micro_f1", "macro_f1")  # the metrics of a one-line summary (bench progress, finpeft.summarise)
    summary_rows = 1  # how many of summary()'s lines finpeft.summarise shows (None: all)

    # data
    def read_labels(self, raw, frames: dict, cfg) -> dict:
        """The 0/1 columns -> one label-set string per row in `label`."""
        columns = list(cfg.label_columns or [])
        if len(columns) < 2:
            raise FinpeftError(f"{raw.name}: data.task=multilabel needs data.label_columns naming two or more 0/1 "
                               "columns, e.g. 'data.label_columns=[price_up,price_down]'")
        out = {}
        for split, f in frames.items():
            missing = [c for c in columns if c not in f.columns]
            if missing:
                raise FinpeftError(f"{raw.name} ({split}): missing label column(s) {', '.join(map(repr, missing))}")
            cells = f[columns].astype(str).apply(lambda c: c.str.strip().str.lower())
            bad = ~cells.isin(["0", "1", "0.0", "1.0", "true", "false", "yes", "no"])
            if bad.any().any():
                col = bad.any().idxmax()
                raise FinpeftError(f"{raw.name} ({split}): column {col!r} holds {cells[col][bad[col]].iloc[0]!r}; "
                                   "a label column of data.task=multilabel holds 0/1 (or true/false)")
            on = cells.isin(["1", "1.0", "true", "yes"]).to_numpy()
            out[split] = f.assign(label=[JOIN.join(c for c, v in zip(columns, row) if v) for row in on])
        return out

    def prepare(self, raw, frames: dict, cfg, notes: list[str]):
        return frames, list(cfg.label_columns), {}

    def strata(self, labels: pd.Series):
        return _rare_to_first(labels)

    def check_train(self, train: pd.DataFrame, name: str) -> None:
        present = set(JOIN.join(train["label"]).split(JOIN)) - {""}
        if not present:
            raise FinpeftError(f"{name}: no training row has any label: nothing to learn")

    def doctor_split(self, df: pd.DataFrame, norm: pd.Series, empty: pd.Series, raw, label_map: dict):
        return {}, [], None  # `finpeft data check` reads one label column; training checks the 0/1 columns

    def doctor_all(self, raw, label_map: dict) -> list[str]:
        return []

    def data_config(self, info: dict, cfg) -> dict:
        """data.* a saved run of this task reads other data with, where the user did not say."""
        return {} if cfg.label_columns else {"label_columns": list(info["labels"])}

    # training
    def targets(self, data) -> MultiHot:
        return MultiHot(data.labels)

    def load_targets(self, info: dict) -> MultiHot:
        return MultiHot(info["labels"], info.get("thresholds"))

    def gold(self, frame: pd.DataFrame, targets) -> np.ndarray:
        return targets.matrix(frame["label"])

    def check(self, data, recipe, method, say) -> dict:
        if self.name not in method.TASKS:
            raise FinpeftError(f"method {recipe.method.name} predicts one class per text; for data.task=multilabel "
                               "use full, head, lora, dora, ia3 or a frozen-encoder head")
        if recipe.train.distill_from or recipe.train.rdrop_alpha:
            raise FinpeftError("train.distill_from / train.rdrop_alpha compare softmax distributions; not for "
                               "multilabel")
        return {}

    def valid_metrics(self, targets):
        def metrics(pred) -> dict:
            probs = 1 / (1 + np.exp(-np.asarray(pred.predictions, dtype=np.float64)))
            m = multilabel_metrics(np.asarray(pred.label_ids) > 0.5, probs >= 0.5, targets.labels)
            return {k: m[k] for k in ("micro_f1", "macro_f1", "subset_accuracy")}
        return metrics

    def calibrate(self, targets: MultiHot, valid_outputs, frame: pd.DataFrame | None) -> MultiHot:
        """Thresholds chosen on the valid split's probabilities (the test split never sees this choice); no
        valid split (few labels): 0.5 each."""
        if frame is None or not len(frame):
            return targets
        return MultiHot(targets.labels, best_thresholds(targets.matrix(frame["label"]), valid_outputs(), targets.labels))

    def loss(self, logits, labels):
        import torch
        return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())

    def run_info(self, targets: MultiHot) -> dict:
        return {"thresholds": {l: float(t) for l, t in zip(targets.labels, targets.thresholds)}}

    # evaluation
    def evaluate(self, out, texts: list[str], labels: pd.Series, outputs: np.ndarray, info: dict,
                 context: dict) -> dict:
        t = self.load_targets(info)
        y, pred = t.matrix(labels), outputs >= t.thresholds
        m = multilabel_metrics(y, pred, t.labels)
        record = {**context, "task": self.name, **m, "thresholds": self.run_info(t)["thresholds"],
                  "baseline": _baseline(y, t.labels)}
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
        wrong = np.flatnonzero((y != pred).any(1))
        pd.DataFrame({"text": [texts[i] for i in wrong], "labels": [labels.iloc[i] for i in wrong],
                      "predicted": [JOIN.join(l for l, on in zip(t.labels, pred[i]) if on) for i in wrong]}).to_csv(
            out / "misclassified.csv", index=False)
        (out / "report.md").write_text(_report(record, t.labels), encoding="utf-8")
        return record

    def summary(self, metrics: dict, seconds: float | None) -> list[str]:
        b = metrics["baseline"]
        return [f"test micro-F1 {metrics['micro_f1']:.4f} | macro-F1 {metrics['macro_f1']:.4f} | subset accuracy "
                f"{metrics['subset_accuracy']:.4f} | Hamming loss {metrics['hamming_loss']:.4f}"
                + ("" if seconds is None else f" | train {seconds:.0f}s"),
                f"baseline (each label's majority value): micro-F1 {b['micro_f1']:.4f} | subset accuracy "
                f"{b['subset_accuracy']:.4f}"]

    # prediction
    def records(self, outputs: np.ndarray, run) -> list[dict]:
        cut = self.load_targets(run.info).thresholds
        names = run.display_labels
        return [{"labels": [l for l, v, c in zip(names, p, cut) if v >= c],
                 "probabilities": {l: round(float(v), 6) for l, v in zip(names, p)}} for p in outputs]

    def columns(self, outputs: np.ndarray, filled: np.ndarray, run, existing) -> dict:
        cut = self.load_targets(run.info).thresholds
        sets = [JOIN.join(l for l, v, c in zip(run.display_labels, p, cut) if v >= c) if ok else ""
                for p, ok in zip(outputs, filled)]
        return {"predicted_labels" if "labels" in existing else "labels": sets,
                **{f"p_{l}": outputs[:, i].round(6) for i, l in enumerate(run.display_labels)}}

    def parity(self, ref: np.ndarray, got: np.ndarray, gold: pd.Series, info: dict) -> dict:
        t = self.load_targets(info)
        same = ((ref >= t.thresholds) == (got >= t.thresholds)).all(1)
        return {"agreement": round(float(same.mean()), 6) if len(ref) else 1.0,
                "max_abs_prob_diff": float(np.abs(ref - got).max()) if len(ref) else 0.0}


def _baseline(y: np.ndarray, labels: list[str]) -> dict:
    """Each label's majority value on the scored rows (mostly "off"): the floor a model must clear."""
    pred = np.tile(y.mean(0) > 0.5, (len(y), 1)) if len(y) else y.astype(bool)
    m = multilabel_metrics(y, pred, labels)
    return {k: m[k] for k in ("micro_f1", "macro_f1", "subset_accuracy")}


def _report(r: dict, labels: list[str]) -> str:
    lines = [f"# finpeft evaluation: {r.get('dataset')} ({r.get('split')} split), multilabel", "",
             "| field | value |", "|---|---|"]
    lines += [f"| {k} | {r[k]} |" for k in ("dataset", "split", "method", "backbone", "seed", "command",
                                            "train_seconds", "trainable_params", "data_source", "date")
              if r.get(k) is not None]
    b = r["baseline"]
    lines += ["", f"**micro-F1 {r['micro_f1']:.4f} · macro-F1 {r['macro_f1']:.4f} · subset accuracy "
              f"{r['subset_accuracy']:.4f} · Hamming loss {r['hamming_loss']:.4f}** on {r['n']} examples",
              f"Baseline (each label's majority value): micro-F1 {b['micro_f1']:.4f}, subset accuracy "
              f"{b['subset_accuracy']:.4f}.", "",
              "| label | threshold | precision | recall | F1 | support | predicted |", "|---|---|---|---|---|---|---|"]
    for l in labels:
        c = r["per_label"][l]
        lines.append(f"| {l} | {r['thresholds'][l]:.2f} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | "
                     f"{c['support']} | {c['predicted']} |")
    lines += ["", "Thresholds were chosen per label on the valid split. Rows with any label wrong: "
              "`misclassified.csv`."] + [f"- note: {n}" for n in r.get("notes", [])]
    return "\n".join(lines) + "\n"


TASK = Multilabel()
