"""The report's "why" paragraph, written from the run's own numbers.

Each sentence states a measured fact (where a method loses or wins, and by how much) or a
reason the run's own records support: how far pretraining lowered its loss, how much of the
encoder's panel the target has, how many labelled rows the classes leave the head, a baseline
already near the ceiling, a held-out batch whose classes differ from the others'. No sentence is
written unless its numbers are there.
"""

from __future__ import annotations

from training.protocol.run import ProtocolResult
from training.reporting.compare import (
    MARGIN,
    Paired,
    Summary,
    best_baseline,
    by_name,
    order,
    settings,
)

CEILING = 0.95  # a best baseline at or above this leaves little room to gain
PLATEAU = 0.05  # pretraining that lowered its validation loss by less than this learnt little
CONFOUNDED = 0.3  # class-proportion distance of a held-out batch from the rest worth naming


def explain(
    result: ProtocolResult, summary: Summary, best: list[Paired], references: list[Paired]
) -> list[str]:
    """Paragraphs: where methods lose and win, then the reasons the numbers support."""
    facts = _where(result, best) + _unlabelled(result, summary, references)
    reasons = [
        r
        for r in (
            _pretraining(result),
            _overlap(result),
            _labels(result, best),
            _ceiling(result, summary),
            _confounding(result, references),
        )
        if r
    ]
    if not facts:
        facts = ["No method was compared with a baseline in this run."]
    if reasons:
        return [" ".join(facts), "What the run's records say about why: " + " ".join(reasons)]
    return [" ".join(facts)]


def _gap(p: Paired) -> str:
    wins, ties, losses = p.record
    return f"{p.mean:+.3f} ± {p.sd:.3f}, {wins}/{ties}/{losses} wins/ties/losses"


def _where(result: ProtocolResult, best: list[Paired]) -> list[str]:
    by_method: dict[str, list[Paired]] = {}
    for p in best:
        by_method.setdefault(p.model, []).append(p)
    lines = []
    for model, pairs in by_method.items():
        lost = [p for p in pairs if p.word == "loses to"]
        won = [p for p in pairs if p.word == "beats"]
        if lost:
            where = "; ".join(f"{_at(p.setting)} to {p.other} ({_gap(p)})" for p in lost)
            scope = "everywhere" if len(lost) == len(pairs) else "in part"
            lines.append(f"`{model}` loses {scope}: {where}.")
            lines.extend(_worst_batch(result, p) for p in lost if p.setting == "lobo")
        if won:
            where = "; ".join(f"{_at(p.setting)} over {p.other} ({_gap(p)})" for p in won)
            lines.append(f"`{model}` wins {where}.")
        if not lost and not won:
            lines.append(
                f"`{model}` matches the best baseline (within {MARGIN:.2f}) in every setting."
            )
    return lines


def _at(setting: str) -> str:
    if setting.startswith("k="):
        return f"at {setting}"
    return "in cross-validation" if setting == "cv" else "leaving one batch out"


def _worst_batch(result: ProtocolResult, p: Paired) -> str:
    name, gap = _worst_name(result, p)
    return f"Its worst held-out batch is {name} ({gap:+.3f})."


def _worst_name(result: ProtocolResult, p: Paired) -> tuple[str, float]:
    """The held-out batch where `p.model` does worst on average over repeats, and by how much."""
    gaps = by_name(result, p.setting, p.diffs)
    name = min(gaps, key=lambda n: gaps[n])
    return name, gaps[name]


def _unlabelled(result: ProtocolResult, summary: Summary, pairs: list[Paired]) -> list[str]:
    lines = []
    for p in pairs:
        if p.word == "matches":
            lines.append(
                f"The rows without a label change `{p.model}` little {_at(p.setting)} "
                f"({_gap(p)} against `{p.other}`)."
            )
            continue
        verb = "help" if p.word == "beats" else "hurt"
        line = f"The rows without a label {verb} `{p.model}` {_at(p.setting)} ({_gap(p)} against "
        line += f"`{p.other}`)."
        reference = summary[p.setting].get(p.other, {}).get("balanced_accuracy")
        if verb == "hurt" and p.model == "pseudo_label" and reference and reference[0] < 0.8:
            line += (
                f" The model that makes its pseudo-labels (`{p.other}`) scores only "
                f"{reference[0]:.3f} there, so many confident pseudo-labels can be wrong."
            )
        if p.setting == "lobo":
            gaps = by_name(result, p.setting, p.diffs)
            pick = max if verb == "help" else min
            name = pick(gaps, key=lambda n: gaps[n])
            line += f" Most on held-out batch {name} ({gaps[name]:+.3f})."
        lines.append(line)
    return lines


def _pretraining(result: ProtocolResult) -> str:
    history = result.pretrain_history
    seen = f"The encoder was pretrained on {result.pretraining} ({result.n_pretrain_rows} rows)"
    if result.pretraining_kind == "target":
        seen += ", so it can know no more than the target itself holds"
    seen += "."
    if history is None or not history.val_loss:
        return seen
    first, best = history.val_loss[0], history.best_val_loss
    drop = (first - best) / first if first > 0 else 0.0
    epochs = len(history.val_loss)
    if drop < PLATEAU:
        return (
            f"{seen} Its validation reconstruction loss plateaued: it fell only {drop:.1%} "
            f"(from {first:.3f} to {best:.3f}) in {epochs} epochs, so it learnt little beyond "
            "the per-gene z-scores the baselines already get."
        )
    if not history.stopped_early and history.best_epoch == epochs - 1:
        return (
            f"{seen} Its validation loss was still falling at the epoch cap ({epochs} epochs, "
            f"{drop:.1%} below the first epoch's): longer pretraining might help."
        )
    return (
        f"{seen} Its validation loss fell {drop:.1%} (from {first:.3f} to {best:.3f}) and "
        f"stopped improving at epoch {history.best_epoch + 1} of {epochs}."
    )


def _overlap(result: ProtocolResult) -> str:
    if result.panel_overlap >= 0.95:
        return ""
    return (
        f"Only {result.panel_overlap:.0%} of the encoder's genes are in the target; the rest "
        "are filled with the encoder's training means and carry no signal."
    )


def _labels(result: ProtocolResult, best: list[Paired]) -> str:
    shots = sorted((p for p in best if p.setting.startswith("k=")), key=lambda p: order(p.setting))
    lost = [p for p in shots if p.word == "loses to"]
    if not lost:
        return ""
    first = lost[0]
    k = int(first.setting[2:])
    n_classes = len(result.classes)
    line = (
        f"With {n_classes} classes, k={k} gives the head {k * n_classes} labelled rows for "
        f"{n_classes * (result.config.latent + 1)} weights, against the baselines' penalised "
        "linear fits on every gene."
    )
    same = [p for p in shots if p.model == first.model]
    if len(same) > 1:
        lo, hi = same[0], same[-1]
        trend = "narrows" if hi.mean > lo.mean else "does not narrow"
        line += (
            f" For `{first.model}` the gap {trend} with more labels "
            f"({lo.mean:+.3f} at {lo.setting}, {hi.mean:+.3f} at {hi.setting})."
        )
    return line


def _ceiling(result: ProtocolResult, summary: Summary) -> str:
    high = []
    for s in settings(summary):
        b = best_baseline(result, summary, s)
        if b is not None and summary[s][b]["balanced_accuracy"][0] >= CEILING:
            high.append(f"{b} {summary[s][b]['balanced_accuracy'][0]:.3f} {_at(s)}")
    if not high:
        return ""
    return (
        f"The best baseline is already near the ceiling ({'; '.join(high)}): there is little "
        "room for any method to gain."
    )


def _confounding(result: ProtocolResult, references: list[Paired]) -> str:
    if not result.batches:
        return ""
    distance = _batch_distance(result.batches)
    hurt = [p for p in references if p.setting == "lobo" and p.model in ("dann", "mmd")]
    notes = []
    for p in hurt:
        for batch, gap in sorted(by_name(result, "lobo", p.diffs).items(), key=lambda i: i[1]):
            if gap < -MARGIN and distance.get(batch, 0.0) >= CONFOUNDED:
                notes.append(f"{p.model} on {batch} ({gap:+.3f}, distance {distance[batch]:.2f})")
    single = [b for b, counts in result.batches.items() if len(counts) == 1]
    line = ""
    if notes:
        line = (
            "Adaptation aligns each batch's embeddings with the others' regardless of class; "
            "where a held-out batch's class mix differs from the rest (total-variation distance "
            f"≥ {CONFOUNDED}), that also moves classes, and it lost there: {'; '.join(notes)}."
        )
    if single:
        which = (
            f"Batch {single[0]} holds" if len(single) == 1 else f"Batches {', '.join(single)} hold"
        )
        line += f" {which} one class each: balanced accuracy there is that class's recall."
    return line.strip()


def _batch_distance(batches: dict[str, dict[str, int]]) -> dict[str, float]:
    """Total-variation distance between each batch's class proportions and the other batches'."""
    classes = sorted({c for counts in batches.values() for c in counts})
    out = {}
    for b, counts in batches.items():
        rest = {c: sum(v.get(c, 0) for o, v in batches.items() if o != b) for c in classes}
        n_b, n_rest = sum(counts.values()), sum(rest.values())
        if n_b == 0 or n_rest == 0:
            continue
        out[b] = 0.5 * sum(abs(counts.get(c, 0) / n_b - rest[c] / n_rest) for c in classes)
    return out
