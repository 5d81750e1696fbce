"""End to end: the real server (uvicorn subprocess) classifies real pbmc68k cells it never saw."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import scanpy as sc
from sklearn.metrics import balanced_accuracy_score
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from app.db.tables import Prediction
from contract import idmap
from contract.card import ModelCard
from tests.factories import REPO, free_port, wait_until_ready

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODELS = REPO / "models"
CLASSIFIER = "pbmc68k-celltype"
ENCODER = "pbmc68k-encoder"


@pytest.fixture
def server(engine: Engine, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "GENEXFER_DATABASE_URL": engine.url.render_as_string(hide_password=False),
        "GENEXFER_MODELS_DIR": str(MODELS),
        "GENEXFER_PROVIDERS": '["CPUExecutionProvider"]',
    }
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(proc, f"{base}/readyz", 60, (tmp_path / "server.log").read_text)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def _heldout_cells() -> tuple[list[str], list[str], np.ndarray, list[str]]:
    card = ModelCard.read(MODELS / CLASSIFIER / "1")
    assert card.training_data is not None
    heldout = card.training_data.heldout_sample_ids
    adata = sc.datasets.pbmc68k_reduced()
    rows = adata.obs_names.get_indexer(heldout)
    assert (rows >= 0).all()
    x = adata.raw.X[rows]
    x = np.asarray(x.toarray() if hasattr(x, "toarray") else x, dtype=np.float32)
    labels = adata.obs["bulk_labels"].astype(str).to_numpy()[rows].tolist()
    return heldout, list(adata.raw.var_names), x, labels


def test_classifies_heldout_pbmc_cells_and_records_them(server: str, engine: Engine) -> None:
    sample_ids, genes, x, truth = _heldout_cells()
    predicted: dict[str, str] = {}
    request_ids = []
    with httpx.Client(base_url=server, timeout=60) as client:
        for start in range(0, len(sample_ids), 50):
            body = {
                "genes": genes,
                "samples": [
                    {"id": sid, "values": row.tolist()}
                    for sid, row in zip(
                        sample_ids[start : start + 50], x[start : start + 50], strict=True
                    )
                ],
            }
            r = client.post(f"/v1/models/{CLASSIFIER}/classify", json=body)
            assert r.status_code == 200, r.text
            out = r.json()
            assert out["gene_overlap"]["fraction"] == 1.0
            assert out["model"]["name"] == CLASSIFIER
            request_ids.append(out["request_id"])
            predicted.update({p["id"]: p["label"] for p in out["predictions"]})
    score = balanced_accuracy_score(truth, [predicted[s] for s in sample_ids])
    print(
        f"\nheld-out pbmc68k cells: {len(sample_ids)}, balanced accuracy {score:.3f} (chance 0.100)"
    )
    assert score > 0.5
    with Session(engine) as s:
        rows = s.scalars(select(Prediction).where(Prediction.task == "classify")).all()
    assert sorted(r.request_id for r in rows) == sorted(request_ids)
    recorded = {
        sid: out["label"]
        for r in rows
        for sid, out in zip(r.sample_ids, r.outputs or [], strict=True)
    }
    assert recorded == predicted


def test_embeds_real_cells_and_refuses_a_poor_gene_match(server: str) -> None:
    sample_ids, genes, x, _ = _heldout_cells()
    with httpx.Client(base_url=server, timeout=60) as client:
        meta = client.get(f"/v1/models/{ENCODER}").json()
        latent = meta["outputs"][0]["shape"][-1]
        body = {"genes": genes, "samples": [{"id": sample_ids[0], "values": x[0].tolist()}]}
        r = client.post(f"/v1/models/{ENCODER}/embed", json=body)
        assert r.status_code == 200, r.text
        assert len(r.json()["embeddings"][0]["embedding"]) == latent
        keep = len(genes) // 3
        body = {"genes": genes[:keep], "samples": [{"id": "cell", "values": x[0, :keep].tolist()}]}
        r = client.post(f"/v1/models/{CLASSIFIER}/classify", json=body)
        assert r.status_code == 422
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["matched"] == keep
        ready = client.get("/readyz").json()
        assert {(m["name"], m["version"]) for m in ready["models"]} >= {
            (CLASSIFIER, 1),
            (ENCODER, 1),
        }


def _as_ensembl(genes: list[str]) -> list[str]:
    """Each gene's first Ensembl id (versioned, as GENCODE writes them) where the table has one."""
    out = []
    for name, entrez in zip(genes, idmap.resolve(genes).entrez, strict=True):
        ids = idmap.gene(entrez).ensembl if entrez else ()
        out.append(f"{ids[0]}.7" if ids else name)
    return out


def _classify(client: httpx.Client, genes: list[str], ids: list[str], x: np.ndarray) -> Any:
    body = {
        "genes": genes,
        "samples": [{"id": s, "values": v.tolist()} for s, v in zip(ids, x, strict=True)],
    }
    r = client.post(f"/v1/models/{CLASSIFIER}/classify", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_ensembl_ids_reach_the_symbol_panel_through_the_gene_table(server: str) -> None:
    sample_ids, genes, x, _ = _heldout_cells()
    ensembl = _as_ensembl(genes)
    assert sum(g.startswith("ENSG") for g in ensembl) > 0.95 * len(genes)
    with httpx.Client(base_url=server, timeout=60) as client:
        by_symbol = _classify(client, genes, sample_ids, x)
        by_ensembl = _classify(client, ensembl, sample_ids, x)
    overlap = by_ensembl["gene_overlap"]
    print(
        f"\npbmc68k genes as Ensembl ids: {overlap['matched']}/{overlap['panel_size']} matched "
        f"({overlap['matched_directly']} by name, {overlap['matched_via_table']} through the "
        f"table), {overlap['n_ambiguous']} ambiguous: {overlap['ambiguous_genes']}"
    )
    assert overlap["fraction"] >= 0.95
    assert overlap["matched_via_table"] > 0.9 * overlap["panel_size"]
    assert overlap["n_ambiguous"] == len(overlap["ambiguous_genes"]) > 0
    same = [
        a["label"] == b["label"]
        for a, b in zip(by_symbol["predictions"], by_ensembl["predictions"], strict=True)
    ]
    assert np.mean(same) >= 0.95  # only the few unmatched genes are filled with training means


def _counts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """pbmc68k's log1p(counts × 1e4 / library size) undone: each cell's counts on the panel
    genes, and the rest of its library (the genes pbmc68k_reduced does not keep)."""
    scaled = np.expm1(x.astype(np.float64))
    unit = np.array([row[row > 0].min() for row in scaled])  # 1e4 / library size
    counts = np.rint(scaled / unit[:, None])
    rest = np.rint(1e4 / unit - counts.sum(axis=1))
    assert (rest >= 0).all()
    return counts.astype(np.float32), rest.astype(np.float32)


def test_raw_counts_are_normalised_as_the_card_records(server: str) -> None:
    sample_ids, genes, x, _ = _heldout_cells()
    counts, rest = _counts(x)
    with httpx.Client(base_url=server, timeout=60) as client:
        by_log = _classify(client, genes, sample_ids, x)
        raw = np.column_stack([counts, rest])
        by_counts = _classify(client, [*genes, "OTHER_GENES"], sample_ids, raw)
        table = client.post(
            f"/v1/models/{CLASSIFIER}/classify",
            json={"genes": genes, "samples": [{"id": "c", "values": counts[0].tolist()}]},
            headers={"Accept": "text/csv"},
        )
    assert by_counts["transform_applied"] == "counts: normalize_total(target_sum=10000), log1p"
    assert by_log["transform_applied"] is None
    same = [
        a["label"] == b["label"]
        for a, b in zip(by_log["predictions"], by_counts["predictions"], strict=True)
    ]
    assert np.mean(same) >= 0.95
    assert table.headers["x-input-transform"] == by_counts["transform_applied"]
