from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from contract.card import ModelCard
from contract.modality import ModalityInput

REPO = Path(__file__).resolve().parents[2]


def _demo_card() -> ModelCard:
    folder = next(p.parent for p in sorted((REPO / "models").glob("*/*/model.json")))
    return ModelCard.read(folder)


def test_existing_cards_have_no_modalities() -> None:
    for path in sorted((REPO / "models").glob("*/*/model.json")):
        assert ModelCard.read(path.parent).modalities is None


def test_a_card_with_modalities_needs_their_inputs() -> None:
    card = _demo_card()
    protein = ModalityInput(name="protein", features=["p1", "p2"], fill_values=[1.0, 2.0])
    data = card.model_dump()
    data["modalities"] = [protein.model_dump()]
    with pytest.raises(ValidationError, match="do not follow expression with the modalities"):
        ModelCard.model_validate(data)
    data["inputs"] = [*data["inputs"], {"name": "protein", "shape": ["batch", 2]}]
    assert ModelCard.model_validate(data).modalities == [protein]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "expression"}, "is the expression input"),
        ({"name": "Protein"}, "String should match pattern"),
        ({"features": ["a", "a"], "fill_values": [0.0, 0.0]}, "must be unique"),
        ({"fill_values": [0.0]}, "1 fill values for 2 features"),
    ],
)
def test_bad_modalities_are_refused(fields: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"name": "protein", "features": ["a", "b"], "fill_values": [0.0, 1.0]}
    with pytest.raises(ValidationError, match=message):
        ModalityInput.model_validate(base | fields)
