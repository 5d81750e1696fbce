"""The evaluation report: Markdown tables and PNG plots, every method against every baseline.

`compare` pairs the models split by split, `why` writes the explanation from the numbers,
`tables` makes the Markdown tables and `plots` the PNGs; this module words the protocol and lays
them all out in report.md, with summary.json, scores.json and external.json beside it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from training.protocol.methods import method, with_references
from training.protocol.run import ProtocolResult
from training.reporting.compare import (
    Summary,
    against_best,
    against_reference,
    baseline_pool,
    setting_of,
    settings,
    summarise,
    transfer_methods,
)
from training.reporting.plots import first_method, plot_attribution, plot_history, plots, pooled
from training.reporting.tables import (
    attributed,
    attribution_lines,
    external_table,
    metric_table,
    paired_batches_table,
    paired_table,
    per_batch_table,
    per_class_table,
    seen_table,
)
from training.reporting.why import explain

__all__ = ["plot_history", "summarise", "write_report"]


def write_report(result: ProtocolResult, folder: Path, *, title: str, data_note: str) -> Path:
    """Write report.md, summary.json, scores.json and PNG plots into `folder`; the Markdown path.

    Parameters
    ----------
    result:
        What `run_protocol` (and `run_external`) returned.
    folder:
        Output folder (created).
    title:
        Report heading.
    data_note:
        One paragraph on the data (source, scale, labels, how reduced the run is).
    """
    folder.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    summary = summarise(result)
    columns = settings(summary)
    models = _model_order(result, summary)
    best, references = against_best(result, summary), against_reference(result, summary)
    lines = [f"# {title}", "", data_note, "", "## Protocol", "", *_protocol_lines(result), ""]
    lines += ["## What each model saw", "", *seen_table(result), ""]
    lines += ["## Balanced accuracy (mean ± sd over splits)", ""]
    lines += metric_table(summary, columns, models, "balanced_accuracy")
    if "lobo" in summary:
        lines += [
            "",
            "### Per held-out batch (balanced accuracy)",
            "",
            *per_batch_table(result, models),
        ]
    lines += ["", "## Macro-F1", "", *metric_table(summary, columns, models, "macro_f1")]
    lines += [
        "",
        "## AUROC (one-vs-rest, macro)",
        "",
        *metric_table(summary, columns, models, "auroc"),
    ]
    lines += [
        "",
        "## Against the best baseline (paired by split)",
        "",
        *paired_table(best, "best baseline"),
    ]
    if references:
        lines += ["", "## With and without the rows without a label (paired by split)", ""]
        lines += paired_table(references, "without them")
        if "lobo" in summary:
            lines += ["", *paired_batches_table(result, references)]
    lines += ["", "## Why", "", *[p + "\n" for p in explain(result, summary, best, references)]]
    if result.external:
        lines += [
            f"## External validation: {result.external_name}",
            "",
            *external_table(result),
            "",
        ]
    pngs = plots(result, summary, columns, models, folder)
    pngs += [plot_attribution(name, a, folder) for name, a in attributed(result, models)]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    if result.attributions:
        lines += ["## What drives each model (cross-validation test samples)", ""]
        lines += [*attribution_lines(result, models), ""]
    first = first_method(result)
    if first is not None and (cfg.folds or cfg.protocol == "lobo"):
        lines += [f"## `{first}` per class (pooled test predictions, {pooled(result)})", ""]
        lines += per_class_table(result, first)
    if result.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in result.notes]]
    lines += ["", f"Configuration: `{json.dumps(_jsonable(result.config), sort_keys=True)}`", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    rows = [
        {
            "setting": setting_of(o),
            "split": o.repeat,
            "name": o.split,
            "model": o.model,
            **o.metrics,
        }
        for o in result.outcomes
    ]
    (folder / "scores.json").write_text(json.dumps(rows, indent=0, sort_keys=True) + "\n")
    if result.external:
        external = {m: dataclasses.asdict(r) for m, r in result.external.items()}
        (folder / "external.json").write_text(json.dumps(external, indent=1, sort_keys=True) + "\n")
    return path


def _model_order(result: ProtocolResult, summary: Summary) -> list[str]:
    present = {m for rows in summary.values() for m in rows} | set(result.external)
    return [m for m in (*transfer_methods(result), *baseline_pool(result)) if m in present]


def _protocol_lines(result: ProtocolResult) -> list[str]:
    cfg = result.config
    lines = [
        f"- Classes: the {len(result.classes)} with ≥ {cfg.min_cells} rows "
        f"({', '.join(result.classes)}), {result.n_cells} of {result.n_total} rows.",
    ]
    if cfg.protocol == "lobo":
        lines += [
            f"- Leave one batch out (`{cfg.batch_column}`): each batch in turn is the test set "
            "and is kept out of pretraining; "
            "the other batches' rows are the labelled training rows; the held-out batch's rows, "
            "their labels hidden, are the rows without a label that adaptation and "
            "semi-supervision get (transductive; their labels are never seen). A class no "
            "other batch has is not scored.",
            f"- Adaptation (`dann`, `mmd`) aligns the embeddings of every batch in "
            f"`{cfg.batch_column}`, the held-out one included.",
        ]
    else:
        lines += [
            f"- Few-shot: {cfg.repeats} seeded repeats; each holds out a stratified "
            f"{cfg.test_fraction:.0%} of those rows as the test set, then draws k = "
            f"{', '.join(map(str, cfg.shots))} labelled rows per class from the rest; the "
            "split's other non-test rows, labels hidden, are the rows without a label.",
        ]
        if cfg.folds:
            lines.append(
                f"- Cross-validation: stratified {cfg.folds}-fold over the same rows; the other "
                "folds are the labelled training rows (rows of the classes not evaluated, "
                "labels hidden, are its only rows without a label)."
            )
    lines += [
        f"- Pretraining: {result.pretraining}; {_pretraining_scope(result)} Encoder: "
        f"{_encoder_shape(result)}; {result.n_pretrain_rows} pretraining rows; "
        f"{result.panel_overlap:.0%} of its genes are in the target.",
        "- Methods: "
        + "; ".join(f"`{m}`: {method(m).summary}" for m in with_references(cfg.methods))
        + ". Heads are linear, class-weighted cross-entropy, early stopping on a stratified "
        "part of the labelled rows.",
        "- Baselines: scikit-learn on the target's own genes (per-gene z-scores fitted on the "
        "split's non-test rows), the same training and test rows.",
        "- Paired differences: per split, against the best baseline of each column (the "
        "highest mean among the baselines and `scratch`); a split within ±0.01 is a tie.",
        "- Metrics: scikit-learn balanced accuracy, macro-F1, one-vs-rest macro AUROC.",
    ]
    return lines


def _pretraining_scope(result: ProtocolResult) -> str:
    kind = result.pretraining_kind
    if kind == "target":
        return "fitted per split on the rows that are not its test rows, so no test row is seen."
    if kind == "source":
        return "fitted once on the source alone; no target row is seen."
    if kind == "source+target":
        return "fitted per split on the source and the split's non-test target rows, so no test "
        "row is seen."
    return (
        "used as published; whether it saw the target's rows is for its card to say (the "
        "training data named above)."
    )


def _encoder_shape(result: ProtocolResult) -> str:
    cfg = result.config
    if result.pretraining_kind == "published":
        return "as published"
    return f"{cfg.encoder.upper()} {'→'.join(map(str, cfg.hidden))}→{cfg.latent}"


def _jsonable(cfg: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(cfg)
