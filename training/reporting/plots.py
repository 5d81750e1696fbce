"""The evaluation report's PNG plots: few-shot curves, per-fold scores, confusion, losses, and
what drives each model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.evaluation.attribution import Attribution
from training.evaluation.metrics import confusion
from training.protocol.methods import METHODS
from training.protocol.run import ProtocolResult
from training.reporting.compare import Summary, transfer_methods
from training.train.loop import History


def first_method(result: ProtocolResult) -> str | None:
    methods = transfer_methods(result)
    return methods[0] if methods else None


def pooled(result: ProtocolResult) -> str:
    return "held-out batches" if result.config.protocol == "lobo" else "cross-validation"


def plots(
    result: ProtocolResult,
    summary: Summary,
    columns: list[str],
    models: list[str],
    folder: Path,
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    paths = []
    transfer = set(transfer_methods(result))
    shots = [s for s in columns if s.startswith("k=")]
    if shots:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        ks = [int(s[2:]) for s in shots]
        for m in models:
            present = [s for s in shots if m in summary[s]]
            if not present:
                continue
            mean = [summary[s][m]["balanced_accuracy"][0] for s in present]
            sd = [summary[s][m]["balanced_accuracy"][1] for s in present]
            width = 2.5 if m in transfer else 1.0
            style = "--" if m in transfer and METHODS[m].unlabelled else "-"
            x = [int(s[2:]) for s in present]
            ax.errorbar(
                x, mean, yerr=sd, label=m, capsize=3, marker="o", linewidth=width, linestyle=style
            )
        ax.set(
            xscale="log",
            xlabel="labelled rows per class (k)",
            ylabel="balanced accuracy",
            title="Few-shot learning curves (mean ± sd; dashed: with rows without a label)",
        )
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.xaxis.set_minor_formatter(NullFormatter())  # only the k values as tick labels
        ax.legend(fontsize=7)
        paths.append(_save(fig, folder / "few_shot.png"))
    for setting, name, title in (
        ("cv", "cv.png", "k-fold cross-validation (mean ± sd)"),
        ("lobo", "lobo.png", "Leave one batch out (mean ± sd over held-out batches)"),
    ):
        if setting not in summary:
            continue
        shown = [m for m in models if m in summary[setting]]
        fig, ax = plt.subplots(figsize=(7, 4))
        means = [summary[setting][m]["balanced_accuracy"][0] for m in shown]
        sds = [summary[setting][m]["balanced_accuracy"][1] for m in shown]
        ax.barh(shown, means, xerr=sds, color=["C3" if m in transfer else "C0" for m in shown])
        ax.set(xlabel="balanced accuracy", title=title)
        ax.invert_yaxis()
        paths.append(_save(fig, folder / name))
    first = first_method(result)
    protocol = "lobo" if result.config.protocol == "lobo" else "cv"
    outs = [o for o in result.outcomes if o.protocol == protocol and o.model == first]
    if outs:
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
        ax.set(xlabel="predicted", ylabel="true", title=f"{first}, {pooled(result)} confusion")
        paths.append(_save(fig, folder / "confusion.png"))
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
