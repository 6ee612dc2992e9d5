"""Frozen-backbone feature cache: encode a dataset once, train adapters on the stored states.

A method that freezes the encoder spends nearly all of its compute re-running that encoder on the same
texts every epoch. The cache runs it once per (backbone, texts, max length, pooling), stores fp16 states as
safetensors under `train.cache_dir` (default ~/.cache/finpeft/features) and every epoch after costs only
the adapter. Written by hand because no maintained library caches transformer states for training.

Stored per key (one .safetensors file, written to a temp name and renamed):
    pooling "cls" or "mean": cls (N, H) = the [CLS] state or the mean of the token states
    pooling "tokens": tokens (T, H) = every row's real tokens, concatenated; offsets (N + 1,) row bounds
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from finpeft.core.runs import apply_umask

CACHE_VERSION = 1  # bump when the stored layout or the encoding procedure changes


def default_cache_dir() -> Path:
    return Path(os.environ.get("FINPEFT_CACHE_DIR", Path.home() / ".cache" / "finpeft" / "features"))


def backbone_fingerprint(model_path: str) -> str:
    """Identifies the weights: for a local dir its config and each weight file's name, size and mtime
    (hashing gigabytes of weights on every run would cost more than it saves); for a hub id the id."""
    path = Path(model_path)
    if not path.is_dir():
        return f"hub:{model_path}"
    h = hashlib.sha256((path / "config.json").read_bytes())
    for f in sorted(path.glob("*.safetensors")) + sorted(path.glob("*.bin")):
        st = f.stat()
        h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def cache_key(model_path: str, texts: list[str], max_length: int, pooling: str) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({"v": CACHE_VERSION, "backbone": backbone_fingerprint(model_path),
                         "max_length": max_length, "pooling": pooling, "n": len(texts)}).encode())
    for t in texts:
        h.update(t.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()[:32]


@dataclass
class Features:
    """Encoded rows. cls: (N, H); or tokens: (T, H) with offsets (N + 1,)."""
    cls: torch.Tensor | None = None
    tokens: torch.Tensor | None = None
    offsets: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.cls) if self.cls is not None else len(self.offsets) - 1

    def lengths(self) -> list[int]:
        if self.cls is not None:
            return [1] * len(self.cls)
        return (self.offsets[1:] - self.offsets[:-1]).tolist()

    def row(self, i: int) -> torch.Tensor:
        """(H,) for cls features, (l, H) for tokens."""
        if self.cls is not None:
            return self.cls[i]
        return self.tokens[self.offsets[i]:self.offsets[i + 1]]


@torch.inference_mode()
def encode(encoder, tokenizer, texts: list[str], max_length: int, pooling: str, batch_size: int = 64) -> Features:
    """Run the frozen encoder over texts (length-sorted batches; rows come back in input order)."""
    was_training = encoder.training
    encoder.eval()
    from finpeft.data.batching import encoded_batches
    cls = [None] * len(texts)
    rows = [None] * len(texts)
    device = next(encoder.parameters()).device
    for idx, enc in encoded_batches(tokenizer, texts, max_length, batch_size, "pt"):
        enc = enc.to(device)
        states = encoder(**enc).last_hidden_state.float().cpu()  # (b, L, H)
        lengths = enc["attention_mask"].sum(1).tolist()
        for k, j in enumerate(idx):
            if pooling == "cls":
                cls[j] = states[k, 0].half()
            elif pooling == "mean":
                cls[j] = states[k, :lengths[k]].mean(0).half()
            else:
                rows[j] = states[k, :lengths[k]].half()
    encoder.train(was_training)
    if pooling in ("cls", "mean"):
        return Features(cls=torch.stack(cls) if cls else torch.zeros(0, encoder.config.hidden_size).half())
    offsets = torch.tensor([0] + list(np.cumsum([len(r) for r in rows])), dtype=torch.int64)
    return Features(tokens=torch.cat(rows), offsets=offsets)


def save(features: Features, path: Path) -> None:
    from safetensors.torch import save_file
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.contiguous() for k, v in vars(features).items() if v is not None}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(fd)
    try:
        save_file(tensors, tmp)
        apply_umask(Path(tmp))  # a cache other users of the machine can read
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load(path: Path) -> Features:
    from safetensors.torch import load_file
    return Features(**load_file(str(path)))


def cached_encode(encoder, tokenizer, model_path: str, texts: list[str], max_length: int, pooling: str,
                  cache_dir: Path | None, batch_size: int = 64) -> tuple[Features, bool]:
    """(features, hit). cache_dir None: encode without storing (the --no-cache path of a cached method)."""
    if cache_dir is None:
        return encode(encoder, tokenizer, texts, max_length, pooling, batch_size), False
    from finpeft.data.batching import truncation_of
    how = truncation_of(tokenizer)  # head_tail features are other features: their own cache entries
    key = cache_key(model_path, texts, max_length, pooling) + ("" if how == "head" else f"-{how}")
    path = Path(cache_dir) / f"{key}-{pooling}.safetensors"
    if path.is_file():
        try:
            return load(path), True
        except Exception:  # a damaged file (disk full, killed writer before rename on odd filesystems): redo it
            path.unlink(missing_ok=True)
    features = encode(encoder, tokenizer, texts, max_length, pooling, batch_size)
    save(features, path)
    return features, False


def sentence_embeddings(model_path: str, texts: list[str], max_length: int = 128, batch_size: int = 64,
                        trust_remote_code: bool = False, cache_dir: Path | None = None) -> np.ndarray:
    """(N, H) float32 mean-pooled sentence vectors of a backbone, through the feature cache (so choosing rows to
    label, finding label issues and training a head on the same texts encode them once)."""
    from transformers import AutoModel, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    encoder = AutoModel.from_pretrained(model_path, dtype=torch.float32, trust_remote_code=trust_remote_code).eval()
    feats, _ = cached_encode(encoder, tokenizer, model_path, texts, max_length, "mean",
                             cache_dir or default_cache_dir(), batch_size)
    return feats.cls.float().numpy()
