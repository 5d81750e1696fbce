"""ONNX Runtime sessions: providers from settings, checked against the card, warmed up at load."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.config import Settings
from app.errors import ModelLoadError
from app.inference.backend import Array, BackendFactory, InferenceBackend
from contract.card import ONNX_FILE, ModelCard
from contract.modality import columns, packed_fill

log = logging.getLogger(__name__)


_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def provider_options(
    provider: str,
    card: ModelCard,
    gpu_mem_limit_mb: int,
    max_batch: int,
    cache_dir: Path | None = None,
) -> dict[str, str]:
    """Options of one execution provider for one model version.

    TensorRT gets an optimisation profile over the whole batch axis (1 … `max_batch`, tuned for
    64): without one it builds a new engine for every batch size the batcher happens to form
    (each build takes seconds), and, given `cache_dir`, keeps its engines there across restarts.
    """
    options: dict[str, str] = {}
    if provider == "CUDAExecutionProvider" and gpu_mem_limit_mb:
        options["gpu_mem_limit"] = str(gpu_mem_limit_mb * 1024 * 1024)
    if provider == "TensorrtExecutionProvider":
        name, genes = card.inputs[0].name, card.n_genes
        options |= {
            "trt_profile_min_shapes": f"{name}:1x{genes}",
            "trt_profile_opt_shapes": f"{name}:{min(64, max_batch)}x{genes}",
            "trt_profile_max_shapes": f"{name}:{max_batch}x{genes}",
        }
        if gpu_mem_limit_mb:
            options["trt_max_workspace_size"] = str(gpu_mem_limit_mb * 1024 * 1024)
        if cache_dir is not None:
            options["trt_engine_cache_enable"] = "True"
            options["trt_engine_cache_path"] = str(cache_dir)
    return options


def unused_providers(requested: list[str], in_use: list[str], available: set[str]) -> list[str]:
    """Why each requested provider is not running the session, one phrase each."""
    reasons = []
    for provider in requested:
        if provider in in_use:
            continue
        if provider not in available:
            has = ", ".join(sorted(available))
            reasons.append(f"{provider} is not in this onnxruntime build (it has {has})")
        else:
            reasons.append(
                f"{provider} is in this onnxruntime build but could not start (no usable GPU, "
                "driver or CUDA/cuDNN libraries)"
            )
    return reasons


class OnnxBackend:
    """One shared ONNX Runtime session for one model version (sessions are thread-safe to run)."""

    def __init__(
        self,
        folder: Path,
        card: ModelCard,
        *,
        providers: list[str],
        allow_cpu_fallback: bool,
        intra_op_threads: int = 0,
        inter_op_threads: int = 0,
        graph_optimization: str = "all",
        gpu_mem_limit_mb: int = 0,
        warmup_batch_sizes: tuple[int, ...] = (1,),
        spinning: bool = False,
        max_batch: int = 256,
        trt_cache_dir: Path | None = None,
    ) -> None:
        available = set(ort.get_available_providers())
        usable = [p for p in providers if p in available]
        if not usable:
            raise ModelLoadError(f"none of the providers {providers} is available ({available})")
        wants_gpu = any(p != "CPUExecutionProvider" for p in providers)
        if "TensorrtExecutionProvider" in usable and trt_cache_dir is not None:
            trt_cache_dir.mkdir(parents=True, exist_ok=True)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = _OPT_LEVELS[graph_optimization]
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = inter_op_threads
        opts.log_severity_level = 3
        # idle ONNX Runtime threads spin by default: fine for a benchmark loop, but in a server
        # they burn the cores the event loop, the decoders and the next batch's requests need
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "1" if spinning else "0")
        self._session = ort.InferenceSession(
            str(folder / ONNX_FILE),
            sess_options=opts,
            providers=[
                (p, provider_options(p, card, gpu_mem_limit_mb, max_batch, trt_cache_dir))
                for p in usable
            ],
        )
        self._requested = list(providers)
        in_use = self._session.get_providers()
        self.unused = unused_providers(providers, in_use, available)
        if wants_gpu and in_use == ["CPUExecutionProvider"]:
            if not allow_cpu_fallback:
                raise ModelLoadError(
                    f"{card.name}/{card.version} would run on CPUExecutionProvider only ("
                    + "; ".join(self.unused)
                    + ") and GENEXFER_ALLOW_CPU_FALLBACK is off"
                )
            log.warning(
                "%s/%s runs on CPUExecutionProvider only: %s",
                card.name,
                card.version,
                "; ".join(self.unused),
            )
        self._check_signature(card)
        self._output_names = [o.name for o in card.outputs]
        # warm-up: the first run of each batch shape allocates arenas and (TensorRT/CUDA) builds
        # kernels; doing it here keeps that out of the first requests' latency
        fill = np.asarray(
            packed_fill(card.panel.fill_values, card.modalities or []), dtype=np.float32
        )
        for size in warmup_batch_sizes:
            self.run(np.broadcast_to(fill, (size, fill.shape[0])).copy())

    def _check_signature(self, card: ModelCard) -> None:
        inputs = self._session.get_inputs()
        # a multi-omics graph: the batcher's rows are packed, each input a span of columns
        self._spans = columns(card.n_genes, card.modalities) if card.modalities else []
        if self._spans:
            names = [i.name for i in inputs]
            widths = [i.shape[-1] for i in inputs]
            if names != [n for n, _, _ in self._spans] or widths != [
                b - a for _, a, b in self._spans
            ]:
                raise ModelLoadError(f"graph inputs {names} {widths} do not match the card")
            inputs = inputs[:1]
        if len(inputs) != 1 or inputs[0].name != card.inputs[0].name:
            names = [i.name for i in inputs]
            raise ModelLoadError(f"graph inputs {names} do not match card {card.inputs[0].name}")
        width = inputs[0].shape[-1]
        if isinstance(width, int) and width != card.n_genes:
            raise ModelLoadError(f"graph takes {width} genes, card panel has {card.n_genes}")
        graph_outputs = {o.name for o in self._session.get_outputs()}
        missing = [o.name for o in card.outputs if o.name not in graph_outputs]
        if missing:
            raise ModelLoadError(f"card outputs {missing} are not graph outputs {graph_outputs}")
        self._input_name = inputs[0].name

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    @property
    def requested_providers(self) -> list[str]:
        return list(self._requested)

    def run(self, x: Array) -> dict[str, Array]:
        feed = (
            {name: np.ascontiguousarray(x[:, a:b]) for name, a, b in self._spans}
            if self._spans
            else {self._input_name: x}
        )
        outputs = self._session.run(self._output_names, feed)
        return {
            name: np.asarray(value, dtype=np.float32)
            for name, value in zip(self._output_names, outputs, strict=True)
        }

    def close(self) -> None:
        del self._session


def onnx_backend_factory(settings: Settings) -> BackendFactory:
    """A BackendFactory building OnnxBackends with the session settings."""

    def factory(folder: Path, card: ModelCard) -> InferenceBackend:
        return OnnxBackend(
            folder,
            card,
            providers=settings.providers,
            allow_cpu_fallback=settings.allow_cpu_fallback,
            intra_op_threads=settings.intra_op_threads,
            inter_op_threads=settings.inter_op_threads,
            graph_optimization=settings.graph_optimization,
            gpu_mem_limit_mb=settings.gpu_mem_limit_mb,
            warmup_batch_sizes=tuple(settings.warmup_batch_sizes),
            spinning=settings.thread_spinning,
            # a request larger than the batch runs alone: the engine must take it too
            max_batch=max(settings.batch_policy(card.name)[1], settings.max_samples_per_request),
            trt_cache_dir=settings.data_dir / "trt-cache",
        )

    return factory
