"""Fine-tuning through the job API, end to end: upload → job → new version served (issue 15).

A real server process (`tests.perf.timed_server`: `genexfer serve` with phase timers), real
HTTP, SQLite, the local executor (jobs in a thread of the API process), the default strategy and
hyperparameters of `POST /v1/finetune-jobs`. The encoder (2,000-gene panel, the demo's shape
2,000 → 256 → 64) is pretrained for a few epochs on synthetic counts before the clock starts;
the dataset is 200 other synthetic samples × the same 2,000 genes with a 4-class label column,
uploaded as CSV. The clock runs from the upload's first byte to the first classify answered by
the new version; the phases come from the server's own timers and the client's polls.

Run: `python tests/perf/bench_finetune.py [--repeats 3] [--strategy NAME]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.perf.server import genexfer_env, load, machine, serve, write_block

ENCODER = "bench-encoder"
N_GENES, N_SAMPLES, N_CLASSES = 2_000, 200, 4
BUDGET_S = 30.0


def make_encoder(models_dir: Path) -> None:
    """Pretrain (briefly) and publish a 2,000-gene encoder on synthetic counts."""
    from contract.card import InputScale
    from training.data.synthetic import make_synthetic
    from training.evaluation.splits import hold_out
    from training.nn.config import TrainConfig
    from training.nn.encoders import AutoencoderConfig
    from training.publish.encoder import pretrain_and_export

    source = make_synthetic(1_000, N_GENES, n_classes=6, seed=10)
    dataset = hold_out("synthetic source", source, test_fraction=0.1, seed=0, stratify_by=None)
    pretrain_and_export(
        dataset,
        input_scale=InputScale.counts,
        model_cfg=AutoencoderConfig(n_genes=N_GENES, hidden=(256,), latent=64, dropout=0.1),
        train_cfg=TrainConfig(epochs=3, batch_size=64, lr=1e-3, val_fraction=0.1, patience=3),
        name=ENCODER,
        models_dir=models_dir,
        description="benchmark encoder (synthetic counts, 3 epochs)",
        progress=False,
    )


def target_csv(seed: int) -> bytes:
    """200 samples × 2,000 genes of counts and a `cell_type` column, as CSV."""
    from training.data.synthetic import make_synthetic

    m = make_synthetic(N_SAMPLES, N_GENES, n_classes=N_CLASSES, seed=seed)
    header = "sample_id," + ",".join(m.gene_ids) + ",cell_type"
    rows = [
        f"{sid}," + ",".join(map(str, row.astype(np.int64))) + f",{label}"
        for sid, row, label in zip(m.sample_ids, m.X, m.obs["label"], strict=True)
    ]
    return ("\n".join([header, *rows]) + "\n").encode()


def phases(path: Path, since: float) -> dict[str, float]:
    """Seconds per server phase (summed over calls) from the timers' JSON lines after `since`."""
    total: dict[str, float] = defaultdict(float)
    if not path.exists():
        return {}
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if item["start"] >= since:
            total[item["phase"]] += item["end"] - item["start"]
    return dict(total)


def first(path: Path, phase: str, since: float) -> dict[str, float] | None:
    for line in path.read_text().splitlines():
        item = json.loads(line)
        if item["phase"] == phase and item["start"] >= since:
            return {"start": item["start"], "end": item["end"]}
    return None


def one_run(
    base: str, timings: Path, body: bytes, output: str, strategy: str | None
) -> dict[str, Any]:
    """One upload → job → served cycle; every time in seconds."""
    http = httpx.Client(base_url=base, timeout=300)
    t0 = time.time()
    r = http.post("/v1/datasets", files={"file": ("target.csv", body)}, data={"name": output})
    r.raise_for_status()
    t_uploaded = time.time()
    job: dict[str, Any] = {
        "encoder": {"name": ENCODER},
        "dataset_id": r.json()["id"],
        "label_column": "cell_type",
        "output_name": output,
    }
    if strategy:
        job["strategy"] = strategy
    r = http.post("/v1/finetune-jobs", json=job)
    r.raise_for_status()
    job_id = r.json()["id"]
    t_submitted = time.time()
    deadline = t0 + 600
    while True:  # bounded: 600 s at most
        state = http.get(f"/v1/finetune-jobs/{job_id}").json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            break
        if time.time() > deadline:
            raise RuntimeError(f"job {job_id} still {state['status']} after 600 s")
        time.sleep(0.02)
    t_done_seen = time.time()
    if state["status"] != "succeeded":
        raise RuntimeError(f"job {job_id}: {state['status']}: {state.get('error')}")
    version = state["result_version"]
    x = target_csv(99).split(b"\n")
    probe = b"\n".join(line.rsplit(b",", 1)[0] for line in x[:3]) + b"\n"
    while True:  # the new version is served once classify answers with it
        r = http.post(
            f"/v1/models/{output}/classify",
            content=probe,
            headers={"content-type": "text/csv"},
        )
        if r.status_code == 200 and r.json()["model"]["version"] == version:
            break
        if time.time() > deadline:
            raise RuntimeError(f"{output}/{version} not served after 600 s: {r.status_code}")
        time.sleep(0.02)
    t_served = time.time()
    server = phases(timings, t0)
    run = first(timings, "job.run", t0) or {"start": t_submitted, "end": t_done_seen}
    publish = first(timings, "export.publish", t0)
    load_new = [
        json.loads(line)
        for line in timings.read_text().splitlines()
        if json.loads(line)["phase"] == "reload.load" and json.loads(line)["start"] >= t0
    ]
    published_at = publish["end"] if publish else run["end"]
    return {
        "total": t_served - t0,
        "upload (HTTP, client)": t_uploaded - t0,
        "upload.parse": server.get("upload.parse", 0.0),
        "upload.store": server.get("upload.store", 0.0),
        "job submit (HTTP)": t_submitted - t_uploaded,
        # ≤ 0 when the runner started before the client had read the 202
        "queue (202 answered → runner starts)": max(0.0, run["start"] - t_submitted),
        "job.import_training (torch, first job only)": server.get("job.import_training", 0.0),
        "job.load_dataset": server.get("job.load_dataset", 0.0),
        "train.load_encoder": server.get("train.load_encoder", 0.0),
        "train.align": server.get("train.align", 0.0),
        # strategy auto: every candidate on every inner fold, before the winner is refitted
        "train.inner_cv (the choice)": server.get("train.inner_cv", 0.0),
        "train.fit (training)": server.get("train.fit", 0.0),
        "train.test_scores": server.get("train.test_scores", 0.0),
        "export.onnx_export": server.get("export.onnx_export", 0.0),
        "export.verify": server.get("export.verify", 0.0),
        "export.checkpoint": server.get("export.checkpoint", 0.0),
        "export.publish (hash, card, rename)": server.get("export.publish", 0.0),
        "export.total": server.get("export.total", 0.0),
        "export.baseline (a baseline won)": server.get("export.baseline", 0.0),
        "job.record (DB)": server.get("job.record", 0.0),
        "job.run (runner, all of the above)": run["end"] - run["start"],
        "reload (published → served)": t_served - published_at,
        "reload.load (card, sha256, session, warm-up)": sum(
            i["end"] - i["start"] for i in load_new
        ),
        "client sees succeeded (poll)": t_done_seen - run["end"],
        "epochs": float(state["metrics"].get("epochs_run", 0)),
        "inner fits (candidates × folds)": float(_inner_fits(state["metrics"])),
        "version": float(version),
    }


def _inner_fits(metrics: dict[str, Any]) -> int:
    """How many fits the choice's inner cross-validation made (0 for a named strategy)."""
    selection = metrics.get("selection") or {}
    return sum(len(c["folds"]) for c in selection.get("candidates", []))


def measure(
    repeats: int, strategy: str | None, reload_interval: str = "5", out: Path | None = None
) -> str:
    """Pretrain the encoder, run `repeats` jobs against one server, return the markdown table."""
    tmp = Path(tempfile.mkdtemp(prefix="genexfer-finetune-"))
    models = tmp / "models"
    print("pretraining the 2,000-gene benchmark encoder (not timed) ...", flush=True)
    make_encoder(models)
    body = target_csv(seed=11)
    timings = tmp / "timings.jsonl"
    env = genexfer_env(
        models,
        f"sqlite:///{tmp / 'bench.db'}",
        GENEXFER_DATA_DIR=str(tmp / "data"),
        GENEXFER_RELOAD_INTERVAL_S=reload_interval,
        GENEXFER_BENCH_TIMINGS=str(timings),
    )
    command = [sys.executable, "-m", "tests.perf.timed_server", "serve"]
    runs = []
    loads = []
    with serve(command, env, "/readyz") as base:
        for i in range(repeats):
            loads.append(load())
            runs.append(one_run(base, timings, body, f"bench-head-{i}", strategy))
            print(f"run {i + 1}: {runs[-1]['total']:.1f} s (load {loads[-1]})", flush=True)
    rows = []
    for key in runs[0]:
        values = [r[key] for r in runs]
        later = values[1:] or values
        shown = " / ".join(f"{v:.2f}" for v in values)
        rows.append(f"| {key} | {values[0]:.2f} | {statistics.median(later):.2f} | {shown} |")
    first, rest = runs[0], runs[1:] or runs
    total = statistics.median(r["total"] for r in rest)
    fit = statistics.median(r["train.fit (training)"] for r in rest)
    inner = statistics.median(r["train.inner_cv (the choice)"] for r in rest)
    fits = int(rest[0]["inner fits (candidates × folds)"])
    verdict = "met" if max(first["total"], total) < BUDGET_S else "**missed**"
    text = (
        f"- command: `python tests/perf/bench_finetune.py --repeats {repeats}"
        f"{' --strategy ' + strategy if strategy else ''}`\n"
        f"- machine: {machine()}; load averages (1/5/15 min) before each run: {'; '.join(loads)}\n"
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}\n"
        f"- end to end: first job in a fresh server **{first['total']:.1f} s**, later jobs "
        f"(median) **{total:.1f} s** (< {BUDGET_S:.0f} s: {verdict}); training (train.fit) "
        f"{fit:.1f} s = {fit / total:.0%} of a later job, {first['train.fit (training)']:.1f} s "
        f"= {first['train.fit (training)'] / first['total']:.0%} of the first; the choice's inner "
        f"cross-validation {inner:.1f} s = {inner / total:.0%} of a later job ({fits} fits: "
        f"every candidate on every inner fold of the training samples, before the winner is "
        f"refitted)\n\n"
        "| phase (s) | first job | later jobs (median) | per job |\n|---|---|---|---|\n"
        + "\n".join(rows)
        + "\n"
    )
    if out:
        out.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="jobs, one after the other")
    parser.add_argument("--strategy", default=None, help="default: the API's default")
    parser.add_argument("--reload-interval", default="5", help="GENEXFER_RELOAD_INTERVAL_S")
    parser.add_argument("--out", type=Path, default=None, help="write the table here (markdown)")
    parser.add_argument(
        "--results",
        type=Path,
        default=Path(__file__).resolve().parent / "RESULTS.md",
        help="results file whose fine-tuning block is replaced ('-': none)",
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    text = measure(args.repeats, args.strategy, args.reload_interval, args.out)
    print("\n" + text)
    if str(args.results) != "-":
        write_block(args.results, "bench_finetune", text)


if __name__ == "__main__":
    main()
