"""finpeft llm train / compare / evaluate / predict / merge."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from finpeft.errors import FinpeftError

from finpeft.cli.root import _recipe_and_overrides, llm_app


@llm_app.command("train")
def llm_train(
    recipe: Optional[str] = typer.Argument(None, help="LLM recipe YAML (default: smollm2-135m, LoRA, task fpb)."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value, e.g. tasks=[fpb,tfns] method=dora shots=3"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Run dir (default runs/llm-...-s<seed>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing run dir."),
):
    """LoRA / rsLoRA / DoRA / QLoRA (CUDA) instruction tuning on one or several mixed tasks (loss on answer tokens), then per-task test scores."""
    from finpeft import api
    recipe, items = _recipe_and_overrides(recipe, overrides)
    out = api.llm_train(recipe, items, output, overwrite=overwrite)
    typer.echo((out / "report.md").read_text(encoding="utf-8"))


@llm_app.command("compare")
def llm_compare(
    recipe: Optional[str] = typer.Argument(None, help="LLM recipe YAML with several tasks."),
    overrides: Optional[List[str]] = typer.Argument(None, help="key=value, e.g. tasks=[fpb,tfns,fiqa-sa] "
                                                    "mixing.strategy=balanced"),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the runs and compare.md (resumes)."),
):
    """Each task trained alone vs all tasks mixed: per-task scores side by side (negative transfer)."""
    from finpeft import api
    recipe, items = _recipe_and_overrides(recipe, overrides)
    out = api.llm_compare(recipe, items, output, echo=lambda m: typer.echo(f"[finpeft] {m}", err=True))
    typer.echo((out / "compare.md").read_text(encoding="utf-8"))


@llm_app.command("evaluate")
def llm_evaluate(
    run_dir: Optional[Path] = typer.Argument(None, help="An LLM run dir (omit to score the plain --backbone)."),
    task: Optional[List[str]] = typer.Option(None, "--task", help="Task name or YAML (repeatable; default: the "
                                             "run's tasks, or fpb)."),
    backbone: str = typer.Option("smollm2-135m", "--backbone", help="Without RUN_DIR: the untuned model to score."),
    shots: int = typer.Option(0, "--shots", min=0, help="Few-shot examples from the task's train split."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", min=1, help="Score the first N test rows."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=16, help="Prompt budget in tokens "
                                             "(default: the run's max_length, or 512)."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1, help="Free-text tasks "
                                                 "(default: the task's)."),
    sample: bool = typer.Option(False, "--sample", help="Free-text tasks: sample instead of greedy decoding."),
    seed: int = typer.Option(42, "--seed", help="Picks the few-shot examples (and seeds sampling)."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Also write the metrics to this JSON file."),
    calibrate: bool = typer.Option(False, "--calibrate", help="Divide out the label prior the model shows on "
                                   "content-free inputs (Zhao et al. 2021; classification tasks)."),
):
    """Zero-shot / few-shot / tuned scores on the tasks' test splits (label scoring or generation)."""
    from finpeft import api
    api.llm_evaluate(run_dir, task, backbone=backbone, shots=shots, max_samples=max_samples, max_length=max_length,
                 max_new_tokens=max_new_tokens, sample=sample, seed=seed, calibrate=calibrate, echo=typer.echo,
                 json_out=json_out)


@llm_app.command("predict")
def llm_predict(
    run_dirs: List[Path] = typer.Argument(..., help="LLM run dirs (adapters of one backbone), loaded once."),
    adapter: Optional[str] = typer.Option(None, "--adapter", help="Which adapter answers (a run dir's name; "
                                          "default the first; 'base' = no adapter)."),
    text: Optional[List[str]] = typer.Option(None, "--text", "-t", help="Text to answer (repeatable)."),
    input: Optional[Path] = typer.Option(None, "--input", "-i", help="CSV/JSONL file; an `adapter` column picks "
                                         "the adapter per row."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Where --input's predictions go (CSV)."),
    task: Optional[str] = typer.Option(None, "--task", help="Ask this task (name or YAML) instead of each "
                                       "adapter's first task; --input then needs the task's columns."),
    max_new_tokens: Optional[int] = typer.Option(None, "--max-new-tokens", min=1),
):
    """Answer with one of several adapters on one base, switched per request (or per row of --input)."""
    from finpeft import api
    if input and not input.is_file():
        raise FinpeftError(f"{input}: file not found")
    result = api.llm_predict(run_dirs, text or None, adapter=adapter, task=task, input=input, output=output,
                             max_new_tokens=max_new_tokens)
    if output:
        typer.echo(f"{len(result)} predictions -> {output}")
        return
    for _, r in result.iterrows():
        typer.echo(f"[{r['adapter']}] {r['prediction']}\t{r['input']}")


@llm_app.command("merge")
def llm_merge(
    run_dir: Path = typer.Argument(..., help="An LLM run dir (LoRA / rsLoRA / DoRA adapter)."),
    output: Path = typer.Option(..., "--output", "-o", help="Model dir to write (usable as backbone=...)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing dir."),
):
    """Fold the adapter into the base weights: a standalone transformers model (safetensors)."""
    from finpeft import api
    typer.echo(f"merged model -> {api.llm_merge(run_dir, output, overwrite=overwrite)}")
