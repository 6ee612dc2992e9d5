"""The bench leaderboard: the finished cells of a grid -> leaderboard.csv / .md (mean ± std over seeds), the
accuracy-vs-time and accuracy-vs-params plots, and its block in a markdown page (`--publish`)."""
from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pandas as pd

from finpeft.experiments.anchors import anchors_for
from finpeft.tasks import TASKS, get_task
from finpeft.core.runs import publish_block, write_atomic

# every task's leaderboard metrics (finpeft.tasks: Task.board), in registry order, each once
BOARD = {m: h for name in TASKS for m, h in get_task(name).board}
METRICS = ("accuracy", "macro_f1", "weighted_f1")
RMETRICS = tuple(m for m in BOARD if m not in METRICS)
COLUMNS = ("dataset", "method", "backbone", "seed", "task", *BOARD, "trainable_params", "train_seconds", "epochs_run",
           "peak_rss_mb", "peak_gpu_mb", "test_sentences_per_second", "status", "run_dir",
           "command")  # command: the cell's `finpeft train ...` without its seed (docs/results.md shows it)


def cell_metrics(run_dir: Path, cell: dict) -> dict:
    """A cell's metrics.json; an LLM run's holds one entry per task: the cell's task, with the run's train facts."""
    m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    if cell.get("track") != "llm":
        return m
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return {**m[cell["dataset"]], **{k: info.get(k) for k in ("train_seconds", "trainable_params")}}


def collect(out: Path, todo: list[dict], failed: dict) -> pd.DataFrame:
    rows = []
    for c in todo:
        run_dir, key = out / c["dir"], str(c["dir"])
        row = {k: c[k] for k in ("dataset", "method", "backbone", "seed")} | {"command": c.get("command")}
        if (run_dir / "metrics.json").is_file():
            m = cell_metrics(run_dir, c)
            row.update({k: m.get(k) for k in COLUMNS if k in m and k not in row}, status="done", run_dir=str(run_dir))
        else:
            row["status"] = "failed" if key in failed else "pending"
        rows.append(row)
    return pd.DataFrame(rows).reindex(columns=list(COLUMNS))


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    done = df[df.status == "done"].copy()
    if done.empty:
        return pd.DataFrame()
    for col in (*BOARD, "trainable_params", "train_seconds", "peak_rss_mb", "peak_gpu_mb",
                "test_sentences_per_second"):
        done[col] = pd.to_numeric(done[col], errors="coerce")
    done["task"] = done["task"].astype(object).fillna("classification")
    g = done.groupby(["dataset", "method", "backbone"], sort=False)
    s = g[list(BOARD)].agg(["mean", "std"])
    s.columns = [f"{m}_{a}" for m, a in s.columns]
    s = s.join(g.agg(seeds=("seed", "count"), task=("task", "first"), trainable_params=("trainable_params", "first"),
                     train_seconds=("train_seconds", "mean"), peak_rss_mb=("peak_rss_mb", "max"),
                     peak_gpu_mb=("peak_gpu_mb", "max"), infer=("test_sentences_per_second", "mean")))
    return s.reset_index()


def _pm(mean: float, std: float, n: int) -> str:
    return f"{mean:.4f}" if n < 2 or pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def render(grid, df: pd.DataFrame, s: pd.DataFrame, command: str) -> str:
    pending = int((df.status == "pending").sum())
    failed = int((df.status == "failed").sum())
    lines = ["# Leaderboard", "",
             f"Command: `{command}` ({date.today().isoformat()}). Test split of each dataset; seeds {grid.seeds}; "
             f"mean ± std over the seeds finished. Cells: {len(df)} ({int((df.status == 'done').sum())} done, "
             f"{pending} pending, {failed} failed).", ""]
    if s.empty:
        return "\n".join(lines + ["No cell has finished yet.", ""])
    gpu = s.peak_gpu_mb.notna().any()
    for ds in grid.datasets:
        part = s[s.dataset == ds]
        if not part.empty:
            lines += _table(ds, part, gpu)
    lines += ["![accuracy vs train time](accuracy_vs_time.png) ![accuracy vs trainable parameters]"
              "(accuracy_vs_params.png)", ""]
    return "\n".join(lines)


def _table(ds: str, part: pd.DataFrame, gpu: bool) -> list[str]:
    """A dataset's rows, best first by its task's first board metric, and its published anchors."""
    kind = get_task(part.task.iloc[0])
    board = kind.board
    part = part.sort_values(f"{board[0][0]}_mean", ascending=not kind.greater_is_better)
    lines = [f"## {ds}" + ("" if kind.name == "classification" else f" ({kind.name})"), "",
             "| method | backbone | seeds | " + " | ".join(h for _, h in board) + " | trainable params | train s | "
             "peak RSS MiB |" + (" peak GPU MiB |" if gpu else "") + " test sentences/s |",
             "|---|---|---|" + "---|" * len(board) + "---|---|---|" + ("---|" if gpu else "") + "---|"]
    for _, r in part.iterrows():
        n = int(r.seeds)
        cells = " | ".join(_pm(r[f"{m}_mean"], r[f"{m}_std"], n) for m, _ in board)
        lines.append(f"| {r.method} | {r.backbone} | {n} | {cells} | {int(r.trainable_params):,} | "
                     f"{r.train_seconds:.0f} | {r.peak_rss_mb:.0f} |" + (f" {r.peak_gpu_mb:.0f} |" if gpu else "")
                     + f" {r.infer:.0f} |")
    anchors = anchors_for(ds)
    if anchors:
        lines += ["", "Published anchors (not run here; each note says its split):", ""]
        lines += [f"- {a.system}: {dict(BOARD).get(a.metric, a.metric.replace('_', '-'))} {a.value:.4f}. "
                  f"{a.source}; {a.note}." for a in anchors]
    return lines + [""]


def plot(s: pd.DataFrame, x: str, xlabel: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = list(dict.fromkeys(s.dataset))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        part = s[s.dataset == ds]
        y, ylabel = get_task(part.task.iloc[0]).plot_metric  # accuracy; R² for a score (higher is better)
        for _, r in part.iterrows():
            ax.errorbar(max(r[x], 1e-3), r[f"{y}_mean"], yerr=0 if pd.isna(r[f"{y}_std"]) else r[f"{y}_std"],
                        marker="o", capsize=3, label=r.method if len(set(part.backbone)) == 1
                        else f"{r.method} / {r.backbone}")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(ds, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_leaderboard(out: Path, grid, todo: list[dict], failed: dict, command: str) -> None:
    df = collect(out, todo, failed)
    write_atomic(out / "leaderboard.csv", df.to_csv(index=False))
    s = summarise(df)
    write_atomic(out / "leaderboard.md", render(grid, df, s, command))
    if not s.empty:
        plot(s, "train_seconds", "train seconds (mean)", out / "accuracy_vs_time.png")
        plot(s, "trainable_params", "trainable parameters", out / "accuracy_vs_params.png")


def publish(out: Path, doc: Path, name: str = "leaderboard") -> None:
    """Put leaderboard.md (headings one level down) and its plots into a markdown doc, between
    <!-- NAME:start --> and <!-- NAME:end --> (appended when the markers are absent). NAME: the grid's file
    name, so several grids publish into one doc side by side."""
    import shutil
    body = (out / "leaderboard.md").read_text(encoding="utf-8")
    body = "\n".join("#" + l if l.startswith("#") else l for l in body.splitlines())
    for png in ("accuracy_vs_time.png", "accuracy_vs_params.png"):
        if (out / png).is_file():
            shutil.copyfile(out / png, doc.parent / f"{name}_{png}")
            body = body.replace(f"({png})", f"({name}_{png})")
    publish_block(doc, name, body)

