"""Every name the CLI, the API schemas and the code must agree on, defined once.

Each vocabulary is a `Literal` (for type checkers and pydantic) and the tuple of its values (for
argparse choices and checks at run time), the tuple always derived from the Literal.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

Task = Literal["classification", "regression"]
TASKS: tuple[Task, ...] = get_args(Task)

# how much of a pretrained encoder fine-tuning trains (training.train.finetune)
Strategy = Literal["frozen", "partial", "gradual", "full"]
STRATEGIES: tuple[Strategy, ...] = get_args(Strategy)
# what a job or `genexfer train finetune` asks for: one strategy, or "auto", the choice by inner
# cross-validation among the strategies and the classical baselines (training.choice)
StrategyChoice = Literal["auto", "frozen", "partial", "gradual", "full"]
STRATEGY_CHOICES: tuple[StrategyChoice, ...] = get_args(StrategyChoice)
assert STRATEGY_CHOICES[1:] == STRATEGIES

# domain adaptation during fine-tuning: none, adversarial (gradient reversal, DANN) or MMD
Adaptation = Literal["none", "dann", "mmd"]
ADAPTATIONS: tuple[Adaptation, ...] = get_args(Adaptation)

# how fine-tuning uses rows without a label
SemiSupervision = Literal["none", "pseudo_label", "consistency"]
SEMI_SUPERVISION: tuple[SemiSupervision, ...] = get_args(SemiSupervision)

# unsupervised gene selection before an encoder (training.preprocess.select): top variance, or
# top dispersion within bins of mean expression (Seurat's highly variable genes)
SelectBy = Literal["variance", "dispersion"]
SELECT_BY: tuple[SelectBy, ...] = get_args(SelectBy)

# self-supervised encoders: dense with input dropout, masking-noise denoising, variational
EncoderKind = Literal["ae", "dae", "vae"]
ENCODER_KINDS: tuple[EncoderKind, ...] = get_args(EncoderKind)

# scikit-learn baselines (training.evaluation.baselines); "linear" is least squares, regression only
ClassifierBaseline = Literal[
    "logistic", "ridge", "lasso", "elastic_net", "random_forest", "gradient_boosting", "mlp"
]
BASELINES: tuple[ClassifierBaseline, ...] = get_args(ClassifierBaseline)
RegressorBaseline = Literal[
    "linear", "ridge", "lasso", "elastic_net", "random_forest", "gradient_boosting", "mlp"
]
REGRESSION_BASELINES: tuple[RegressorBaseline, ...] = get_args(RegressorBaseline)

# what `genexfer train evaluate` compares with the baselines (training.protocol.methods): a
# fine-tuning strategy; DANN or MMD adaptation (full fine-tuning plus the target's rows without a
# label); pseudo-labels or consistency on those rows (frozen plus them); the architecture trained
# from random weights; the automatic choice (the jobs' default, training.choice)
EvalMethod = Literal[
    "frozen", "partial", "gradual", "full", "dann", "mmd", "pseudo_label", "consistency",
    "scratch", "auto", "tuned",
]  # fmt: skip
EVAL_METHODS: tuple[EvalMethod, ...] = get_args(EvalMethod)

# how `genexfer train evaluate` splits the target: few-shot curves plus k-fold CV, or
# leave-one-batch-out
EvalProtocol = Literal["few_shot", "lobo"]
EVAL_PROTOCOLS: tuple[EvalProtocol, ...] = get_args(EvalProtocol)

# public datasets `genexfer train evaluate --dataset` loads by name (training.data.public)
PublicDataset = Literal["pbmc68k", "pbmc68k-shifted", "bladderbatch", "all-leukaemia"]
PUBLIC_DATASETS: tuple[PublicDataset, ...] = get_args(PublicDataset)

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[JobStatus, ...] = get_args(JobStatus)
ACTIVE_JOB_STATUSES: tuple[JobStatus, ...] = ("queued", "running")
FINAL_JOB_STATUSES: tuple[JobStatus, ...] = ("succeeded", "failed", "cancelled")

Orientation = Literal["samples_as_rows", "genes_as_rows"]
ORIENTATIONS: tuple[Orientation, ...] = get_args(Orientation)

# preprocessing recipe steps (contract.preprocess.select); tpm and fpkm need gene lengths, which
# only files (genexfer preprocess --gene-lengths) provide
RecipeStep = Literal[
    "cpm", "normalize_total", "median_of_ratios", "vst", "log1p", "log2p1", "combat",
    "select_variance", "select_hvg", "select_genes", "standardize", "pca",
]  # fmt: skip
LengthStep = Literal["tpm", "fpkm"]
RECIPE_STEPS: tuple[str, ...] = (*get_args(RecipeStep), *get_args(LengthStep))


class CandidateName(NamedTuple):
    """A candidate of the automatic choice, by name: a baseline, or a strategy and its methods."""

    baseline: str | None
    strategy: Strategy | None
    adaptation: Adaptation
    semi_supervised: SemiSupervision


def parse_candidate(name: str, task: Task) -> CandidateName:
    """Read `name`: a baseline of `task`, or strategy[+dann|+mmd][+pseudo_label|+consistency].

    Raises ValueError saying what names exist.
    """
    baselines = BASELINES if task == "classification" else REGRESSION_BASELINES
    if name in baselines:
        return CandidateName(name, None, "none", "none")
    strategy, *methods = name.split("+")
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown candidate {name!r}: give a strategy {'/'.join(STRATEGIES)} (optionally "
            f"+{'/+'.join(ADAPTATIONS[1:])} and +{'/+'.join(SEMI_SUPERVISION[1:])}) or a "
            f"{task} baseline ({', '.join(baselines)})"
        )
    adaptation: Adaptation = "none"
    semi: SemiSupervision = "none"
    for method in methods:
        if method in ADAPTATIONS[1:] and adaptation == "none":
            adaptation = method
        elif method in SEMI_SUPERVISION[1:] and semi == "none":
            semi = method
        else:
            raise ValueError(
                f"candidate {name!r}: {method!r} is not one adaptation "
                f"({'/'.join(ADAPTATIONS[1:])}) and at most one semi-supervision "
                f"({'/'.join(SEMI_SUPERVISION[1:])})"
            )
    if adaptation != "none" and strategy == "frozen":
        raise ValueError(
            f"candidate {name!r}: adaptation aligns what the encoder outputs, so the encoder "
            "must train: use partial, gradual or full, not frozen"
        )
    if semi == "pseudo_label" and task == "regression":
        raise ValueError(f"candidate {name!r}: pseudo-labels need classes; use consistency")
    return CandidateName(None, strategy, adaptation, semi)


# how a table says "no label here": such rows are unlabelled (used by adaptation and
# semi-supervision), never a class of their own
MISSING_LABELS: frozenset[str] = frozenset({"", "nan", "NaN", "NA", "None", "<NA>"})

# the committed gene-set collections (contract.genesets, contract/resources/SOURCES.md)
GeneSetCollectionName = Literal["go_bp", "progeny"]
GENE_SET_COLLECTIONS: tuple[GeneSetCollectionName, ...] = get_args(GeneSetCollectionName)

# the stage-name prefix of trainings inside the automatic choice's inner cross-validation (and a
# tuning study): a job reports them as progress but keeps them off the published model's curve
INNER_CV_STAGE = "inner CV · "
