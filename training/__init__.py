"""Offline training (PyTorch): data, networks, training, evaluation, export, the CLI."""
