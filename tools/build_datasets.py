"""Build datasets/<name>/ from Debian's Bioconductor data packages (build time only, needs R).

    apt-get install -y --no-install-recommends r-base-core r-bioc-biobase \
        r-bioc-bladderbatch r-bioc-all
    python tools/build_datasets.py            # writes datasets/bladderbatch, datasets/all_leukaemia

R only dumps each ExpressionSet (expression, phenotype table, package version) as text into a
temporary folder; Python picks the most variable features and writes the compact tables. The
output depends only on the package contents, so rebuilding gives byte-identical files.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
N_FEATURES = 5_000

# Writes exprs.tsv (features × samples), pheno.tsv and version.txt for one ExpressionSet.
R_DUMP = r"""
args <- commandArgs(trailingOnly = TRUE)
pkg <- args[1]; object <- args[2]; out <- args[3]
suppressPackageStartupMessages({library(Biobase); library(pkg, character.only = TRUE)})
env <- new.env()
data(list = object, package = pkg, envir = env)
# the data set's name need not be the object's (bladderdata holds bladderEset)
esets <- Filter(function(x) is(x, "ExpressionSet"), mget(ls(env), envir = env))
stopifnot(length(esets) == 1)
eset <- esets[[1]]
write.table(exprs(eset), file.path(out, "exprs.tsv"), sep = "\t", quote = FALSE,
            col.names = NA, na = "NA")
pheno <- pData(eset)
pheno[] <- lapply(pheno, as.character)
write.table(pheno, file.path(out, "pheno.tsv"), sep = "\t", quote = FALSE, col.names = NA,
            na = "NA")
writeLines(c(as.character(packageVersion(pkg)), annotation(eset)), file.path(out, "version.txt"))
"""


@dataclass(frozen=True)
class Source:
    """One Bioconductor ExpressionSet and how its phenotype table becomes samples.tsv."""

    name: str
    debian: str
    package: str
    object: str  # the data set's name for data(); it must hold one ExpressionSet
    columns: dict[str, str]  # pData column → samples.tsv column, in output order
    derived: dict[str, str] = field(default_factory=dict)  # new column → pData column it cuts


SOURCES = (
    Source(
        name="bladderbatch",
        debian="r-bioc-bladderbatch",
        package="bladderbatch",
        object="bladderdata",
        columns={"cancer": "cancer", "outcome": "outcome", "batch": "batch"},
    ),
    Source(
        name="all_leukaemia",
        debian="r-bioc-all",
        package="ALL",
        object="ALL",
        # dates and the patient code are left out: nothing to learn from, and identifying
        columns={
            "BT": "BT",
            "mol.biol": "mol_biol",
            "fusion protein": "fusion_protein",
            "sex": "sex",
            "age": "age",
            "remission": "remission",
            "CR": "CR",
            "t(4;11)": "t_4_11",
            "t(9;22)": "t_9_22",
            "cyto.normal": "cyto_normal",
            "citog": "citog",
            "mdr": "mdr",
            "kinet": "kinet",
            "ccr": "ccr",
            "relapse": "relapse",
            "transplant": "transplant",
            "f.u": "f_u",
        },
        derived={"lineage": "BT"},
    ),
)


def dump(source: Source, folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """Run R on one package; returns expression (features × samples), pheno, [version, chip]."""
    script = folder / "dump.R"
    script.write_text(R_DUMP)
    subprocess.run(
        ["Rscript", "--vanilla", str(script), source.package, source.object, str(folder)],
        check=True,
    )
    exprs = pd.read_csv(folder / "exprs.tsv", sep="\t", index_col=0, dtype={0: str})
    pheno = pd.read_csv(
        folder / "pheno.tsv", sep="\t", index_col=0, dtype=str, keep_default_na=False
    )
    return exprs, pheno, (folder / "version.txt").read_text().split()


def most_variable(exprs: pd.DataFrame, n: int) -> pd.DataFrame:
    """The n probe sets of highest variance across samples, in the array's own order."""
    # Affymetrix controls (spike-ins, housekeeping 3'/5' probes) vary with the lab work, not the
    # biology: left in, a dozen of them made ALL's top 5,000
    exprs = exprs[~exprs.index.str.startswith("AFFX-")]
    values = exprs.to_numpy(dtype=np.float64)
    if not np.isfinite(values).all():
        raise ValueError("the expression matrix has missing values; decide how to handle them")
    variance = values.var(axis=1, ddof=1)
    # ties broken by feature id so that the choice never depends on sort stability
    order = np.lexsort((exprs.index.to_numpy(dtype=str), -variance))[:n]
    return exprs.iloc[np.sort(order)]


def sample_ids(columns: pd.Index) -> list[str]:
    """Sample ids as strings, without the '.CEL' file suffix bladderbatch keeps."""
    return [str(c).removesuffix(".CEL") for c in columns]


def samples_table(source: Source, pheno: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """sample_id plus the kept phenotype columns, all strings, missing values as 'NA'."""
    table = pheno[list(source.columns)].rename(columns=source.columns)
    for column, origin in source.derived.items():
        # lineage: BT is "B", "B1".."B4", "T", "T1".."T4"; its first letter is the lineage
        table[column] = pheno[origin].str[0]
    table.insert(0, "sample_id", ids)
    return table.replace("", "NA").reset_index(drop=True)


def write(source: Source, exprs: pd.DataFrame, pheno: pd.DataFrame, meta: list[str]) -> Path:
    """Write expression.parquet and samples.tsv for one source; returns its folder."""
    version, chip = meta
    kept = most_variable(exprs, N_FEATURES)
    ids = sample_ids(kept.columns)
    if len(set(ids)) != len(ids) or list(pheno.index) != list(kept.columns):
        raise ValueError(f"{source.name}: sample ids are not unique or not aligned with pData")
    out = ROOT / "datasets" / source.name
    out.mkdir(parents=True, exist_ok=True)
    matrix = kept.to_numpy(dtype=np.float32).T
    arrays = [pa.array(ids, pa.string())] + [pa.array(matrix[:, j]) for j in range(matrix.shape[1])]
    provenance = {
        "source": f"Debian {source.debian} (Bioconductor {source.package} {version})",
        "object": source.object,
        "platform": chip,
        "features": f"{len(kept)} of {len(exprs)} probe sets (no AFFX- controls) by variance",
    }
    table = pa.Table.from_arrays(
        arrays, names=["sample_id", *map(str, kept.index)], metadata=provenance
    )
    # no dictionaries or statistics (random floats gain nothing from them, and 5,000 columns of
    # footer cost), and byte-stream-split floats, which zstd packs ~25% tighter
    pq.write_table(
        table,
        out / "expression.parquet",
        compression="zstd",
        use_dictionary=False,
        write_statistics=False,
        column_encoding=dict.fromkeys(table.column_names[1:], "BYTE_STREAM_SPLIT"),
    )
    samples_table(source, pheno, ids).to_csv(out / "samples.tsv", sep="\t", index=False)
    return out


def main(argv: list[str] | None = None) -> int:
    """Build every dataset (or those named) into datasets/."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"any of {[s.name for s in SOURCES]}")
    args = parser.parse_args(argv)
    if shutil.which("Rscript") is None:
        sys.exit(
            "Rscript not found: apt-get install -y --no-install-recommends r-base-core "
            "r-bioc-biobase " + " ".join(s.debian for s in SOURCES)
        )
    unknown = set(args.names) - {s.name for s in SOURCES}
    if unknown:
        sys.exit(f"unknown datasets {sorted(unknown)}")
    for source in SOURCES:
        if args.names and source.name not in args.names:
            continue
        with tempfile.TemporaryDirectory(prefix=f"genexfer-{source.name}-") as tmp:
            exprs, pheno, meta = dump(source, Path(tmp))
        out = write(source, exprs, pheno, meta)
        sizes = ", ".join(
            f"{p.name} {p.stat().st_size / 1e6:.2f} MB" for p in sorted(out.iterdir())
        )
        print(
            f"{source.name}: {source.package} {meta[0]} ({meta[1]}), {exprs.shape[1]} samples; "
            f"{sizes}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
