"""The GeneXfer Python client on the example files (docs/client.md walks through it).

    make serve                                   # in another terminal: the demo models
    .venv/bin/python examples/client_example.py  # --url, --api-key for another service

Classifies four held-out pbmc68k cells, uploads 120 labelled lab cells, fine-tunes a cell-type
classifier on them with a progress bar, classifies with the new model, and finds the results
again (as a DataFrame and as FHIR R4).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from app.client import GeneXferClient

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--api-key", default=None, help="where the service has keys on")
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()

    # samples as rows, genes as columns, the sample ids in the index
    cells = pd.read_csv(HERE / "pbmc68k-4cells.csv", index_col=0)
    truth = pd.read_csv(HERE / "pbmc68k-4cells-truth.csv", index_col=0)
    lab = pd.read_csv(HERE / "lab-cells.csv.gz", index_col=0)
    labels = pd.read_csv(HERE / "lab-labels.csv", index_col=0)["cell_type"]

    started = datetime.now(UTC)
    with GeneXferClient(args.url, api_key=args.api_key) as client:
        answer = client.classify("pbmc68k-celltype", cells)
        print(answer[["label"]].join(truth), "\n")
        print("gene overlap:", answer.attrs["gene_overlap"][0]["fraction"])

        dataset = client.upload_dataset(lab, labels, name="lab-pbmc")
        print(f"dataset {dataset['id']}: {dataset['n_samples']} cells, {dataset['label_counts']}")
        result = client.finetune(
            encoder="pbmc68k-encoder",
            dataset_id=dataset["id"],
            label_column="cell_type",
            output_name="lab-celltype",
            hyperparameters={"epochs": args.epochs},
        )
        print(f"published {result.name} v{result.version}: {result.job['metrics']['test']}")

        mine = client.classify(result.name, cells, version=result.version)
        print(mine[["label"]].join(truth), "\n")
        found = client.predictions(since=started)
        print(found[["created_at", "model", "version", "sample_id", "label"]].to_string())
        bundle = client.predictions_fhir(since=started)
        kinds = pd.Series([e["resource"]["resourceType"] for e in bundle.get("entry", [])])
        print("FHIR bundle:", kinds.value_counts().to_dict())


if __name__ == "__main__":
    main()
