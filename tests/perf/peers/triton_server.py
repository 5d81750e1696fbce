"""Peer: Triton Inference Server through PyTriton, serving the benchmark's model.onnx with ONNX
Runtime (CPU) from a Python model, with Triton's dynamic batcher (up to 256, 2 ms).

Runs in .peers/triton (Python 3.12 + nvidia-pytriton; `bash tests/perf/peers/setup.sh`), with
that Python's lib directory on LD_LIBRARY_PATH (tests/perf/peers/run.py sets it). Serves KServe v2
on --port (HTTP); gRPC and metrics on the next two ports.
"""

from __future__ import annotations

import argparse
import logging

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def session(path: str, providers: list[str]) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, opts, providers=providers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help="model.onnx")
    parser.add_argument("--name", required=True)
    parser.add_argument("--genes", type=int, required=True)
    parser.add_argument("--classes", type=int, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--providers", default="CPUExecutionProvider")
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--delay-us", type=int, default=2000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sess = session(args.model, args.providers.split(","))

    @batch
    def infer(expression: np.ndarray) -> dict[str, np.ndarray]:
        (probs,) = sess.run(["probabilities"], {"expression": expression.astype(np.float32)})
        return {"probabilities": probs}

    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=args.port,
        grpc_address="127.0.0.1",
        grpc_port=args.port + 1,
        metrics_port=args.port + 2,
        log_verbose=0,
    )
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=infer,
            inputs=[Tensor(name="expression", dtype=np.float32, shape=(args.genes,))],
            outputs=[Tensor(name="probabilities", dtype=np.float32, shape=(args.classes,))],
            config=ModelConfig(
                max_batch_size=args.max_batch,
                batcher=DynamicBatcher(max_queue_delay_microseconds=args.delay_us),
            ),
            strict=False,
        )
        triton.serve()


if __name__ == "__main__":
    main()
