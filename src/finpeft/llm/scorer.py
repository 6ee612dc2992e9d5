"""Classification with a causal LM by constrained scoring: the log-likelihood of each label's verbaliser after
the prompt. Every row gets a label (no unparseable generations); zero-shot, few-shot and LoRA-tuned models are
scored the same way.

Written by hand: transformers' pipelines generate or classify with a head; none scores a fixed set of
continuations. Shapes: prompts n, choices k -> n*k sequences prompt+choice, right-padded.
"""
from __future__ import annotations

import numpy as np
import torch


def choice_logprobs(model, tokenizer, prompts: list[str], choices: list[str], batch_size: int = 16,
                    max_length: int = 512) -> np.ndarray:
    """(n, k) sum over each choice's tokens of log p(token | prompt, earlier choice tokens)."""
    choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    longest = max(len(c) for c in choice_ids)
    seqs, spans = [], []  # spans: (start, end) of the choice tokens inside each sequence
    for p in prompts:
        p_ids = tokenizer(p, add_special_tokens=False)["input_ids"][-(max_length - longest):]
        for c in choice_ids:
            seqs.append(p_ids + c)
            spans.append((len(p_ids), len(p_ids) + len(c)))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out = np.zeros(len(seqs), dtype=np.float64)
    order = np.argsort([len(s) for s in seqs], kind="stable")  # little padding per batch
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(seqs), batch_size):
            idx = order[i:i + batch_size]
            width = max(len(seqs[j]) for j in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, j in enumerate(idx):
                ids[r, :len(seqs[j])] = torch.tensor(seqs[j])
                mask[r, :len(seqs[j])] = 1
            logp = torch.log_softmax(model(input_ids=ids.to(model.device),
                                           attention_mask=mask.to(model.device)).logits.float(), -1).cpu()
            for r, j in enumerate(idx):
                s, e = spans[j]
                # token t is predicted at position t-1
                out[j] = logp[r, s - 1:e - 1].gather(-1, ids[r, s:e, None]).sum().item()
    model.train(was_training)
    return out.reshape(len(prompts), len(choices))
