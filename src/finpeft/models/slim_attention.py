"""Slim attention for the T5 decoder's self-attention: the generation cache keeps K only, V is recomputed.

Slim attention (Graef & Wasielewski, 2025, "Slim attention: cut your context memory in half without loss of
accuracy"): with square projections (d_model == heads * d_kv, true for every size in scratch/models.py),
K = X W_k^T and V = X W_v^T give V = K (W_v W_k^-1)^T, so V follows from K exactly. The decoder's self-attention
cache stores K and an empty (B, H, T, 0) value tensor: half the self-attention cache memory, bought with one
(T, d) x (d, d) product per step. Written here because neither transformers nor peft has it.

Only the cached (generation) path changes; training and single full forwards run transformers' T5Attention.
Shapes: hidden (B, t, d), keys (B, H, T, d_kv), merged keys (B, T, H * d_kv).
"""
from __future__ import annotations

import inspect

import torch
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.t5.modeling_t5 import T5Attention, eager_attention_forward

# the name T5Attention.forward takes the cache under, in the installed transformers
_CACHE_ARG = "cache" if "cache" in inspect.signature(T5Attention.forward).parameters else "past_key_values"


def value_from_key(k_weight: torch.Tensor, v_weight: torch.Tensor) -> torch.Tensor:
    """(inner, inner) M with V = K @ M, from nn.Linear weights W_k, W_v of shape (inner, d_model)."""
    if k_weight.shape[0] != k_weight.shape[1]:
        raise ValueError(f"slim attention needs a square key projection, got {tuple(k_weight.shape)} "
                         "(d_model must equal num_heads * d_kv)")
    m = torch.linalg.solve(k_weight.double().T, v_weight.double().T)  # W_k^-T W_v^T (inner, inner), in float64
    return m.to(k_weight.dtype)


class SlimT5Attention(T5Attention):
    """T5Attention whose self-attention cache holds keys only (use `enable`, which swaps the class in place)."""

    def _kv_map(self) -> torch.Tensor:
        version = (self.k.weight._version, self.v.weight._version, self.k.weight.data_ptr())
        if getattr(self, "_slim_version", None) != version:  # weights changed (training, loading): recompute
            self._slim_map = value_from_key(self.k.weight.detach(), self.v.weight.detach())
            self._slim_version = version
        return self._slim_map

    def forward(self, hidden_states, mask=None, key_value_states=None, position_bias=None, cache=None, **kwargs):
        # transformers >= 5.2x passes the cache as `cache=`; earlier 5.x releases as `past_key_values=`.
        past_key_values = cache if cache is not None else kwargs.pop("past_key_values", None)
        kwargs.pop("past_key_values", None)
        if key_value_states is not None or past_key_values is None:
            return super().forward(hidden_states, mask=mask, key_value_states=key_value_states,
                                   position_bias=position_bias, **{_CACHE_ARG: past_key_values}, **kwargs)
        cache = getattr(past_key_values, "self_attention_cache", past_key_values)
        b, t, _ = hidden_states.shape
        seen = cache.get_seq_length(self.layer_idx)
        query = self.q(hidden_states).view(b, t, -1, self.key_value_proj_dim).transpose(1, 2)  # (B, H, t, d_kv)
        key = self.k(hidden_states).view(b, t, -1, self.key_value_proj_dim).transpose(1, 2)
        no_value = key.new_empty(b, self.n_heads, t, 0)  # the cache's value slot stays empty
        keys, _ = cache.update(key, no_value, self.layer_idx)  # (B, H, T, d_kv)
        total = keys.shape[-2]
        merged = keys.transpose(1, 2).reshape(b, total, -1)  # (B, T, H * d_kv)
        values = (merged @ self._kv_map()).view(b, total, -1, self.key_value_proj_dim).transpose(1, 2)
        if position_bias is None:
            if self.has_relative_attention_bias:
                position_bias = self.compute_bias(t, total, device=query.device, past_seen_tokens=seen)
            else:
                position_bias = torch.zeros((1, self.n_heads, t, total), device=query.device, dtype=query.dtype)
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        out, weights = attend(self, query, keys, values, mask, dropout=0.0, scaling=self.scaling,
                              position_bias=position_bias, **kwargs)
        return self.o(out.reshape(b, t, -1).contiguous()), position_bias, weights


def decoder_self_attentions(model) -> list[T5Attention]:
    return [block.layer[0].SelfAttention for block in model.decoder.block]


def enable(model, on: bool = True):
    """Switch a T5 model's decoder self-attention to slim attention (or back); weights are untouched."""
    for attn in decoder_self_attentions(model):
        if on and attn.inner_dim != attn.d_model:
            raise ValueError(f"slim attention needs d_model == num_heads * d_kv, got {attn.d_model} and "
                             f"{attn.inner_dim}")
        attn.__class__ = SlimT5Attention if on else T5Attention
    model.config.finpeft_slim_attention = on
    return model


def cache_bytes(cache) -> dict[str, int]:
    """Bytes held by an EncoderDecoderCache, self-attention and cross-attention apart."""
    def size(c):
        return sum(t.numel() * t.element_size() for layer in c.layers for t in (layer.keys, layer.values)
                   if t is not None)
    return {"self": size(cache.self_attention_cache), "cross": size(cache.cross_attention_cache)}
