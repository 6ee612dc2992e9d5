"""Classification with a causal LM by constrained scoring: the log-likelihood of each label's verbaliser after
the prompt. Every row gets a label (no unparseable generations); zero-shot, few-shot and tuned models are
scored the same way.

Written by hand: transformers' pipelines generate or classify with a head; none scores a fixed set of
continuations. When every verbaliser is one token (all built-in tasks on SmolLM2: negative/neutral/positive,
Yes/No, ...) one forward pass of the prompt scores all k choices at once (k times fewer sequences, and only the
last position goes through the LM head); otherwise each prompt+choice is its own sequence.
"""
from __future__ import annotations

import numpy as np
import torch


def _batches(seqs: list[list[int]], batch_size: int):
    order = np.argsort([len(s) for s in seqs], kind="stable")  # little padding per batch
    for i in range(0, len(seqs), batch_size):
        yield order[i:i + batch_size]


def choice_logprobs(model, tokenizer, prompts: list[str], choices: list[str], batch_size: int = 16,
                    max_length: int = 512) -> np.ndarray:
    """(n, k) sum over each choice's tokens of log p(token | prompt, earlier choice tokens)."""
    choice_ids = [tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
    longest = max(len(c) for c in choice_ids)
    from finpeft.llm.tasks import fit_prompt
    prompt_ids = [fit_prompt(tokenizer(p, add_special_tokens=False)["input_ids"], max_length - longest) for p in prompts]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        if longest == 1:
            out = _single_token(model, prompt_ids, [c[0] for c in choice_ids], pad, batch_size)
        else:
            out = _per_choice(model, prompt_ids, choice_ids, pad, batch_size)
    model.train(was_training)
    return out


def _single_token(model, prompt_ids, first, pad, batch_size) -> np.ndarray:
    """Prompts left-padded (position ids from the mask), logits of the last position only: (n, k)."""
    out = np.zeros((len(prompt_ids), len(first)), dtype=np.float64)
    for idx in _batches(prompt_ids, batch_size):
        width = max(len(prompt_ids[j]) for j in idx)
        ids = torch.full((len(idx), width), pad, dtype=torch.long)
        mask = torch.zeros((len(idx), width), dtype=torch.long)
        for r, j in enumerate(idx):
            ids[r, width - len(prompt_ids[j]):] = torch.tensor(prompt_ids[j])
            mask[r, width - len(prompt_ids[j]):] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        logits = model(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                       position_ids=positions.to(model.device), logits_to_keep=1).logits[:, -1].float()
        out[idx] = torch.log_softmax(logits, -1)[:, first].cpu().double().numpy()
    return out


def _per_choice(model, prompt_ids, choice_ids, pad, batch_size) -> np.ndarray:
    """Each prompt + choice its own right-padded sequence; sum of the choice tokens' log-probs."""
    seqs, spans = [], []  # spans: (start, end) of the choice tokens inside each sequence
    for p_ids in prompt_ids:
        for c in choice_ids:
            seqs.append(p_ids + c)
            spans.append((len(p_ids), len(p_ids) + len(c)))
    out = np.zeros(len(seqs), dtype=np.float64)
    for idx in _batches(seqs, batch_size):
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
    return out.reshape(len(prompt_ids), len(choice_ids))
