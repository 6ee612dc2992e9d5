"""Stage 2, the models: backbone registry and offline weights (backbones, cache, zipped, gguf), the frozen-encoder
feature cache, the hand-written adapter heads (adapters/) and the from-scratch T5 / Mamba2 classifiers."""
