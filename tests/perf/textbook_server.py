"""The textbook baseline: FastAPI + pydantic request model + PyTorch eager, one request at a time.

What a tutorial gives: a JSON body validated by pydantic, `torch.tensor(body.values)`, a forward
pass under `no_grad`, a list of dicts back. Same model (rebuilt from the same seed) as the bench.
Run: `python -m uvicorn tests.perf.textbook_server:app --port 8001`.
"""

from __future__ import annotations

import torch
from fastapi import FastAPI
from pydantic import BaseModel

from tests.perf.model import LABELS, build

app = FastAPI(title="textbook baseline")
autoencoder, head = build()


class Profiles(BaseModel):
    values: list[list[float]]


class Prediction(BaseModel):
    label: str
    probabilities: dict[str, float]


@app.post("/predict")
def predict(body: Profiles) -> list[Prediction]:
    with torch.no_grad():
        logits = head(autoencoder.encoder(torch.tensor(body.values, dtype=torch.float32)))
        probs = torch.softmax(logits, dim=1)
    return [
        Prediction(
            label=LABELS[int(row.argmax())],
            probabilities=dict(zip(LABELS, row.tolist(), strict=True)),
        )
        for row in probs
    ]
