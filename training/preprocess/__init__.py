"""Training-side preprocessing: torch twins fused into ONNX, `genexfer preprocess`, its report."""
