"""Several LLM adapters on one base model, chosen per request.

Each run dir holds a PEFT adapter trained on the same backbone; the base is loaded once and every adapter is
attached under its own name (peft `load_adapter`), so switching is `set_adapter` — no reload, a few MB per
adapter. `predict(texts, adapter=...)` renders the adapter's task prompt and answers with that adapter
(labels + probabilities for classification tasks, generated text otherwise); adapter=None is the plain base.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from finpeft.errors import FinpeftError
from finpeft.llm.generate import GenerationSettings
from finpeft.llm.tasks import Task, load_task
from finpeft.llm.train import evaluate_task, load_backbone, read_llm_run


class LLMPredictor:
    def __init__(self, runs: dict[str, str | Path] | list[str | Path], max_length: int = 512):
        from peft import PeftModel
        if not isinstance(runs, dict):
            runs = {Path(r).name: r for r in runs}
        if not runs:
            raise FinpeftError("give at least one LLM run dir")
        infos = {name: read_llm_run(path) for name, path in runs.items()}
        backbones = {i["backbone"] for i in infos.values()}
        if len(backbones) > 1:
            raise FinpeftError(f"adapters were trained on different backbones ({', '.join(sorted(backbones))}); "
                               "one predictor serves adapters of one base model")
        self.tasks: dict[str, Task] = {n: Task.model_validate(i["tasks"][0]) for n, i in infos.items()}
        self.max_length = max_length
        self.tokenizer, base = load_backbone(backbones.pop())
        names = list(runs)
        self.model = PeftModel.from_pretrained(base, Path(runs[names[0]]) / "model", adapter_name=names[0])
        for name in names[1:]:
            self.model.load_adapter(Path(runs[name]) / "model", adapter_name=name)
        self.model.eval()

    @property
    def adapters(self) -> list[str]:
        return list(self.tasks)

    def predict(self, inputs: list[str] | pd.DataFrame, adapter: str | None, task: str | Task | None = None,
                generation: GenerationSettings | None = None) -> pd.DataFrame:
        """One row per input: `prediction` (+ p_<label> columns for a classification task). Inputs are texts,
        or a frame with the columns the task's template needs (e.g. ner: entity, sentence). `task` (a task name
        YAML, or a Task) overrides the adapter's own task."""
        if adapter is not None and adapter not in self.tasks:
            raise FinpeftError(f"unknown adapter {adapter!r}: loaded {', '.join(self.adapters)}")
        t = task if isinstance(task, Task) else load_task(task) if task else self.tasks[adapter or self.adapters[0]]
        column = t.answer_column or t.label_column
        if isinstance(inputs, pd.DataFrame):
            rows = inputs.copy()
        elif len(t.input_columns) == 1:
            rows = pd.DataFrame({t.input_columns[0]: [str(x) for x in inputs]})
        else:
            raise FinpeftError(f"task {t.name} reads columns {', '.join(t.input_columns)}: pass a table (--input "
                               f"FILE) with them")
        missing = [c for c in t.input_columns if c not in rows]
        if missing:
            raise FinpeftError(f"task {t.name}: inputs need column(s) {', '.join(missing)}")
        if t.text_column not in rows:
            rows[t.text_column] = ""
        rows[column] = _placeholder(t)
        if adapter is None:
            with self.model.disable_adapter():
                pred, _ = evaluate_task(self.model, self.tokenizer, t, rows, [], self.max_length, generation)
        else:
            self.model.set_adapter(adapter)
            pred, _ = evaluate_task(self.model, self.tokenizer, t, rows, [], self.max_length, generation)
        return pred.drop(columns=["reference"]).assign(adapter=adapter or "base")


def _placeholder(task: Task) -> str:
    """evaluate_task scores against a reference; prediction has none, so any valid label (ignored)."""
    return next(iter(task.choices)) if task.choices else ""


def predict_rows(run_dirs, texts=None, *, adapter: str | None = None, task: str | None = None, input=None,
                 output=None, max_new_tokens: int | None = None) -> pd.DataFrame:
    """`texts` (answered by `adapter`, default the first run's; 'base' = no adapter), or the rows of the `input`
    file, whose optional `adapter` column picks the adapter per row (one batch per adapter, then back in input
    order), written to `output` as CSV. Returns the answers."""
    if (texts is None) == (input is None):
        raise FinpeftError("give either --text (repeatable) or --input FILE --output FILE")
    if input is not None and not output:
        raise FinpeftError("--input needs --output")
    if input is not None:
        from finpeft.data.load import read_table
        rows = read_table(input)
    predictor = LLMPredictor(list(run_dirs))
    chosen = adapter or predictor.adapters[0]
    if input is not None and "adapter" not in rows:
        rows = rows.assign(adapter=chosen)
    names = set(rows["adapter"]) if input is not None else {chosen}
    for a in names - {"base"}:
        if a not in predictor.adapters:
            raise FinpeftError(f"unknown adapter {a!r}: loaded {', '.join(predictor.adapters)} (or base)")
    generation = GenerationSettings(max_new_tokens=max_new_tokens)
    if texts is not None:
        return predictor.predict(list(texts), None if chosen == "base" else chosen, task, generation=generation)
    parts = []
    for a in sorted(names):
        mine = rows[rows["adapter"] == a]
        parts.append(predictor.predict(mine.drop(columns=["adapter"]), None if a == "base" else a, task,
                                       generation=generation).set_index(mine.index))
    from finpeft.core.runs import write_atomic
    result = pd.concat(parts).sort_index()
    write_atomic(output, result.to_csv(index=False))
    return result
