"""Honest evaluation: splits, metrics, baselines, external validation, attribution, multi-task."""
