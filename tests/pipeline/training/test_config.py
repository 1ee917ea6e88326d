"""TrainConfig: with no options it trains the built-in design; its choices make the card's design."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from atriumseg.models.card import BUILT_IN, Architecture, CardError
from atriumseg.models.checkpoint import default_model_path, load_card
from atriumseg.pipeline.training.config import TrainConfig


def test_a_config_with_no_options_trains_the_built_in_design(tmp_path: Path) -> None:
    design = TrainConfig((tmp_path,), tmp_path / "run").design
    assert design == BUILT_IN == load_card(default_model_path() / "axial").design


def test_the_design_follows_the_runs_choices(tmp_path: Path) -> None:
    config = TrainConfig((tmp_path,), tmp_path / "run", width=16, depth=3, context=2, plane="coronal",
                         spacing=(1.5, 1.5), slice_spacing=0.0, centre_clip=0.6, patch=32)
    assert config.design.architecture == Architecture(in_channels=5, width=16, depth=3)
    assert config.design.preprocessing == replace(
        BUILT_IN.preprocessing, plane="coronal", spacing=(1.5, 1.5), context=2, slice_spacing=0.0, centre_clip=0.6,
        min_slice_size=40)
    assert config.design.postprocessing == BUILT_IN.postprocessing


@pytest.mark.parametrize(("patch", "depth", "min_slice_size"), [(128, 4, 160), (32, 3, 40), (64, 2, 76), (16, 5, 32)])
def test_min_slice_size_is_the_training_crop_on_the_pooling_grid(tmp_path: Path, patch: int, depth: int,
                                                                 min_slice_size: int) -> None:
    """The crop is 1.2 times the patch (153 for 128), rounded up to a multiple of 2 ** (depth - 1)."""
    config = TrainConfig((tmp_path,), tmp_path / "run", patch=patch, depth=depth)
    assert config.design.preprocessing.min_slice_size == min_slice_size


@pytest.mark.parametrize(
    ("overrides", "phrase"),
    [({"width": 0}, "architecture.width must be an integer in [1, 512]"),
     ({"context": 16}, "preprocessing.context must be an integer in [0, 15]"),
     ({"plane": "oblique"}, "plane must be one of"),
     ({"slice_spacing": -1.0}, "preprocessing.slice_spacing")],
)
def test_a_design_the_card_would_refuse_is_refused_with_the_cards_reason(tmp_path: Path, overrides: dict,
                                                                          phrase: str) -> None:
    with pytest.raises(CardError) as caught:
        TrainConfig((tmp_path,), tmp_path / "run", **overrides)
    assert phrase in str(caught.value)


def test_one_orientation_serves_every_dataset_and_weights_default_to_equal(tmp_path: Path) -> None:
    config = TrainConfig((tmp_path / "a", tmp_path / "b"), tmp_path / "run", orientations=("ASL",))
    assert config.orientations == ("ASL", "ASL") and config.weights == (1.0, 1.0)
    assert TrainConfig(tmp_path / "a", tmp_path / "run").datasets == (tmp_path / "a",)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"weights": (1.0,)}, "2 datasets need 2 weights"), ({"weights": (0.0, 0.0)}, "positive sum"),
     ({"weights": (-1.0, 2.0)}, "positive sum"), ({"orientations": ("ASL", None, None)}, "1 or 2 orientations"),
     ({"datasets": ()}, "at least one dataset"), ({"gamma": (1.6, 0.6)}, "gamma must be a range"),
     ({"gamma": (0.0, 1.0)}, "gamma must be a range"), ({"gamma": (0.5,)}, "gamma must be a range"),
     ({"darken": 1.5}, "darken must be a share"), ({"darken": -0.1}, "darken must be a share"),
     ({"zoom": 1.0}, "zoom must be a range"), ({"zoom": -0.1}, "zoom must be a range")],
)
def test_bad_dataset_settings_are_refused(tmp_path: Path, overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{"datasets": (tmp_path / "a", tmp_path / "b"), "output": tmp_path / "run", **overrides})
