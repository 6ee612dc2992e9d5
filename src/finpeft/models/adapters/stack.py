"""The Fin-Mamba adapter stack and its gated fusion.

    [CLS] (B, H) or token states (B, L, H)
      -> proj_in (to the adapter width d; identity when d = H)
      -> N blocks, each block's output kept and pooled: (B, N, d)   (L = 1 for [CLS]; masked mean for tokens)
      -> fusion: softmax(Linear([CLS])) over the N outputs, or their plain mean (gate off)
      -> residual: [CLS] + proj_out(fused) -> dropout -> Linear -> logits
"""
from __future__ import annotations

import torch
from torch import nn

from finpeft.models.adapters.blocks import make_block, masked_mean


class Trunk(nn.Module):
    """Blocks of the given kinds over (B, L, d); returns every block's pooled output, (B, N, d)."""

    def __init__(self, kinds: list[str], d: int, opts):
        super().__init__()
        self.blocks = nn.ModuleList(make_block(k, d, opts) for k in kinds)

    def forward(self, x, mask):
        outs = []
        for block in self.blocks:
            x = block(x, mask)
            outs.append(masked_mean(x, mask))
        return torch.stack(outs, 1)


class Projection(nn.Module):
    """Into and out of the adapter width (a bottleneck when d < H keeps sequence adapters cheap on CPU)."""

    def __init__(self, hidden: int, d: int):
        super().__init__()
        self.into = nn.Identity() if d == hidden else nn.Linear(hidden, d)
        self.out = nn.Identity() if d == hidden else nn.Linear(d, hidden)


class AdapterStack(nn.Module):
    """mamba-adapter (inputs="cls"), mamba-adapter-seq (inputs="tokens") and the attention / no-gate / N=1
    ablations, depending on opts."""

    def __init__(self, hidden: int, n_labels: int, opts):
        super().__init__()
        self.inputs = opts.inputs
        d = opts.d_model or hidden
        n = opts.num_adapter_layers
        kinds = [opts.block] * n if opts.block != "mixed" else ["mamba" if i % 2 == 0 else "attention" for i in range(n)]
        self.proj = Projection(hidden, d)
        self.trunk = Trunk(kinds, d, opts)
        self.gate = nn.Linear(hidden, n) if opts.gate and n > 1 else None
        self.dropout = nn.Dropout(opts.dropout)
        self.classifier = nn.Linear(hidden, n_labels)

    def forward(self, cls, tokens=None, mask=None) -> dict:
        x, m = (cls[:, None], None) if self.inputs == "cls" else (tokens, mask)
        outs = self.trunk(self.proj.into(x), m)  # (B, N, d)
        if self.gate is not None:
            weights = torch.softmax(self.gate(cls), -1)  # (B, N)
        else:
            weights = outs.new_full(outs.shape[:2], 1.0 / outs.shape[1])
        fused = (weights.unsqueeze(-1) * outs).sum(1)  # (B, d)
        rep = cls + self.proj.out(fused)  # (B, H)
        return {"logits": self.classifier(self.dropout(rep)), "representation": rep, "gate": weights}


class Gamba(nn.Module):
    """Expert ensemble: each expert is a small stack (3 x Mamba, 3 x attention, Mamba-attention-Mamba) over
    the frozen token states; a softmax gate on [CLS] weighs the experts' pooled outputs."""

    EXPERTS = {"mamba": ["mamba"] * 3, "attention": ["attention"] * 3, "mixed": ["mamba", "attention", "mamba"]}

    def __init__(self, hidden: int, n_labels: int, opts):
        super().__init__()
        self.inputs = opts.inputs
        d = opts.d_model or hidden
        self.proj = Projection(hidden, d)
        self.experts = nn.ModuleList(Trunk(self.EXPERTS[e], d, opts) for e in opts.experts)
        self.gate = nn.Linear(hidden, len(opts.experts))
        self.dropout = nn.Dropout(opts.dropout)
        self.classifier = nn.Linear(hidden, n_labels)

    def forward(self, cls, tokens=None, mask=None) -> dict:
        x, m = (cls[:, None], None) if self.inputs == "cls" else (tokens, mask)
        x = self.proj.into(x)
        outs = torch.stack([expert(x, m)[:, -1] for expert in self.experts], 1)  # (B, E, d): each expert's last block
        weights = torch.softmax(self.gate(cls), -1)  # (B, E)
        rep = cls + self.proj.out((weights.unsqueeze(-1) * outs).sum(1))
        return {"logits": self.classifier(self.dropout(rep)), "representation": rep, "gate": weights}
