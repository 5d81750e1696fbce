"""Networks and their configs: autoencoders, heads, checkpoints."""
