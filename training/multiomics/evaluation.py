"""Expression alone vs expression plus added modalities, on the same seeded splits.

``python -m training.multiomics.evaluation --out reports/multiomics-synthetic`` generates one
synthetic multi-omics world (`training.multiomics.data.make_multiomics`), pretrains an expression
encoder on its source rows (labels unused), then, for every repeat, draws a stratified split of
the target rows and fits on its training part: the expression-only head (the project's
`finetune_classifier`) and the multi-omics network (`finetune_multiomics`), the encoder frozen in
both, the same training settings. Scores are balanced accuracy on the split's test part; the
report gives each arm's mean and the paired differences (multi-omics − expression) with a t
interval, per scenario (which modalities, how many samples lack them).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from sklearn.linear_model import LogisticRegression

from contract.preprocess.pipeline import PreprocessPipeline
from training.evaluation.metrics import classification_metrics
from training.evaluation.splits import hold_out
from training.multiomics.data import make_multiomics
from training.multiomics.finetune import finetune_multiomics, pack
from training.multiomics.finetune import predict_proba as omics_proba
from training.nn.config import TrainConfig
from training.nn.encoders import AutoencoderConfig
from training.nn.heads import ClassifierHeadConfig
from training.train.apply import predict_labels, predict_proba
from training.train.finetune import finetune_classifier
from training.train.pretrain import pretrain


@dataclass(frozen=True)
class Scenario:
    """Which modalities join expression, and the share of samples lacking each."""

    name: str
    modalities: tuple[str, ...]
    missing: dict[str, float]


SCENARIOS = (
    Scenario(
        "methylation+protein", ("methylation", "protein"), {"methylation": 0.2, "protein": 0.3}
    ),
    Scenario("protein (90% missing)", ("protein",), {"methylation": 0.2, "protein": 0.9}),
)


@dataclass(frozen=True)
class Paired:
    scenario: str
    expression: list[float]
    multiomics: list[float]
    # a classical reference on the same splits and features: class-balanced L2 logistic
    # regression on the preprocessed expression alone, and on it plus every modality's
    # standardised values (0 where missing) and presence flags
    logistic_expression: list[float] = field(default_factory=list)
    logistic_multiomics: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        d = np.asarray(self.multiomics) - np.asarray(self.expression)
        n = len(d)
        sd = float(d.std(ddof=1)) if n > 1 else math.nan
        half = float(stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)) if n > 1 else math.nan
        logistic = {
            f"{name}_mean": float(np.mean(values))
            for name, values in (
                ("logistic_expression", self.logistic_expression),
                ("logistic_multiomics", self.logistic_multiomics),
            )
            if values
        }
        return logistic | {
            "expression_mean": float(np.mean(self.expression)),
            "multiomics_mean": float(np.mean(self.multiomics)),
            "diff_mean": float(d.mean()),
            "diff_sd": sd,
            "ci_low": float(d.mean()) - half,
            "ci_high": float(d.mean()) + half,
            "wins": int((d > 0).sum()),
            "n": n,
        }


def run(
    *,
    repeats: int = 5,
    n_source: int = 800,
    n_target: int = 300,
    test_fraction: float = 0.5,
    expression_noise: float = 1.0,
    separation: float = 1.0,
    seed: int = 0,
    epochs: int = 60,
    scenarios: Sequence[Scenario] = SCENARIOS,
) -> list[Paired]:
    """Every scenario's paired scores over `repeats` seeded splits (see the module docstring)."""
    torch.set_num_threads(1)
    results = []
    cfg = TrainConfig(epochs=epochs, batch_size=32, lr=3e-3, val_fraction=0.2, patience=8)
    for scenario in scenarios:
        world = make_multiomics(
            n_source + n_target, n_genes=200, n_cpgs=120, n_proteins=40, n_classes=3,
            separation=separation, expression_noise=expression_noise, missing=scenario.missing,
            seed=seed,
        )  # fmt: skip
        source = world.expression.take(np.arange(n_source))
        target = world.take(np.arange(n_source, n_source + n_target)).without(
            *(m for m in world.names if m not in scenario.modalities)
        )
        pipe = PreprocessPipeline.fit(source, "counts")
        ae_cfg = AutoencoderConfig(n_genes=source.shape[1], hidden=(64,), latent=16)
        pre = TrainConfig(epochs=40, batch_size=64, val_fraction=0.1, patience=5, seed=seed)
        ae, _ = pretrain(source, pipe, ae_cfg, pre, progress=False)
        expr_scores: list[float] = []
        omics_scores: list[float] = []
        lr_expr: list[float] = []
        lr_omics: list[float] = []
        for r in range(repeats):
            split = hold_out("target", target.expression, test_fraction=test_fraction,
                             seed=seed + r, stratify_by="label")  # fmt: skip
            is_test = np.zeros(n_target, dtype=bool)
            is_test[split.test_idx] = True
            train, test = target.take(~is_test), target.take(is_test)
            truth = test.expression.labels("label")
            run_cfg = TrainConfig(**{**asdict(cfg), "seed": seed + r})
            labels = sorted(set(train.expression.labels("label")))
            head = finetune_classifier(
                ae.encoder, pipe, train.expression, "label",
                ClassifierHeadConfig(ae_cfg.latent, len(labels)), run_cfg, progress=False,
            )  # fmt: skip
            proba = predict_proba(ae.encoder, head.head, pipe, test.expression)
            expr_scores.append(_bacc(truth, predict_labels(proba, head.labels), head.labels))
            omics = finetune_multiomics(ae.encoder, pipe, train, "label", run_cfg)
            proba = omics_proba(omics, pipe, test)
            omics_scores.append(_bacc(truth, predict_labels(proba, omics.labels), omics.labels))
            x_train, x_test = pack(pipe, omics.scalings, train), pack(pipe, omics.scalings, test)
            y_train = train.expression.labels("label")
            for width, scores in ((pipe.n_genes, lr_expr), (x_train.shape[1], lr_omics)):
                model = LogisticRegression(C=0.1, max_iter=1000, class_weight="balanced")
                model.fit(x_train[:, :width].numpy(), y_train)
                predicted = [str(v) for v in model.predict(x_test[:, :width].numpy())]
                scores.append(_bacc(truth, predicted, labels))
        results.append(Paired(scenario.name, expr_scores, omics_scores, lr_expr, lr_omics))
    return results


def _bacc(truth: list[str], predicted: list[str], labels: list[str]) -> float:
    return classification_metrics(truth, predicted, labels=labels)["balanced_accuracy"]


def write(results: Sequence[Paired], out: Path, command: str, seconds: float) -> Path:
    """summary.json and the tables of README.md's results section (the prose is the author's)."""
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "command": command,
        "machine": f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} torch thread(s)",
        "seconds": round(seconds, 1),
        "scenarios": [asdict(p) | p.summary() for p in results],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    lines = [
        "| scenario | expression only | + modalities | paired diff (mean ± sd) | 95% t-CI | "
        "multi-omics better | logistic: expression | logistic: + modalities |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in results:
        s = p.summary()
        lines.append(
            f"| {p.scenario} | {s['expression_mean']:.3f} | {s['multiomics_mean']:.3f} | "
            f"{s['diff_mean']:+.3f} ± {s['diff_sd']:.3f} | [{s['ci_low']:+.3f}, "
            f"{s['ci_high']:+.3f}] | {s['wins']}/{s['n']} | "
            f"{s.get('logistic_expression_mean', math.nan):.3f} | "
            f"{s.get('logistic_multiomics_mean', math.nan):.3f} |"
        )
    lines += ["", "Per split (balanced accuracy, expression → multi-omics):", ""]
    for p in results:
        pairs = ", ".join(
            f"{a:.3f}→{b:.3f}" for a, b in zip(p.expression, p.multiomics, strict=True)
        )
        lines.append(f"- {p.scenario}: {pairs}")
    path = out / "results.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and write summary.json and results.md under --out."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("reports/multiomics-synthetic"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-target", type=int, default=300)
    parser.add_argument("--expression-noise", type=float, default=1.0)
    parser.add_argument("--separation", type=float, default=1.0)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = run(
        repeats=args.repeats, n_target=args.n_target, expression_noise=args.expression_noise,
        epochs=args.epochs, seed=args.seed, separation=args.separation,
    )  # fmt: skip
    command = "python -m training.multiomics.evaluation " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
    )
    path = write(results, args.out, command, time.perf_counter() - start)
    print(path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
