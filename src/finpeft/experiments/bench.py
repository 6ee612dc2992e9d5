"""`finpeft bench GRID.yaml`: datasets x methods x backbones x seeds -> leaderboard.csv / .md / plots.

Every cell is one `finpeft train` in a child process, so its peak memory is its own and a failing cell does not
stop the grid. A cell whose run dir holds metrics.json is finished: an interrupted grid resumes where it
stopped. The leaderboard is rewritten after every cell.

Grid file:

    recipe: null                 # optional base recipe (path relative to the grid file)
    overrides: [train.report_to=[]]
    datasets: [fpb, tfns, fiqa-sa]
    backbones: [minilm-l6]
    seeds: [42, 43, 44]
    methods:                     # a method name, or {name: LABEL, overrides: [method=..., ...]}
      - full
      - lora
      - {name: "mamba-adapter (no gate)", overrides: [method=mamba-adapter, method.gate=false]}
      - {name: "smollm2 lora", track: llm, overrides: [train.epochs=1]}   # an LLM run: `finpeft llm train`

An `llm` entry trains `finpeft llm train tasks=[DATASET] seed=S` + its own overrides (LLM recipe keys; the grid's
`overrides` and `backbones` are the classifier's and do not apply); its row is that task's test scores.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finpeft.experiments.anchors import anchors_for
from finpeft.errors import FinpeftError
from finpeft.methods import checked_method
from finpeft.core.recipe import format_validation_error, load_recipe
from finpeft.core.runs import publish_block, write_atomic

METRICS = ("accuracy", "macro_f1", "weighted_f1")
RMETRICS = ("mse", "rmse", "r2", "pearson", "spearman", "sign_accuracy")  # regression datasets (fiqa-sa-score)
COLUMNS = ("dataset", "method", "backbone", "seed", "task", *METRICS, *RMETRICS, "trainable_params", "train_seconds", "epochs_run",
           "peak_rss_mb", "peak_gpu_mb", "test_sentences_per_second", "status", "run_dir")


class MethodEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    overrides: list[str] = Field(default_factory=list)
    track: Literal["classifier", "llm"] = "classifier"


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    recipe: str | None = None
    overrides: list[str] = Field(default_factory=list)
    datasets: list[str] = Field(min_length=1)
    methods: list[MethodEntry] = Field(min_length=1)
    backbones: list[str] = Field(default_factory=lambda: ["minilm-l6"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [42, 43, 44], min_length=1)

    @field_validator("methods", mode="before")
    @classmethod
    def _plain_names(cls, v):  # "lora" is short for {name: lora, overrides: [method=lora]}
        if not isinstance(v, list):
            return v
        return [{"name": m, "overrides": [f"method={m}"]} if isinstance(m, str) else m for m in v]


def load_grid(path: str | Path) -> Grid:
    p = Path(path)
    if not p.is_file():
        raise FinpeftError(f"grid {p} not found")
    try:
        tree = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        grid = Grid.model_validate(tree)
    except yaml.YAMLError as e:
        raise FinpeftError(f"grid {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    except ValidationError as e:
        raise FinpeftError(f"grid {p}: {format_validation_error(e)}") from None
    if grid.recipe and not Path(grid.recipe).is_absolute():
        grid.recipe = str(p.parent / grid.recipe)
    labels = [m.name for m in grid.methods]
    if len(set(labels)) != len(labels):
        raise FinpeftError(f"grid {p}: method names must be unique (got {labels})")
    return grid


def dataset_name(ds: str) -> str:
    """A catalog id as it is; a file or folder by its own name (my_tweets.csv -> my_tweets), not its path."""
    p = Path(ds)
    return p.stem if p.suffix else p.name if ("/" in ds or p.exists()) else ds


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def cells(grid: Grid) -> list[dict]:
    """Every (dataset, method, backbone, seed) with its overrides, validated before anything runs."""
    out = []
    for ds in grid.datasets:
        for m in grid.methods:
            if m.track == "llm":
                out += _llm_cells(ds, m, grid.seeds)
                continue
            for bb in grid.backbones:
                for seed in grid.seeds:
                    ov = [*grid.overrides, f"data.dataset={ds}", f"model.backbone={bb}", *m.overrides,
                          f"seed={seed}"]
                    try:
                        recipe = load_recipe(grid.recipe, ov)
                        checked_method(recipe.method)
                    except FinpeftError as e:
                        raise FinpeftError(f"cell {ds} / {m.name} / {bb} / seed {seed}: {e}") from None
                    # label with the backbone the cell really trains (a method entry may override it); the
                    # directory keeps the grid's name so finished cells are still found on resume
                    out.append({"dataset": ds, "method": m.name, "backbone": recipe.model.backbone, "seed": seed,
                                "overrides": ov,
                                "dir": Path(slug(dataset_name(ds))) / slug(m.name) / f"{slug(Path(bb).name)}-s{seed}"})
    seen = set()
    for c in out:  # two grid backbones under a method that sets its own would train one model twice
        key = (c["dataset"], c["method"], c["backbone"], c["seed"])
        if key in seen:
            raise FinpeftError(f"grid: method {c['method']!r} sets model.backbone={c['backbone']}, so every grid "
                               "backbone gives the same cell; list one backbone or drop the override")
        seen.add(key)
    return out


def _llm_cells(ds: str, m: MethodEntry, seeds: list[int]) -> list[dict]:
    from finpeft.llm.train import load_llm_recipe
    out = []
    for seed in seeds:
        ov = [f"tasks=[{ds}]", *m.overrides, f"seed={seed}"]
        try:
            recipe = load_llm_recipe(None, ov)
        except FinpeftError as e:
            raise FinpeftError(f"cell {ds} / {m.name} (llm) / seed {seed}: {e}") from None
        out.append({"dataset": ds, "method": m.name, "backbone": recipe.backbone, "seed": seed, "overrides": ov,
                    "track": "llm", "dir": Path(slug(ds)) / slug(m.name) / f"{slug(Path(recipe.backbone).name)}-s{seed}"})
    return out


def cell_metrics(run_dir: Path, cell: dict) -> dict:
    """A cell's metrics.json; an LLM run's holds one entry per task: the cell's task, with the run's train facts."""
    m = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    if cell.get("track") != "llm":
        return m
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    return {**m[cell["dataset"]], **{k: info.get(k) for k in ("train_seconds", "trainable_params")}}


def run_grid(grid_path: str | Path, output: str | Path | None = None, retry_failed: bool = False,
             echo=print, report_only: bool = False, progress=None, every: float = 60.0) -> Path:
    """Run every unfinished cell, then write the leaderboard (report_only: just write it from the cells
    finished so far; the others show as pending). `echo` gets one line per cell result; `progress` (default:
    stderr) a line when a cell starts and every `every` seconds while it trains."""
    if progress is None:
        def progress(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)
    grid = load_grid(grid_path)
    todo = cells(grid)
    out = Path(output) if output else Path("runs") / f"bench-{Path(grid_path).stem}"
    if not report_only:
        (out / "logs").mkdir(parents=True, exist_ok=True)
        write_atomic(out / "grid.yaml", Path(grid_path).read_text(encoding="utf-8"))
    failed_file = out / "failed.json"
    failed = json.loads(failed_file.read_text()) if failed_file.is_file() and not retry_failed else {}
    command = f"finpeft bench {grid_path}" + (f" --output {output}" if output else "")
    if report_only:
        if not out.is_dir():
            raise FinpeftError(f"--report-only: {out} does not exist (no cell has run)")
        write_leaderboard(out, grid, todo, failed, command)
        return out
    for i, c in enumerate(todo, 1):
        run_dir, key = out / c["dir"], str(c["dir"])
        tag = f"[{i}/{len(todo)}] {c['dataset']} | {c['method']} | {c['backbone']} | seed {c['seed']}"
        if (run_dir / "metrics.json").is_file():
            continue
        if key in failed:
            echo(f"{tag}: failed before, skipped (--retry-failed to run it again)")
            continue
        log = out / "logs" / f"{slug(key)}.log"
        if c.get("track") == "llm":
            cmd = [sys.executable, "-m", "finpeft.cli", "llm", "train", *c["overrides"], "--output", str(run_dir),
                   "--overwrite"]
        else:
            cmd = [sys.executable, "-m", "finpeft.cli", "train", *([grid.recipe] if grid.recipe else []),
                   *c["overrides"], "train.progress_bar=false", f"results_csv={out / 'results.csv'}", "--output",
                   str(run_dir), "--overwrite"]
        started = time.perf_counter()
        progress(f"{tag}: started (log: {log})")
        code = _run_child(cmd, log, lambda: progress(f"{tag}: running {time.perf_counter() - started:.0f} s | "
                                                       f"{_last_line(log)}"), every)
        if code in (130, -2):  # Ctrl-C reached the child: stop the grid; the cell runs again on resume
            raise KeyboardInterrupt
        if code:
            tail = [l for l in log.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()][-1:]
            failed[key] = {"exit_code": code, "last_line": tail[0] if tail else "", "log": str(log)}
            write_atomic(failed_file, json.dumps(failed, indent=2))
            echo(f"{tag}: FAILED (exit {code}): {failed[key]['last_line']} (log: {log})")
        else:
            m = cell_metrics(run_dir, c)
            score = (f"MSE {m['mse']:.4f} | R² {m['r2']:.4f}" if m.get("task") == "regression" else
                     f"accuracy {m['accuracy']:.4f} | macro-F1 {m['macro_f1']:.4f}")
            echo(f"{tag}: {score} | {time.perf_counter() - started:.0f} s")
        write_leaderboard(out, grid, todo, failed, command)
    write_leaderboard(out, grid, todo, failed, command)
    return out


def _last_line(log: Path) -> str:
    """The newest progress line of a cell's log (Trainer's loss / eval dicts or a [finpeft] line)."""
    try:
        lines = [l.strip() for l in log.read_text(encoding="utf-8", errors="replace").splitlines()
                 if l.strip().startswith(("{", "[finpeft]"))]
    except OSError:
        return ""
    return lines[-1][:160] if lines else "loading"


def _run_child(cmd: list[str], log: Path, heartbeat=lambda: None, every: float = 60.0) -> int:
    """Run one cell, calling `heartbeat` every `every` seconds while it runs; if the grid itself is stopped
    (Ctrl-C, or `kill` = SIGTERM) the cell is stopped too, never left training as an orphan."""
    def stop(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        with open(log, "w", encoding="utf-8") as f:
            proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=os.environ.copy())
            try:
                while True:
                    try:
                        return proc.wait(timeout=every)
                    except subprocess.TimeoutExpired:
                        heartbeat()
            except BaseException:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def collect(out: Path, todo: list[dict], failed: dict) -> pd.DataFrame:
    rows = []
    for c in todo:
        run_dir, key = out / c["dir"], str(c["dir"])
        row = {k: c[k] for k in ("dataset", "method", "backbone", "seed")}
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
    for col in (*METRICS, *RMETRICS, "trainable_params", "train_seconds", "peak_rss_mb", "peak_gpu_mb",
                "test_sentences_per_second"):
        done[col] = pd.to_numeric(done[col], errors="coerce")
    done["task"] = done["task"].astype(object).fillna("classification")
    g = done.groupby(["dataset", "method", "backbone"], sort=False)
    s = g[list(METRICS + RMETRICS)].agg(["mean", "std"])
    s.columns = [f"{m}_{a}" for m, a in s.columns]
    s = s.join(g.agg(seeds=("seed", "count"), task=("task", "first"), trainable_params=("trainable_params", "first"),
                     train_seconds=("train_seconds", "mean"), peak_rss_mb=("peak_rss_mb", "max"),
                     peak_gpu_mb=("peak_gpu_mb", "max"), infer=("test_sentences_per_second", "mean")))
    return s.reset_index()


def _pm(mean: float, std: float, n: int) -> str:
    return f"{mean:.4f}" if n < 2 or pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def render(grid: Grid, df: pd.DataFrame, s: pd.DataFrame, command: str) -> str:
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
        part = s[s.dataset == ds].sort_values("accuracy_mean", ascending=False)
        if part.empty:
            continue
        if (part.task == "regression").any():
            lines += _regression_table(ds, part.sort_values("mse_mean"), gpu)
            continue
        lines += [f"## {ds}", "",
                  "| method | backbone | seeds | accuracy | macro-F1 | weighted-F1 | trainable params | train s | "
                  "peak RSS MiB |" + (" peak GPU MiB |" if gpu else "") + " test sentences/s |",
                  "|---|---|---|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|"]
        for _, r in part.iterrows():
            n = int(r.seeds)
            lines.append(f"| {r.method} | {r.backbone} | {n} | {_pm(r.accuracy_mean, r.accuracy_std, n)} | "
                         f"{_pm(r.macro_f1_mean, r.macro_f1_std, n)} | {_pm(r.weighted_f1_mean, r.weighted_f1_std, n)} | "
                         f"{int(r.trainable_params):,} | {r.train_seconds:.0f} | {r.peak_rss_mb:.0f} |"
                         + (f" {r.peak_gpu_mb:.0f} |" if gpu else "") + f" {r.infer:.0f} |")
        anchors = anchors_for(ds)
        if anchors:
            lines += ["", "Published anchors (not run here):", ""]
            lines += [f"- {a.system}: {a.metric.replace('_', '-')} {a.value:.4f}. {a.source}; {a.note}."
                      for a in anchors]
        lines.append("")
    lines += ["![accuracy vs train time](accuracy_vs_time.png) ![accuracy vs trainable parameters]"
              "(accuracy_vs_params.png)", ""]
    return "\n".join(lines)


def _regression_table(ds: str, part: pd.DataFrame, gpu: bool) -> list[str]:
    """A regression dataset's rows (best MSE first) and its published anchors."""
    lines = [f"## {ds} (regression)", "",
             "| method | backbone | seeds | MSE | RMSE | R² | Pearson | Spearman | sign accuracy | trainable params | "
             "train s | peak RSS MiB |" + (" peak GPU MiB |" if gpu else "") + " test sentences/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if gpu else "") + "---|"]
    for _, r in part.iterrows():
        n = int(r.seeds)
        cells = " | ".join(_pm(r[f"{m}_mean"], r[f"{m}_std"], n) for m in RMETRICS)
        lines.append(f"| {r.method} | {r.backbone} | {n} | {cells} | {int(r.trainable_params):,} | "
                     f"{r.train_seconds:.0f} | {r.peak_rss_mb:.0f} |" + (f" {r.peak_gpu_mb:.0f} |" if gpu else "")
                     + f" {r.infer:.0f} |")
    anchors = anchors_for(ds)
    if anchors:
        lines += ["", "Published results (not run here; other splits, see each note):", ""]
        lines += [f"- {a.system}: {a.metric.upper() if a.metric == 'mse' else a.metric.replace('r2', 'R²')} "
                  f"{a.value:.2f}. {a.source}; {a.note}." for a in anchors]
    return lines + [""]


def plot(s: pd.DataFrame, x: str, xlabel: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = list(dict.fromkeys(s.dataset))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    for ax, ds in zip(axes[0], datasets):
        part = s[s.dataset == ds]
        y = "r2" if (part.task == "regression").any() else "accuracy"  # a regression dataset: R² (higher is better)
        for _, r in part.iterrows():
            ax.errorbar(max(r[x], 1e-3), r[f"{y}_mean"], yerr=0 if pd.isna(r[f"{y}_std"]) else r[f"{y}_std"],
                        marker="o", capsize=3, label=r.method if len(set(part.backbone)) == 1
                        else f"{r.method} / {r.backbone}")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test R²" if y == "r2" else "test accuracy")
        ax.set_title(ds, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_leaderboard(out: Path, grid: Grid, todo: list[dict], failed: dict, command: str) -> None:
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

