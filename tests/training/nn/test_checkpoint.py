from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from training.nn.checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_checkpoint, save_checkpoint
from training.nn.config import TrainConfig, config_from_dict, config_to_dict
from training.nn.encoders import AutoencoderConfig, DenseAutoencoder
from training.nn.heads import ClassifierHead, ClassifierHeadConfig


def test_autoencoder_shapes() -> None:
    cfg = AutoencoderConfig(
        n_genes=30, hidden=(16, 8), latent=4, input_dropout=0.2, activation="gelu"
    )
    model = DenseAutoencoder(cfg).eval()
    x = torch.randn(5, 30)
    assert model.encode(x).shape == (5, 4)
    assert model(x).shape == (5, 30)
    assert torch.equal(model.encoder(x), model.encode(x))


def test_head_shapes_linear_and_mlp() -> None:
    linear = ClassifierHead(ClassifierHeadConfig(n_in=4, n_classes=3))
    assert [type(m).__name__ for m in linear.layers] == ["Linear"]
    mlp = ClassifierHead(ClassifierHeadConfig(n_in=4, n_classes=3, hidden=(8,), dropout=0.1))
    assert mlp(torch.randn(2, 4)).shape == (2, 3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: AutoencoderConfig(n_genes=0), "must be positive"),
        (lambda: AutoencoderConfig(n_genes=5, activation="tanh"), "activation must be one of"),
        (lambda: AutoencoderConfig(n_genes=5, dropout=1.0), "dropout rates"),
        (lambda: ClassifierHeadConfig(n_in=4, n_classes=1), "at least 2"),
        (lambda: TrainConfig(val_fraction=0.0), "val_fraction"),
        (lambda: TrainConfig(epochs=0), "at least 1"),
    ],
)
def test_configs_refuse_nonsense(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_config_json_round_trip() -> None:
    cfg = AutoencoderConfig(n_genes=12, hidden=(8, 6), latent=3)
    data = json.loads(json.dumps(config_to_dict(cfg)))
    assert config_from_dict(AutoencoderConfig, data) == cfg
    with pytest.raises(ValueError, match="no fields"):
        config_from_dict(AutoencoderConfig, {**data, "extra": 1})


def test_checkpoint_rebuilds_exactly(tmp_path: Path) -> None:
    torch.manual_seed(0)
    ae = DenseAutoencoder(AutoencoderConfig(n_genes=20, hidden=(10,), latent=4, dropout=0.2))
    head = ClassifierHead(ClassifierHeadConfig(n_in=4, n_classes=3, hidden=(5,)))
    written = save_checkpoint(
        tmp_path, {"autoencoder": ae, "head": head}, {"labels": ["a", "b", "c"]}
    )
    assert sorted(p.name for p in written) == [CONFIG_FILE, WEIGHTS_FILE]
    loaded = load_checkpoint(tmp_path)
    assert loaded.extra == {"labels": ["a", "b", "c"]}
    for name, original in (("autoencoder", ae), ("head", head)):
        rebuilt = loaded.parts[name]
        assert rebuilt.config == original.config
        assert not rebuilt.training
        state, want = rebuilt.state_dict(), original.state_dict()
        assert state.keys() == want.keys()
        assert all(torch.equal(state[k], want[k]) for k in want)
    x = torch.randn(3, 20)
    ae.eval()
    assert torch.equal(loaded.parts["autoencoder"](x), ae(x))


def test_checkpoint_refuses_unknown_modules(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"no registered \.config"):
        save_checkpoint(tmp_path, {"x": torch.nn.Linear(2, 2)})
    with pytest.raises(ValueError, match="may not contain"):
        save_checkpoint(
            tmp_path, {"a.b": ClassifierHead(ClassifierHeadConfig(n_in=2, n_classes=2))}
        )
