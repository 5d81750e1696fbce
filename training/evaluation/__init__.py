"""Honest evaluation: splits, metrics, baselines, methods, attribution, the transfer protocol."""
