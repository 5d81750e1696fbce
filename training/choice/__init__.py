"""Choosing a model on the training samples alone: candidates, inner CV, the search, the choice."""
