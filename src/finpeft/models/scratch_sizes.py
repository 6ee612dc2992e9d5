"""Model sizes for pretraining from scratch. T5 sizes follow T5 v1.1 (gated-GELU feed-forward, no dropout in
pretraining, relative position bias with 32 buckets); `small` is t5-small's shape. Unlike v1.1, the input
embedding and the LM head are TIED, with the original T5's d_model^-0.5 scaling of the decoder output:
transformers >= 5.2x forces `T5Config.tie_word_embeddings=True`, so a "v1.1" config gets a tied head without the
scaling, whose logits are sqrt(d_model) too large unless the shared matrix is shrunk - and finpeft's first
pretraining shrank it to std d_model^-0.5, which left the encoder's token embeddings ~11x weaker than its layer
outputs: the encoder output collapsed to one direction and pretraining hurt fine-tuning (docs/benchmarks.md,
issue 21). Tied + scaled keeps T5's std-1 embeddings and unit-scale logits. tests/test_scratch.py checks this.
Mamba2 sizes keep hidden * expand = heads * head_dim, as Mamba2 requires."""
from __future__ import annotations

T5_SIZES = {  # d_model, d_ff, layers (encoder = decoder), heads, d_kv
    "tiny": (128, 512, 2, 4, 32),
    "mini": (256, 1024, 4, 4, 64),
    "small": (512, 2048, 6, 8, 64),
}
MAMBA2_SIZES = {  # hidden, layers, state, head_dim
    "tiny": (128, 2, 16, 32),
    "mini": (256, 4, 32, 64),
    "small": (512, 8, 64, 64),
}


def t5_config(size: str, vocab_size: int, pad_id: int, eos_id: int, **overrides):
    from transformers import T5Config
    d, ff, layers, heads, kv = T5_SIZES[size]
    return T5Config(vocab_size=vocab_size, d_model=d, d_ff=ff, num_layers=layers, num_decoder_layers=layers,
                    num_heads=heads, d_kv=kv, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                    tie_word_embeddings=True, pad_token_id=pad_id, eos_token_id=eos_id,
                    decoder_start_token_id=pad_id, **overrides)


def mamba2_config(size: str, vocab_size: int, pad_id: int, eos_id: int, **overrides):
    from transformers import Mamba2Config
    hidden, layers, state, head_dim = MAMBA2_SIZES[size]
    return Mamba2Config(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, state_size=state,
                        expand=2, head_dim=head_dim, num_heads=hidden * 2 // head_dim, n_groups=1, chunk_size=64,
                        tie_word_embeddings=True, pad_token_id=pad_id, eos_token_id=eos_id, bos_token_id=eos_id,
                        **overrides)
