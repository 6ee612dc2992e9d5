"""`finpeft llm evaluate`: an LLM run (or a plain backbone) scored on tasks' test splits, zero- or few-shot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

from finpeft.errors import FinpeftError


def evaluate_llm(run_dir=None, tasks: Sequence[str] | None = None, *, backbone: str = "smollm2-135m", shots: int = 0,
                 max_samples: int | None = None, max_length: int | None = None, max_new_tokens: int | None = None,
                 sample: bool = False, seed: int = 42, calibrate: bool = False, echo: Callable | None = None,
                 json_out: str | Path | None = None) -> dict:
    """{task: metrics}. Tasks default to the run's own (else fpb); classification tasks are scored by constrained
    label scoring (optionally calibrated: the label prior on content-free inputs divided out, Zhao et al. 2021),
    the others by generation (greedy unless `sample`)."""
    from transformers import set_seed
    from finpeft.llm.data import task_splits
    from finpeft.llm.generate import GenerationSettings
    from finpeft.llm.tasks import Task, load_task
    from finpeft.llm.train import evaluate_task, headline, load_backbone, load_llm_run, pick_shots, read_llm_run
    info = read_llm_run(run_dir) if run_dir else {}
    chosen = [load_task(t) for t in tasks] if tasks else [Task.model_validate(t) for t in info.get("tasks", [])] \
        or [load_task("fpb")]
    max_length = max_length or info.get("max_length", 512)
    if calibrate and not any(t.is_classification for t in chosen):
        raise FinpeftError("--calibrate is for tasks with choices (classification); "
                           f"{', '.join(t.name for t in chosen)} generate free text")
    splits = {t.name: task_splits(t) for t in chosen}  # data problems surface before the model loads
    tok, model = (load_llm_run(run_dir)[:2]) if run_dir else load_backbone(backbone)
    generation = GenerationSettings(max_new_tokens=max_new_tokens, do_sample=sample)
    results = {}
    for t in chosen:
        set_seed(seed)
        test = splits[t.name].test.iloc[:max_samples] if max_samples else splits[t.name].test
        _, results[t.name] = evaluate_task(model, tok, t, test, pick_shots(splits[t.name].train, t, shots, seed),
                                           max_length, generation, calibrate=calibrate)
        if echo:
            tag = ", calibrated" if calibrate and t.is_classification else ""
            echo(f"{t.name} (test, n={results[t.name]['n']}, {shots}-shot{tag}): {headline(results[t.name])}")
    if json_out:
        from finpeft.core.runs import write_atomic
        write_atomic(json_out, json.dumps({"model": str(run_dir or backbone), "shots": shots, "seed": seed,
                                           "calibrate": calibrate, "metrics": results}, indent=2))
    return results
