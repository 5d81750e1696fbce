"""Honest evaluation's parts: splits, metrics, baselines, external validation, attribution,
multi-task scoring."""
