"""Multi-task vs one single-task model per task on pbmc68k_reduced, on the same seeded splits.

    OMP_NUM_THREADS=1 python tools/multitask_eval.py --repeats 5 --out reports/pbmc68k-multitask

scanpy's pbmc68k_reduced (log-normalised .raw.X, 700 cells, 765 genes) on the committed encoder
`models/pbmc68k-encoder/1`; tasks `bulk_labels` (10 classes), `phase` (3 classes) and
`G2M_score` (regression, weight 0.5). Each repeat holds out 25% of the cells (stratified by
bulk_labels, seed = the repeat); on the same training cells and the same seeds it fine-tunes
one multi-task model (a head per task, the weighted sum of their losses) and one single-task
model per task (`finetune_classifier`, `finetune_regressor`), each with the same strategy and
hyperparameters, and scores every model on the held-out cells; logistic regression (ridge for
G2M_score) on the encoder's preprocessing is the baseline. `--drop-phase F` hides `phase` from
a share F of the training cells (both the multi-task and the single-task model see only the
rest: masked vs dropped). Writes README.md and scores.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, not installed

from contract.align import align_matrix
from contract.card import ModelCard
from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.data.pbmc68k import load_pbmc68k_reduced
from training.evaluation.metrics import classification_metrics, regression_metrics
from training.evaluation.multitask import HEADLINE, score_tasks
from training.evaluation.splits import hold_out
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.nn.device import cpu_threads_for
from training.nn.heads import ClassifierHeadConfig, RegressorHeadConfig
from training.publish.parent import load_autoencoder
from training.train import defaults
from training.train.apply import labelled_rows, predict_proba, predict_values
from training.train.finetune import finetune_classifier, finetune_regressor
from training.train.multitask import TaskSpec, finetune_multitask

ROOT = Path(__file__).resolve().parents[1]
ENCODER = ROOT / "models" / "pbmc68k-encoder" / "1"
TASKS = [
    TaskSpec("bulk_labels"),
    TaskSpec("phase"),
    TaskSpec("G2M_score", "regression", 0.5),
]
Scores = dict[str, dict[str, float]]


def _single(
    encoder: Any,
    pipeline: PreprocessPipeline,
    train: ExpressionMatrix,
    test: ExpressionMatrix,
    task: TaskSpec,
    cfg: TrainConfig,
    options: FinetuneOptions,
) -> tuple[dict[str, float], int]:
    """One single-task model of `task` on its labelled training rows, scored on its test rows;
    and the epoch whose weights it kept."""
    fit_rows, test_rows = (
        train.take(labelled_rows(train, task.column)),
        test.take(labelled_rows(test, task.column)),
    )
    latent = defaults.ENCODER_LATENT
    hidden, dropout = defaults.HEAD_HIDDEN, defaults.HEAD_DROPOUT
    if task.kind == "classification":
        k = len(set(fit_rows.labels(task.column)))
        head_cfg = ClassifierHeadConfig(latent, k, hidden, dropout)
        result = finetune_classifier(
            encoder,
            pipeline,
            fit_rows,
            task.column,
            head_cfg,
            cfg,
            strategy=options,
            progress=False,
        )
        proba = predict_proba(result.encoder, result.head, pipeline, test_rows)
        predicted = [result.labels[i] for i in proba.argmax(1)]
        truth = test_rows.labels(task.column)
        scores = classification_metrics(truth, predicted, proba, result.labels)
        return scores, result.history.best_epoch + 1
    head = RegressorHeadConfig(latent, 1, hidden, dropout)
    reg = finetune_regressor(
        encoder, pipeline, fit_rows, task.column, head, cfg, strategy=options, progress=False
    )
    values = predict_values(reg.encoder, reg.head, pipeline, test_rows)
    values_true = np.asarray(test_rows.labels(task.column), dtype=np.float64)
    return regression_metrics(values_true, values), reg.history.best_epoch + 1


def _hide(train: ExpressionMatrix, column: str, share: float, seed: int) -> ExpressionMatrix:
    """`train` with `column` blanked on a random share of its rows."""
    if share <= 0:
        return train
    obs = train.obs.copy()
    rows = np.random.default_rng(seed).permutation(train.shape[0])[: round(share * train.shape[0])]
    values = obs[column].astype(object).to_numpy()
    values[rows] = None
    obs[column] = values
    return ExpressionMatrix(
        X=train.X, sample_ids=train.sample_ids, gene_ids=train.gene_ids, obs=obs
    )


def run(
    repeats: int, strategies: list[str], drop_phase: float, tasks: list[TaskSpec]
) -> dict[str, Any]:
    """Every repeat's scores: strategy → repeat → {multi, single, baseline} → task → metrics."""
    card = ModelCard.read(ENCODER)
    autoencoder = load_autoencoder(ENCODER)
    pipeline = PreprocessPipeline.load(ENCODER)
    m = load_pbmc68k_reduced()
    m.obs["phase"] = m.obs["phase"].astype(str)
    matrix = align_matrix(m, card.panel, card.input_scale)[0]
    out: dict[str, Any] = {}
    for strategy in strategies:
        options = FinetuneOptions(strategy)  # type: ignore[arg-type]
        runs = []
        for r in range(repeats):
            data = hold_out(
                "pbmc68k", matrix, test_fraction=0.25, seed=r, stratify_by="bulk_labels"
            )
            train = _hide(data.train, "phase", drop_phase, seed=100 + r)
            test = data.test
            cfg = TrainConfig(
                epochs=defaults.FINETUNE.epochs,
                batch_size=defaults.FINETUNE.batch_size,
                lr=defaults.FINETUNE.lr,
                weight_decay=defaults.FINETUNE.weight_decay,
                val_fraction=defaults.FINETUNE.val_fraction,
                patience=defaults.FINETUNE.patience,
                seed=r,
            )
            started = time.perf_counter()
            multi = finetune_multitask(
                autoencoder.encoder, pipeline, train, tasks, cfg,
                head_hidden=defaults.HEAD_HIDDEN, head_dropout=defaults.HEAD_DROPOUT,
                strategy=options, progress=False,
            )  # fmt: skip
            ours, baseline = score_tasks(
                multi.fit.encoder, multi.head, pipeline, train, test, multi.tasks, seed=r
            )
            multi_s = time.perf_counter() - started
            started = time.perf_counter()
            fits = {
                t.column: _single(autoencoder.encoder, pipeline, train, test, t, cfg, options)
                for t in tasks
            }
            single = {k: v[0] for k, v in fits.items()}
            single_s = time.perf_counter() - started
            runs.append(
                {
                    "seed": r,
                    "n_train": train.shape[0],
                    "n_test": test.shape[0],
                    "multi": ours,
                    "single": single,
                    "baseline": baseline,
                    "seconds": {"multi": multi_s, "single": single_s},
                    "kept_epoch": {
                        "multi": multi.fit.history.best_epoch + 1,
                        **{k: v[1] for k, v in fits.items()},
                    },
                }
            )
            print(f"{strategy} seed {r}: multi {multi_s:.1f}s, single {single_s:.1f}s", flush=True)
        out[strategy] = runs
    return out


def _ms(values: list[float]) -> str:
    a = np.asarray(values)
    return f"{a.mean():.3f} ± {a.std(ddof=1) if len(a) > 1 else 0.0:.3f}"


def report(scores: dict[str, Any], command: str, seconds: float, drop_phase: float) -> str:
    """The README: per strategy and task, multi vs single vs baseline, paired differences."""
    lines = [
        "# Multi-task vs single-task fine-tuning on pbmc68k_reduced (issue 12, point 1)",
        "",
        "scanpy's `pbmc68k_reduced` (log-normalised `.raw.X`, 700 cells, 765 genes) on the "
        "committed encoder `pbmc68k-encoder/1` (pretrained, without labels, on 560 of these "
        "cells: both arms share it, so the comparison is fair, but the held-out cells are not "
        "unseen by the encoder's pretraining). Tasks: `bulk_labels` (10 classes, balanced "
        "accuracy), `phase` (3 classes, balanced accuracy) and `G2M_score` (regression, "
        "weight 0.5, R²). Each repeat holds out 25% of the cells (175, stratified by "
        "bulk_labels, seed = repeat); on the same 525 training cells, one multi-task model (one "
        "encoder, a head per task, Σ weight·loss) and one single-task model per task, with the "
        "same strategy and hyperparameters (the fine-tuning defaults: "
        f"{defaults.FINETUNE.epochs} epochs max, patience {defaults.FINETUNE.patience}, head "
        f"{list(defaults.HEAD_HIDDEN)}, seed = repeat). Baseline: logistic regression (ridge "
        "for G2M_score) on the encoder's preprocessing of the same training cells.",
        "",
    ]
    if drop_phase > 0:
        lines += [
            f"`phase` was hidden from {drop_phase:.0%} of the training cells: the multi-task "
            "model keeps those cells for its other tasks (masked), the single-task phase model "
            "drops them.",
            "",
        ]
    lines += [f"Command ({seconds / 60:.1f} min in all):", "", f"    {command}", ""]
    lines += [
        f"Machine: {platform.platform()}, {os.cpu_count()} cores shared with other work, "
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, Python "
        f"{platform.python_version()}.",
        "",
    ]
    verdicts = []
    for strategy, runs in scores.items():
        lines += [f"## strategy `{strategy}`", ""]
        lines += [
            "| task | metric | multi-task | single-task | baseline | multi − single (paired) "
            "| multi ≥ single |",
            "|---|---|---|---|---|---|---|",
        ]
        for task in TASKS:
            metric = HEADLINE[task.kind]
            multi = [r["multi"][task.column][metric] for r in runs]
            single = [r["single"][task.column][metric] for r in runs]
            base = [r["baseline"][task.column][metric] for r in runs]
            diff = [a - b for a, b in zip(multi, single, strict=True)]
            wins = sum(d >= 0 for d in diff)
            lines.append(
                f"| {task.column} | {metric} | {_ms(multi)} | {_ms(single)} | {_ms(base)} | "
                f"{_ms(diff)} | {wins} of {len(diff)} |"
            )
            verdicts.append(
                (
                    strategy,
                    task.column,
                    metric,
                    float(np.mean(diff)),
                    float(np.std(diff, ddof=1)),
                    float(np.mean(multi) - np.mean(base)),
                )
            )
        multi_s = sum(r["seconds"]["multi"] for r in runs)
        single_s = sum(r["seconds"]["single"] for r in runs)
        kept = ", ".join(
            f"{k} {np.mean([r['kept_epoch'][k] for r in runs]):.0f}"
            for k in ["multi", *(t.column for t in TASKS)]
        )
        lines += [
            "",
            f"Training time over the {len(runs)} repeats: multi-task {multi_s:.0f} s, the "
            f"three single-task models {single_s:.0f} s. Epoch whose weights were kept (mean; "
            f"the multi-task model has one for all its tasks): {kept}.",
            "",
        ]
    lines += ["## Reading", ""]
    for strategy, column, metric, mean, sd, vs_base in verdicts:
        if abs(mean) < sd:
            word = "level with (the paired difference is within its sd)"
        elif mean > 0:
            word = "better than"
        else:
            word = "worse than"
        side = "above" if vs_base >= 0 else "below"
        lines.append(
            f"- `{strategy}`, {column}: multi-task is {word} single-task ({metric} {mean:+.3f} ± "
            f"{sd:.3f}); {abs(vs_base):.3f} {side} the baseline."
        )
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--strategies", default="frozen,full")
    parser.add_argument("--drop-phase", type=float, default=0.0)
    parser.add_argument("--g2m-weight", type=float, default=TASKS[2].weight)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "pbmc68k-multitask")
    args = parser.parse_args()
    started = time.perf_counter()
    with cpu_threads_for(765):
        tasks = [*TASKS[:2], TaskSpec("G2M_score", "regression", args.g2m_weight)]
        scores = run(args.repeats, args.strategies.split(","), args.drop_phase, tasks)
    seconds = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "scores.json").write_text(json.dumps(scores, indent=1) + "\n")
    command = "OMP_NUM_THREADS=1 python tools/multitask_eval.py " + " ".join(sys.argv[1:])
    text = report(scores, command, seconds, args.drop_phase)
    if args.g2m_weight != TASKS[2].weight:
        text = text.replace("(regression, weight 0.5", f"(regression, weight {args.g2m_weight:g}")
    (args.out / "README.md").write_text(text)
    print(f"wrote {args.out / 'README.md'}")


if __name__ == "__main__":
    main()
