"""run.json: one schema for every artifact a run dir can hold (hf, peft, frozen, ensemble, onnx, llm).

Every writer builds a `RunInfo` (so a typo in a key fails where it is written, not where it is read) and every
reader validates through it: `finpeft.load`, `evaluate`, `predict`, `serve`, `export` and `bench` read one shape.
Facts only one kind has (an ensemble's members, an export's `onnx` block, an LLM run's tasks) are typed fields
that stay None elsewhere."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from finpeft.errors import FinpeftError
from finpeft.tasks import TASKS

Artifact = Literal["hf", "peft", "frozen", "ensemble", "onnx", "llm"]
TASK_KINDS = (*TASKS, "generation")  # finpeft.tasks, and an LLM run's free-text answers


class RunInfo(BaseModel):
    # extra="ignore" on read: a run written by a newer finpeft with one more fact still loads
    model_config = ConfigDict(extra="ignore")

    artifact: Artifact
    method: str
    backbone: str
    max_length: int = Field(ge=1)
    truncation: str = "head"  # head or head_tail: how a longer text is cut (the saved tokenizer applies it)
    labels: list[str] = Field(default_factory=list)  # classes in output order; [] for regression / generation
    task: str = "classification"  # one of TASK_KINDS
    finpeft_version: str | None = None
    date: str | None = None
    backbone_path: str | None = None
    label_names: dict[str, str] | None = None  # the user's spelling of each canonical label (e.g. Bullish)
    # what `score` weighs each class's probability by (positive 1, neutral 0, negative -1); {} = the classes
    # have no polarity (score is null); absent (runs before it): inferred from the label names
    label_polarity: dict[str, float] | None = None
    trust_remote_code: bool = False
    target: dict[str, float] | None = None  # regression: the training scores' mean / std the model predicts in
    thresholds: dict[str, float] | None = None  # multilabel: each label's probability cut, chosen on valid
    init_from: str | None = None  # the finished run whose weights this one started from (model.init_from)
    # ensemble
    members: list[str] | None = None
    weights: list[float] | None = None
    # onnx export: quantize, opset, inputs, fused, source_run, export_seconds, parity
    onnx: dict[str, Any] | None = None
    # llm: the tasks it was trained on (the first answers `finpeft.load`), mixing, rows, prompts
    tasks: list[dict[str, Any]] | None = None
    llm_task: str | None = None  # the task `finpeft.load` answers by default (an LLM run's first)
    mixing: dict[str, Any] | None = None
    train_rows: dict[str, int] | None = None
    shots: int | None = None
    seed: int | None = None
    train_seconds: float | None = None
    train_loss: float | None = None
    trainable_params: int | None = None

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASK_KINDS:
            raise ValueError(f"unknown task {v!r} (one of {', '.join(TASK_KINDS)})")
        return v

    def model_post_init(self, _ctx) -> None:
        if self.artifact == "llm" and self.tasks:
            first = self.tasks[0]
            self.llm_task = self.llm_task or first.get("name")
            if not self.labels and first.get("choices"):
                self.labels = list(first["choices"])
            if not first.get("choices"):
                self.task = "generation"


def write_run_info(run_dir: Path, info: RunInfo | dict) -> RunInfo:
    """Validate and write run_dir/run.json atomically (None fields left out)."""
    from finpeft.core.runs import write_atomic
    info = info if isinstance(info, RunInfo) else RunInfo.model_validate(info)
    write_atomic(Path(run_dir) / "run.json", json.dumps(info.model_dump(mode="json", exclude_none=True), indent=2))
    return info


def read_run_info(run_dir: str | Path) -> dict:
    """run_dir/run.json validated against RunInfo, as a dict (every field present, None where it does not apply).
    A folder that is not a run dir is one clear FinpeftError."""
    run_dir = Path(run_dir)
    try:
        raw = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise FinpeftError(f"{run_dir}: not a finpeft run dir (no readable run.json)") from None
    if not isinstance(raw, dict):
        raise FinpeftError(f"{run_dir}: not a finpeft run dir (run.json is not an object)")
    try:
        info = RunInfo.model_validate(raw)
    except ValidationError as e:
        bad = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'run.json'}: {err['msg']}" for err in e.errors()[:3])
        raise FinpeftError(f"{run_dir}: not a finpeft run dir (run.json: {bad})") from None
    if info.artifact not in ("ensemble", "onnx") and not (run_dir / "model").is_dir():
        raise FinpeftError(f"{run_dir}: the run dir has no model/ folder")
    return info.model_dump()
