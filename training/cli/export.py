"""`genexfer train export`: fit a scikit-learn baseline and publish it as servable ONNX."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from contract.vocab import BASELINES, TASKS
from training.cli.pretrain import INPUT_SCALES
from training.cli.shared import command, inputs, options, settings, values
from training.train import defaults

NAME = "export"
HELP = "fit a scikit-learn baseline and publish it as a servable ONNX classifier/regressor"
DESCRIPTION = (
    "Hold out a test split (stratified when classifying), fit the per-gene "
    "preprocessing and the chosen baseline on the rest, score the held-out samples, and "
    "publish preprocessing → estimator as one ONNX graph (input 'expression', output "
    "'probabilities' for a classifier or 'prediction' for a regressor; onnx.checker and "
    "ONNX Runtime vs scikit-learn parity ≤ 1e-4, relative to the target's scale for a "
    "regressor) with a model card, as a new version of MODELS_DIR/NAME that the service "
    "loads like any classifier or regressor. Neural encoders and heads are exported by "
    "`pretrain` and `finetune` themselves."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer train export`."""
    parser.add_argument(
        "--baseline",
        choices=(*BASELINES, "linear"),
        required=True,
        help="which baseline ('linear' is ordinary least squares, regression only)",
    )
    parser.add_argument(
        "--task",
        choices=TASKS,
        default="classification",
        help=values.d(
            "classes or numbers; regression baselines are the regressor of the same name"
        ),
    )
    options.data(parser)
    parser.add_argument(
        "--label-column", required=True, help="obs/table column with the classes or the numbers"
    )
    parser.add_argument(
        "--input-scale", choices=INPUT_SCALES, default="log", help=values.d("what the values are")
    )
    parser.add_argument("--name", required=True, help="model name to publish under")
    parser.add_argument(
        "--test-fraction",
        type=float,
        default=defaults.TEST_FRACTION,
        help=values.d("share held out for the card's metrics"),
    )
    parser.add_argument(
        "--models-dir", type=Path, default=Path("models"), help=values.d("model store")
    )
    parser.add_argument(
        "--seed", type=int, default=0, help=values.d("seeds the split and the estimator")
    )
    parser.add_argument("--description", default="", help="card description (default: generated)")


def run(args: argparse.Namespace) -> int:
    """Fit a scikit-learn baseline on --data and publish it as a servable classifier/regressor."""
    from training.evaluation.baselines import baseline_names

    if args.baseline not in baseline_names(args.task):
        print(f"error: {args.baseline} is not a {args.task} baseline", file=sys.stderr)
        return 2
    folder = command.guard(_export, args)
    if folder is None:
        return 1
    print(f"published {folder}")
    return 0


def _export(args: argparse.Namespace) -> Path:
    from contract.card import InputScale, Metric
    from contract.preprocess.pipeline import PreprocessPipeline
    from training.evaluation.baselines import baseline_proba, fit_baseline
    from training.evaluation.metrics import (
        classification_metrics,
        predict_labels_from,
        regression_metrics,
    )
    from training.export.baseline import export_baseline
    from training.export.card import CardInfo
    from training.train.apply import numeric_target

    classify = args.task == "classification"
    matrix = inputs.read(args, obs_columns=(args.label_column,))
    dataset = settings.held_out(args, matrix, stratify=classify)
    train, test = dataset.train, dataset.test
    pipeline = PreprocessPipeline.fit(train, InputScale(args.input_scale))
    target: Any = (
        train.labels(args.label_column) if classify else numeric_target(train, args.label_column)
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
