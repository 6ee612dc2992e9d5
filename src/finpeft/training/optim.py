"""Layer-wise learning-rate decay (Clark et al., ELECTRA; Sun et al., "How to fine-tune BERT"): the top of the
encoder and the head train at the recipe's lr, every layer below at `decay` times the one above, embeddings
lowest. transformers' Trainer has no such option; it takes the optimizer we build here and makes the schedule.
"""
from __future__ import annotations

import re

_LAYER = re.compile(r"\.(?:layer|layers|h|block|blocks)\.(\d+)\.")
_NO_DECAY = ("bias", "LayerNorm.weight", "layernorm.weight", "layer_norm.weight", "norm.weight")


def depth(name: str, n_layers: int) -> int:
    """0 = embeddings, 1..n_layers = encoder layers, n_layers + 1 = everything above (pooler, head)."""
    m = _LAYER.search(name)
    if m:
        return int(m.group(1)) + 1
    return 0 if "embed" in name else n_layers + 1


def layerwise_param_groups(model, lr: float, weight_decay: float, decay: float) -> list[dict]:
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    found = [int(m.group(1)) for n, _ in model.named_parameters() if (m := _LAYER.search(n))]
    n_layers = max(found) + 1 if found else 0
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in named:
        d = depth(name, n_layers)
        wd = 0.0 if name.endswith(_NO_DECAY) else weight_decay
        g = groups.setdefault((d, wd == 0.0), {"params": [], "lr": lr * decay ** (n_layers + 1 - d),
                                               "weight_decay": wd})
        g["params"].append(p)
    return list(groups.values())
