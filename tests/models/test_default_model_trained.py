"""The built-in model ships inside the package, loads safely and describes how it was made."""

from __future__ import annotations

import torch

from atriumseg.models.checkpoint import default_model_path, load_model
from atriumseg.demo import sample_paths


def test_built_in_model_loads_and_its_card_tells_its_story() -> None:
    network, card = load_model(default_model_path())
    assert card.preprocessing.plane == "sagittal" and card.preprocessing.orientation == "RAS"
    split = card.provenance["split"]
    assert "la_023" in split["excluded"] and "la_023" not in split["train"] + split["validation"]
    assert set(card.provenance["validation"]) == set(split["validation"])
    assert card.provenance["command"].startswith("atriumseg train")
    assert "CC-BY-SA 4.0" in card.provenance["licence"]
    with torch.no_grad():
        out = network(torch.zeros(1, card.architecture.in_channels, 64, 64))
    assert out.shape == (1, 1, 64, 64)


def test_bundled_sample_is_present() -> None:
    image, label = sample_paths()
    assert image.stat().st_size > 100_000 and label.stat().st_size > 1_000
