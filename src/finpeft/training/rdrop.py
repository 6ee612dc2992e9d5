"""R-Drop (Liang et al., NeurIPS 2021): consistency between two dropout masks, `train.rdrop_alpha=A`.

Each training batch goes through the model twice with independent dropout (one forward over the batch stacked on
itself, so it is one pass of 2B rows), and the loss is

    (CE(logits_1, y) + CE(logits_2, y)) / 2  +  A * (KL(p_1 || p_2) + KL(p_2 || p_1)) / 2

with the KL terms averaged over the batch (the paper's alpha is for its summed losses; with mean reductions
A = 1 is mid-range of its GLUE settings). Evaluation is untouched (one pass, no dropout). Written here because
transformers' Trainer has no consistency-regularisation loss; only `compute_loss` changes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import Trainer


def rdrop_loss(logits_1: torch.Tensor, logits_2: torch.Tensor, labels: torch.Tensor, alpha: float,
               smoothing: float = 0.0) -> torch.Tensor:
    """logits_*: (B, C) from two dropout masks of the same rows; labels: (B,) class ids -> scalar loss."""
    ce = (F.cross_entropy(logits_1.float(), labels, label_smoothing=smoothing)
          + F.cross_entropy(logits_2.float(), labels, label_smoothing=smoothing)) / 2
    logp_1, logp_2 = F.log_softmax(logits_1.float(), -1), F.log_softmax(logits_2.float(), -1)
    # F.kl_div(input=log q, target=log p, log_target=True) = KL(p || q), summed over classes, / B
    kl = (F.kl_div(logp_2, logp_1, log_target=True, reduction="batchmean")
          + F.kl_div(logp_1, logp_2, log_target=True, reduction="batchmean")) / 2
    return ce + alpha * kl


class RDropTrainer(Trainer):
    def __init__(self, *args, rdrop_alpha: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.rdrop_alpha = rdrop_alpha

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not model.training or "labels" not in inputs:  # evaluation: the plain loss of one pass
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        twice = {k: torch.cat([v, v]) if torch.is_tensor(v) and v.dim() > 0 else v for k, v in inputs.items()}
        outputs = model(**twice)  # (2B, C): rows i and B + i are the same text under two dropout masks
        first, second = outputs.logits.chunk(2)
        loss = rdrop_loss(first, second, labels, self.rdrop_alpha, self.args.label_smoothing_factor)
        if return_outputs:
            outputs.logits = first
            return loss, outputs
        return loss
