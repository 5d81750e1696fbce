"""The evaluation report: Markdown tables plus PNG plots, transfer model against every baseline."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.attribution import ALL_CLASSES, Attribution
from training.evaluation.metrics import confusion, per_class_report
from training.evaluation.protocol import AUTO, SCRATCH, TRANSFER, Outcome, ProtocolResult
from training.train.loop import History

METRICS = ("balanced_accuracy", "macro_f1", "auroc")


def summarise(result: ProtocolResult) -> dict[str, dict[str, dict[str, tuple[float, float, int]]]]:
    """setting ("k=5", ..., "cv") → model → metric → (mean, sd, n)."""
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in result.outcomes:
        groups[(_setting(o), o.model)].append(o)
    table: dict[str, dict[str, dict[str, tuple[float, float, int]]]] = defaultdict(dict)
    for (setting, model), outs in groups.items():
        table[setting][model] = {
            m: (
                float(np.mean([o.metrics[m] for o in outs])),
                float(np.std([o.metrics[m] for o in outs], ddof=1)) if len(outs) > 1 else 0.0,
                len(outs),
            )
            for m in METRICS
            if all(m in o.metrics for o in outs)
        }
    return dict(table)


def write_report(result: ProtocolResult, folder: Path, *, title: str, data_note: str) -> Path:
    """Write report.md, summary.json and PNG plots into `folder`; returns the Markdown path.

    Parameters
    ----------
    result:
        What `run_protocol` returned.
    folder:
        Output folder (created).
    title:
        Report heading.
    data_note:
        One paragraph on the data (source, scale, labels).
    """
    folder.mkdir(parents=True, exist_ok=True)
    summary = summarise(result)
    settings = sorted(summary, key=_order)
    models = _model_order(summary)
    plots = _plots(result, summary, settings, models, folder)
    plots += [plot_attribution(name, a, folder) for name, a in _ordered(result, models)]
    cfg = result.config
    lines = [f"# {title}", "", data_note, "", "## Protocol", "", *_protocol_lines(result), ""]
    lines += ["## Balanced accuracy (mean ± sd over repeats / folds)", ""]
    lines += _table(summary, settings, models, "balanced_accuracy")
    lines += ["", "## Macro-F1", "", *_table(summary, settings, models, "macro_f1")]
    lines += ["", "## AUROC (one-vs-rest, macro)", "", *_table(summary, settings, models, "auroc")]
    verdicts = verdict(result, summary, settings)
    lines += ["", "## Verdict", "", *verdicts, ""]
    if result.choices:
        lines += ["## The automatic choice (`strategy: auto`, the jobs' default)", ""]
        lines += [*auto_lines(result, summary, settings), ""]
    if any("does NOT match" in v for v in verdicts):
        lines += ["## Why the transfer model falls short here", "", _why(result), ""]
    lines += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    lines += ["## Transfer model per class (cross-validation, pooled test predictions)", ""]
    lines += _per_class(result)
    if result.attributions:
        lines += ["", "## What drives each model (cross-validation test samples)", ""]
        lines += attribution_lines(result, models)
    lines += ["", f"Configuration: `{json.dumps(_jsonable(cfg), sort_keys=True)}`", ""]
    path = folder / "report.md"
    path.write_text("\n".join(lines))
    (folder / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    scores = [
        {"setting": _setting(o), "split": o.repeat, "model": o.model, **o.metrics}
        for o in result.outcomes
    ]
    (folder / "scores.json").write_text(json.dumps(scores, indent=0, sort_keys=True) + "\n")
    return path


MATCH_MARGIN = 0.01  # a mean paired gap within one point of balanced accuracy counts as a match


def verdict(result: ProtocolResult, summary: dict[str, Any], settings: list[str]) -> list[str]:
    """One line per setting: the transfer model against the best baseline, paired by split."""
    lines = []
    for s in settings:
        rows = summary[s]
        if TRANSFER not in rows:
            continue
        others = {m: v for m, v in rows.items() if m != TRANSFER}
        best = max(others, key=lambda m: others[m]["balanced_accuracy"][0])
        # the same splits for every model: compare split by split, not mean against mean
        mine = _by_split(result, s, TRANSFER)
        theirs = _by_split(result, s, best)
        gaps = np.array([mine[k] - theirs[k] for k in mine])
        gap, sd = float(gaps.mean()), float(gaps.std(ddof=1)) if len(gaps) > 1 else 0.0
        wins = int((gaps >= 0).sum())
        if gap > MATCH_MARGIN:
            word = "beats"
        elif gap >= -MATCH_MARGIN:
            word = "matches"
        else:
            word = "does NOT match"
        lines.append(
            f"- {s}: transfer {word} the best baseline ({best}): paired difference in balanced "
            f"accuracy {gap:+.3f} ± {sd:.3f}; transfer ≥ {best} on {wins} of {len(gaps)} splits."
        )
    return lines


def auto_lines(result: ProtocolResult, summary: dict[str, Any], settings: list[str]) -> list[str]:
    """Per setting: auto against the best baseline, paired by split, and what it published."""
    lines = []
    for s in settings:
        rows = summary[s]
        if AUTO not in rows:
            continue
        baselines = {m: v for m, v in rows.items() if m not in (TRANSFER, SCRATCH, AUTO)}
        best = max(baselines, key=lambda m: baselines[m]["balanced_accuracy"][0])
        mine, theirs = _by_split(result, s, AUTO), _by_split(result, s, best)
        gaps = np.array([mine[k] - theirs[k] for k in mine])
        gap, sd = float(gaps.mean()), float(gaps.std(ddof=1)) if len(gaps) > 1 else 0.0
        ok = "within" if gap >= -MATCH_MARGIN else "NOT within"
        won: dict[str, int] = defaultdict(int)
        for protocol, k, _, winner in result.choices:
            if _setting_of(protocol, k) == s:
                won[winner] += 1
        picked = ", ".join(f"{w} {n}×" for w, n in sorted(won.items(), key=lambda x: -x[1]))
        lines.append(
            f"- {s}: auto {rows[AUTO]['balanced_accuracy'][0]:.3f} vs the best baseline {best} "
            f"{baselines[best]['balanced_accuracy'][0]:.3f}: paired difference {gap:+.3f} ± "
            f"{sd:.3f} ({ok} {MATCH_MARGIN} of it); auto ≥ {best} on "
            f"{int((gaps >= 0).sum())} of {len(gaps)} splits; published: {picked}."
        )
    return lines


def _why(result: ProtocolResult) -> str:
    cfg = result.config
    return (
        "The encoder is pretrained on the non-test cells of this one small dataset (at most "
        f"{result.n_total - round(cfg.test_fraction * result.n_cells)} cells, where encoders that "
        "transfer well are pretrained on 10^5 or more), so self-supervision has little structure "
        "to learn that per-gene z-scores do not already expose; its "
        f"{cfg.latent}-dimensional bottleneck then keeps less class signal than the "
        "standardised genes, which the (ridge-)regularised linear baselines use directly and "
        "which suit few, noisy labels best. Transfer is expected to pay off when the pretraining "
        "source is much larger than the target and covers its cell types; no such source ships "
        "with this repository (nothing may be downloaded)."
    )


def _by_split(result: ProtocolResult, setting: str, model: str) -> dict[int, float]:
    return {
        o.repeat: o.metrics["balanced_accuracy"]
        for o in result.outcomes
        if _setting(o) == setting and o.model == model
    }


def _setting(o: Outcome) -> str:
    return _setting_of(o.protocol, o.k)


def _setting_of(protocol: str, k: int | None) -> str:
    return "cv" if protocol == "cv" else f"k={k}"


def _order(setting: str) -> tuple[int, int]:
    return (1, 0) if setting == "cv" else (0, int(setting[2:]))


def _model_order(summary: dict[str, Any]) -> list[str]:
    names = {m for rows in summary.values() for m in rows}
    rest = sorted(names - {TRANSFER, SCRATCH, AUTO})
    return [m for m in (AUTO, TRANSFER, SCRATCH) if m in names] + rest


def _table(
    summary: dict[str, Any], settings: list[str], models: list[str], metric: str
) -> list[str]:
    head = "| model | " + " | ".join(_label(s) for s in settings) + " |"
    lines = [head, "|---|" + "---|" * len(settings)]
    for m in models:
        cells = []
        for s in settings:
            value = summary[s].get(m, {}).get(metric)
            cells.append("–" if value is None else f"{value[0]:.3f} ± {value[1]:.3f}")
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def _label(setting: str) -> str:
    return "5-fold CV" if setting == "cv" else f"{setting} per class"


def _protocol_lines(result: ProtocolResult) -> list[str]:
    cfg = result.config
    return [
        f"- Classes: the {len(result.classes)} with ≥ {cfg.min_cells} cells "
        f"({', '.join(result.classes)}), {result.n_cells} cells.",
        f"- Few-shot: {cfg.repeats} seeded repeats; each holds out a stratified "
        f"{cfg.test_fraction:.0%} of those cells as the test set, then draws k = "
        f"{', '.join(map(str, cfg.shots))} labelled cells per class from the rest.",
        f"- Cross-validation: stratified {cfg.folds}-fold over the same cells; the other folds "
        "are the labelled training cells.",
        "- Pretraining: for every repeat and fold, preprocessing (per-gene z-scores) and the "
        f"{cfg.encoder.upper()} encoder are fitted without labels on every cell *except* that "
        "split's test cells (rare-class cells included): no test cell is seen by pretraining, "
        "labelled or unlabelled.",
        f"- Transfer model: pretrained encoder + linear head, strategy `{cfg.strategy}`, "
        "class-weighted cross-entropy, early stopping on a stratified part of the labelled cells.",
        "- Baselines: scikit-learn on the same preprocessed genes, same training and test cells; "
        "`scratch_network` is the same encoder + head architecture trained from random weights.",
        "- Metrics: scikit-learn balanced accuracy, macro-F1, one-vs-rest macro AUROC.",
    ]


def _per_class(result: ProtocolResult) -> list[str]:
    outs = [o for o in result.outcomes if o.protocol == "cv" and o.model == TRANSFER]
    if not outs:
        return ["(no cross-validation was run)"]
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


def plot_attribution(name: str, a: Attribution, folder: Path) -> Path:
    """A heatmap of mean |attribution| per class over each class's top genes (a bar chart for
    permutation importance), saved as attribution_<model>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = a.means()
    labels = list(means)
    genes: list[str] = []
    for label in labels:
        genes += [g for g, _ in a.top(label, 3 if len(labels) > 1 else 15) if g not in genes]
    index = {g: j for j, g in enumerate(a.genes)}
    grid = np.array([[means[c][index[g]] for g in genes] for c in labels])
    fig, ax = plt.subplots(figsize=(max(5.0, 0.35 * len(genes) + 2), 0.4 * len(labels) + 2.2))
    if len(labels) == 1:
        ax.bar(range(len(genes)), grid[0], color="C0")
        ax.set(ylabel="mean drop in balanced accuracy")
    else:
        shown = ax.imshow(grid, aspect="auto", cmap="viridis")
        fig.colorbar(shown, ax=ax, label="mean |attribution|")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set_xticks(range(len(genes)), genes, rotation=60, ha="right", fontsize=7)
    ax.set_title(f"{name}: top genes per class ({a.method.replace('_', ' ')})", fontsize=9)
    return _save(fig, folder / f"attribution_{name}.png")


def _plots(
    result: ProtocolResult,
    summary: dict[str, Any],
    settings: list[str],
    models: list[str],
    folder: Path,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    paths = []
    shots = [s for s in settings if s != "cv"]
    if shots:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ks = [int(s[2:]) for s in shots]
        for m in models:
            mean = [summary[s][m]["balanced_accuracy"][0] for s in shots]
            sd = [summary[s][m]["balanced_accuracy"][1] for s in shots]
            width = 2.5 if m == TRANSFER else 1.0
            ax.errorbar(ks, mean, yerr=sd, label=m, capsize=3, marker="o", linewidth=width)
        ax.set(
            xscale="log",
            xlabel="labelled cells per class (k)",
            ylabel="balanced accuracy",
            title="Few-shot learning curves (mean ± sd)",
        )
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.xaxis.set_minor_formatter(NullFormatter())  # only the k values as tick labels
        ax.legend(fontsize=7)
        paths.append(_save(fig, folder / "few_shot.png"))
    if "cv" in summary:
        fig, ax = plt.subplots(figsize=(7, 4))
        means = [summary["cv"][m]["balanced_accuracy"][0] for m in models]
        sds = [summary["cv"][m]["balanced_accuracy"][1] for m in models]
        ax.barh(models, means, xerr=sds, color=["C3" if m == TRANSFER else "C0" for m in models])
        ax.set(xlabel="balanced accuracy", title="5-fold cross-validation (mean ± sd)")
        ax.invert_yaxis()
        paths.append(_save(fig, folder / "cv.png"))
        outs = [o for o in result.outcomes if o.protocol == "cv" and o.model == TRANSFER]
        counts = confusion(
            [t for o in outs for t in o.y_true], [p for o in outs for p in o.y_pred], result.classes
        )
        fig, ax = plt.subplots(figsize=(6.5, 5.5))
        ax.imshow(counts / np.clip(counts.sum(1, keepdims=True), 1, None), cmap="Blues")
        for (i, j), n in np.ndenumerate(counts):
            ax.text(j, i, str(n), ha="center", va="center", fontsize=7)
        ticks = range(len(result.classes))
        ax.set_xticks(ticks, result.classes, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(ticks, result.classes, fontsize=7)
        ax.set(xlabel="predicted", ylabel="true", title="Transfer model, CV confusion matrix")
        paths.append(_save(fig, folder / "confusion_transfer.png"))
    if result.pretrain_history is not None:
        paths.append(plot_history(result.pretrain_history, folder / "pretrain_loss.png"))
    return paths


def plot_history(history: History, path: Path) -> Path:
    """A loss-curve PNG (training and validation loss per epoch, best epoch marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = range(1, len(history.train_loss) + 1)
    ax.plot(epochs, history.train_loss, label="training")
    ax.plot(epochs, history.val_loss, label="validation")
    ax.axvline(history.best_epoch + 1, color="grey", linestyle=":", label="kept (best)")
    ax.set(xlabel="epoch", ylabel="loss", title="Pretraining loss")
    ax.legend()
    return _save(fig, path)


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    # no timestamp in the PNG metadata, so reruns give identical files
    fig.savefig(path, dpi=80, metadata={"Software": None})
    plt.close(fig)
    return path


def _jsonable(cfg: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(cfg)
