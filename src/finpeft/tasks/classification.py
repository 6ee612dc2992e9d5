"""Classification: one class per text (sentiment, up/down/flat, a desk's own taxonomy). Softmax head, cross
entropy, accuracy / macro-F1 (the valid macro-F1 picks the checkpoint), the confusion-matrix report, and a
prediction of label + per-class probabilities + `score` (the classes' polarity, null where they have none)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from finpeft.errors import FinpeftError
from finpeft.report.classification import warnings_for, write_evaluation
from finpeft.tasks.labels import SIGNED_IDS, infer_polarity, normalise_label, stray_labels


def normalise_frames(raw, label_map: dict[str, str], frames: dict | None = None) -> dict[str, pd.DataFrame]:
    """Each frame's `label` mapped onto finpeft's names (data.label_map, synonyms); integer ids must be named."""
    frames = raw.frames if frames is None else frames
    values = set().union(*(set(f["label"].str.strip()) for f in frames.values()))
    if not label_map and values and all(v.lstrip("-").isdigit() for v in values):
        if "-1" in values and values <= set(SIGNED_IDS):  # -1/0/1 is unambiguous; 0/1 or 0/1/2 is not
            label_map = SIGNED_IDS
        else:
            ids = ", ".join(sorted(values, key=int))
            raise FinpeftError(f"{raw.name}: labels are integer ids ({ids}); name them with data.label_map, "
                               "e.g. data.label_map='{0: negative, 1: positive, 2: neutral}'")
    return {s: f.assign(label=f["label"].map(lambda v: normalise_label(v, label_map))) for s, f in frames.items()}


def user_label_names(raw, frames: dict[str, pd.DataFrame]) -> dict[str, str]:
    """Canonical label -> the most frequent raw spelling that maps to it (before data.label_map / synonyms)."""
    pairs = pd.concat([pd.DataFrame({"raw": raw.frames[s]["label"].astype(str).str.strip(), "label": f["label"]})
                       for s, f in frames.items()], ignore_index=True)
    if pairs.empty:
        return {}
    top = pairs.groupby("label")["raw"].agg(lambda v: v.value_counts().index[0])
    # integer ids (0/1/2) and their label_map are not names a user reads: keep the canonical ones then
    return {l: r for l, r in top.items() if not r.lstrip("-").isdigit()}


def label_polarity(labels: list[str], given: dict | None, label_map: dict) -> dict[str, float] | None:
    """What `score` weighs each class by: data.label_polarity (keys in the file's spelling or finpeft's, every
    label given a number), else inferred for sentiment words; None: the classes have no polarity (no score)."""
    if given is None:
        return infer_polarity(labels)
    mapped = {normalise_label(str(k), label_map): float(v) for k, v in given.items()}
    missing, unknown = [l for l in labels if l not in mapped], sorted(set(mapped) - set(labels))
    if missing or unknown:
        raise FinpeftError(f"data.label_polarity gives a number to each label ({', '.join(labels)}): "
                           + "; ".join(p for p in (f"missing {', '.join(missing)}" if missing else "",
                                                   f"not a label: {', '.join(unknown)}" if unknown else "") if p))
    return {l: mapped[l] for l in labels}


def _label_set(name: str, frames: dict[str, pd.DataFrame], labels) -> list[str]:
    """The classes: given (data.labels, a catalog's), else the training labels - refusing typos and strays."""
    if labels is None:
        pool = frames.get("train", frames.get("all"))
        counts = pool["label"].value_counts()
        rare = counts[counts < 2]
        if len(rare):
            raise FinpeftError(f"{name}: unknown label(s) {', '.join(map(repr, rare.index[:5]))} occur only once "
                               f"(a typo?); fix them, map them with data.label_map or fix the set with data.labels")
        stray = stray_labels(counts)
        if stray:
            shown = ", ".join(f"{l!r} ({counts[l]} rows)" for l in stray[:5])
            raise FinpeftError(f"{name}: label(s) {shown} are rare non-sentiment values next to sentiment labels; "
                               f"map them with data.label_map (e.g. '{{{stray[0]}: positive}}') or keep them as "
                               f"classes with data.labels")
        labels = sorted(counts.index)
    for split, f in frames.items():
        unknown = sorted(set(f["label"]) - set(labels))
        if unknown:
            raise FinpeftError(f"{name} ({split}): unknown label(s) {', '.join(map(repr, unknown[:5]))}; "
                               f"expected {', '.join(labels)} (map them with data.label_map)")
    return list(labels)


def label_problems(counts: pd.Series) -> list[str]:
    """What `train` would reject about an inferred label set (shared by `data check`, which only warns)."""
    problems = []
    values = [str(v) for v in counts.index]
    signed = "-1" in values and set(values) <= {"-1", "0", "1"}  # unambiguous: read as negative/neutral/positive
    if values and all(v.lstrip("-").isdigit() for v in values) and not signed:
        problems.append(f"labels are integer ids ({', '.join(sorted(values, key=int))}): name them with "
                        "data.label_map, e.g. '{0: negative, 1: positive, 2: neutral}'")
    once = [v for v, n in counts.items() if n < 2]
    if once:
        problems.append(f"label(s) {', '.join(map(repr, once[:5]))} occur only once (a typo?)")
    stray = [l for l in stray_labels(counts) if l not in once]
    if stray:
        problems.append(f"label(s) {', '.join(map(repr, stray[:5]))} are rare non-sentiment values next to "
                        "sentiment labels; map them with data.label_map or fix the set with data.labels")
    return problems



class Classification:
    name = "classification"
    select_metric, greater_is_better = "macro_f1", True
    classes = True
    output = "softmax"  # what predict_outputs applies to the logits
    metric_columns = ("accuracy", "macro_f1", "weighted_f1", "ece")
    board = (("accuracy", "accuracy"), ("macro_f1", "macro-F1"), ("weighted_f1", "weighted-F1"))  # leaderboards
    plot_metric = ("accuracy", "test accuracy")
    headline = ("accuracy", "macro_f1")  # the metrics of a one-line summary (bench progress, finpeft.summarise)
    summary_rows = 1  # how many of summary()'s lines finpeft.summarise shows (None: all)

    # data
    def read_labels(self, raw, frames: dict, cfg) -> dict:
        return normalise_frames(raw, cfg.label_map, frames)  # finpeft's label names (data.label_map, synonyms)

    def prepare(self, raw, frames: dict, cfg, notes: list[str]):
        names = {} if raw.labels else user_label_names(raw, frames)
        labels = _label_set(raw.name, frames, cfg.labels or raw.labels)
        return frames, labels, {l: n for l, n in names.items() if l in labels and n != l}

    def strata(self, labels: pd.Series):
        return None  # the labels themselves

    def check_train(self, train: pd.DataFrame, name: str) -> None:
        if train["label"].nunique() < 2:
            raise FinpeftError(f"{name}: the training set has a single class ({train['label'].iloc[0]!r}); "
                               "a classifier needs at least two")

    def doctor_split(self, df: pd.DataFrame, norm: pd.Series, empty: pd.Series, raw, label_map: dict):
        """`finpeft data check` of one split: class counts, conflicting labels, unknown labels, imbalance."""
        labels = df["label"].map(lambda v: normalise_label(v, label_map))
        counts = {k: int(v) for k, v in labels[~empty].value_counts().sort_index().items()}
        pairs = pd.DataFrame({"norm": norm, "label": labels[~empty]})
        warns = []
        conflicts = int((pairs.groupby("norm")["label"].nunique() > 1).sum())
        if conflicts:
            warns.append(f"{conflicts} text(s) appear with conflicting labels")
        unknown = sorted(set(counts) - set(raw.labels)) if raw.labels else []
        if unknown:
            warns.append(f"unknown label(s) {', '.join(unknown)}")
        if len(counts) == 1:
            warns.append(f"a single class ({next(iter(counts))})")
        elif counts and min(counts.values()) / max(counts.values()) < 0.1:
            warns.append(f"strong class imbalance (smallest/largest = {min(counts.values())}/{max(counts.values())})")
        return {"classes": counts}, warns, pairs.groupby("norm")["label"].first()

    def doctor_all(self, raw, label_map: dict) -> list[str]:
        """What training would reject about an inferred label set (a catalog's fixed set is not inferred)."""
        if raw.labels:
            return []
        counts = pd.concat([df["label"].map(lambda v: normalise_label(v, label_map))
                            for df in raw.frames.values() if "label" in df]).value_counts()
        out = label_problems(counts)
        if set(map(str, counts.index)) <= {"-1", "0", "1"} and "-1" in set(map(str, counts.index)):
            out.append("integer labels -1/0/1 are read as negative/neutral/positive; if they mean "
                       "something else, set data.label_map")
        return out

    def data_config(self, info: dict, cfg) -> dict:
        """data.* a saved run of this task reads other data with, where the user did not say."""
        return {}

    # training
    def targets(self, data) -> dict[str, int]:
        return {l: i for i, l in enumerate(data.labels)}

    def load_targets(self, info: dict) -> dict[str, int]:
        return {l: i for i, l in enumerate(info["labels"])}

    def gold(self, frame: pd.DataFrame, targets) -> np.ndarray:
        return np.array([targets[l] for l in frame["label"]])

    def check(self, data, recipe, method, say) -> dict:
        polarity = label_polarity(data.labels, recipe.data.label_polarity, recipe.data.label_map)
        if polarity is None:
            say(f"note: labels {', '.join(data.label_names.get(l, l) for l in data.labels)} have no known polarity: "
                "predictions carry score null (data.label_polarity='{up: 1, flat: 0, down: -1}' gives one)")
        return {"label_polarity": polarity or {}}

    def valid_metrics(self, targets):
        return eval_metrics

    def calibrate(self, targets, valid_outputs, frame):
        return targets  # nothing is chosen on valid after training

    def loss(self, logits, labels):
        import torch
        return torch.nn.functional.cross_entropy(logits, labels)

    def run_info(self, targets) -> dict:
        return {}

    # evaluation
    def evaluate(self, out, texts: list[str], labels: pd.Series, outputs: np.ndarray, info: dict,
                 context: dict) -> dict:
        return write_evaluation(out, texts, self.gold(pd.DataFrame({"label": labels}), self.load_targets(info)),
                                outputs, info["labels"], context)

    def summary(self, metrics: dict, seconds: float | None) -> list[str]:
        b = metrics["baseline"]
        return [f"test accuracy {metrics['accuracy']:.4f} | macro-F1 {metrics['macro_f1']:.4f} | weighted-F1 "
                f"{metrics['weighted_f1']:.4f} | ECE {metrics['ece']:.4f}"
                + ("" if seconds is None else f" | train {seconds:.0f}s"),
                f"majority-class baseline (always '{b['label']}'): accuracy {b['accuracy']:.4f} | macro-F1 "
                f"{b['macro_f1']:.4f}"] + [f"warning: {w}" for w in warnings_for(metrics)]

    # prediction
    def records(self, outputs: np.ndarray, run) -> list[dict]:
        scores = score(outputs, run.polarity, run.labels)
        names = run.display_labels
        return [{"label": names[int(p.argmax())], "probabilities": {l: round(float(v), 6) for l, v in zip(names, p)},
                 "score": None if np.isnan(s) else round(float(s), 6)} for p, s in zip(outputs, scores)]

    def columns(self, outputs: np.ndarray, filled: np.ndarray, run, existing) -> dict:
        out_col = "predicted_label" if "label" in existing else "label"  # never overwrite gold labels
        return {out_col: [run.display_labels[int(p.argmax())] if ok else "" for p, ok in zip(outputs, filled)],
                **{f"p_{l}": outputs[:, i].round(6) for i, l in enumerate(run.display_labels)},
                "score": score(outputs, run.polarity, run.labels).round(6)}

    def parity(self, ref: np.ndarray, got: np.ndarray, gold: pd.Series, info: dict) -> dict:
        ids = self.load_targets(info)
        known = gold.isin(ids).to_numpy()
        y = np.array([ids.get(l, -1) for l in gold])

        def acc(p):
            return round(float((p.argmax(1) == y)[known].mean()), 6) if known.any() else None
        return {"agreement": round(float((ref.argmax(1) == got.argmax(1)).mean()), 6) if len(ref) else 1.0,
                "max_abs_prob_diff": float(np.abs(ref - got).max()) if len(ref) else 0.0,
                "torch_accuracy": acc(ref), "onnx_accuracy": acc(got)}


def eval_metrics(pred) -> dict:
    """The Trainer's valid-split metrics: accuracy and macro-F1 of the argmax."""
    from sklearn.metrics import accuracy_score, f1_score
    y_pred = np.asarray(pred.predictions).argmax(-1)
    return {"accuracy": accuracy_score(pred.label_ids, y_pred),
            "macro_f1": f1_score(pred.label_ids, y_pred, average="macro")}


def score(probs: np.ndarray, polarity: dict | None, labels: list[str]) -> np.ndarray:
    """(n,) the sum of each class's probability x its polarity: P(positive) - P(negative) for sentiment;
    NaN (no score) where the classes have no polarity (run.json label_polarity, data.label_polarity)."""
    out = np.zeros(len(probs), dtype=np.float32)
    if not polarity:
        return out + np.float32("nan")
    col = {l: i for i, l in enumerate(labels)}
    for label, weight in polarity.items():  # -P(neg) + P(pos): bit for bit the old P(pos) - P(neg)
        if weight:
            out = out + np.float32(weight) * probs[:, col[label]].astype(np.float32)
    return out


TASK = Classification()
