"""Preprocessing on the training side: torch twins fused into ONNX, genexfer preprocess, its report."""
