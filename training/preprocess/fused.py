"""Torch twins of `contract.preprocess.steps`, fused in front of an encoder for ONNX export.

Every op here exports to standard ONNX (Div, Log, Sqrt, TopK for the median, Gather, MatMul),
and each module does the numpy step's arithmetic in the same order, so ONNX Runtime and numpy
agree to float32 rounding (tests/contract/preprocess/test_recipe.py, test_pipeline.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from contract.preprocess import steps
from contract.preprocess.pipeline import PreprocessPipeline


def _buffer(module: nn.Module, name: str, values: npt.NDArray[Any]) -> None:
    module.register_buffer(name, torch.from_numpy(np.ascontiguousarray(values).copy()))


class NormalizeTotal(nn.Module):
    def __init__(self, target_sum: float) -> None:
        super().__init__()
        self.target_sum = target_sum

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        totals = torch.clamp(x.sum(dim=1, keepdim=True), min=1e-12)
        return x / totals * self.target_sum


class Log1p(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x)


class Log2p1(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(x) / math.log(2.0)


class PerLength(nn.Module):
    lengths: torch.Tensor

    def __init__(self, lengths: npt.NDArray[Any], unit: str) -> None:
        super().__init__()
        _buffer(self, "lengths", np.asarray(lengths, dtype=np.float32))
        self.unit = unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unit == "tpm":
            rate = x / self.lengths
            return rate / torch.clamp(rate.sum(dim=1, keepdim=True), min=1e-12) * 1e6
        cpm = x / torch.clamp(x.sum(dim=1, keepdim=True), min=1e-12) * 1e6
        return cpm / (self.lengths / 1e3)


class MedianOfRatios(nn.Module):
    logmeans: torch.Tensor
    usable: torch.Tensor

    def __init__(self, logmeans: npt.NDArray[Any], usable: npt.NDArray[Any]) -> None:
        super().__init__()
        _buffer(self, "logmeans", np.asarray(logmeans, dtype=np.float32))
        _buffer(self, "usable", np.asarray(usable, dtype=np.int64))
        self.k = len(usable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ratios = torch.log(x.index_select(1, self.usable)) - self.logmeans
        ordered, _ = torch.sort(ratios, dim=1)
        half = self.k // 2
        # numpy's median: the middle value, or the mean of the two middle values
        median = ordered[:, half] if self.k % 2 else (ordered[:, half - 1] + ordered[:, half]) / 2
        return x / torch.exp(median).unsqueeze(1)


class VST(nn.Module):
    def __init__(self, a0: float, a1: float) -> None:
        super().__init__()
        self.a0, self.a1 = a0, a1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a0, a1 = self.a0, self.a1
        if a1 == 0.0:
            shift = math.log(a0) + math.log(4.0)
            return (2 * torch.asinh(torch.sqrt(a0 * x)) - shift) / math.log(2.0)
        inner = 1 + a1 + 2 * a0 * x + 2 * torch.sqrt(a0 * x * (1 + a1 + a0 * x))
        return torch.log2(inner / (4 * a0))


class Standardize(nn.Module):
    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, mean: npt.NDArray[Any], scale: npt.NDArray[Any], clip: float | None) -> None:
        super().__init__()
        _buffer(self, "mean", mean)
        _buffer(self, "scale", scale)
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x - self.mean) / self.scale
        return z if self.clip is None else torch.clamp(z, -self.clip, self.clip)


class SelectGenes(nn.Module):
    indices: torch.Tensor

    def __init__(self, indices: npt.NDArray[Any]) -> None:
        super().__init__()
        _buffer(self, "indices", np.asarray(indices, dtype=np.int64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.indices)


class PCA(nn.Module):
    mean: torch.Tensor
    components: torch.Tensor

    def __init__(self, mean: npt.NDArray[Any], components: npt.NDArray[Any]) -> None:
        super().__init__()
        _buffer(self, "mean", mean)
        _buffer(self, "components", np.asarray(components, dtype=np.float32).T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.components


def step_module(step: steps.Step) -> nn.Module:
    """The torch twin of one fitted numpy step."""
    match step:
        case steps.NormalizeTotal():
            return NormalizeTotal(step.target_sum)
        case steps.Log1p():
            return Log1p()
        case steps.Log2p1():
            return Log2p1()
        case steps.PerLength():
            return PerLength(step.lengths, step.unit)
        case steps.MedianOfRatios():
            return MedianOfRatios(step.logmeans, step.usable)
        case steps.VST():
            return VST(step.a0, step.a1)
        case steps.Standardize():
            return Standardize(step.mean, step.scale, step.clip)
        case steps.SelectGenes():
            return SelectGenes(step.indices)
        case steps.PCA():
            return PCA(step.mean, step.components)
    raise TypeError(f"no torch twin for preprocessing step {step.name!r}")


def pipeline_module(pipeline: PreprocessPipeline, start: int | None = None) -> nn.Module:
    """The steps from `start` on as an nn.Sequential, to fuse in front of an encoder in ONNX.

    Parameters
    ----------
    pipeline:
        A fitted pipeline.
    start:
        First step to include; ``None``: all of them, refused when ComBat (batch-level,
        numpy-only) sits among them: pass ``pipeline.combat_at`` to fuse the steps after it.
    """
    if start is None:
        if pipeline.combat is not None and pipeline.combat_at < len(pipeline.steps):
            raise ValueError(
                f"ComBat runs before step {pipeline.combat_at} and cannot be fused into ONNX; "
                f"use pipeline_module(pipeline, start={pipeline.combat_at})"
            )
        start = 0
    return nn.Sequential(*(step_module(step) for step in pipeline.steps[start:]))
