"""Test helpers: keyword-only factories for small real ONNX models and cards, the app settings and
clients the tests use, request bodies from pbmc68k tables."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from fastapi.testclient import TestClient
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy import Engine

from app.config import Settings
from app.main import create_app
from contract.card import (
    CARD_FILE,
    ONNX_FILE,
    GenePanel,
    InputScale,
    InputTransform,
    ModelCard,
    ModelKind,
    ModelTask,
    TensorSpec,
    sha256_file,
    task_outputs,
)

REPO = Path(__file__).resolve().parents[1]
ENCODER = "pbmc68k-encoder"
GENES = [f"G{i}" for i in range(10)]
LABELS = ["a", "b", "c"]
TARGETS = ["age", "score"]


def linear_onnx(
    *, weights: npt.NDArray[np.float32], classifier: bool, out: str = "embedding", opset: int = 17
) -> onnx.ModelProto:
    """expression (batch, genes) @ weights → `out`, or → logits + softmax probabilities."""
    w = numpy_helper.from_array(weights.astype(np.float32), name="W")
    out = "logits" if classifier else out
    nodes = [helper.make_node("MatMul", ["expression", "W"], [out])]
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", weights.shape[1]])]
    if classifier:
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        outputs.append(
            helper.make_tensor_value_info(
                "probabilities", TensorProto.FLOAT, ["batch", weights.shape[1]]
            )
        )
    graph = helper.make_graph(
        nodes,
        "linear",
        [
            helper.make_tensor_value_info(
                "expression", TensorProto.FLOAT, ["batch", weights.shape[0]]
            )
        ],
        outputs,
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model


def write_model(
    *,
    root: Path,
    name: str,
    version: int = 1,
    genes: list[str],
    labels: list[str] | None = None,
    targets: list[str] | None = None,
    latent: int = 2,
    aliases: list[list[str]] | None = None,
    fill_values: list[float] | None = None,
    seed: int = 0,
    job: str | None = None,
    input_transforms: list[InputTransform] | None = None,
) -> Path:
    """Write models/<name>/<version>/ with a real linear ONNX graph and a valid card.

    With `labels` a classifier, with `targets` a regressor (output ``prediction``), else an encoder;
    `job` names the service job that published it (as a fine-tuning job's card does).
    """
    folder = root / name / str(version)
    folder.mkdir(parents=True)
    classifier = labels is not None
    width = len(labels) if labels else len(targets) if targets else latent
    weights = np.random.default_rng(seed).normal(size=(len(genes), width)).astype(np.float32)
    out = "prediction" if targets else "embedding"
    onnx.save(linear_onnx(weights=weights, classifier=classifier, out=out), folder / ONNX_FILE)
    outputs = (
        [
            TensorSpec(name="logits", shape=["batch", width]),
            TensorSpec(name="probabilities", shape=["batch", width]),
        ]
        if classifier
        else [TensorSpec(name=out, shape=["batch", width])]
    )
    kind = (
        ModelKind.classifier
        if classifier
        else ModelKind.regressor
        if targets
        else ModelKind.encoder
    )
    card = ModelCard(
        name=name,
        version=version,
        kind=kind,
        description="test model",
        created_at=datetime.now(UTC),
        input_scale=InputScale.log,
        input_transforms=input_transforms or [],
        panel=GenePanel(
            ids=genes,
            aliases=aliases or [],
            fill_values=fill_values if fill_values is not None else [0.0] * len(genes),
        ),
        inputs=[TensorSpec(name="expression", shape=["batch", len(genes)])],
        outputs=outputs,
        labels=labels or targets,
        job=job,
        files={ONNX_FILE: sha256_file(folder / ONNX_FILE)},
    )
    card.write(folder)
    assert (folder / CARD_FILE).is_file()
    return folder


def published_encoder(*, models_dir: Path, description: str) -> Path:
    """The version folder of a small encoder 'enc' pretrained on synthetic counts (120 samples,
    40 genes, latent 4) and published into `models_dir` (heads published on it go beside it)."""
    from training.data.synthetic import make_synthetic
    from training.evaluation.splits import hold_out
    from training.nn.config import TrainConfig
    from training.nn.encoders import AutoencoderConfig
    from training.publish.encoder import pretrain_and_export

    m = make_synthetic(120, 40, n_classes=3, seed=5)
    run = pretrain_and_export(
        hold_out("source", m, test_fraction=0.0, seed=0, stratify_by=None),
        input_scale=InputScale.counts,
        model_cfg=AutoencoderConfig(n_genes=40, hidden=(16,), latent=4),
        train_cfg=TrainConfig(epochs=3, batch_size=32, seed=0),
        name="enc",
        models_dir=models_dir,
        description=description,
        progress=False,
    )
    return run.folder


MULTI_TASKS: dict[str, list[str] | None] = {"cell": LABELS, "phase": ["G1", "S"], "score": None}


def write_multitask_model(
    *,
    root: Path,
    name: str,
    genes: list[str],
    tasks: dict[str, list[str] | None] | None = None,
    version: int = 1,
    seed: int = 0,
) -> Path:
    """Write models/<name>/<version>/ with a real linear multi-task ONNX graph and its card:
    per task `t` with classes, expression @ W_t → `t.logits` and softmax `t.probabilities`;
    per task with None, expression @ w_t → `t.prediction`. Weights W_t are the initializers,
    in task order."""
    tasks = MULTI_TASKS if tasks is None else tasks
    folder = root / name / str(version)
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    nodes, outputs, inits, specs, cards = [], [], [], [], []
    for task, classes in tasks.items():
        kind = "classification" if classes else "regression"
        width = len(classes) if classes else 1
        w = numpy_helper.from_array(
            rng.normal(size=(len(genes), width)).astype(np.float32), name=f"W_{task}"
        )
        inits.append(w)
        names = task_outputs(task, kind)  # type: ignore[arg-type]
        nodes.append(helper.make_node("MatMul", ["expression", f"W_{task}"], [names[0]]))
        if classes:
            nodes.append(helper.make_node("Softmax", [names[0]], [names[1]], axis=1))
            nodes.append(helper.make_node("ArgMax", [names[0]], [f"{task}_i"], axis=1, keepdims=1))
            nodes.append(helper.make_node("Cast", [f"{task}_i"], [names[2]], to=TensorProto.FLOAT))
        for out in names:
            w_out = 1 if out.endswith(".prediction") else width
            outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", w_out]))
            specs.append(TensorSpec(name=out, shape=["batch", w_out]))
        cards.append(
            ModelTask(
                name=task,
                kind=kind,  # type: ignore[arg-type]
                labels=classes or [task],
                weight=1.0,
                outputs=names,
            )
        )
    graph = helper.make_graph(
        nodes,
        "multitask",
        [helper.make_tensor_value_info("expression", TensorProto.FLOAT, ["batch", len(genes)])],
        outputs,
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, folder / ONNX_FILE)
    ModelCard(
        name=name,
        version=version,
        kind=ModelKind.multitask,
        description="test multi-task model",
        created_at=datetime.now(UTC),
        input_scale=InputScale.log,
        panel=GenePanel(ids=genes, fill_values=[0.0] * len(genes)),
        inputs=[TensorSpec(name="expression", shape=["batch", len(genes)])],
        outputs=specs,
        tasks=cards,
        files={ONNX_FILE: sha256_file(folder / ONNX_FILE)},
    ).write(folder)
    return folder


def service_client(engine: Engine, models: Path, data: Path, **overrides: object) -> TestClient:
    """The real app on `engine` with jobs in-process, on the CPU."""
    settings = make_settings(
        engine.url.render_as_string(hide_password=False),
        models,
        **{"data_dir": data, "reload_interval_s": 0.2, "job_lease_seconds": 3.0, **overrides},
    )
    return TestClient(create_app(settings), raise_server_exceptions=False)


def expression_body(table: pd.DataFrame, n: int) -> dict[str, object]:
    """A predict request with the first `n` cells of a pbmc table."""
    genes = [c for c in table.columns if c != "bulk_labels"]
    rows = table.iloc[:n]
    return {
        "genes": genes,
        "samples": [
            {"id": str(i), "values": [float(v) for v in rows.loc[i, genes]]} for i in rows.index
        ],
    }


def make_settings(database_url: str, models_dir: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"providers": ["CPUExecutionProvider"], **overrides}
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=database_url,
        models_dir=models_dir,
        **values,  # type: ignore[arg-type]
    )


def once_loaded(send: Callable[..., Any], url: str, seconds: float = 10, **kwargs: Any) -> Any:
    """`send(url, **kwargs)` again while it answers 404: until the registry's poller has loaded a
    newly published version (at most `seconds`)."""
    deadline = time.monotonic() + seconds
    while (r := send(url, **kwargs)).status_code == 404:
        assert time.monotonic() < deadline, r.text
        time.sleep(0.2)
    return r


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until_ready(
    proc: subprocess.Popen[Any], url: str, seconds: float, logs: Callable[[], str]
) -> None:
    """Poll `url` until it answers 200 while `proc` keeps running (`logs()` tells why not)."""
    deadline = time.monotonic() + seconds
    while True:
        assert proc.poll() is None, logs()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        assert time.monotonic() < deadline, f"{url} not ready in {seconds:.0f} s\n{logs()}"
        time.sleep(0.2)
