"""The evaluation report's Markdown tables: scores, what each model saw, paired differences.

Also the per-batch tables of a leave-one-batch-out run, the external validation, the first
method's per-class scores and what drives each model; `training.reporting.report` lays them out.
"""

from __future__ import annotations

import numpy as np

from training.evaluation.attribution import ALL_CLASSES, Attribution
from training.evaluation.metrics import per_class_report
from training.protocol.methods import METHODS, with_references
from training.protocol.run import ProtocolResult
from training.reporting.compare import (
    Paired,
    Summary,
    baseline_pool,
    by_name,
    scores,
    transfer_methods,
)
from training.reporting.plots import pooled


def _column_label(setting: str) -> str:
    """A summary column's heading: a k, the k-fold CV or the held-out batches."""
    if setting == "cv":
        return "k-fold CV"
    return "held-out batches" if setting == "lobo" else f"{setting} per class"


def metric_table(summary: Summary, columns: list[str], models: list[str], metric: str) -> list[str]:
    """`metric`'s mean ± sd over the splits: a row per model, a column per setting."""
    lines = ["| model | " + " | ".join(_column_label(s) for s in columns) + " |"]
    lines.append("|---|" + "---|" * len(columns))
    for m in models:
        cells = []
        for s in columns:
            value = summary[s].get(m, {}).get(metric)
            cells.append("–" if value is None else f"{value[0]:.3f} ± {value[1]:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def seen_table(result: ProtocolResult) -> list[str]:
    """Per model: its pretraining data, labelled data and data without labels."""
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


def paired_table(pairs: list[Paired], against: str) -> list[str]:
    """Paired differences by split: mean ± sd and wins / ties / losses."""
    lines = [
        f"| column | model | against ({against}) | mean difference ± sd | wins / ties / losses |",
        "|---|---|---|---|---|",
    ]
    for p in pairs:
        wins, ties, losses = p.record
        lines.append(
            f"| {_column_label(p.setting)} | {p.model} | {p.other} | {p.mean:+.3f} ± {p.sd:.3f} "
            f"| {wins} / {ties} / {losses} |"
        )
    return lines


def per_batch_table(result: ProtocolResult, models: list[str]) -> list[str]:
    """Balanced accuracy per held-out batch (mean over repeats), with its classes' rows."""
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


def paired_batches_table(result: ProtocolResult, pairs: list[Paired]) -> list[str]:
    """The leave-one-batch-out paired differences per held-out batch ([] without any)."""
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


def external_table(result: ProtocolResult) -> list[str]:
    """The external validation's scores per model, against its best baseline."""
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


def per_class_table(result: ProtocolResult, model: str) -> list[str]:
    """`model`'s per-class scores on the pooled CV (or held-out batch) test predictions."""
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


TOP_GENES = 5
_METHODS = {
    "integrated_gradients": "integrated gradients of the predicted class's logit against the "
    "training mean (mean |attribution| over the samples predicted as each class)",
    "exact": "exact: (x − x0) ⊙ the linear model's coefficients through the linear "
    "preprocessing, x0 the training mean (mean |attribution| per predicted class)",
    "permutation_importance": "scikit-learn permutation importance on the first fold's test "
    "samples (mean drop in balanced accuracy when the gene is shuffled; all classes together)",
}


def attributed(result: ProtocolResult, models: list[str]) -> list[tuple[str, Attribution]]:
    """The models with attributions, in `models`' order, each with its attribution."""
    return [(m, result.attributions[m]) for m in models if m in result.attributions]


def attribution_lines(result: ProtocolResult, models: list[str]) -> list[str]:
    """Per model: how it was attributed, and its top genes per class with their mean values."""
    lines: list[str] = []
    for name, a in attributed(result, models):
        lines += [f"### {name}", "", f"Method: {_METHODS[a.method]}.", ""]
        lines += ["| class | samples | top genes (mean value) |", "|---|---|---|"]
        for label in a.means():
            top = ", ".join(f"{g} ({v:.3g})" for g, v in a.top(label, TOP_GENES))
            count = "–" if label == ALL_CLASSES else str(a.counts[label])
            lines.append(f"| {label} | {count} | {top} |")
        lines.append("")
    return lines
