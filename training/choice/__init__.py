"""Choosing a model on the training samples alone: candidates, inner cross-validation, the
choice."""
