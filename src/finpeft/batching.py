"""Batched scoring of texts with a classifier: batches sorted by length (little padding), results in input order.

Shared by training (scoring the test split), prediction, export parity and the frozen-encoder feature cache."""
from __future__ import annotations

from typing import Iterator

import numpy as np


def tokenize_frame(df, tokenizer, label_ids: dict[str, int], max_length: int):
    """A text/label frame -> a datasets.Dataset of input ids, labels and lengths (for length-grouped batches)."""
    from datasets import Dataset
    enc = tokenizer(df["text"].tolist(), truncation=True, max_length=max_length)
    cols = {k: enc[k] for k in enc.keys()}
    cols["labels"] = [label_ids[l] for l in df["label"]]
    cols["length"] = [len(ids) for ids in enc["input_ids"]]
    return Dataset.from_dict(cols)


def predict_proba(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities in input order; batches are sorted by length so little is spent on padding."""
    import torch
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for idx, batch in length_sorted_batches(texts, batch_size):
            enc = tokenizer(batch, truncation=True, max_length=max_length, padding=True,
                            return_tensors="pt").to(model.device)
            out[idx] = torch.softmax(model(**enc).logits.float(), -1).cpu().numpy()
    model.train(was_training)
    return out


def length_sorted_batches(texts: list[str], batch_size: int) -> Iterator[tuple[np.ndarray, list[str]]]:
    """(row indices, texts) batches of similar length, so little is spent on padding; callers write results
    back at the indices, which keeps input order."""
    texts = [str(t) for t in texts]
    order = np.argsort([len(t) for t in texts], kind="stable")
    for i in range(0, len(texts), batch_size):
        idx = order[i:i + batch_size]
        yield idx, [texts[j] for j in idx]
