"""`finpeft ablate`: sweep one recipe key over values x seeds, then a CSV, a mean ± std table and a plot.

Finished runs are kept and skipped on a re-run, so an interrupted sweep continues where it stopped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from finpeft.errors import FinpeftError
from finpeft.core.recipe import load_recipe, parse_override
from finpeft.core.runs import write_atomic

METRICS = ("accuracy", "macro_f1")


def parse_param(spec: str) -> tuple[str, list[str]]:
    """"method.num_adapter_layers=1,2,4" -> ("method.num_adapter_layers", ["1", "2", "4"])."""
    if "=" not in spec:
        raise FinpeftError(f"--param {spec!r} must look like key=v1,v2,... (e.g. method.num_adapter_layers=1,2,4)")
    key, raw = spec.split("=", 1)
    values = [v.strip() for v in raw.split(",") if v.strip()]
    if not key.strip() or not values:
        raise FinpeftError(f"--param {spec!r} needs a key and at least one value")
    return key.strip(), values


def ablate(recipe_path: str | None, overrides: list[str], param: str, n_seeds: int = 3,
           output: str | Path | None = None, command: str | None = None, report_only: bool = False) -> Path:
    """report_only: write the table and plot from the runs finished so far, training nothing."""
    from finpeft.inference.predictor import Predictor
    from finpeft.training.classifier import train
    key, values = parse_param(param)
    base = load_recipe(recipe_path, overrides)
    from finpeft.data.catalog import task_of
    if (task := task_of(base.data)) != "classification":
        raise FinpeftError(f"finpeft ablate tabulates accuracy and macro-F1: a {task} recipe is not supported yet; compare {task} set-ups "
                           "with finpeft bench (it reports each task's metrics)")
    seeds = [base.seed + i for i in range(n_seeds)]
    # Validate every point of the grid before the first (long) run starts.
    grid = [(v, s, load_recipe(recipe_path, [*overrides, f"{key}={v}", f"seed={s}"])) for v in values for s in seeds]
    field = parse_override(f"{key}=0")[0][-1]
    out = Path(output) if output else Path("runs") / f"ablate-{base.method.name}-{field}"
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for value, seed, recipe in grid:
        run_dir = out / f"{field}={value}-s{seed}"
        if not (run_dir / "metrics.json").is_file():
            if report_only:
                continue
            recipe = recipe.model_copy(update={"results_csv": str(out / "results.csv")})
            train(recipe, output=run_dir, overwrite=run_dir.exists(), command=command, load_teacher=Predictor)
        m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        rows.append({key: value, "seed": seed, **{k: m[k] for k in METRICS}, "train_seconds": m.get("train_seconds"),
                     "trainable_params": m.get("trainable_params"), "run_dir": str(run_dir)})
    if not rows:
        raise FinpeftError(f"{out}: no finished run to report yet")
    df = pd.DataFrame(rows)
    values = [v for v in values if v in set(df[key])]
    write_atomic(out / "ablation.csv", df.to_csv(index=False))
    summary = summarise(df, key, values)
    write_atomic(out / "ablation.md", render(summary, key, base, seeds, command))
    plot(summary, key, out / "ablation.png", f"{base.data.dataset} test, {base.method.name}, seeds {seeds}")
    return out


def summarise(df: pd.DataFrame, key: str, values: list[str]) -> pd.DataFrame:
    g = df.groupby(key, sort=False)
    s = g[list(METRICS)].agg(["mean", "std"])
    s.columns = [f"{m}_{a}" for m, a in s.columns]
    s["train_seconds"] = g["train_seconds"].mean()
    s["trainable_params"] = g["trainable_params"].first()
    s["seeds"] = g.size()
    return s.reindex(values).fillna({f"{m}_std": 0.0 for m in METRICS})


def render(s: pd.DataFrame, key: str, base, seeds: list[int], command: str | None) -> str:
    lines = [f"# Ablation of `{key}`", "",
             f"{base.method.name} on {base.data.dataset} (test split), backbone {base.model.backbone}, seeds {seeds}."
             + (f" Command: `{command}`" if command else ""), "",
             f"| {key} | seeds | accuracy | macro-F1 | trainable params | train s |", "|---|---|---|---|---|---|"]
    for v, r in s.iterrows():
        lines.append(f"| {v} | {int(r.seeds)} | {r.accuracy_mean:.4f} ± {r.accuracy_std:.4f} | {r.macro_f1_mean:.4f} ± "
                     f"{r.macro_f1_std:.4f} | {int(r.trainable_params):,} | {r.train_seconds:.1f} |")
    return "\n".join(lines + ["", "![ablation](ablation.png)", ""])


def plot(s: pd.DataFrame, key: str, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    numeric = pd.to_numeric(pd.Series(s.index), errors="coerce")
    x = numeric.to_numpy() if numeric.notna().all() else np.arange(len(s))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for m, label in (("accuracy", "accuracy"), ("macro_f1", "macro-F1")):
        ax.errorbar(x, s[f"{m}_mean"], yerr=s[f"{m}_std"], marker="o", capsize=3, label=label)
    if numeric.notna().all() and len(x) > 2 and x.max() / max(x.min(), 1e-9) > 8:
        ax.set_xscale("log", base=2)
    ax.set_xticks(x, [str(v) for v in s.index])
    ax.set_xlabel(key)
    ax.set_ylabel("test score (mean ± std)")
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
