"""The methods the evaluation compares with the baselines: name → fit function, in one place.

Each method fits on one split's `Inputs` and returns class probabilities for the test rows, the
columns in ``inputs.classes`` order. A method that learns from the rows without a label names
its `reference`, the same method without them, so the report can pair the two split by split.
A new method (e.g. the automatic choice) is one more `register(Method(...))`; its name must be
in `contract.vocab.EVAL_METHODS` for the command line to offer it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from contract.matrix import ExpressionMatrix
from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.attribution import Attribution, baseline_attribution, network_attribution
from training.evaluation.baselines import baseline_proba, fit_baseline
from training.methods.options import FinetuneOptions
from training.nn.config import TrainConfig
from training.nn.heads import ClassifierHeadConfig
from training.nn.variants import build_autoencoder
from training.preprocess.select import output_width
from training.protocol import chosen
from training.protocol.pretraining import EncoderShape
from training.train.apply import predict_proba
from training.train.finetune import finetune_classifier

Proba = npt.NDArray[np.float32]
# a fitted model's attributions on the split's test rows; the flag allows permutation importance
Attribute = Callable[[bool], Attribution | None]
Fitted = tuple[Proba, Attribute]


@dataclass(frozen=True)
class Rows:
    """One split's rows in one gene panel, with the preprocessing fitted for that panel."""

    pipeline: PreprocessPipeline
    train: ExpressionMatrix
    test: ExpressionMatrix
    unlabelled: ExpressionMatrix | None


@dataclass(frozen=True)
class Inputs:
    """What every model of one split is fitted on and scored with.

    Parameters
    ----------
    classes:
        The split's classes (the columns of the returned probabilities).
    label_column:
        obs column of `train` with the labels.
    encoded:
        The rows in the encoder's panel, with the encoder's preprocessing.
    plain:
        The rows in the target's own genes, preprocessing fitted on the split's non-test rows
        (the baselines' and the scratch network's input).
    encoder, latent:
        The pretrained encoder (never modified) and its output width.
    shape:
        The encoder architecture (the scratch network's).
    finetune:
        Fine-tuning settings, seeded for the split.
    domain_column:
        obs column naming each row's batch, for adaptation (``None``: labelled vs unlabelled).
    device:
        Where networks train.
    """

    classes: list[str]
    label_column: str
    encoded: Rows
    plain: Rows
    encoder: Any
    latent: int
    shape: EncoderShape
    finetune: TrainConfig
    domain_column: str | None = None
    device: str = "cpu"

    @property
    def y_train(self) -> list[str]:
        """The training rows' labels."""
        return self.plain.train.labels(self.label_column)


Fit = Callable[[Inputs], Fitted]


@dataclass(frozen=True)
class Method:
    """A model the evaluation fits on every split, and what it learns from.

    Parameters
    ----------
    name:
        As in `contract.vocab.EVAL_METHODS`.
    fit:
        Fits on a split's inputs; the test rows' class probabilities, and how to attribute
        them to genes (`training.evaluation.attribution`).
    pretrained:
        Whether it starts from the pretrained encoder.
    unlabelled:
        Whether it learns from the split's rows without a label (never the test labels).
    reference:
        The same method without the unlabelled rows (for the paired difference).
    summary:
        One line for the report.
    """

    name: str
    fit: Fit
    pretrained: bool
    unlabelled: bool
    reference: str | None
    summary: str


METHODS: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add a method to the registry (a name registered twice is refused)."""
    if method.name in METHODS:
        raise ValueError(f"method {method.name!r} is registered already")
    METHODS[method.name] = method
    return method


def method(name: str) -> Method:
    """The registered method `name`; ValueError naming the known ones otherwise."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; have {sorted(METHODS)}")
    return METHODS[name]


def with_references(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` plus each one's reference that is missing, in registry order."""
    wanted = set(names) | {r for n in names if (r := method(n).reference) is not None}
    return tuple(n for n in METHODS if n in wanted)


def _neural(options: FinetuneOptions) -> Fit:
    def fit(inputs: Inputs) -> Fitted:
        rows = inputs.encoded
        opts = dataclasses.replace(options, device=inputs.device)
        uses_rows = opts.adaptation != "none" or opts.semi_supervised != "none"
        result = finetune_classifier(
            inputs.encoder,
            rows.pipeline,
            rows.train,
            inputs.label_column,
            ClassifierHeadConfig(n_in=inputs.latent, n_classes=len(inputs.classes)),
            inputs.finetune,
            strategy=opts,
            progress=False,
            unlabelled=rows.unlabelled if uses_rows else None,
            domain_column=inputs.domain_column if opts.adaptation != "none" else None,
        )
        return predict_proba(result.encoder, result.head, rows.pipeline, rows.test), _network(
            result.encoder, result.head, result.labels, rows
        )

    return fit


def _network(encoder: Any, head: Any, labels: list[str], rows: Rows) -> Attribute:
    def attribute(_: bool) -> Attribution:
        return network_attribution(encoder, head, labels, rows.pipeline, rows.test.X)

    return attribute


def _scratch(inputs: Inputs) -> Fitted:
    import torch

    rows = inputs.plain
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(inputs.finetune.seed)
        fresh = build_autoencoder(inputs.shape.config(output_width(rows.pipeline))).encoder
    result = finetune_classifier(
        fresh,
        rows.pipeline,
        rows.train,
        inputs.label_column,
        ClassifierHeadConfig(n_in=inputs.shape.latent, n_classes=len(inputs.classes)),
        inputs.finetune,
        strategy=FinetuneOptions("full", encoder_lr_scale=1.0, device=inputs.device),
        progress=False,
    )
    proba = predict_proba(result.encoder, result.head, rows.pipeline, rows.test)
    return proba, _network(result.encoder, result.head, result.labels, rows)


def baseline_fit(name: str) -> Fit:
    """A scikit-learn baseline on the target's own preprocessed genes."""

    def fit(inputs: Inputs) -> Fitted:
        rows = inputs.plain
        x_train, x_test = (
            rows.pipeline.transform(rows.train.X),
            rows.pipeline.transform(rows.test.X),
        )
        model = fit_baseline(name, x_train, inputs.y_train, seed=inputs.finetune.seed)
        proba = baseline_proba(model, x_test)
        # a split's training rows hold every class, so the columns are the classes, sorted
        order = [list(map(str, model.classes_)).index(c) for c in inputs.classes]
        seed = inputs.finetune.seed

        def attribute(permutation: bool) -> Attribution | None:
            truth = rows.test.labels(inputs.label_column)
            return baseline_attribution(
                model, rows.pipeline, rows.test.X, x_test, truth, seed=seed, permutation=permutation
            )

        return proba[:, order], attribute

    return fit


for _strategy in ("frozen", "partial", "gradual", "full"):
    register(
        Method(
            _strategy,
            _neural(FinetuneOptions(_strategy)),
            pretrained=True,
            unlabelled=False,
            reference=None,
            summary=f"pretrained encoder + linear head, `{_strategy}` fine-tuning",
        )
    )
for _adaptation in ("dann", "mmd"):
    register(
        Method(
            _adaptation,
            _neural(FinetuneOptions("full", adaptation=_adaptation)),
            pretrained=True,
            unlabelled=True,
            reference="full",
            summary=f"`full` fine-tuning with {_adaptation.upper()} domain adaptation",
        )
    )
for _semi in ("pseudo_label", "consistency"):
    register(
        Method(
            _semi,
            _neural(FinetuneOptions("frozen", semi_supervised=_semi)),
            pretrained=True,
            unlabelled=True,
            reference="frozen",
            summary=f"`frozen` fine-tuning with {_semi.replace('_', '-')} semi-supervision",
        )
    )
register(
    Method(
        "scratch",
        _scratch,
        pretrained=False,
        unlabelled=False,
        reference=None,
        summary="the encoder + head architecture trained from random weights (`full`)",
    )
)


register(
    Method(
        "auto",
        chosen.auto,
        pretrained=True,
        unlabelled=False,
        reference=None,
        summary="the automatic choice (`strategy: auto`): inner CV over `frozen`, `full`, "
        "`logistic`, `ridge`, `random_forest`, the winner refitted",
    )
)
register(
    Method(
        "tuned",
        chosen.tuned,
        pretrained=True,
        unlabelled=False,
        reference=None,
        summary="fine-tuning with settings searched by Optuna (`genexfer train tune`'s default "
        "trials) on the split's training rows, the best trial refitted",
    )
)
