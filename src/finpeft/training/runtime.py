"""What a training process needs to know about where it runs: its rank in a DDP job (torchrun / accelerate
launch), its thread budget, the precision flags. Shared by `finpeft train` and `finpeft pretrain` (mlm.py), so
neither imports the other."""
from __future__ import annotations

import os
import sys

from finpeft.errors import FinpeftError


def _world() -> tuple[int, int]:
    """(rank, world size) as set by torchrun / accelerate launch."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _say(msg: str) -> None:
    if _world()[0] == 0:
        print(f"[finpeft] {msg}", file=sys.stderr, flush=True)


def _set_threads(requested: int | None) -> int:
    import torch
    n = requested or max(1, (os.cpu_count() or 1) // _world()[1])
    torch.set_num_threads(n)
    return n


def precision_args(choice: str) -> dict:
    """TrainingArguments for train.precision (shared by `finpeft train` and `finpeft pretrain`)."""
    import torch
    if choice == "fp32" or (choice == "auto" and not torch.cuda.is_available()):
        return {}
    if choice == "bf16" and not torch.cuda.is_available():
        return {"bf16": True, "use_cpu": True}  # CPU autocast (accelerate): fast with avx512_bf16 or AMX
    if choice in ("bf16", "auto") and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return {"bf16": True}
    if choice in ("fp16", "auto") and torch.cuda.is_available():
        return {"fp16": True}
    raise FinpeftError(f"train.precision={choice} needs a CUDA GPU that supports it; use fp32 or bf16 on CPU")
