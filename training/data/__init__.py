"""Training data: bundled real data, synthetic data, and sources streamed from disk."""
