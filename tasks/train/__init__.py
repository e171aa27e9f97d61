"""The train step and what it is made of: the loop, token-budget batching, the fused loss, precision, LoRA and
freezing, model families, and learning curves."""
