"""Batched scoring of texts with a classifier: batches sorted by length (little padding), results in input order.

Shared by training (scoring the test split), prediction, export parity and the frozen-encoder feature cache."""
from __future__ import annotations

from typing import Iterator

import numpy as np


# model.truncation=head_tail keeps the first quarter of the token budget and the last three quarters of a long
# text: Sun et al. 2019 ("How to fine-tune BERT for text classification") found head 128 + tail 382 of 512 the
# best cut for long documents; tokenizers only cut one end, so it is done here.
HEAD_SHARE = 0.25


def truncation_of(tokenizer) -> str:
    """How a run cuts long texts: "head" (the tokenizer's own) or "head_tail". The run's tokenizer carries it
    (tokenizer_config.json `finpeft_truncation`), so training, predict, the feature cache and ONNX agree."""
    return (getattr(tokenizer, "init_kwargs", None) or {}).get("finpeft_truncation", "head")


def encode_texts(tokenizer, texts: list[str], max_length: int):
    """The tokenizer's encoding of texts cut to max_length tokens: their head (the tokenizer's own truncation),
    or (head_tail) the first HEAD_SHARE of the budget and the rest from the end, special tokens kept."""
    if truncation_of(tokenizer) != "head_tail":
        return tokenizer(texts, truncation=True, max_length=max_length)
    enc = tokenizer(texts, truncation=False)
    full, bare = tokenizer("a")["input_ids"], tokenizer("a", add_special_tokens=False)["input_ids"]
    lead = next(i for i in range(len(full)) if full[i:i + len(bare)] == bare)  # special tokens before the text
    trail = len(full) - lead - len(bare)  # ... and after it
    budget = max_length - lead - trail
    head = int(budget * HEAD_SHARE)
    for i, ids in enumerate(enc["input_ids"]):
        if len(ids) > max_length:  # keep: the leading specials, the head, the tail, the trailing specials
            n = len(ids)
            keep = [*range(lead + head), *range(n - trail - (budget - head), n)]
            for key in enc.keys():
                enc[key][i] = [enc[key][i][j] for j in keep]
    return enc


def tokenize_frame(df, tokenizer, label_ids: dict[str, int], max_length: int):
    """A text/label frame -> a datasets.Dataset of input ids, labels and lengths (for length-grouped batches)."""
    from datasets import Dataset
    enc = encode_texts(tokenizer, df["text"].tolist(), max_length)
    cols = {k: enc[k] for k in enc.keys()}
    cols["labels"] = [label_ids[l] for l in df["label"]]  # a regression Standardiser maps scores the same way
    cols["length"] = [len(ids) for ids in enc["input_ids"]]
    return Dataset.from_dict(cols)


def truncation_note(tokenizer, texts: list[str], max_length: int, what: str) -> str | None:
    """One line when some texts are longer than max_length tokens (they are cut when encoded), else None:
    truncation is never silent."""
    cut, longest = count_truncated(tokenizer, texts, max_length)
    return truncation_line(cut, len(texts), longest, max_length, what, truncation_of(tokenizer)) if cut else None


def count_truncated(tokenizer, texts: list[str], max_length: int) -> tuple[int, int]:
    """(how many texts are longer than max_length tokens, the longest's token count)."""
    if not len(texts):
        return 0, 0
    lengths = np.asarray(tokenizer([str(t) for t in texts], truncation=False, return_length=True)["length"])
    return int((lengths > max_length).sum()), int(lengths.max())


def truncation_line(cut: int, n: int, longest: int, max_length: int, what: str, how: str = "head") -> str:
    kept = ("their first and last tokens are kept (model.truncation=head_tail)" if how == "head_tail" else
            "cut to it; raise model.max_length, or model.truncation=head_tail to keep their ends")
    return f"note: {cut} of {n} {what} are longer than max_length={max_length} tokens (longest {longest}): {kept}"


def predict_proba(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64) -> np.ndarray:
    """Class probabilities in input order; batches are sorted by length so little is spent on padding."""
    return predict_outputs(model, tokenizer, texts, max_length, batch_size, "softmax")


ACTIVATIONS = {"raw": lambda z: z, "softmax": lambda z: z.softmax(-1), "sigmoid": lambda z: z.sigmoid()}


def predict_outputs(model, tokenizer, texts: list[str], max_length: int, batch_size: int = 64,
                    activation: str = "raw") -> np.ndarray:
    """(n, outputs) model outputs in input order, through the task's activation (`Task.output`): raw (a
    regression model's standardised score), softmax (one class) or sigmoid (multilabel)."""
    import torch
    out = np.zeros((len(texts), model.config.num_labels), dtype=np.float32)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for idx, enc in encoded_batches(tokenizer, texts, max_length, batch_size, "pt"):
            logits = model(**enc.to(model.device)).logits.float()
            out[idx] = ACTIVATIONS[activation](logits).cpu().numpy()
    model.train(was_training)
    return out


def encoded_batches(tokenizer, texts: list[str], max_length: int, batch_size: int,
                    return_tensors: str = "pt") -> Iterator[tuple[np.ndarray, dict]]:
    """(row indices, padded encoding) batches of texts of equal or near-equal token count: all texts are
    tokenized once, sorted by token count, and each batch is padded by the tokenizer's own `pad` (its
    padding side, pad id and mask). Sorting by tokens, not characters, cut the mean padded length on FPB test
    from 43 to 32 tokens (bench/bench_serve_throughput.py). Callers write results back at the indices."""
    if not len(texts):  # nothing to score (a tokenizer refuses an empty batch)
        return
    enc = encode_texts(tokenizer, [str(t) for t in texts], max_length)
    keys = list(enc.keys())
    order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
    for i in range(0, len(texts), batch_size):
        idx = order[i:i + batch_size]
        rows = {k: [enc[k][j] for j in idx] for k in keys}
        yield idx, tokenizer.pad(rows, padding=True, return_tensors=return_tensors)


def length_sorted_batches(texts: list[str], batch_size: int) -> Iterator[tuple[np.ndarray, list[str]]]:
    """(row indices, texts) batches of similar length, so little is spent on padding; callers write results
    back at the indices, which keeps input order."""
    texts = [str(t) for t in texts]
    order = np.argsort([len(t) for t in texts], kind="stable")
    for i in range(0, len(texts), batch_size):
        idx = order[i:i + batch_size]
        yield idx, [texts[j] for j in idx]
