"""Honest evaluation: splits, metrics, baselines, the transfer-vs-baselines protocol, reports."""
