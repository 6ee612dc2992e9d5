"""Single-task vs multi-task: the same recipe trained on each task alone and on all tasks mixed, scored on
the same test rows, in one table — negative transfer shows as a negative delta (FinLoRA's multi-task run lost
53 points on TFNS). Finished runs are kept, so an interrupted comparison resumes."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from finpeft.core.runs import write_atomic
from finpeft.llm.mixing import Mixing
from finpeft.llm.tasks import load_task
from finpeft.llm.train import LLMRecipe, train_llm



def _main_metric(metrics: dict) -> str:
    return "accuracy" if "accuracy" in metrics else next(k for k in ("rougeL", "token_f1", "exact_match")
                                                         if k in metrics)


def compare_single_multi(recipe: LLMRecipe, output: str | Path, echo=print) -> Path:
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    names = {t: load_task(t).name for t in recipe.tasks}  # a task given as a YAML path is keyed by its name
    plans = {f"single-{names[t]}": recipe.model_copy(update={"tasks": [t], "mixing": Mixing()})
             for t in recipe.tasks}
    plans["multi"] = recipe
    results = {}
    for name, r in plans.items():
        run = out / name
        wanted = yaml.safe_dump(r.model_dump(mode="json"), sort_keys=False)
        stale = (run / "recipe.yaml").is_file() and (run / "recipe.yaml").read_text(encoding="utf-8") != wanted
        if stale:
            echo(f"{name}: its recipe changed since it was trained; training it again")
        if stale or not (run / "metrics.json").is_file():
            echo(f"training {name} ({', '.join(r.tasks)})")
            train_llm(r, run, overwrite=True)
        results[name] = {"metrics": json.loads((run / "metrics.json").read_text(encoding="utf-8")),
                         "info": json.loads((run / "run.json").read_text(encoding="utf-8"))}
    multi = results["multi"]
    lines = [f"Backbone {recipe.backbone}, method {recipe.method.name} r={recipe.method.r}, seed {recipe.seed}, "
             f"mixing {recipe.mixing.strategy}; multi-task rows per task: {multi['info']['train_rows']}.", "",
             "| task | metric | single-task | multi-task | delta | weighted-F1 single / multi |",
             "|---|---|---|---|---|---|"]
    for t in names.values():
        s, m = results[f"single-{t}"]["metrics"][t], multi["metrics"][t]
        k = _main_metric(s)
        wf = f"{s['weighted_f1']:.4f} / {m['weighted_f1']:.4f}" if "weighted_f1" in s else "—"
        lines.append(f"| {t} | {k} | {s[k]:.4f} | {m[k]:.4f} | {m[k] - s[k]:+.4f} | {wf} |")
    secs = sum(results[f"single-{t}"]["info"]["train_seconds"] for t in names.values())
    lines += ["", f"Train time: single-task runs {secs:.0f} s in all, multi-task {multi['info']['train_seconds']:.0f} s."]
    write_atomic(out / "compare.md", "\n".join(lines) + "\n")
    write_atomic(out / "compare.json", json.dumps({k: v["metrics"] for k, v in results.items()}, indent=2))
    return out
