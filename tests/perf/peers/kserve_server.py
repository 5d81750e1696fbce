"""Peer: KServe's Python ModelServer, serving the benchmark's model.onnx with ONNX Runtime (CPU).

Runs in .peers/kserve (`bash tests/perf/peers/setup.sh`); KServe v2 REST (JSON and binary
tensors) on --port, one uvicorn worker, no gRPC. The model's predict runs ONNX Runtime in a
thread (KServe has no dynamic batcher of its own).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import kserve
import numpy as np
import onnxruntime as ort
from kserve import InferOutput, InferRequest, InferResponse


class OnnxModel(kserve.Model):  # type: ignore[misc]
    def __init__(self, name: str, path: str, providers: list[str]) -> None:
        super().__init__(name)
        self.path, self.providers = path, providers
        self.load()

    def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(self.path, opts, providers=self.providers)
        self.ready = True
        return True

    async def predict(
        self, payload: InferRequest, headers: Any = None, response_headers: Any = None
    ) -> InferResponse:
        x = np.asarray(payload.inputs[0].as_numpy(), dtype=np.float32)
        (probs,) = await asyncio.to_thread(self.session.run, ["probabilities"], {"expression": x})
        binary = bool(payload.parameters and payload.parameters.get("binary_data_output"))
        out = InferOutput(name="probabilities", shape=list(probs.shape), datatype="FP32")
        out.set_data_from_numpy(probs, binary_data=binary)
        return InferResponse(
            response_id=payload.id or "", model_name=self.name, infer_outputs=[out],
            use_binary_outputs=binary,
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--providers", default="CPUExecutionProvider")
    args, _ = parser.parse_known_args()
    model = OnnxModel(args.name, args.model, args.providers.split(","))
    kserve.ModelServer(http_port=args.port, workers=1, enable_grpc=False).start([model])


if __name__ == "__main__":
    main()
