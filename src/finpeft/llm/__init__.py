"""The LLM track: small instruction-tuned causal LMs (SmolLM2-135M offline) as financial-task models."""
