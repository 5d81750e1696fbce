"""Classify examples/pbmc68k-4cells.npy over the Open Inference Protocol (KServe v2), binary.

Needs `tritonclient[http]` (in the dev extra: `make test` installs it) and a running service:

    .venv/bin/python examples/kserve_client.py [--url 127.0.0.1:8000] [--model pbmc68k-celltype]

v2 carries no gene names: the matrix must be in the model's panel order (GET /v1/models/{name}
lists it), which is how make_examples.py wrote the .npy.
"""

from __future__ import annotations

import argparse
import json
import urllib.request
from pathlib import Path

import numpy as np
import tritonclient.http as triton

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="127.0.0.1:8000", help="host:port of the service")
    parser.add_argument("--model", default="pbmc68k-celltype")
    args = parser.parse_args()

    x = np.load(HERE / "pbmc68k-4cells.npy", allow_pickle=False)  # 4 × 765 float32
    client = triton.InferenceServerClient(args.url)
    card = client.get_model_metadata(args.model)
    name = card["inputs"][0]["name"]  # "expression"
    tensor = triton.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x, binary_data=True)
    wanted = [triton.InferRequestedOutput("probabilities", binary_data=True)]
    probabilities = client.infer(args.model, [tensor], outputs=wanted).as_numpy("probabilities")

    # v2 metadata has tensor shapes only; the class names are on the /v1 model card
    with urllib.request.urlopen(f"http://{args.url}/v1/models/{args.model}") as answer:
        labels = json.load(answer)["labels"]
    for row in probabilities:
        best = int(row.argmax())
        print(f"{labels[best]}\t{row[best]:.3f}")


if __name__ == "__main__":
    main()
