"""T5 span corruption (Raffel et al., 2020, sec. 3.1.4) and sequence packing.

Written by hand: the reference code lives in the t5 / seqio TensorFlow libraries and in transformers' Flax
example script (run_t5_mlm_flax.py), not in any importable PyTorch library. The functions below follow those
definitions: `random_spans_noise_mask` and `expanded_length` match them step for step.

Shapes: a packed raw chunk of R tokens -> inputs of at most L tokens (L = max_length: non-noise tokens, one
sentinel per noise span, </s>) and targets (each sentinel followed by the span it replaced, then </s>).
"""
from __future__ import annotations

import numpy as np


def _lengths(tokens: int, density: float, mean_span: float) -> tuple[int, int]:
    noise = int(round(tokens * density))
    spans = int(round(noise / mean_span))
    return tokens - noise + spans + 1, noise + spans + 1  # inputs, targets (each + </s>)


def expanded_length(max_length: int, density: float = 0.15, mean_span: float = 3.0) -> tuple[int, int]:
    """(raw tokens per chunk, target length) so that a corrupted chunk's inputs fill exactly max_length."""
    raw = max_length
    while _lengths(raw + 1, density, mean_span)[0] <= max_length:
        raw += 1
    return raw, _lengths(raw, density, mean_span)[1]


def random_spans_noise_mask(length: int, density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    """(length,) bool: True on the tokens to drop, in round(noise / mean_span) spans, never at position 0."""
    noise = min(max(int(round(length * density)), 1), length - 1)
    spans = max(int(round(min(noise, length - noise) / mean_span)), 1)

    def segment(items: int, segments: int) -> np.ndarray:  # random split of `items` into `segments` >= 1 parts
        first = np.arange(items - 1) < (segments - 1)
        rng.shuffle(first)
        return np.bincount(np.cumsum(np.pad(first, (1, 0))), minlength=segments)

    interleaved = np.stack([segment(length - noise, spans), segment(noise, spans)], axis=1).reshape(-1)
    starts = np.zeros(length, dtype=np.int64)
    starts[np.cumsum(interleaved)[:-1]] = 1
    return np.cumsum(starts) % 2 == 1


def corrupt(ids: np.ndarray, sentinels: list[int], eos: int, density: float, mean_span: float,
            rng: np.random.Generator, full_targets: bool = False) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one raw chunk: each noise span -> the next sentinel in inputs; targets list every
    sentinel followed by the tokens it hides (T5), or with full_targets the whole original chunk (BART's text
    infilling). Both end with </s>."""
    mask = random_spans_noise_mask(len(ids), density, mean_span, rng)
    starts = mask & ~np.pad(mask, (1, 0))[:-1]  # first token of each noise span
    if starts.sum() > len(sentinels):
        raise ValueError(f"{starts.sum()} noise spans but only {len(sentinels)} sentinel tokens")
    inputs, targets, k = [], [], -1
    for tok, noisy, start in zip(ids.tolist(), mask, starts):
        if start:
            k += 1
            inputs.append(sentinels[k])
            targets.append(sentinels[k])
        (targets if noisy else inputs).append(tok)
    if full_targets:
        targets = ids.tolist()[:-1] if ids[-1:].tolist() == [eos] else ids.tolist()
    return inputs + [eos], targets + [eos]


def pack(token_lists, chunk: int, eos: int) -> list[list[int]]:
    """Texts joined end to end, each followed by </s>, cut into chunks of exactly `chunk` tokens (the last one
    may be shorter): no padding inside a chunk, texts may straddle two chunks (as in T5 / GPT pretraining)."""
    flat: list[int] = []
    for ids in token_lists:
        flat.extend(ids)
        if not ids or ids[-1] != eos:
            flat.append(eos)
    return [flat[i:i + chunk] for i in range(0, len(flat), chunk)]


def one_per_example(token_lists, chunk: int, eos: int) -> list[list[int]]:
    """The alternative to `pack`: each text its own example, cut to `chunk` tokens and ending with one </s>;
    empty texts dropped."""
    out = []
    for ids in token_lists:
        ids = ids[:-1] if ids[-1:] == [eos] else ids
        if ids:
            out.append(ids[:chunk - 1] + [eos])
    return out


class SpanCorruptionCollator:
    """Corrupts each batch as it is drawn, so the spans are re-sampled every epoch (dynamic masking); pads the
    batch (only a short last chunk ever needs it) with <pad> in inputs and -100 in labels."""

    def __init__(self, sentinels: list[int], eos: int, pad: int, density: float = 0.15, mean_span: float = 3.0,
                 seed: int = 0, full_targets: bool = False):
        self.sentinels, self.eos, self.pad, self.full = sentinels, eos, pad, full_targets
        self.density, self.mean_span = density, mean_span
        self.rng = np.random.default_rng(seed)

    def __call__(self, features: list[dict]) -> dict:
        import torch
        pairs = [corrupt(np.asarray(f["ids"]), self.sentinels, self.eos, self.density, self.mean_span, self.rng,
                         self.full) for f in features]
        li, lt = max(len(i) for i, _ in pairs), max(len(t) for _, t in pairs)
        ids = torch.full((len(pairs), li), self.pad, dtype=torch.long)
        labels = torch.full((len(pairs), lt), -100, dtype=torch.long)
        for r, (i, t) in enumerate(pairs):
            ids[r, :len(i)] = torch.tensor(i)
            labels[r, :len(t)] = torch.tensor(t)
        return {"input_ids": ids, "attention_mask": (ids != self.pad).long(), "labels": labels}


class CausalCollator:
    """Packed chunks as a causal-LM batch; the model shifts labels itself. Only a short last chunk is padded."""

    def __init__(self, pad: int):
        self.pad = pad

    def __call__(self, features: list[dict]) -> dict:
        import torch
        width = max(len(f["ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad, dtype=torch.long)
        labels = torch.full((len(features), width), -100, dtype=torch.long)
        for r, f in enumerate(features):
            ids[r, :len(f["ids"])] = torch.tensor(f["ids"])
            labels[r, :len(f["ids"])] = torch.tensor(f["ids"])
        return {"input_ids": ids, "labels": labels}
