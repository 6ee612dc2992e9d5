"""docs/results.md: one page with the headline result per dataset - the most accurate model and the fastest to
train, each with its metric (mean ± std over seeds), train time and the command that trains it - beside the
published anchors. Built by `finpeft results` from bench outputs, never copied by hand.

Sources: bench output dirs (their leaderboard.csv, one row per cell) or a summary CSV this command wrote before
(`results.csv` beside the page: one row per dataset / method / backbone). The summary is rewritten with every
source merged (a bench dir's rows replace the summary's rows of the same dataset / method / backbone), so the
page can be rebuilt from what is committed and grows as grids are run.
"""
from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd

from finpeft.core.runs import write_atomic
from finpeft.errors import FinpeftError
from finpeft.experiments.anchors import anchors_for
from finpeft.experiments.leaderboard import BOARD, summarise
from finpeft.tasks import get_task

KEY = ["dataset", "method", "backbone"]


def _read(source: Path) -> pd.DataFrame:
    """A source's rows, summarised (mean / std per dataset, method, backbone), with where they came from."""
    path = source / "leaderboard.csv" if source.is_dir() else source
    if not path.is_file():
        raise FinpeftError(f"{source}: not a bench output dir (no leaderboard.csv) nor a results CSV")
    df = pd.read_csv(path)
    if "seeds" in df.columns:  # a summary written by this command
        return df
    if not {"dataset", "method", "backbone", "status"} <= set(df.columns):
        raise FinpeftError(f"{path}: not a bench leaderboard (columns dataset, method, backbone, status)")
    s = summarise(df)
    if s.empty:
        return s
    commands = df[df.status == "done"].groupby(KEY, sort=False)["command"].first() if "command" in df else None
    s["command"] = [None if commands is None else commands.get(tuple(r[k] for k in KEY)) for _, r in s.iterrows()]
    s["source"] = str(source)
    s["date"] = date.fromtimestamp(path.stat().st_mtime).isoformat()
    return s


def merge(sources: list[Path]) -> pd.DataFrame:
    parts = [p for p in (_read(Path(s)) for s in sources) if not p.empty]
    if not parts:
        raise FinpeftError("no finished bench cell in the sources")
    return pd.concat(parts, ignore_index=True).drop_duplicates(KEY, keep="last").reset_index(drop=True)


def _cell(r, metric: str) -> str:
    n = int(r.seeds)
    mean, std = r[f"{metric}_mean"], r[f"{metric}_std"]
    return f"{mean:.4f}" if n < 2 or pd.isna(std) else f"{mean:.4f} ± {std:.4f}"


def _model(r) -> str:
    return f"{r.method} / {r.backbone}"


def render(s: pd.DataFrame, command: str) -> str:
    lines = ["# Results", "",
             f"The headline result per dataset, built by `{command}` ({date.today().isoformat()}) from bench outputs "
             "(do not edit by hand). Test split of each dataset, mean ± std over the seeds; train seconds on the "
             "machine the grid ran on (the 2-core CPU unless its row in [benchmarks.md](benchmarks.md) says "
             "otherwise; the cell's command says its threads). Train seconds are the training itself: a method over "
             "the frozen encoder's cached states (mamba-adapter and the other frozen heads) also pays, once per "
             "dataset and backbone, the encoding of the texts into the feature cache. The lab notebook with every "
             "experiment: [benchmarks.md](benchmarks.md).", "",
             "| dataset | task | metric | most accurate | | train s | fastest to train | | train s | published |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    details = []
    for ds in dict.fromkeys(s.dataset):
        part = s[s.dataset == ds]
        kind = get_task(part.task.iloc[0] if "task" in part and pd.notna(part.task.iloc[0]) else None)
        metric = kind.board[0][0]
        ranked = part.sort_values([f"{metric}_mean", "train_seconds"], ascending=[not kind.greater_is_better, True],
                                  kind="stable")  # a tie: the faster one
        best, fast = ranked.iloc[0], part.sort_values("train_seconds", kind="stable").iloc[0]
        anchors = "; ".join(f"{a.system} {a.value:.3f}" for a in anchors_for(ds) if a.metric == metric) or "—"
        lines.append(f"| {ds} | {kind.name} | {BOARD[metric]} | {_model(best)} | {_cell(best, metric)} | "
                     f"{best.train_seconds:.0f} | {_model(fast)} | {_cell(fast, metric)} | {fast.train_seconds:.0f} | "
                     f"{anchors} |")
        details += [f"## {ds}", "", f"{len(part)} set-up{'s' if len(part) > 1 else ''} compared ({', '.join(sorted(set(part.source)))}); "
                    f"the most accurate, then the fastest:", ""]
        for r in ([best] if best.equals(fast) else [best, fast]):
            details.append(f"- {_model(r)}: {BOARD[metric]} {_cell(r, metric)} over {int(r.seeds)} seed(s), "
                           f"{r.train_seconds:.0f} s, {int(r.trainable_params):,} trainable parameters; "
                           + (f"`{r.command} seed=S`" if isinstance(r.command, str) else "command: see the source"))
        details += [f"- published (not run here): {a.system}: {BOARD.get(a.metric, a.metric)} {a.value:.4f}. "
                    f"{a.source}; {a.note}." for a in anchors_for(ds)] + [""]
    return "\n".join(lines + [""] + details)


def write_results(sources: list[str | Path], output: str | Path, command: str | None = None) -> Path:
    """Merge the sources, write `output` (the page) and results.csv beside it (the merged summary, itself a
    source next time); returns the page."""
    output = Path(output)
    if not output.parent.is_dir():
        raise FinpeftError(f"{output}: folder {output.parent} does not exist")
    s = merge([Path(p) for p in sources])
    command = command or "finpeft results " + " ".join(map(str, sources)) + f" --output {output}"
    write_atomic(output.with_suffix(".csv"), s.to_csv(index=False))
    write_atomic(output, render(s, command))
    return output
