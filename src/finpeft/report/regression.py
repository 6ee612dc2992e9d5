"""The evaluation report of a regression run (a score per text): metrics.json, report.md, a predicted-vs-true
scatter plot and the largest errors. Written by training for its test split and by `finpeft evaluate`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

SIGN_BAND = 0.1  # |score| < 0.1 counts as neutral for the sign accuracy (FinGPT/FinLoRA's 3-class FiQA rule)


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


def write_regression_evaluation(out: Path, texts: list[str], y: np.ndarray, pred: np.ndarray, context: dict) -> dict:
    """Write metrics.json, report.md, scatter.png, largest_errors.csv into `out`; return the metrics record.
    context["train_mean"] (when known) gives the baseline that always answers the training mean."""
    out.mkdir(parents=True, exist_ok=True)
    metrics = regression_metrics(y, pred, context.get("train_mean"))
    record = {**context, "task": "regression", **metrics}
    (out / "metrics.json").write_text(json.dumps(record, indent=2), encoding="utf-8")
    title = f"{context.get('dataset')} {context.get('split')} — {context.get('method')} / {context.get('backbone')}"
    plot_scatter(y, pred, out / "scatter.png", f"{title}\nR² {metrics['r2']:.3f} · Pearson {metrics['pearson']:.3f}")
    err = np.abs(np.asarray(pred) - np.asarray(y))
    order = np.argsort(-err, kind="stable")[:200]
    pd.DataFrame({"text": [texts[i] for i in order], "score": np.asarray(y)[order].round(4),
                  "predicted": np.asarray(pred)[order].round(4), "abs_error": err[order].round(4)}).to_csv(
        out / "largest_errors.csv", index=False)
    (out / "report.md").write_text(render_regression_report(record), encoding="utf-8")
    return record


def plot_scatter(y: np.ndarray, pred: np.ndarray, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.scatter(y, pred, s=9, alpha=0.6)
    lo, hi = float(min(np.min(y), np.min(pred))), float(max(np.max(y), np.max(pred)))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="predicted = true")
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def regression_warnings(m: dict) -> list[str]:
    """One line for a model that does no better than always answering the training mean."""
    b = m.get("baseline")
    if b and m["mse"] >= b["mse"] * 0.98:
        return [f"MSE {m['mse']:.4f} does not clear the baseline that always answers the training mean "
                f"({b['value']:.3f}: MSE {b['mse']:.4f}): the model learned little"]
    return []


def summary_lines(m: dict, train_seconds: float | None = None) -> list[str]:
    took = f" | train {train_seconds:.0f}s" if train_seconds is not None else ""
    lines = [f"test MSE {m['mse']:.4f} | RMSE {m['rmse']:.4f} | MAE {m['mae']:.4f} | R² {m['r2']:.4f} | Pearson "
             f"{m['pearson']:.4f} | Spearman {m['spearman']:.4f} | sign accuracy {m['sign_accuracy']:.4f}{took}"]
    if m.get("baseline"):
        b = m["baseline"]
        lines.append(f"baseline (always the training mean {b['value']:.3f}): MSE {b['mse']:.4f} | R² {b['r2']:.4f}")
    return lines + [f"warning: {w}" for w in regression_warnings(m)]


def render_regression_report(r: dict) -> str:
    from finpeft.report.classification import report_head
    lines = report_head(r, ", regression")
    lines += ["", f"**MSE {r['mse']:.4f} · RMSE {r['rmse']:.4f} · MAE {r['mae']:.4f} · R² {r['r2']:.4f} · "
              f"Pearson {r['pearson']:.4f} · Spearman {r['spearman']:.4f}** on {r['n']} examples", "",
              f"Sign accuracy (negative < -0.1 <= neutral < 0.1 <= positive, on true and predicted scores): "
              f"{r['sign_accuracy']:.4f}."]
    if r.get("baseline"):
        b = r["baseline"]
        lines.append(f"Baseline that always answers the training mean ({b['value']:.3f}): MSE {b['mse']:.4f}, "
                     f"R² {b['r2']:.4f}.")
    lines += [f"**Warning:** {w}" for w in regression_warnings(r)]
    lines += ["", "![predicted vs true](scatter.png)", "",
              "The largest errors, worst first: `largest_errors.csv`."]
    lines += [f"- note: {note}" for note in r.get("notes", [])]
    return "\n".join(lines) + "\n"
