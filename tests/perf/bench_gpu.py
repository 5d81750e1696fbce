"""`make bench-gpu`: the GPU run in one step (≤ 5 minutes on one H100/H200).

`make bench-gpu` first builds .peers/gpu (tests/perf/gpu/setup.sh: onnxruntime-gpu with its CUDA
and cuDNN wheels, in front of the project's .venv), then runs this file with that interpreter:

1. finds which GPU execution providers actually work here (TensorRT, CUDA: a session on a tiny
   graph must run on them), and says why not for each one that does not;
2. starts `genexfer serve` with those providers (CPU fallback refused) and checks that /readyz
   reports them for every model;
3. runs (a)–(d) of the serving benchmark (tests/perf/bench.py) on them;
4. measures pretraining throughput on the GPU and on the CPU (same model, batch, steps budget);
5. runs one fine-tuning job through the job API against the GPU server
   (tests/perf/bench_finetune.py; the head trains on the CPU: training.train.finetune takes no
   device), with its phases;
6. writes everything to --out (default tests/perf/RESULTS-gpu.md).

`--dry-run` does all of it on the CPU with short measurements and no GPU parts (no provider
probe, no CUDA pretraining), to check the script itself on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")
BUDGET_S = 300


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU only, short, no GPU parts")
    parser.add_argument("--out", type=Path, default=None, help="results file (markdown)")
    parser.add_argument("--seconds", type=float, default=None, help="per serving measurement")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--no-tensorrt", action="store_true", help="CUDA provider only")
    parser.add_argument(
        "--pretrain-steps", type=int, default=None, help="optimiser steps per device"
    )
    parser.add_argument(
        "--skip", default="", help="comma-separated parts to skip: serving, pretrain, finetune"
    )
    args = parser.parse_args(argv)
    if args.seconds is None:
        args.seconds = 1.0 if args.dry_run else 6.0
    if args.pretrain_steps is None:
        args.pretrain_steps = 3 if args.dry_run else 100
    if args.out is None:
        args.out = (
            Path(tempfile.gettempdir()) / "genexfer-bench-gpu-dry-run.md"
            if args.dry_run
            else HERE / "RESULTS-gpu.md"
        )
    if args.seconds <= 0 or args.clients < 1 or args.pretrain_steps < 1:
        parser.error("--seconds, --clients and --pretrain-steps must be positive")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - {"serving", "pretrain", "finetune"}
    if unknown:
        parser.error(f"--skip: unknown parts {sorted(unknown)} (serving, pretrain, finetune)")
    return args


def plan(args: argparse.Namespace) -> list[str]:
    """The steps this run will take, in order (printed first, and tested)."""
    steps = ["probe providers" if not args.dry_run else "providers: CPU only (dry run)"]
    if "serving" not in args.skip:
        steps += ["serve + /readyz check", "serving (a)-(d)"]
    if "pretrain" not in args.skip:
        steps.append("pretrain: cpu" if args.dry_run else "pretrain: cuda, cpu")
    if "finetune" not in args.skip:
        steps.append("fine-tuning job")
    return [*steps, f"write {args.out}"]


def probe(no_tensorrt: bool) -> tuple[list[str], list[str]]:
    """(usable providers, best first, CPU last; a note per GPU provider that is not usable)."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    notes = []
    available = ort.get_available_providers()
    if "CUDAExecutionProvider" not in available:
        notes.append(
            f"onnxruntime {ort.__version__} here has no CUDA provider ({available}): the GPU "
            "build is not installed (tests/perf/gpu/setup.sh) or another onnxruntime shadows it"
        )
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("w", TensorProto.FLOAT, [4, 2], np.ones(8, np.float32))],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    data = onnx._serialize(model) if hasattr(onnx, "_serialize") else model.SerializeToString()
    usable = []
    for provider in GPU_PROVIDERS:
        if provider == "TensorrtExecutionProvider" and no_tensorrt:
            notes.append("TensorRT: skipped (--no-tensorrt)")
            continue
        if provider not in available:
            continue
        try:
            session = ort.InferenceSession(data, providers=[provider, "CPUExecutionProvider"])
            session.run(None, {"x": np.ones((3, 4), np.float32)})
            in_use = session.get_providers()
        except Exception as exc:  # a missing libcudnn / libnvinfer shows up here
            notes.append(f"{provider}: unusable ({type(exc).__name__}: {str(exc)[:300]})")
            continue
        if in_use[0] != provider:
            notes.append(f"{provider}: listed but the session fell back to {in_use} (libraries?)")
            continue
        usable.append(provider)
    return [*usable, "CPUExecutionProvider"], notes


def readiness(base: str, gpu: bool) -> tuple[bool, str]:
    """Whether /readyz reports a GPU provider first for every model (or CPU on a dry run)."""
    import httpx

    body = httpx.get(base + "/readyz", timeout=30).json()
    got = {f"{m['name']}/{m['version']}": m["providers"] for m in body["models"]}
    ok = bool(got) and all(
        (p[0] in GPU_PROVIDERS) if gpu else p[0] == "CPUExecutionProvider" for p in got.values()
    )
    return ok, ", ".join(f"{k}: {v}" for k, v in got.items())


def pretrain_rate(device: str, steps: int, n_genes: int = 20_000, batch: int = 256) -> float:
    """Samples/s of the streaming pretraining loop on `device` (fixed step budget, synthetic)."""
    import numpy as np
    import torch

    from contract.card import InputScale
    from contract.matrix import ExpressionMatrix
    from contract.preprocess.pipeline import PreprocessPipeline
    from training.data.stream import ArraySource
    from training.nn.config import TrainConfig
    from training.nn.encoders import AutoencoderConfig
    from training.train.pretrain import pretrain_stream

    chunk = batch * 4
    rows = chunk * (steps // 4 + 2)
    rng = np.random.default_rng(0)
    x = np.log1p(rng.gamma(0.3, 4.0, size=(rows, n_genes))).astype(np.float32)
    genes = [f"g{i}" for i in range(n_genes)]
    fit = ExpressionMatrix(X=x[:2048], sample_ids=[str(i) for i in range(2048)], gene_ids=genes)
    pipeline = PreprocessPipeline.fit(fit, InputScale.log, clip=10.0)
    source = ArraySource(x, genes, chunk_rows=chunk)
    chunks = list(source.chunks)
    cfg = AutoencoderConfig(n_genes=n_genes, hidden=(1024,), latent=256, dropout=0.0)
    train = TrainConfig(epochs=1, batch_size=batch, lr=1e-3, patience=1, seed=0)
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    pretrain_stream(
        source,
        pipeline,
        cfg,
        train,
        train_chunks=chunks[1:],
        val_chunks=chunks[:1],
        max_steps=steps,
        progress=False,
        device=device,
    )
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def nvidia_libs() -> list[str]:
    """The lib folders of the CUDA/cuDNN wheels (nvidia-*) that onnxruntime-gpu's extras bring.

    The CUDA provider dlopens libcudart, libcublas and libcudnn by name: from wheels they are
    found only through LD_LIBRARY_PATH (or a process that imported torch first; the service does
    not import torch).
    """
    import importlib.util

    spec = importlib.util.find_spec("nvidia")
    roots = list(spec.submodule_search_locations or []) if spec else []
    return sorted(str(p) for root in roots for p in Path(root).glob("*/lib") if p.is_dir())


def with_cuda_libraries(argv: Sequence[str] | None) -> None:
    """Re-run this process once with the wheels' CUDA libraries on LD_LIBRARY_PATH."""
    libs = nvidia_libs()
    current = os.environ.get("LD_LIBRARY_PATH", "")
    missing = [lib for lib in libs if lib not in current.split(":")]
    if not missing or os.environ.get("GENEXFER_BENCH_GPU_REEXEC"):
        return
    env = {
        **os.environ,
        "LD_LIBRARY_PATH": ":".join([*missing, *filter(None, [current])]),
        "GENEXFER_BENCH_GPU_REEXEC": "1",
    }
    args = list(sys.argv[1:] if argv is None else argv)
    os.execve(sys.executable, [sys.executable, "-m", "tests.perf.bench_gpu", *args], env)  # noqa: S606


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.dry_run:
        with_cuda_libraries(argv)
    sys.path.insert(0, str(REPO))
    from tests.perf import bench, bench_finetune, server

    started = time.monotonic()
    print("bench-gpu plan: " + " → ".join(plan(args)), flush=True)
    lines: list[str] = []
    notes: list[str] = []
    if args.dry_run:
        providers = ["CPUExecutionProvider"]
        notes.append("dry run: CPU only, GPU parts skipped, short measurements")
    else:
        providers, notes = probe(args.no_tensorrt)
        if providers == ["CPUExecutionProvider"]:
            notes.append("no usable GPU provider: nothing measured on a GPU")
            write(args, providers, notes, lines, started)
            return 2
    server.PROVIDERS = providers
    gpu = not args.dry_run
    tmp = Path(tempfile.mkdtemp(prefix="genexfer-bench-gpu-"))
    if "serving" not in args.skip:
        bench.export(tmp / "models")
        env = server.genexfer_env(tmp / "models", f"sqlite:///{tmp / 'ready.db'}")
        with server.serve(server.genexfer_command(), env, "/readyz", timeout_s=240) as base:
            ok, seen = readiness(base, gpu)
        lines.append(f"- /readyz providers ({'as asked' if ok else '**not as asked**'}): {seen}")
        if not ok:
            notes.append("the service did not report the GPU providers: serving not measured")
        else:
            sections = ("ab",) if args.dry_run else ("ab", "c", "d")
            rows, n = bench.run(args.seconds, args.clients, sections)
            notes += n["errors"]
            lines.append("\n| measurement | result | target |\n|---|---|---|")
            lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
            lines.append(f"\nload averages: {'; '.join(n['loads'])}\n")
    if "pretrain" not in args.skip:
        rates = {}
        for device in ("cpu",) if args.dry_run else ("cuda", "cpu"):
            steps = args.pretrain_steps if device == "cuda" else max(2, args.pretrain_steps // 10)
            rates[device] = pretrain_rate(device, steps)
            print(f"pretraining on {device}: {rates[device]:.0f} samples/s", flush=True)
        shown = ", ".join(f"{d} {r:.0f} samples/s" for d, r in rates.items())
        ratio = f" (GPU {rates['cuda'] / rates['cpu']:.1f}× CPU)" if "cuda" in rates else ""
        lines.append(
            "- pretraining, 20,000 → 1024 → 256 autoencoder, batch 256, streamed synthetic log "
            f"values: {shown}{ratio}"
        )
    if "finetune" not in args.skip:
        with contextlib.redirect_stdout(sys.stderr):
            table = bench_finetune.measure(repeats=1 if args.dry_run else 2, strategy=None)
        lines.append("\nFine-tuning job (the service's ONNX Runtime on the providers above; the "
                     "head trains on the CPU):\n\n" + table)  # fmt: skip
    write(args, providers, notes, lines, started)
    return 0


def write(
    args: argparse.Namespace, providers: list[str], notes: list[str], lines: list[str], t0: float
) -> None:
    import onnxruntime as ort

    from tests.perf.server import machine

    gpu = "none (dry run)" if args.dry_run else _gpu_name()
    text = (
        f"# GPU run{' — DRY RUN on the CPU' if args.dry_run else ''}\n\n"
        f"- command: `make bench-gpu` (= `python -m tests.perf.bench_gpu"
        f"{' --dry-run' if args.dry_run else ''} --seconds {args.seconds:g}`), "
        f"{time.monotonic() - t0:.0f} s (budget {BUDGET_S} s)\n"
        f"- machine: {machine()}; GPU: {gpu}\n"
        f"- providers used: {providers}; onnxruntime {ort.__version__}\n"
        f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; Python {platform.python_version()}\n"
        + "".join(f"- note: {n}\n" for n in notes)
        + "\n".join(lines)
        + "\n"
    )
    args.out.write_text(text)
    print("\n" + text)


def _gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return f"{torch.cuda.get_device_name(0)} (torch {torch.__version__})"
        return f"torch {torch.__version__} sees no CUDA device"
    except Exception as exc:  # torch missing or broken: the ONNX Runtime parts still ran
        return f"unknown ({type(exc).__name__})"


if __name__ == "__main__":
    raise SystemExit(main())
