"""Offline training (PyTorch): data, preprocessing fused into ONNX, networks, training, evaluation, export, CLI."""
