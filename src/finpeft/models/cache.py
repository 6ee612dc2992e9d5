"""The model cache (~/.cache/finpeft/models or $FINPEFT_MODEL_CACHE): model dirs made once from what a package
ships (a GGUF dequantised, a split zip extracted), keyed and checked by SHA-256, published atomically."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from finpeft.core.runs import apply_umask


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


def model_fingerprint(run_dir: Path) -> str:
    """Path + size and mtime of every weight/config file: a model retrained or re-exported in place is another
    model, and a resumed output must not mix two models' scores."""
    import hashlib
    h = hashlib.sha256(str(run_dir.resolve()).encode())
    files = [run_dir / "run.json", run_dir / "model.onnx", *run_dir.glob("model/**/*"), *run_dir.glob("*/model/**/*")]
    for p in sorted(files):  # the model's own files (ensemble members too), not eval/ or onnx/ beside it
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(run_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
