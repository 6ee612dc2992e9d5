"""How many training rows each task contributes to a multi-task run.

With n_i rows in task i and N rows in all (`size`, default the sum of n_i), task i gets N * p_i rows:
  proportional  p_i = n_i / sum n          (plain concatenation: big tasks dominate)
  balanced      p_i = 1 / K                (every task equally often: small tasks are upsampled)
  weighted      p_i = w_i / sum w          (per-task weights, default 1)
  temperature   p_i = n_i^(1/T) / sum n^(1/T)  (T=1 proportional, T->inf balanced; T5 / mT5 use T=2..5)
A task asked for more rows than it has is upsampled with replacement after each row is used once.
"""
from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class Mixing(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: Literal["proportional", "balanced", "weighted", "temperature"] = "proportional"
    weights: dict[str, Annotated[float, Field(gt=0)]] = Field(default_factory=dict, description="weighted: task -> weight (default 1)")
    temperature: float = Field(2.0, gt=0)
    size: int | None = Field(None, ge=1, description="rows in all (default: the tasks' rows summed)")


def mixture_counts(sizes: dict[str, int], mixing: Mixing) -> dict[str, int]:
    names = list(sizes)
    n = np.array([sizes[k] for k in names], dtype=float)
    if mixing.strategy == "proportional":
        p = n / n.sum()
    elif mixing.strategy == "balanced":
        p = np.full(len(n), 1 / len(n))
    elif mixing.strategy == "weighted":
        w = np.array([mixing.weights.get(k, 1.0) for k in names], dtype=float)
        p = w / w.sum()
    else:
        p = n ** (1 / mixing.temperature)
        p /= p.sum()
    total = mixing.size or int(n.sum())
    raw = p * total
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts))[:total - counts.sum()]:  # largest remainders: counts sum to total
        counts[i] += 1
    return dict(zip(names, (int(c) for c in counts)))
