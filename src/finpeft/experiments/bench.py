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
import re
import sys
import time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finpeft.errors import FinpeftError
from finpeft.methods import checked_method
from finpeft.core.recipe import format_validation_error, load_recipe
from finpeft.core.runs import write_atomic
from finpeft.experiments.child import run_child as _run_child
from finpeft.tasks import TASKS, get_task
from finpeft.experiments.leaderboard import (COLUMNS, METRICS, RMETRICS, cell_metrics, publish,  # noqa: F401
                                            write_leaderboard)

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
                                "overrides": ov, "command": _train_command(grid, ov),
                                "dir": Path(slug(dataset_name(ds))) / slug(m.name) / f"{slug(Path(bb).name)}-s{seed}"})
    seen = set()
    for c in out:  # two grid backbones under a method that sets its own would train one model twice
        key = (c["dataset"], c["method"], c["backbone"], c["seed"])
        if key in seen:
            raise FinpeftError(f"grid: method {c['method']!r} sets model.backbone={c['backbone']}, so every grid "
                               "backbone gives the same cell; list one backbone or drop the override")
        seen.add(key)
    return out


def _train_command(grid: Grid, overrides: list[str]) -> str:
    """The `finpeft train` line a cell runs, without its seed (one command for every seed of the cell)."""
    import os
    import shlex
    recipe = [os.path.relpath(os.path.normpath(grid.recipe))] if grid.recipe else []
    return shlex.join(["finpeft", "train", *recipe, *(o for o in overrides if not o.startswith("seed="))])


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


def run_grid(grid_path: str | Path, output: str | Path | None = None, retry_failed: bool = False,
             echo=print, report_only: bool = False, progress=None, every: float = 60.0, engine: str = "local",
             address: str | None = None, cpus_per_cell: int = 1) -> Path:
    """Run every unfinished cell, then write the leaderboard (report_only: just write it from the cells
    finished so far; the others show as pending). `echo` gets one line per cell result; `progress` (default:
    stderr) a line when a cell starts and every `every` seconds while it trains. engine="ray": each cell is
    one Ray task (bench_ray.py) on a local Ray or the cluster at `address`, `cpus_per_cell` threads each."""
    if progress is None:
        def progress(msg: str) -> None:
            print(msg, file=sys.stderr, flush=True)
    if engine not in ("local", "ray"):
        raise FinpeftError(f"unknown engine {engine!r}: use local or ray")
    grid = load_grid(grid_path)
    todo = cells(grid)
    out = Path(output) if output else Path("runs") / f"bench-{Path(grid_path).stem}"
    command = f"finpeft bench {grid_path}" + (f" --output {output}" if output else "")
    failed_file = out / "failed.json"
    failed = json.loads(failed_file.read_text()) if failed_file.is_file() and not retry_failed else {}
    if report_only:
        if not out.is_dir():
            raise FinpeftError(f"--report-only: {out} does not exist (no cell has run)")
        write_leaderboard(out, grid, todo, failed, command)
        return out
    if engine == "ray":  # Ray missing or an address that does not answer: said before anything is written
        from finpeft.core.cluster import check_address, import_ray
        import_ray()
        if address:
            check_address(address)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    write_atomic(out / "grid.yaml", Path(grid_path).read_text(encoding="utf-8"))
    jobs = pending_jobs(grid, todo, out, failed, echo)

    def finished(job: dict, code: int, seconds: float) -> None:
        if code in (130, -2):  # Ctrl-C reached the child: stop the grid; the cell runs again on resume
            raise KeyboardInterrupt
        if code:
            log = job["log"]
            tail = [l for l in log.read_text(encoding="utf-8", errors="replace").splitlines() if l.strip()][-1:]
            failed[job["key"]] = {"exit_code": code, "last_line": tail[0] if tail else "", "log": str(log)}
            write_atomic(failed_file, json.dumps(failed, indent=2))
            echo(f"{job['tag']}: FAILED (exit {code}): {failed[job['key']]['last_line']} (log: {log})")
        else:
            m = cell_metrics(job["run_dir"], job["cell"])
            names = dict(get_task(m.get("task") if m.get("task") in TASKS else None).board)
            score = " | ".join(f"{names[k]} {m[k]:.4f}" for k in get_task(m.get("task") if m.get("task") in TASKS
                                                                       else None).headline)
            echo(f"{job['tag']}: {score} | {seconds:.0f} s")
        write_leaderboard(out, grid, todo, failed, command)

    if engine == "ray":
        from finpeft.experiments.bench_ray import run_on_ray
        run_on_ray(jobs, finished, progress, address=address, cpus_per_cell=cpus_per_cell, every=every)
    for job in jobs if engine == "local" else []:
        started = time.perf_counter()
        progress(f"{job['tag']}: started (log: {job['log']})")
        code = _run_child([sys.executable, *job["args"]], job["log"], lambda: progress(
            f"{job['tag']}: running {time.perf_counter() - started:.0f} s | {_last_line(job['log'])}"), every)
        finished(job, code, time.perf_counter() - started)
    write_leaderboard(out, grid, todo, failed, command)
    return out


def pending_jobs(grid: Grid, todo: list[dict], out: Path, failed: dict, echo) -> list[dict]:
    """The cells still to run, each {"tag", "key", "cell", "run_dir", "log", "args"} (args: after `python`)."""
    jobs = []
    for i, c in enumerate(todo, 1):
        run_dir, key = out / c["dir"], str(c["dir"])
        tag = f"[{i}/{len(todo)}] {c['dataset']} | {c['method']} | {c['backbone']} | seed {c['seed']}"
        if (run_dir / "metrics.json").is_file():
            continue
        if key in failed:
            echo(f"{tag}: failed before, skipped (--retry-failed to run it again)")
            continue
        if c.get("track") == "llm":
            args = ["-m", "finpeft.cli", "llm", "train", *c["overrides"], "--output", str(run_dir), "--overwrite"]
        else:
            args = ["-m", "finpeft.cli", "train", *([grid.recipe] if grid.recipe else []), *c["overrides"],
                    "train.progress_bar=false", f"results_csv={out / 'results.csv'}", "--output", str(run_dir),
                    "--overwrite"]
        jobs.append({"tag": tag, "key": key, "cell": c, "run_dir": run_dir, "log": out / "logs" / f"{slug(key)}.log",
                     "args": args})
    return jobs


def _last_line(log: Path) -> str:
    """The newest progress line of a cell's log (Trainer's loss / eval dicts or a [finpeft] line)."""
    try:
        lines = [l.strip() for l in log.read_text(encoding="utf-8", errors="replace").splitlines()
                 if l.strip().startswith(("{", "[finpeft]"))]
    except OSError:
        return ""
    return lines[-1][:160] if lines else "loading"
