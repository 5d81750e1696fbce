"""`genexfer preprocess`: read files, QC, fit and apply a pipeline, write the matrix and a report.

Only argparse is imported at module level, so `genexfer --help` stays fast; the work happens in
`run`, which imports the readers, the pipeline and matplotlib when the command runs.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

DEFAULT_STEPS = '[{"step": "cpm"}, {"step": "log2p1"}]'


NAME = "preprocess"
HELP = "QC and preprocess expression files, with a report (HTML + PNG)"
DESCRIPTION = (
    "Read one or more expression files (CSV/TSV[.gz], Parquet, h5ad, GCT, 10x folders; "
    "each file is one batch unless --batch-column names one), harmonise gene ids, "
    "detect the input scale, run QC (drop samples with too many missing values, flag "
    "outliers), fit the steps of --steps on the kept samples (or apply a model's fitted "
    "pipeline with --model-dir), and write the matrix, the fitted pipeline (JSON + npz), "
    "qc.json and qc_report.{html,png} into --out."
)


def arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `genexfer preprocess`."""
    parser.add_argument("inputs", nargs="+", type=Path, help="expression files or 10x folders")
    parser.add_argument("--out", type=Path, required=True, help="output folder (created)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--steps",
        default=DEFAULT_STEPS,
        help='recipe as JSON or @file.json, e.g. \'[{"step": "median_of_ratios"}, '
        '{"step": "vst"}, {"step": "combat"}, {"step": "pca", "n_components": 20}]\' '
        "(default: CPM then log2(1+x))",
    )
    group.add_argument("--model-dir", type=Path, help="apply this model version's pipeline")
    parser.add_argument("--input-scale", choices=["counts", "normalized", "log", "standardized"],
                   help="declare the input scale instead of detecting it")  # fmt: skip
    parser.add_argument("--orientation", default="auto",
                   choices=["auto", "samples_as_rows", "genes_as_rows"])  # fmt: skip
    parser.add_argument("--obs", type=Path, help="per-sample metadata CSV/TSV (first column: ids)")
    parser.add_argument("--batch-column", help="metadata column holding the batch")
    parser.add_argument("--max-missing", type=float, default=0.2, help="drop above this share")
    parser.add_argument("--n-mads", type=float, default=3.0, help="outlier threshold (robust sds)")
    parser.add_argument(
        "--gene-lengths", type=Path, help="CSV/TSV: gene id, length in bases (tpm and fpkm)"
    )
    parser.add_argument("--format", default="csv", choices=["csv", "tsv", "parquet", "h5ad"],
                   help="format of the output matrix")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Do the work of `genexfer preprocess` (see `register`)."""
    from training.preprocess.files import preprocess_files

    steps: list[dict[str, Any]] | None = None
    if args.model_dir is None:
        text = args.steps
        if text.startswith("@"):
            text = Path(text[1:]).read_text()
        try:
            steps = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"--steps is not valid JSON: {exc}") from exc
        if not isinstance(steps, list):
            raise SystemExit('--steps must be a JSON list of {"step": ...} objects')
    summary = preprocess_files(
        inputs=args.inputs,
        out=args.out,
        steps=steps,
        model_dir=args.model_dir,
        input_scale=args.input_scale,
        orientation=args.orientation,
        obs_path=args.obs,
        batch_column=args.batch_column,
        max_missing=args.max_missing,
        n_mads=args.n_mads,
        fmt=args.format,
        gene_lengths=_lengths(args.gene_lengths) if args.gene_lengths else None,
    )
    print(json.dumps(summary, indent=1))
    return 0


def _lengths(path: Path) -> dict[str, float]:
    from contract.io.readers import read_obs

    table = read_obs(path)  # first column ids, every value a string
    if table.shape[1] < 1:
        raise SystemExit(f"{path}: needs a gene id column and a length column")
    try:
        return {str(g): float(v) for g, v in zip(table.index, table.iloc[:, 0], strict=True)}
    except ValueError as exc:
        raise SystemExit(f"{path}: gene lengths must be numbers ({exc})") from exc
