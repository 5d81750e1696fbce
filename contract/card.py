"""The model card (`model.json`): the contract between training (writes) and the service (reads).

A version folder `models/<name>/<version>/` holds `model.onnx` and `model.json`; every other file
it names in `files` travels with it. The ONNX graph takes the *input scale* named here (for the
pbmc68k demo: log-normalised values) in panel order and applies the per-sample preprocessing
itself, so the service only aligns genes and fills the missing ones with `panel.fill_values`.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.idmap import IdType
from contract.modality import ModalityInput
from contract.vocab import Task

CARD_FILE = "model.json"
ONNX_FILE = "model.onnx"
HEAD_FILE = "head.onnx"
EXPLAIN_FILE = "explain.onnx"
BASELINE_FILE = "baseline.npy"
SCHEMA_VERSION = 1


class ModelKind(StrEnum):
    encoder = "encoder"
    classifier = "classifier"
    regressor = "regressor"
    pipeline = "pipeline"
    multitask = "multitask"  # one encoder, a head per task (`ModelCard.tasks`)


class InputScale(StrEnum):
    """What the values a model expects are; the graph starts from this scale."""

    counts = "counts"  # raw integer counts
    normalized = "normalized"  # linear, library-size normalised (CPM, TPM, ...)
    log = "log"  # log1p of normalised values (scanpy's .raw.X, log2(1+x) arrays)
    standardized = "standardized"  # per-gene z-scores


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GenePanel(_Frozen):
    """The genes the graph's input columns stand for, in order."""

    ids: list[str] = Field(min_length=1, description="Primary gene id of each input column.")
    aliases: list[list[str]] = Field(
        default_factory=list,
        description="Other names of each column (symbols, Ensembl ids); empty or one list a gene.",
    )
    fill_values: list[float] = Field(
        description="Value, on the input scale, given to a panel gene the request lacks.",
    )
    fill_policy: Literal["training_mean", "zero"] = "training_mean"
    species: str | None = Field(
        default=None,
        description="Species of the panel's genes (e.g. 'Homo sapiens'); null where the card "
        "predates the field. Names an input does not match directly are looked up in the human "
        "gene table only for human panels and those of unrecorded species.",
    )
    id_type: IdType | None = Field(
        default=None,
        description="How the panel names its genes: symbol, ensembl, entrez, mixed or unknown "
        "(contract.idmap.id_type at export); null where the card predates the field.",
    )

    @model_validator(mode="after")
    def _lengths(self) -> Self:
        n = len(self.ids)
        if len(set(self.ids)) != n:
            raise ValueError("panel gene ids must be unique")
        if self.aliases and len(self.aliases) != n:
            raise ValueError(f"aliases has {len(self.aliases)} entries for {n} genes")
        if len(self.fill_values) != n:
            raise ValueError(f"fill_values has {len(self.fill_values)} entries for {n} genes")
        return self


class TensorSpec(_Frozen):
    name: str
    dtype: Literal["float32"] = "float32"
    shape: list[int | str] = Field(description="Dimensions; a string names a dynamic axis.")


class HeadGraph(_Frozen):
    """The head alone as a second ONNX file: the parent encoder's embedding in, the outputs out.

    For clients that already hold embeddings (from the encoder's /embed) and want to score them
    without sending the expression again; the service itself serves the fused `model.onnx`.
    """

    file: str = HEAD_FILE
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class ExplainGraph(_Frozen):
    """Integrated gradients of one class's logit as a third ONNX file, beside the model.

    The graph takes the input-scale ``expression`` (batch, genes) in panel order and ``target``
    (batch,) int64 class indices, and returns ``attributions`` (batch, genes): for each sample,
    (x − x0) ⊙ the mean over `steps` midpoint-Riemann points x0 + α(x − x0) of the gradient of
    logit[target] with respect to the input, through the fused preprocessing. Summed over genes
    they approximate logit(x) − logit(x0). The softmax is not differentiated: a classifier's
    probabilities are explained through the logit of the class asked for.
    """

    file: str = EXPLAIN_FILE
    method: Literal["integrated_gradients"] = "integrated_gradients"
    rule: Literal["riemann_middle"] = "riemann_middle"
    steps: int = Field(ge=2, description="Riemann points on the path from the baseline.")
    baseline_file: str = Field(
        default=BASELINE_FILE,
        description="npy (float32, one value per panel gene, input scale): the baseline profile "
        "x0 the path starts from, also built into the graph.",
    )
    baseline: str = Field(
        default="training_mean",
        description="What the baseline profile is, e.g. the mean of the training inputs.",
    )
    exact: bool = Field(
        default=False,
        description="True where the model is linear in its input (a linear model behind linear "
        "preprocessing): the attributions are then exact, not an approximation of the integral.",
    )


class PreprocessStep(_Frozen):
    """One fitted step; its arrays live in the file named by `params_file` (npz, no pickles)."""

    name: str
    params: dict[str, float | int | str | bool | None] = Field(default_factory=dict)


class Preprocessing(_Frozen):
    steps: list[PreprocessStep] = Field(default_factory=list)
    params_file: str | None = Field(default=None, description="npz with the fitted arrays.")
    fused_in_graph: bool = Field(
        default=True, description="True: model.onnx applies these steps itself."
    )


class Metric(_Frozen):
    name: str
    value: float
    split: str = Field(description="Which data: 'validation', 'test', 'cv', ...")
    protocol: str = Field(description="How it was measured, in words a reviewer can repeat.")


class ModelRef(_Frozen):
    name: str
    version: int
    sha256: str = Field(description="sha256 of the parent's model.onnx.")


class TrainingData(_Frozen):
    name: str
    fingerprint: str = Field(description="sha256 of the matrix, sample ids and gene ids.")
    n_samples: int
    n_genes: int
    label_column: str | None = None
    heldout_sample_ids: list[str] = Field(
        default_factory=list, description="Samples kept out of training, for re-checking metrics."
    )


class TransformStep(_Frozen):
    """One per-sample step of an input transform, applied in numpy (contract.preprocess.steps)."""

    name: Literal["normalize_total", "log1p", "log2p1"]
    params: dict[str, float] = Field(
        default_factory=dict, description="normalize_total: {'target_sum': total per sample}."
    )

    @model_validator(mode="after")
    def _params(self) -> Self:
        wanted = {"target_sum"} if self.name == "normalize_total" else set()
        if set(self.params) != wanted:
            raise ValueError(f"{self.name} takes the parameters {sorted(wanted)}")
        if self.name == "normalize_total" and not self.params["target_sum"] > 0:
            raise ValueError("normalize_total's target_sum must be positive")
        return self

    def describe(self) -> str:
        """The step as `name(param=value)`."""
        args = ", ".join(
            f"{k}={int(v) if float(v).is_integer() else v}" for k, v in self.params.items()
        )
        return f"{self.name}({args})" if args else self.name


class InputTransform(_Frozen):
    """Values on another scale the model also takes, and the per-sample steps that bring them to
    its input scale (how its training data were made from that scale)."""

    scale: InputScale = Field(description="The scale these steps start from, e.g. counts.")
    steps: list[TransformStep] = Field(min_length=1)

    def describe(self) -> str:
        """e.g. 'counts: normalize_total(target_sum=10000), log1p' (ASCII: it goes in headers)."""
        return f"{self.scale.value}: " + ", ".join(step.describe() for step in self.steps)

    @classmethod
    def library_size_log1p(cls, target_sum: float = 1e4) -> InputTransform:
        """Counts scaled to `target_sum` per sample, then log1p: scanpy's normalize_total and
        log1p, the usual log-normalised single-cell data."""
        return cls(
            scale=InputScale.counts,
            steps=[
                TransformStep(name="normalize_total", params={"target_sum": target_sum}),
                TransformStep(name="log1p"),
            ],
        )

    @classmethod
    def log2_cpm(cls) -> InputTransform:
        """Counts per million, then log2(1 + x): the usual log-CPM of bulk RNA-seq."""
        return cls(
            scale=InputScale.counts,
            steps=[
                TransformStep(name="normalize_total", params={"target_sum": 1e6}),
                TransformStep(name="log2p1"),
            ],
        )


class CandidateScore(_Frozen):
    """One candidate of the automatic choice and its inner cross-validation score."""

    name: str = Field(description="e.g. 'frozen', 'full+dann', 'logistic'.")
    kind: Literal["transfer", "baseline"]
    mean: float = Field(description="Mean of the fold scores.")
    sd: float = Field(description="Standard deviation of the fold scores.")
    folds: list[float] = Field(description="Each inner fold's score, in fold order.")


class Spread(_Frozen):
    """The completed trials' scores: lowest, median, highest."""

    min: float
    median: float
    max: float


class Tuning(_Frozen):
    """The hyperparameter search behind the candidate named 'tuned' (Optuna: TPE, median pruning).

    Every trial is scored by inner cross-validation on the training samples only; a trial whose
    running mean falls below the median of earlier trials at the same fold is pruned.
    """

    trials: int = Field(ge=1, description="Trials asked for.")
    timeout_s: float | None = Field(
        default=None, description="Wall-clock budget: no trial starts after it (None: none)."
    )
    seed: int = Field(description="Seeds the sampler (TPE); the fits use the choice's seed.")
    complete: int = Field(ge=1, description="Trials scored on every fold.")
    pruned: int = Field(ge=0, description="Trials stopped early by the median pruner.")
    failed: int = Field(
        default=0,
        ge=0,
        description="Trials whose training failed (e.g. diverged); the search went on without "
        "them.",
    )
    best_value: float = Field(description="The best trial's mean fold score.")
    best_params: dict[str, float | int | str] = Field(description="The best trial's settings.")
    spread: Spread = Field(description="Min, median and max over the completed trials.")
    protocol: str = Field(description="The folds the trials were scored on, in words.")


class Selection(_Frozen):
    """How the published model was chosen: every candidate's inner-CV score and why it won.

    The candidates are scored on the training samples alone (the test samples, if any, are
    held out before); the winner is refitted on all of them and published.
    """

    metric: str = Field(description="What the scores are, e.g. 'balanced_accuracy'.")
    protocol: str = Field(description="The inner cross-validation, in words.")
    candidates: list[CandidateScore] = Field(min_length=1)
    winner: str = Field(
        description="The published candidate: by the one-standard-error rule, the simplest "
        "candidate within one standard error (of the paired fold differences) of the best mean, "
        "classical models before transfer strategies (training.choice.auto); or the named one."
    )
    forced: bool = Field(
        default=False,
        description="True when the caller named the strategy: the winner is then the named "
        "strategy whatever the scores, and the others are a comparison.",
    )
    reason: str = Field(description="Why the winner won, from the scores above.")
    warnings: list[str] = Field(
        default_factory=list,
        description="What a user must know, e.g. a classical baseline scored higher than the "
        "published model.",
    )
    tuning: Tuning | None = Field(
        default=None,
        description="The hyperparameter search, when one made the 'tuned' candidate.",
    )

    @model_validator(mode="after")
    def _winner_is_a_candidate(self) -> Self:
        if self.winner not in {c.name for c in self.candidates}:
            raise ValueError(f"winner {self.winner!r} is not among the candidates")
        return self


def task_outputs(task: str, kind: Task) -> list[str]:
    """A multi-task graph's outputs for one task: a classifier's ``<task>.logits`` and
    ``<task>.probabilities`` (the single-task names, prefixed) and ``<task>.prediction``, the
    predicted class's index (batch, 1) as a float; a regressor's ``<task>.prediction``."""
    names = (
        ("logits", "probabilities", "prediction") if kind == "classification" else ("prediction",)
    )
    return [f"{task}.{n}" for n in names]


class ModelTask(_Frozen):
    """One task of a multi-task model: its label column, what it predicts and its outputs."""

    name: str = Field(min_length=1, description="The task's name: the obs column it learned.")
    kind: Task
    labels: list[str] = Field(
        min_length=1,
        description="Class names in output order (classification), or the one target's name.",
    )
    weight: float = Field(gt=0, description="Its loss's weight in the fine-tuning objective.")
    outputs: list[str] = Field(description="Its graph outputs (`task_outputs`).")
    n_labelled: int = Field(default=0, ge=0, description="Training rows with this label.")
    warnings: list[str] = Field(
        default_factory=list,
        description="What a user must know about this task, e.g. a logistic or ridge "
        "regression scored higher on the same held-out samples.",
    )

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.kind == "classification" and len(self.labels) < 2:
            raise ValueError(f"classification task {self.name!r} needs at least 2 classes")
        if self.kind == "regression" and self.labels != [self.name]:
            raise ValueError(f"regression task {self.name!r} has its own name as its one label")
        if self.outputs != task_outputs(self.name, self.kind):
            raise ValueError(f"task {self.name!r} outputs {task_outputs(self.name, self.kind)}")
        return self


class ModelCard(_Frozen):
    schema_version: int = SCHEMA_VERSION
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    version: int = Field(ge=1)
    kind: ModelKind
    description: str = ""
    created_at: datetime
    input_scale: InputScale
    input_transforms: list[InputTransform] = Field(
        default_factory=list,
        description="Other scales the model accepts and the per-sample steps, applied by the "
        "service in numpy, that bring each to input_scale (empty: input_scale only).",
    )
    panel: GenePanel
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    labels: list[str] | None = Field(
        default=None,
        description="Class names (classifier) or target names (regressor), in output order.",
    )
    tasks: list[ModelTask] = Field(
        default_factory=list,
        exclude_if=lambda v: not v,
        description="A multi-task model's tasks, in output order (empty, and left out of "
        "model.json, for every other kind).",
    )
    head: HeadGraph | None = None
    explain: ExplainGraph | None = Field(
        default=None,
        description="The explanation graph (integrated gradients) exported beside the model; "
        "null: the model cannot explain its predictions.",
    )
    preprocessing: Preprocessing = Field(default_factory=Preprocessing)
    training_data: TrainingData | None = None
    metrics: list[Metric] = Field(default_factory=list)
    parent: ModelRef | None = None
    job: str | None = Field(
        default=None,
        description="The fine-tuning job (its id) that published this version; a job publishes "
        "at most one version, and a retried job finds it by this.",
    )
    selection: Selection | None = Field(
        default=None,
        description="The inner-CV comparison this model won (or, with a named strategy, was "
        "compared in), with its warnings.",
    )
    modalities: list[ModalityInput] | None = Field(
        default=None,
        description="A multi-omics model's added inputs, after 'expression', in input order "
        "(contract.modality); null: expression only.",
    )
    library_versions: dict[str, str] = Field(default_factory=dict)
    files: dict[str, str] = Field(description="File name → sha256, model.onnx included.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if ONNX_FILE not in self.files:
            raise ValueError(f"files must list {ONNX_FILE}")
        if self.kind is ModelKind.classifier and not self.labels:
            raise ValueError("a classifier card needs labels")
        if self.kind is ModelKind.regressor:
            widths = [o.shape[-1] for o in self.outputs if o.name == "prediction"]
            if not self.labels or widths != [len(self.labels)]:
                raise ValueError(
                    "a regressor card needs a 'prediction' output and one label per target"
                )
        self._check_tasks()
        if self.head is not None and self.head.file not in self.files:
            raise ValueError(f"files must list the head graph {self.head.file}")
        if self.explain is not None:
            if self.kind is not ModelKind.classifier:
                raise ValueError("only a classifier card may have an explanation graph")
            for name in (self.explain.file, self.explain.baseline_file):
                if name not in self.files:
                    raise ValueError(f"files must list the explanation's {name}")
        return self

    def _check_tasks(self) -> None:
        if (self.kind is ModelKind.multitask) != bool(self.tasks):
            raise ValueError("a multitask card needs tasks, and only a multitask card has them")
        names = [t.name for t in self.tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        widths = {o.name: o.shape[-1] for o in self.outputs}
        for task in self.tasks:
            classes = len(task.labels) if task.kind == "classification" else 1
            for output in task.outputs:
                n = 1 if output.endswith(".prediction") else classes  # a value, or a class index
                if widths.get(output) != n:
                    raise ValueError(f"task {task.name!r} needs an output {output!r} of width {n}")

    def task(self, name: str) -> ModelTask:
        """The task called `name`; KeyError naming the tasks there are."""
        for task in self.tasks:
            if task.name == name:
                return task
        raise KeyError(
            f"{self.name} has no task {name!r}; its tasks: {[t.name for t in self.tasks]}"
        )

    @model_validator(mode="after")
    def _modality_inputs(self) -> Self:
        if self.modalities is not None:
            names = [i.name for i in self.inputs]
            if names[1:] != [m.name for m in self.modalities] or len(set(names)) != len(names):
                raise ValueError(f"inputs {names} do not follow expression with the modalities")
        return self

    @model_validator(mode="after")
    def _transform_scales(self) -> Self:
        scales = [t.scale for t in self.input_transforms]
        if self.input_scale in scales or len(set(scales)) != len(scales):
            raise ValueError("input_transforms need one scale each, none of them input_scale")
        return self

    @property
    def n_genes(self) -> int:
        return len(self.panel.ids)

    @classmethod
    def read(cls, folder: Path) -> ModelCard:
        """Parse `folder/model.json`."""
        return cls.model_validate_json((folder / CARD_FILE).read_bytes())

    def write(self, folder: Path) -> None:
        """Write `folder/model.json` (the folder's other files must already be there)."""
        (folder / CARD_FILE).write_text(self.model_dump_json(indent=2) + "\n")

    def verify_files(self, folder: Path) -> list[str]:
        """Return a problem per file that is missing or whose sha256 differs; empty when intact."""
        problems = []
        for file_name, expected in self.files.items():
            path = folder / file_name
            if not path.is_file():
                problems.append(f"{file_name}: missing")
            elif sha256_file(path) != expected:
                problems.append(f"{file_name}: sha256 differs from model.json")
        return problems


def sha256_of(*parts: bytes) -> str:
    """Hex sha256 over byte strings, in order."""
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
