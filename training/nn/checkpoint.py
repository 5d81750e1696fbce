"""Checkpoints: weights in safetensors plus the frozen configs that rebuild the modules exactly."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import nn

from training.nn.config import config_from_dict, config_to_dict
from training.nn.encoders import AutoencoderConfig, DenseAutoencoder
from training.nn.heads import (
    ClassifierHead,
    ClassifierHeadConfig,
    MultiTaskHead,
    MultiTaskHeadConfig,
    RegressorHead,
    RegressorHeadConfig,
)
from training.nn.variants import (
    DenoisingAutoencoder,
    DenoisingAutoencoderConfig,
    VariationalAutoencoder,
    VariationalAutoencoderConfig,
)

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
_FORMAT = 1

# config class name → (config class, module class); a new architecture registers here
_ARCHITECTURES: dict[str, tuple[type[Any], type[nn.Module]]] = {
    "AutoencoderConfig": (AutoencoderConfig, DenseAutoencoder),
    "ClassifierHeadConfig": (ClassifierHeadConfig, ClassifierHead),
    "DenoisingAutoencoderConfig": (DenoisingAutoencoderConfig, DenoisingAutoencoder),
    "VariationalAutoencoderConfig": (VariationalAutoencoderConfig, VariationalAutoencoder),
    "RegressorHeadConfig": (RegressorHeadConfig, RegressorHead),
    "MultiTaskHeadConfig": (MultiTaskHeadConfig, MultiTaskHead),
}


@dataclass(frozen=True)
class Checkpoint:
    """Named modules rebuilt from their configs, with the free-form metadata saved beside them."""

    parts: dict[str, nn.Module]
    extra: dict[str, Any] = field(default_factory=dict)


def build_module(config: Any) -> nn.Module:
    """A freshly initialised module for a registered config."""
    name = type(config).__name__
    if name not in _ARCHITECTURES:
        raise ValueError(f"no architecture registered for {name}")
    return _ARCHITECTURES[name][1](config)


def save_checkpoint(
    folder: Path, parts: Mapping[str, nn.Module], extra: Mapping[str, Any] | None = None
) -> list[Path]:
    """Write weights.safetensors and config.json for named modules; returns the two paths.

    Parameters
    ----------
    folder:
        Destination folder (created if needed).
    parts:
        Name → module; each module must carry its registered frozen config as ``.config``.
    extra:
        JSON-safe metadata to keep beside the configs (training config, label names, ...).
    """
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    configs = {}
    for part, module in parts.items():
        if "." in part:
            raise ValueError(f"part names may not contain '.': {part!r}")
        config = getattr(module, "config", None)
        if type(config).__name__ not in _ARCHITECTURES:
            raise ValueError(f"{part}: module has no registered .config")
        configs[part] = {"type": type(config).__name__, "config": config_to_dict(config)}
        for key, tensor in module.state_dict().items():
            tensors[f"{part}.{key}"] = tensor.detach().cpu().contiguous()
    weights, config_path = folder / WEIGHTS_FILE, folder / CONFIG_FILE
    # a single metadata key: safetensors writes its metadata map in no fixed order
    save_file(tensors, str(weights), metadata={"format": "pt"})
    document = {"format": _FORMAT, "parts": configs, "extra": dict(extra or {})}
    config_path.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return [weights, config_path]


def load_checkpoint(folder: Path) -> Checkpoint:
    """Rebuild the modules saved by `save_checkpoint`, in eval mode, with their exact weights."""
    document = json.loads((folder / CONFIG_FILE).read_text())
    if document.get("format") != _FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE}: unsupported format {document.get('format')!r}")
    tensors = load_file(str(folder / WEIGHTS_FILE))
    parts: dict[str, nn.Module] = {}
    for part, entry in document["parts"].items():
        if entry["type"] not in _ARCHITECTURES:
            raise ValueError(f"{part}: unknown architecture {entry['type']!r}")
        config_cls, _ = _ARCHITECTURES[entry["type"]]
        module = build_module(config_from_dict(config_cls, entry["config"]))
        prefix = part + "."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        module.load_state_dict(state, strict=True)
        parts[part] = module.eval()
    return Checkpoint(parts=parts, extra=document.get("extra", {}))
