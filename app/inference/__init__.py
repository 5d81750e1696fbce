"""Serving models: the registry, ONNX Runtime backends, dynamic batching."""
