"""Verified export: torch graphs to ONNX, parity checks, the model card, the version store."""
