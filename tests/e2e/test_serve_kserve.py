"""End to end: the real tritonclient.http against a real `genexfer serve` on real pbmc68k cells."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.e2e.test_serve_pbmc import CLASSIFIER, _heldout_cells, server

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
__all__ = ["server"]  # the fixture, shared with the /v1 end-to-end test


def _panel_order(panel: list[str]) -> tuple[list[str], np.ndarray]:
    """40 held-out cells, columns in the model's panel order (v2 carries no gene names)."""
    sample_ids, genes, x, _ = _heldout_cells()
    column = {g: i for i, g in enumerate(genes)}
    return sample_ids[:40], x[:40][:, [column[g] for g in panel]]


def test_tritonclient_metadata_readiness_and_inference(server: str) -> None:
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live()
    assert client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    meta = client.get_model_metadata(CLASSIFIER)
    assert meta["platform"] == "onnxruntime_onnx"
    (spec,) = meta["inputs"]
    assert client.is_model_ready(CLASSIFIER)
    assert client.is_model_ready(CLASSIFIER, model_version="1")
    assert not client.is_model_ready(CLASSIFIER, model_version="99")

    card = httpx.get(f"{server}/v1/models/{CLASSIFIER}").json()
    sample_ids, x = _panel_order(card["genes"])
    assert spec["shape"] == [-1, x.shape[1]]
    # v2 must give the probabilities /v1 gives for the same cells
    v1 = httpx.post(
        f"{server}/v1/models/{CLASSIFIER}/classify",
        json={
            "genes": card["genes"],
            "samples": [
                {"id": s, "values": r.tolist()} for s, r in zip(sample_ids, x, strict=True)
            ],
        },
        timeout=60,
    ).json()
    labels = card["labels"]
    expected = np.array([[p["probabilities"][lab] for lab in labels] for p in v1["predictions"]])

    for binary, compression in ((True, None), (True, "gzip"), (False, None)):
        tensor = triton.InferInput(spec["name"], list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        wanted = [triton.InferRequestedOutput("probabilities", binary_data=binary)]
        result = client.infer(
            CLASSIFIER,
            [tensor],
            outputs=wanted,
            model_version="1",
            request_compression_algorithm=compression,
        )
        np.testing.assert_allclose(result.as_numpy("probabilities"), expected, rtol=1e-4, atol=1e-6)
    tensor = triton.InferInput(spec["name"], list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)  # tritonclient's defaults: binary in, every output binary out
    result = client.infer(CLASSIFIER, [tensor])
    assert result.as_numpy("logits").shape == (len(sample_ids), len(labels))

    bad = triton.InferInput(spec["name"], [1, 3], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 3), np.float32))
    with pytest.raises(InferenceServerException, match=r"takes \[-1, "):
        client.infer(CLASSIFIER, [bad])
    with pytest.raises(InferenceServerException, match="no model named"):
        client.get_model_metadata("no-such-model")
    client.close()
