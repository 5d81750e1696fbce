"""Paired comparisons on the same splits: each method against the best baseline, and each method
that learns from rows without a label against the same method without them."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from training.protocol.methods import method, with_references
from training.protocol.run import Outcome, ProtocolResult

METRICS = ("balanced_accuracy", "macro_f1", "auroc")
# a paired gap within one point of balanced accuracy is a tie (per split) or a match (on average)
MARGIN = 0.01

Summary = dict[str, dict[str, dict[str, tuple[float, float, int]]]]


def setting_of(o: Outcome) -> str:
    """ "k=5", …, "cv" or "lobo": the column an outcome belongs to."""
    if o.protocol == "few_shot":
        return f"k={o.k}"
    return o.protocol


def order(setting: str) -> tuple[int, int]:
    """Few-shot columns by k, then CV, then leave-one-batch-out."""
    if setting.startswith("k="):
        return (0, int(setting[2:]))
    return (1, 0) if setting == "cv" else (2, 0)


def summarise(result: ProtocolResult) -> Summary:
    """setting → model → metric → (mean, sd, n) over the splits."""
    groups: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in result.outcomes:
        groups[(setting_of(o), o.model)].append(o)
    table: Summary = defaultdict(dict)
    for (setting, model), outs in groups.items():
        table[setting][model] = {
            m: _stats([o.metrics[m] for o in outs])
            for m in METRICS
            if all(m in o.metrics for o in outs)
        }
    return dict(table)


def scores(result: ProtocolResult, setting: str, model: str) -> dict[int, float]:
    """Split index → balanced accuracy of `model` in `setting`."""
    return {
        o.repeat: o.metrics["balanced_accuracy"]
        for o in result.outcomes
        if setting_of(o) == setting and o.model == model
    }


def split_names(result: ProtocolResult, setting: str) -> dict[int, str]:
    """Split index → its name (the held-out batch for lobo, else the repeat or fold)."""
    return {o.repeat: o.split or str(o.repeat) for o in result.outcomes if setting_of(o) == setting}


def by_name(result: ProtocolResult, setting: str, values: dict[int, float]) -> dict[str, float]:
    """Per-split values averaged by split name (a batch held out in several repeats), in the
    order the names first appear."""
    names = split_names(result, setting)
    grouped: dict[str, list[float]] = {}
    for split in sorted(values):
        grouped.setdefault(names.get(split, str(split)), []).append(values[split])
    return {name: float(np.mean(v)) for name, v in grouped.items()}


@dataclass(frozen=True)
class Paired:
    """`model` − `other` in balanced accuracy, split by split, in one setting."""

    setting: str
    model: str
    other: str
    diffs: dict[int, float]

    @property
    def mean(self) -> float:
        """Mean paired difference."""
        return float(np.mean(list(self.diffs.values())))

    @property
    def sd(self) -> float:
        """Standard deviation of the paired differences (0 for one split)."""
        values = list(self.diffs.values())
        return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0

    @property
    def record(self) -> tuple[int, int, int]:
        """Splits won, tied (within `MARGIN`) and lost by `model`."""
        d = np.array(list(self.diffs.values()))
        return int((d > MARGIN).sum()), int((abs(d) <= MARGIN).sum()), int((d < -MARGIN).sum())

    @property
    def word(self) -> str:
        """beats / matches / loses to, by the mean and `MARGIN`."""
        if self.mean > MARGIN:
            return "beats"
        return "matches" if self.mean >= -MARGIN else "loses to"

    def worst(self) -> tuple[int, float]:
        """The split where `model` does worst against `other`, and by how much."""
        split = min(self.diffs, key=lambda s: self.diffs[s])
        return split, self.diffs[split]


def settings(summary: Summary) -> list[str]:
    """The settings in report order."""
    return sorted(summary, key=order)


def baseline_pool(result: ProtocolResult) -> list[str]:
    """The models that saw no pretraining: the scikit-learn baselines and the scratch network."""
    cfg = result.config
    return [*(m for m in with_references(cfg.methods) if not method(m).pretrained), *cfg.baselines]


def transfer_methods(result: ProtocolResult) -> list[str]:
    """The methods that start from the pretrained encoder."""
    return [m for m in with_references(result.config.methods) if method(m).pretrained]


def best_baseline(result: ProtocolResult, summary: Summary, setting: str) -> str | None:
    """The baseline with the highest mean balanced accuracy in `setting`."""
    rows = summary.get(setting, {})
    pool = [m for m in baseline_pool(result) if m in rows]
    if not pool:
        return None
    return max(pool, key=lambda m: rows[m]["balanced_accuracy"][0])


def pair(result: ProtocolResult, setting: str, model: str, other: str) -> Paired | None:
    """`model` − `other` on the splits both were scored on (None when they share none)."""
    mine, theirs = scores(result, setting, model), scores(result, setting, other)
    shared = sorted(set(mine) & set(theirs))
    if not shared:
        return None
    return Paired(setting, model, other, {s: mine[s] - theirs[s] for s in shared})


def against_best(result: ProtocolResult, summary: Summary) -> list[Paired]:
    """Every pretrained method against the best baseline of each setting."""
    out = []
    for s in settings(summary):
        best = best_baseline(result, summary, s)
        if best is None:
            continue
        for m in transfer_methods(result):
            paired = pair(result, s, m, best)
            if paired is not None:
                out.append(paired)
    return out


def against_reference(result: ProtocolResult, summary: Summary) -> list[Paired]:
    """Every method that learns from rows without a label against the same without them."""
    out = []
    for s in settings(summary):
        for m in with_references(result.config.methods):
            reference = method(m).reference
            if reference is None:
                continue
            paired = pair(result, s, m, reference)
            if paired is not None:
                out.append(paired)
    return out


def _stats(values: list[float]) -> tuple[float, float, int]:
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return float(np.mean(values)), sd, len(values)
