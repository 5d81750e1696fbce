"""The evaluation report: Markdown tables and PNG plots, every method against every baseline.

`compare` pairs the models split by split, `why` writes the explanation from the numbers; this
module lays them out with what each model saw, the per-batch table of a leave-one-batch-out run
and the external validation.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.attribution import ALL_CLASSES, Attribution
from training.evaluation.methods import METHODS, method, with_references
from training.evaluation.metrics import per_class_report
from training.evaluation.protocol import ProtocolResult
from training.reporting.compare import (
    Paired,
    Summary,
    against_best,
    against_reference,
    baseline_pool,
    by_name,
    scores,
    setting_of,
    settings,
    summarise,
    transfer_methods,
)
from training.reporting.plots import first_method, plot_attribution, plot_history, plots, pooled
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
    lines += ["## What each model saw", "", *_seen(result), ""]
    lines += ["## Balanced accuracy (mean ± sd over splits)", ""]
    lines += _table(summary, columns, models, "balanced_accuracy")
    if "lobo" in summary:
        lines += ["", "### Per held-out batch (balanced accuracy)", "", *_per_batch(result, models)]
    lines += ["", "## Macro-F1", "", *_table(summary, columns, models, "macro_f1")]
    lines += ["", "## AUROC (one-vs-rest, macro)", "", *_table(summary, columns, models, "auroc")]
    lines += [
        "",
        "## Against the best baseline (paired by split)",
        "",
        *_paired(best, "best baseline"),
    ]
    if references:
        lines += ["", "## With and without the rows without a label (paired by split)", ""]
        lines += _paired(references, "without them")
        if "lobo" in summary:
            lines += ["", *_paired_batches(result, references)]
    lines += ["", "## Why", "", *[p + "\n" for p in explain(result, summary, best, references)]]
    if result.external:
        lines += [f"## External validation: {result.external_name}", "", *_external(result), ""]
    pngs = plots(result, summary, columns, models, folder)
    pngs += [plot_attribution(name, a, folder) for name, a in _ordered(result, models)]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in pngs] + [""]
    if result.attributions:
        lines += ["## What drives each model (cross-validation test samples)", ""]
        lines += [*attribution_lines(result, models), ""]
    first = first_method(result)
    if first is not None and (cfg.folds or cfg.protocol == "lobo"):
        lines += [f"## `{first}` per class (pooled test predictions, {pooled(result)})", ""]
        lines += _per_class(result, first)
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


def _label(setting: str) -> str:
    if setting == "cv":
        return "k-fold CV"
    return "held-out batches" if setting == "lobo" else f"{setting} per class"


def _table(summary: Summary, columns: list[str], models: list[str], metric: str) -> list[str]:
    lines = ["| model | " + " | ".join(_label(s) for s in columns) + " |"]
    lines.append("|---|" + "---|" * len(columns))
    for m in models:
        cells = []
        for s in columns:
            value = summary[s].get(m, {}).get(metric)
            cells.append("–" if value is None else f"{value[0]:.3f} ± {value[1]:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


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


def _seen(result: ProtocolResult) -> list[str]:
    cfg = result.config
    if cfg.protocol == "lobo":
        labelled, unlabelled = "the other batches' rows", "the held-out batch's rows"
    else:
        labelled = "k per class" + (" (few-shot) or the other folds (CV)" if cfg.folds else "")
        unlabelled = "the split's other non-test rows"
    if result.external:
        unlabelled += f"; for external validation, {result.external_name}'s rows"
    lines = [
        "| model | pretraining data | labelled data | data without labels |",
        "|---|---|---|---|",
    ]
    for m in with_references(cfg.methods):
        spec = METHODS[m]
        pretrained = result.pretraining if spec.pretrained else "none (random weights)"
        rows = f"{unlabelled} (labels hidden)" if spec.unlabelled else "none"
        lines.append(f"| {m} | {pretrained} | {labelled} | {rows} |")
    for b in cfg.baselines:
        lines.append(f"| {b} | none | {labelled} | none |")
    lines.append("")
    text = "Every model's test rows are the split's test rows, never trained on with their labels."
    if result.external:
        text += " For external validation every model trains on all the target's labelled rows."
    lines.append(text)
    return lines


def _paired(pairs: list[Paired], against: str) -> list[str]:
    lines = [
        f"| column | model | against ({against}) | mean difference ± sd | wins / ties / losses |",
        "|---|---|---|---|---|",
    ]
    for p in pairs:
        wins, ties, losses = p.record
        lines.append(
            f"| {_label(p.setting)} | {p.model} | {p.other} | {p.mean:+.3f} ± {p.sd:.3f} "
            f"| {wins} / {ties} / {losses} |"
        )
    return lines


def _per_batch(result: ProtocolResult, models: list[str]) -> list[str]:
    table = {m: by_name(result, "lobo", scores(result, "lobo", m)) for m in models}
    names = list(by_name(result, "lobo", scores(result, "lobo", models[0])))
    lines = ["| held-out batch | classes (rows) | " + " | ".join(models) + " |"]
    lines.append("|---|---|" + "---|" * len(models))
    for batch in names:
        counts = ", ".join(f"{c} {n}" for c, n in sorted(result.batches.get(batch, {}).items()))
        cells = [f"{table[m][batch]:.3f}" if batch in table[m] else "–" for m in models]
        lines.append(f"| {batch} | {counts} | " + " | ".join(cells) + " |")
    means = [f"{np.mean(list(table[m].values())):.3f}" if table[m] else "–" for m in models]
    lines.append("| mean | | " + " | ".join(means) + " |")
    if result.config.repeats > 1:
        lines += ["", f"Each cell is the mean over {result.config.repeats} seeded repeats."]
    return lines


def _paired_batches(result: ProtocolResult, pairs: list[Paired]) -> list[str]:
    lobo = [p for p in pairs if p.setting == "lobo"]
    if not lobo:
        return []
    gaps = [by_name(result, "lobo", p.diffs) for p in lobo]
    head = "| held-out batch | " + " | ".join(f"{p.model} − {p.other}" for p in lobo) + " |"
    lines = [head, "|---|" + "---|" * len(lobo)]
    for batch in gaps[0]:
        cells = [f"{g[batch]:+.3f}" if batch in g else "–" for g in gaps]
        lines.append(f"| {batch} | " + " | ".join(cells) + " |")
    lines.append(
        "| all splits: mean ± sd | "
        + " | ".join(f"{p.mean:+.3f} ± {p.sd:.3f}" for p in lobo)
        + " |"
    )
    return lines


def _external(result: ProtocolResult) -> list[str]:
    lines = [
        "Every model trained on all the target's labelled rows of the evaluated classes, scored "
        f"on {result.external_name} (aligned to the model's genes; only rows of those classes).",
        "",
        "| model | balanced accuracy | macro-F1 | AUROC | rows scored | gene overlap |",
        "|---|---|---|---|---|---|",
    ]
    pool = [m for m in baseline_pool(result) if m in result.external]
    best = max(pool, key=lambda m: result.external[m].metrics["balanced_accuracy"], default=None)
    for m, r in result.external.items():
        auroc = r.metrics.get("auroc")
        lines.append(
            f"| {m} | {r.metrics['balanced_accuracy']:.3f} | {r.metrics['macro_f1']:.3f} | "
            f"{'–' if auroc is None else f'{auroc:.3f}'} | {r.n_scored} | {r.panel_overlap:.0%} |"
        )
    if best is not None:
        top = result.external[best].metrics["balanced_accuracy"]
        lines.append("")
        lines.append(
            f"Best baseline: {best} ({top:.3f}). "
            + "; ".join(
                f"{m} {result.external[m].metrics['balanced_accuracy'] - top:+.3f}"
                for m in transfer_methods(result)
                if m in result.external
            )
            + " (one external set: a difference, not a distribution)."
        )
    unknown = sorted({c for r in result.external.values() for c in r.unknown_classes})
    if unknown:
        lines.append(f"Classes the models never learnt, not scored: {', '.join(unknown)}.")
    return lines


def _per_class(result: ProtocolResult, model: str) -> list[str]:
    protocol = "lobo" if result.config.protocol == "lobo" else "cv"
    outs = [o for o in result.outcomes if o.protocol == protocol and o.model == model]
    if not outs:
        return [f"(no {pooled(result)} was run)"]
    truth = [t for o in outs for t in o.y_true]
    pred = [p for o in outs for p in o.y_pred]
    report = per_class_report(truth, pred, result.classes)
    lines = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, r in report.items():
        lines.append(
            f"| {c} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1-score']:.3f} "
            f"| {int(r['support'])} |"
        )
    return lines


def _jsonable(cfg: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(cfg)


TOP_GENES = 5
_METHODS = {
    "integrated_gradients": "integrated gradients of the predicted class's logit against the "
    "training mean (mean |attribution| over the samples predicted as each class)",
    "exact": "exact: (x − x0) ⊙ the linear model's coefficients through the linear "
    "preprocessing, x0 the training mean (mean |attribution| per predicted class)",
    "permutation_importance": "scikit-learn permutation importance on the first fold's test "
    "samples (mean drop in balanced accuracy when the gene is shuffled; all classes together)",
}


def _ordered(result: ProtocolResult, models: list[str]) -> list[tuple[str, Attribution]]:
    return [(m, result.attributions[m]) for m in models if m in result.attributions]


def attribution_lines(result: ProtocolResult, models: list[str]) -> list[str]:
    """Per model: how it was attributed, and its top genes per class with their mean values."""
    lines: list[str] = []
    for name, a in _ordered(result, models):
        lines += [f"### {name}", "", f"Method: {_METHODS[a.method]}.", ""]
        lines += ["| class | samples | top genes (mean value) |", "|---|---|---|"]
        for label in a.means():
            top = ", ".join(f"{g} ({v:.3g})" for g, v in a.top(label, TOP_GENES))
            count = "–" if label == ALL_CLASSES else str(a.counts[label])
            lines.append(f"| {label} | {count} | {top} |")
        lines.append("")
    return lines
