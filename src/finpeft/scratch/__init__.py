"""Models of one's own, from scratch on domain text: a corpus tokenizer, T5 span-corruption pretraining and a
Mamba2 causal LM (issue 8)."""
