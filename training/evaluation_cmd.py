"""`genexfer train evaluate` and `genexfer train export --baseline`: what those commands run."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

from training import defaults
from training.commands import _guard, _progress, _read, train_config


def evaluate(args: argparse.Namespace) -> int:
    """Run the transfer-vs-baselines protocol and write the report."""
    from training.data.readers import load_pbmc68k_reduced
    from training.protocol import ProtocolConfig, run_protocol
    from training.report import write_report

    def run() -> Path:
        start = time.perf_counter()
        if args.data is None:
            matrix = load_pbmc68k_reduced()
            note = (
                "Data: scanpy's bundled pbmc68k_reduced (700 PBMCs, 765 genes, log-normalised "
                "`.raw.X`), labels `bulk_labels` (bulk-sorted cell types, noisy)."
            )
        else:
            matrix = _read(args, obs_columns=(args.label_column,))
            note = f"Data: {args.data.name}, labels `{args.label_column}` (log input scale)."
        cfg = ProtocolConfig(
            label_column=args.label_column,
            min_cells=args.min_cells,
            shots=args.shots,
            repeats=args.repeats,
            folds=args.folds,
            encoder=args.encoder_kind,
            strategy=args.strategy,
            baselines=args.baselines,
            pretrain=dataclasses.replace(train_config(args), epochs=args.pretrain_epochs),
            finetune=dataclasses.replace(
                defaults.FINETUNE, epochs=args.finetune_epochs, seed=args.seed
            ),
            seed=args.seed,
        )
        result = run_protocol(matrix, cfg, progress=_progress(args))
        took = time.perf_counter() - start
        note += f" The whole evaluation took {took / 60:.1f} min on this machine."
        return write_report(result, args.out, title=args.title, data_note=note)

    path = _guard(run)
    if path is None:
        return 1
    print(f"report {path}")
    return 0


def export_baseline_cmd(args: argparse.Namespace) -> int:
    """Fit a scikit-learn baseline on --data and publish it as a servable classifier/regressor."""
    from app.inference.card import InputScale, Metric
    from training.apply import numeric_target
    from training.baseline_export import export_baseline
    from training.baselines import baseline_names, baseline_proba, fit_baseline
    from training.evaluate import classification_metrics, predict_labels_from, regression_metrics
    from training.export import CardInfo
    from training.preprocess.pipeline import PreprocessPipeline
    from training.workflows import hold_out

    classify = args.task == "classification"
    if args.baseline not in baseline_names(args.task):
        print(f"error: {args.baseline} is not a {args.task} baseline", file=sys.stderr)
        return 2

    def run() -> Path:
        matrix = _read(args, obs_columns=(args.label_column,))
        dataset = hold_out(
            args.data.name,
            matrix,
            test_fraction=args.test_fraction,
            seed=args.seed,
            stratify_by=args.label_column if classify else None,
        )
        train, test = dataset.train, dataset.test
        pipeline = PreprocessPipeline.fit(train, InputScale(args.input_scale))
        target: Any = (
            train.labels(args.label_column)
            if classify
            else numeric_target(train, args.label_column)
        )
        model = fit_baseline(
            args.baseline, pipeline.transform(train.X), target, task=args.task, seed=args.seed
        )
        metrics = []
        if test.shape[0] >= (1 if classify else 2):
            features = pipeline.transform(test.X)
            if classify:
                proba = baseline_proba(model, features)
                classes = [str(c) for c in model.classes_]
                predicted = predict_labels_from(proba, classes)
                scores = classification_metrics(
                    test.labels(args.label_column), predicted, proba, classes
                )
            else:
                truth = numeric_target(test, args.label_column)
                scores = regression_metrics(truth, model.predict(features))
            protocol = (
                f"{dataset.protocol} before any fitting; preprocessing and the "
                f"{args.baseline} baseline fitted on the rest; scikit-learn metrics"
            )
            metrics = [
                Metric(name=k, value=v, split="test", protocol=protocol) for k, v in scores.items()
            ]
            for k, v in scores.items():
                print(f"held-out {k} {v:.4f}")
        description = args.description or (
            f"scikit-learn {args.baseline} {args.task} baseline of {args.label_column!r} on "
            f"{args.data.name}, served as ONNX (preprocessing fused in front)."
        )
        info = CardInfo(
            description,
            dataset.training_data(args.label_column),
            metrics,
            {"baseline": args.baseline, "task": args.task},
        )
        return export_baseline(
            model,
            pipeline,
            baseline=args.baseline,
            name=args.name,
            models_dir=args.models_dir,
            info=info,
            reference=train.X,
        )

    folder = _guard(run)
    if folder is None:
        return 1
    print(f"published {folder}")
    return 0
