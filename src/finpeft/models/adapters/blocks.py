"""Residual adapter blocks: RMSNorm -> mixer -> dropout -> RMSNorm -> MLP(GELU) -> dropout, both residual.

The mixer is transformers' Mamba2Mixer (a pure-PyTorch chunked scan on CPU; the mamba-ssm / causal-conv1d
kernels on CUDA when installed) or, for the attention ablation, multi-head self-attention of the same width.
Shapes: x (B, L, D), mask (B, L) with 1 = token, 0 = padding; L = 1 for the [CLS]-vector variants.
"""
from __future__ import annotations

import torch
from torch import nn

MAX_CHUNK = 64  # SSD chunk length: the scan is quadratic inside a chunk, linear across chunks


class MLP(nn.Module):
    def __init__(self, d: int, ratio: float, dropout: float):
        super().__init__()
        hidden = int(d * ratio)
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.GELU(), nn.Linear(hidden, d), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class MambaMixer(nn.Module):
    def __init__(self, d: int, d_state: int, d_conv: int, expand: int, head_dim: int, eps: float):
        super().__init__()
        from transformers import Mamba2Config
        from transformers.models.mamba2.modeling_mamba2 import Mamba2Mixer
        if (d * expand) % head_dim:
            raise ValueError(f"width {d} x expand {expand} must be a multiple of head_dim {head_dim}")
        cfg = Mamba2Config(hidden_size=d, num_heads=d * expand // head_dim, head_dim=head_dim, expand=expand,
                           state_size=d_state, conv_kernel=d_conv, n_groups=1, layer_norm_epsilon=eps,
                           num_hidden_layers=1, chunk_size=MAX_CHUNK)
        self.mixer = Mamba2Mixer(cfg, layer_idx=0)

    def forward(self, x, mask):
        if x.shape[1] == 1:
            return self._single_step(x)
        # A chunk no longer than the batch's sequences (a short batch padded to a 64-long chunk wastes the scan).
        self.mixer.chunk_size = max(1, min(MAX_CHUNK, x.shape[1]))
        return self.mixer(x, attention_mask=mask)

    def _single_step(self, x):
        """The mixer on a 1-token sequence (the [CLS] variants), in closed form: from a zero state the scan is
        h = dt x B^T, y = h C + D x = x (dt <B, C> + D), and the causal conv sees only its last tap. Same maths
        as Mamba2Mixer (a test checks both against the recurrence) at a fraction of the CPU time of its
        general chunked path. x: (B, 1, D) -> (B, 1, D)."""
        m = self.mixer
        n, heads, p = m.ssm_state_size, m.num_heads, m.head_dim
        z, xbc, dt = m.in_proj(x[:, 0]).split([m.intermediate_size, m.conv_dim, heads], -1)
        conv = xbc * m.conv1d.weight[:, 0, -1]
        xbc = m.act(conv + m.conv1d.bias if m.conv1d.bias is not None else conv)
        xs, b, c = xbc.split([m.intermediate_size, n * m.n_groups, n * m.n_groups], -1)
        dt = nn.functional.softplus(dt + m.dt_bias).clamp(*m.time_step_limit)  # (B, heads)
        bc = (b.view(-1, m.n_groups, n) * c.view(-1, m.n_groups, n)).sum(-1)  # (B, groups)
        bc = bc.repeat_interleave(heads // m.n_groups, dim=1)  # (B, heads)
        y = xs.view(-1, heads, p) * (dt * bc + m.D)[..., None]  # (B, heads, head_dim)
        return m.out_proj(m.norm(y.reshape(x.shape[0], -1), z))[:, None]


class AttentionMixer(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.attn = nn.MultiheadAttention(d, heads, dropout=dropout, batch_first=True)

    def forward(self, x, mask):
        pad = None if mask is None else ~mask.bool()
        return self.attn(x, x, x, key_padding_mask=pad, need_weights=False)[0]


class AdapterBlock(nn.Module):
    def __init__(self, mixer: nn.Module, d: int, mlp_ratio: float, dropout: float, eps: float):
        super().__init__()
        self.norm1 = nn.RMSNorm(d, eps=eps)
        self.mixer = mixer
        self.drop = nn.Dropout(dropout)
        self.norm2 = nn.RMSNorm(d, eps=eps)
        self.mlp = MLP(d, mlp_ratio, dropout)

    def forward(self, x, mask=None):  # (B, L, D) -> (B, L, D)
        x = x + self.drop(self.mixer(self.norm1(x), mask))
        return x + self.mlp(self.norm2(x))


def make_block(kind: str, d: int, opts) -> AdapterBlock:
    """kind: "mamba" or "attention"; opts carries d_state, d_conv, expand, head_dim, heads, mlp_ratio, dropout, eps."""
    if kind == "mamba":
        mixer = MambaMixer(d, opts.d_state, opts.d_conv, opts.expand, opts.head_dim, opts.rmsnorm_eps)
    elif kind == "attention":
        mixer = AttentionMixer(d, opts.attention_heads, opts.dropout)
    else:
        raise ValueError(f"unknown block kind {kind!r} (mamba or attention)")
    return AdapterBlock(mixer, d, opts.mlp_ratio, opts.dropout, opts.rmsnorm_eps)


def masked_mean(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, L, D), (B, L) -> (B, D): the mean over real tokens."""
    if mask is None:
        return x.mean(1)
    m = mask.to(x.dtype).unsqueeze(-1)
    return (x * m).sum(1) / m.sum(1).clamp(min=1)
