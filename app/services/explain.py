"""Explanations served with classifications: each sample's top genes by integrated gradients
(the version's explanation graph) and, on request, the gene sets those genes are enriched in."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import numpy as np

from app.errors import CannotExplain, InvalidRequest
from app.inference.backend import Array
from app.inference.registry import LoadedModel
from contract.align import PanelInput
from contract.genesets import Enricher, collection_names
from contract.vocab import GeneSetCollectionName

ENRICHED_P = 0.05  # the sets listed: nominal p at most this, each with its BH q
MAX_SETS = 20
EXPLAINABLE = (
    "explanations are exported for neural classifiers (encoder + head with ReLU, GELU, ELU, "
    "SiLU, tanh or sigmoid layers, behind any fused preprocessing but DESeq2's median of ratios "
    "and the VST) and for logistic-regression and MLP baselines; tools/add_explanation.py adds "
    "one to an older neural version"
)


def check(model: LoadedModel, explain: int | None, gene_sets: str | None) -> None:
    """Refuse (422) what cannot be explained before any work is done."""
    card = model.card
    if explain is None:
        if gene_sets is not None:
            raise InvalidRequest(
                "gene_sets tests the top genes of an explanation: ask for them with explain=N",
                parameter="gene_sets",
            )
        return
    if card.explain is None or model.explainer is None:
        raise CannotExplain(
            f"{card.name}/{card.version} has no explanation graph; {EXPLAINABLE}",
            parameter="explain",
        )
    if not 1 <= explain <= card.n_genes:
        raise InvalidRequest(
            f"explain={explain}: ask for 1 to {card.n_genes} genes (the model's panel)",
            parameter="explain",
        )


async def add_explanations(
    model: LoadedModel,
    done: PanelInput,
    probabilities: Array,
    rows: list[dict[str, Any]],
    *,
    top: int,
    gene_sets: GeneSetCollectionName | None,
) -> None:
    """Give each row its `explanation`: the `top` genes for its predicted label and, with
    `gene_sets`, their enrichment."""
    explainer, spec = model.explainer, model.card.explain
    assert explainer is not None
    assert spec is not None
    target = probabilities.argmax(axis=1).astype(np.int64)
    attributions = await asyncio.to_thread(explainer.attributions, done.values, target)
    await asyncio.to_thread(_fill, model, done, attributions, target, rows, top, gene_sets)


def _fill(
    model: LoadedModel,
    done: PanelInput,
    attributions: Array,
    target: np.ndarray,
    rows: list[dict[str, Any]],
    top: int,
    gene_sets: GeneSetCollectionName | None,
) -> None:
    card = model.card
    spec = card.explain
    assert spec is not None
    assert card.labels is not None
    panel = card.panel.ids
    source, names = done.alignment.source, done.folded.genes
    enricher = _enricher(gene_sets, tuple(panel)) if gene_sets is not None else None
    symbols = _names(gene_sets, tuple(panel)) if gene_sets is not None else ()
    for row, values, k in zip(rows, attributions, target.tolist(), strict=True):
        order = np.argsort(-np.abs(values), kind="stable")[:top]
        genes = [
            {
                "gene": names[source[j]] if source[j] >= 0 else panel[j],
                "panel_gene": panel[j],
                "attribution": float(values[j]),
                "in_input": bool(source[j] >= 0),
            }
            for j in order.tolist()
        ]
        explanation: dict[str, Any] = {
            "target": card.labels[k],
            "method": spec.method,
            "baseline": spec.baseline,
            "steps": spec.steps,
            "exact": spec.exact,
            "top_genes": genes,
        }
        if enricher is not None:
            found = enricher.test((symbols[j] for j in order.tolist()), max_p=ENRICHED_P)
            explanation["gene_set_collection"] = gene_sets
            explanation["gene_sets"] = [
                {
                    "id": r.set_id,
                    "name": r.name,
                    "overlap": list(r.overlap),
                    "set_size": r.set_size,
                    "p": r.p,
                    "q": r.q,
                }
                for r in found
            ][:MAX_SETS]
        row["explanation"] = explanation


@functools.lru_cache(maxsize=16)
def _names(collection: GeneSetCollectionName, panel: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(collection_names(panel, collection))


@functools.lru_cache(maxsize=16)
def _enricher(collection: GeneSetCollectionName, panel: tuple[str, ...]) -> Enricher:
    """The collection restricted to a model's panel (named as the collection names genes),
    built once per model."""
    return Enricher(collection, _names(collection, panel))
