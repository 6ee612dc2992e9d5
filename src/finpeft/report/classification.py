"""Metrics and the evaluation report (metrics.json, report.md, confusion matrix, misclassified rows).

Written by training for its test split and by `finpeft evaluate` (inference/evaluate.py) for any labelled data."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


def expected_calibration_error(probs: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """Top-label ECE with equal-width confidence bins (Guo et al., 2017)."""
    conf = probs.max(1)
    correct = probs.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        in_bin = (conf > lo) & (conf <= hi)
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def classification_metrics(y: np.ndarray, probs: np.ndarray, labels: list[str]) -> dict:
    pred = probs.argmax(1)
    ids = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y, pred, labels=ids, zero_division=0)
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=ids, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(y, pred, labels=ids, average="weighted", zero_division=0)),
        "ece": expected_calibration_error(probs, y),
        "per_class": {l: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
                      for i, l in enumerate(labels)},
        "confusion_matrix": confusion_matrix(y, pred, labels=ids).tolist(),
        "n": int(len(y)),
        "baseline": majority_baseline(y, labels),
        "collapsed_classes": [l for i, l in enumerate(labels) if s[i] >= 10 and r[i] < 0.10],
    }


def majority_baseline(y: np.ndarray, labels: list[str]) -> dict:
    """What always answering the most frequent test label scores: the floor any model must clear."""
    counts = np.bincount(y, minlength=len(labels))
    top = int(counts.argmax())
    pred = np.full_like(y, top)
    ids = list(range(len(labels)))
    return {"label": labels[top], "accuracy": float(counts[top] / max(len(y), 1)),
            "macro_f1": float(f1_score(y, pred, labels=ids, average="macro", zero_division=0))}


def warnings_for(metrics: dict) -> list[str]:
    """One line each for a model that does not clear the majority baseline or whose class recall collapsed."""
    out = []
    b = metrics.get("baseline")
    if b and metrics["accuracy"] <= b["accuracy"] + 0.01:
        out.append(f"accuracy {metrics['accuracy']:.4f} does not clear the majority-class baseline "
                   f"{b['accuracy']:.4f} (always '{b['label']}'): the model learned little")
    for l in metrics.get("collapsed_classes", []):
        out.append(f"recall of class '{l}' is {metrics['per_class'][l]['recall']:.1%} (< 10 %): the model almost "
                   f"never predicts it (more epochs, a higher lr, or more rows of it may help)")
    return out


def plot_confusion(cm: list[list[int]], labels: list[str], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay
    fig, ax = plt.subplots(figsize=(1.6 + 1.1 * len(labels), 1.2 + 1.1 * len(labels)))
    ConfusionMatrixDisplay(np.array(cm), display_labels=labels).plot(ax=ax, colorbar=False, cmap="Blues")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_evaluation(out: Path, texts: list[str], y: np.ndarray, probs: np.ndarray, labels: list[str],
                     context: dict) -> dict:
    """Write metrics.json, report.md, confusion_matrix.png, misclassified.csv into `out`; return the metrics."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = classification_metrics(y, probs, labels)
    record = {**context, **metrics}
    (out / "metrics.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    title = f"{context.get('dataset')} {context.get('split')} — {context.get('method')} / {context.get('backbone')}"
    shown = [(context.get("label_names") or {}).get(l, l) for l in labels]  # the user's spelling, e.g. Bullish
    plot_confusion(metrics["confusion_matrix"], shown, out / "confusion_matrix.png", title)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    pd.DataFrame({"text": [texts[i] for i in wrong], "label": [shown[y[i]] for i in wrong],
                  "predicted": [shown[pred[i]] for i in wrong],
                  "confidence": probs[wrong, pred[wrong]].round(4)}).sort_values(
        "confidence", ascending=False).to_csv(out / "misclassified.csv", index=False)
    (out / "report.md").write_text(render_report(record, labels), encoding="utf-8")
    return record


def report_head(r: dict, kind: str = "") -> list[str]:
    """The title and the run's field | value table, shared by the classification and regression reports."""
    lines = [f"# finpeft evaluation: {r.get('dataset')} ({r.get('split')} split){kind}", "",
             "| field | value |", "|---|---|"]
    for key in ("dataset", "split", "method", "backbone", "seed", "command", "train_seconds",
                "train_samples_per_second", "trainable_params", "total_params", "data_source", "date"):
        if r.get(key) is not None:
            lines.append(f"| {key} | {r[key]} |")
    return lines


def render_report(r: dict, labels: list[str]) -> str:
    lines = report_head(r)
    lines += ["", f"**accuracy {r['accuracy']:.4f} · macro-F1 {r['macro_f1']:.4f} · weighted-F1 "
              f"{r['weighted_f1']:.4f} · ECE {r['ece']:.4f}** on {r['n']} examples"]
    if r.get("baseline"):
        b = r["baseline"]
        lines.append(f"Majority-class baseline (always '{b['label']}'): accuracy {b['accuracy']:.4f}, "
                     f"macro-F1 {b['macro_f1']:.4f}.")
    lines += [f"**Warning:** {w}" for w in warnings_for(r)]
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    names = r.get("label_names") or {}
    for l in labels:
        c = r["per_class"][l]
        lines.append(f"| {names.get(l, l)} | {c['precision']:.4f} | {c['recall']:.4f} | {c['f1']:.4f} | {c['support']} |")
    lines += ["", "Confusion matrix (rows = true, columns = predicted):", "",
              "| | " + " | ".join(names.get(l, l) for l in labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for l, row in zip(labels, r["confusion_matrix"]):
        lines.append(f"| **{names.get(l, l)}** | " + " | ".join(map(str, row)) + " |")
    lines += ["", "![confusion matrix](confusion_matrix.png)", "",
              "Misclassified examples, most confident first: `misclassified.csv`."]
    if r.get("per_dataset"):
        lines += ["", "Every training dataset's own test split (`data.mix`; details under eval/):", "",
                  "| dataset | n | accuracy | macro-F1 | weighted-F1 |", "|---|---|---|---|---|"]
        for name, m in r["per_dataset"].items():
            lines.append(f"| {name} | {m['n']} | {m['accuracy']:.4f} | {m['macro_f1']:.4f} | {m['weighted_f1']:.4f} |")
        lines.append("")
    for note in r.get("notes", []):
        lines.append(f"- note: {note}")
    return "\n".join(lines) + "\n"
