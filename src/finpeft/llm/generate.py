"""Batched generation for free-text tasks: prompts left-padded (a decoder continues from the right end), sorted
by length so a batch wastes little padding, answers returned in the input order, prompt tokens stripped."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GenerationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_new_tokens: int | None = Field(None, ge=1, description="default: the task's max_new_tokens")
    do_sample: bool = False  # greedy by default: reproducible scores
    temperature: float = Field(0.7, gt=0)
    top_p: float = Field(0.9, gt=0, le=1)
    batch_size: int = Field(8, ge=1)


def generate(model, tokenizer, prompts: list[str], max_new_tokens: int, settings: GenerationSettings | None = None,
             max_length: int = 2048) -> list[str]:
    import torch
    settings = settings or GenerationSettings()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    from finpeft.llm.tasks import fit_prompt
    encoded = [fit_prompt(tokenizer(p, add_special_tokens=False)["input_ids"], max_length - max_new_tokens)
               for p in prompts]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    out: list[str] = [""] * len(prompts)
    sampling = dict(do_sample=True, temperature=settings.temperature, top_p=settings.top_p) if settings.do_sample \
        else dict(do_sample=False, temperature=None, top_p=None, top_k=None)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(order), settings.batch_size):
            idx = order[start:start + settings.batch_size]
            width = max(len(encoded[i]) for i in idx)
            ids = torch.full((len(idx), width), pad, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):  # left padding
                ids[r, width - len(encoded[i]):] = torch.tensor(encoded[i])
                mask[r, width - len(encoded[i]):] = 1
            new = model.generate(input_ids=ids.to(model.device), attention_mask=mask.to(model.device),
                                 max_new_tokens=max_new_tokens, pad_token_id=pad, **sampling)[:, width:]
            for r, i in enumerate(idx):
                out[i] = tokenizer.decode(new[r], skip_special_tokens=True).strip()
    model.train(was_training)
    return out
