"""Financial tasks as declarative instruction templates (YAML), rendered with the tokenizer's chat template.

A task names its data, an instruction, how a row becomes the user's message, and either `choices` (label ->
verbaliser: classification, scored by log-likelihood in scorer.py) or an `answer_column` (free text). Built-in
tasks live in llm/tasks/*.yaml; a user adds one with a YAML file of the same shape.
"""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import FinpeftError

IGNORE = -100  # label id the loss skips (transformers' convention)


class Task(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    dataset: str = Field(description="catalog id or a data file")
    text_column: str = "text"
    label_column: str = "label"
    system: str | None = None
    instruction: str
    input_template: str = "{text}"  # str.format over the row's columns
    choices: dict[str, str] | None = None  # label -> verbaliser the model answers with
    answer_column: str | None = None  # free-text tasks: the reference answer

    @model_validator(mode="after")
    def _one_kind(self):
        if (self.choices is None) == (self.answer_column is None):
            raise ValueError("a task has either choices (classification) or answer_column (free text)")
        if self.choices and len(set(self.choices.values())) != len(self.choices):
            raise ValueError("two labels share a verbaliser")
        return self

    def answer(self, row: dict) -> str:
        if self.choices:
            return self.choices[row[self.label_column]]
        return str(row[self.answer_column])

    def user_message(self, row: dict) -> str:
        try:
            return f"{self.instruction}\n\n{self.input_template.format(**row)}"
        except KeyError as e:
            raise FinpeftError(f"task {self.name}: input_template needs column {e.args[0]!r}") from None


def builtin_tasks() -> list[str]:
    return sorted(p.name[:-5] for p in files("finpeft.llm").joinpath("tasks").iterdir() if p.name.endswith(".yaml"))


def load_task(name_or_path: str) -> Task:
    """A built-in task name (fpb, tfns, fiqa-sa, ...) or a YAML file."""
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


def encode_example(tokenizer, prompt: str, answer: str, max_length: int) -> dict:
    """input_ids = prompt + answer + end-of-turn; labels = IGNORE on the prompt, so the loss is on the answer
    only. A prompt too long is cut from the left (the answer and the instruction's end survive)."""
    p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    a = tokenizer(answer, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    p = p[-max(1, max_length - len(a)):]
    ids = (p + a)[:max_length]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": ([IGNORE] * len(p) + a)[:max_length]}
