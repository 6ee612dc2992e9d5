"""GGUF checkpoints as ordinary transformers model dirs: dequantised once, cached as safetensors.

transformers reads GGUF (`from_pretrained(dir, gguf_file=...)`, needs the `gguf` package) by dequantising every
tensor, about 20 s for SmolLM2-135M on 2 cores. The cache keeps the result as a plain model dir (safetensors +
tokenizer with its chat template) keyed by the file's SHA-256, so every later load is a safetensors read."""
from __future__ import annotations

import shutil
import tempfile
from importlib.util import find_spec
from pathlib import Path

from finpeft.errors import FinpeftError
from finpeft.models.cache import cache_root, publish_cached_dir, sha256  # noqa: F401


def package_gguf(package: str) -> Path | None:
    """The .gguf file shipped inside a PyPI package, found without importing the package (its import pulls
    dependencies that finpeft never needs)."""
    spec = find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).glob("*.gguf"))
    return files[0] if files else None


def cached_model_dir(gguf_path: str | Path, root: Path | None = None) -> Path:
    """A transformers model dir with the dequantised weights of `gguf_path` (made on first use)."""
    gguf_path = Path(gguf_path)
    if not gguf_path.is_file():
        raise FinpeftError(f"{gguf_path}: GGUF file not found")
    root = root or cache_root()
    out = root / f"{gguf_path.stem}-{sha256(gguf_path)[:16]}"
    if (out / "config.json").is_file():
        return out
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader)
    except ImportError:
        raise FinpeftError("loading a GGUF model needs the gguf package: pip install 'finpeft[llm]'") from None
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=root))
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        # The weights are plain float now, but transformers still flags the model as GGUF-quantised and refuses
        # to save it: copy them into a model built from the config without that flag.
        config = model.config
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(model.state_dict())
        plain.save_pretrained(work)  # safetensors
        tokenizer.save_pretrained(work)
        publish_cached_dir(work, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
