"""Financial tasks as declarative instruction templates (YAML), rendered with the tokenizer's chat template.

A task names its data (a catalog `dataset`, split as the classifier track splits it, or `files` read with every
column kept), an instruction, how a row becomes the user's message, and either `choices` (label -> verbaliser:
classification, scored by log-likelihood in scorer.py) or an `answer_column` (free text: generated, scored by
ROUGE / exact match / token F1, or - metrics [regression] - the
first number of the answer, by MSE / R²). Built-in tasks live in llm/tasks/*.yaml; a user adds one with a YAML file of
the same shape.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from finpeft.errors import FinpeftError

IGNORE = -100  # label id the loss skips (transformers' convention)
TEXT_METRICS = ("rouge", "exact_match", "token_f1", "regression")  # regression: a number is generated


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dataset: str | None = Field(None, description="catalog id (fpb, tfns, ...) or a data file with text,label")
    files: dict[str, str] | None = Field(None, description="split (train/test/all) -> CSV/JSONL; relative paths "
                                                           "are under $FINPEFT_DATA_DIR")
    test_size: float = Field(0.2, gt=0, lt=1, description="held out when `files` has no train+test pair")
    group_by: list[str] = Field(default_factory=list, description="rows equal on these stay on one side of a split")
    dedupe: list[str] = Field(default_factory=list, description="keep one row per value of these columns")
    expand: dict[str, str] | None = Field(None, description="0/1 column -> question: one yes/no row per column")
    text_column: str = "text"
    label_column: str = "label"
    system: str | None = None
    instruction: str = ""
    input_template: str = "{text}"  # str.format over the row's columns
    truncate: dict[str, int] = Field(default_factory=dict, description="column -> max characters kept")
    choices: dict[str, str] | None = None  # label -> verbaliser the model answers with
    answer_column: str | None = None  # free-text tasks: the reference answer
    metrics: list[Literal["rouge", "exact_match", "token_f1", "regression"]] = Field(default_factory=list)
    max_new_tokens: int = Field(64, ge=1)

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.choices is None) == (self.answer_column is None):
            raise ValueError("a task has either choices (classification) or answer_column (free text)")
        if self.choices and len(set(self.choices.values())) != len(self.choices):
            raise ValueError("two labels share a verbaliser")
        if (self.dataset is None) == (self.files is None):
            raise ValueError("a task has either dataset (a catalog id) or files")
        if self.expand and not self.choices:
            raise ValueError("expand makes yes/no rows: give choices {yes: ..., no: ...}")
        if self.answer_column and not self.metrics:
            self.metrics = ["rouge"]
        if self.choices and self.metrics:
            raise ValueError("metrics are for free-text tasks; classification reports accuracy and F1")
        return self

    @property
    def input_columns(self) -> list[str]:
        """The row columns input_template reads."""
        import string
        return sorted({f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(self.input_template)
                       if f})

    @property
    def is_classification(self) -> bool:
        return self.choices is not None

    @property
    def kind(self) -> str:
        """The task in finpeft.tasks' vocabulary (run.json, results.csv): classification (choices), regression
        (a number is generated: metrics [regression]), else generation (free text)."""
        if self.is_classification:
            return "classification"
        return "regression" if "regression" in self.metrics else "generation"

    def answer(self, row: dict) -> str:
        if self.choices:
            return self.choices[row[self.label_column]]
        return str(row[self.answer_column])

    def user_message(self, row: dict) -> str:
        row = {k: (v[:self.truncate[k]] if k in self.truncate and isinstance(v, str) else v) for k, v in row.items()}
        try:
            body = self.input_template.format(**row)
        except KeyError as e:
            raise FinpeftError(f"task {self.name}: input_template needs column {e.args[0]!r}") from None
        return f"{self.instruction}\n\n{body}" if self.instruction else body


def builtin_tasks() -> list[str]:
    return sorted(p.name[:-5] for p in files("finpeft.llm").joinpath("tasks").iterdir() if p.name.endswith(".yaml"))


def load_task(name_or_path: str) -> Task:
    """A built-in task name (fpb, tfns, fiqa-sa, headline, ner, ...) or a YAML file."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise FinpeftError(f"task file {path} not found")
        text = path.read_text(encoding="utf-8")
    elif name_or_path in builtin_tasks():
        text = files("finpeft.llm").joinpath(f"tasks/{name_or_path}.yaml").read_text(encoding="utf-8")
    else:
        raise FinpeftError(f"unknown task {name_or_path!r}: use one of {', '.join(builtin_tasks())} or a YAML file")
    try:
        return Task.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as e:
        first = str(e).splitlines()
        raise FinpeftError(f"task {name_or_path}: {' '.join(first[:3])[:300]}") from None


def render_prompt(task: Task, tokenizer, row: dict, shots: list[dict] = ()) -> str:
    """The chat-formatted prompt up to where the assistant answers; `shots` (few-shot rows) go first as
    earlier user/assistant turns."""
    messages = [{"role": "system", "content": task.system}] if task.system else []
    for shot in shots:
        messages += [{"role": "user", "content": task.user_message(shot)},
                     {"role": "assistant", "content": task.answer(shot)}]
    messages.append({"role": "user", "content": task.user_message(row)})
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def fit_prompt(ids: list[int], budget: int, tail: int = 32) -> list[int]:
    """A prompt cut to `budget` tokens from the middle: its head (system, instruction, the question or name
    asked about) and its tail (end of the input and the assistant turn opener) survive."""
    if len(ids) <= budget:
        return ids
    tail = min(tail, budget // 4)
    return ids[:budget - tail] + ids[len(ids) - tail:]


def encode_example(tokenizer, prompt: str, answer: str, max_length: int) -> dict:
    """input_ids = prompt + answer + end-of-turn; labels = IGNORE on the prompt, so the loss is on the answer
    only. A prompt too long is cut in the middle (fit_prompt); an answer too long is cut at max_length."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    p = fit_prompt(p, max(1, max_length - len(a)))
    ids = (p + a)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ([IGNORE] * len(p) + a)[:max_length]}
