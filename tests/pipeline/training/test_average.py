"""Weight averaging: the mean of the weights, a card that keeps every model's data and stages, and models of
another design refused with the reason."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from helpers import STANDIN_CARD, standin_network

from atriumseg.models.checkpoint import CheckpointError, load_model, save_model
from atriumseg.models.ensemble import assemble_ensemble
from atriumseg.models.lineage import lineage_of
from atriumseg.pipeline.training.average import average_models
from atriumseg.pipeline.training.validation import fold_card, fold_cards

PARENT = {"run": "runs/parent", "started_from": None, "epochs": 10, "steps": 500, "minutes": 8.0, "device": "cpu",
          "data": {"A": {"train": 3, "validation": 1}}}


def _model(folder: Path, seed: int, *, train: list[str], validation: list[str], run: str, **card_changes) -> Path:
    """A random network of the stand-in's design (``card_changes`` replace card parts), its card telling one stage
    after ``PARENT`` that trained on ``train`` of dataset A, as fold 1 of 3."""
    torch.manual_seed(seed)
    card = dataclasses.replace(STANDIN_CARD, **card_changes)
    network = standin_network(card)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_()
    own = {**PARENT, "run": run, "started_from": "runs/parent/last"}
    provenance = {"data": [{"dataset": "A", "root": "data/A", "licence": "CC-BY"}],
                  "split": {"A": {"train": train, "validation": validation, "excluded": ["x9"]}},
                  "config": {"folds": 3, "fold": 1}, "lineage": [PARENT, own]}
    save_model(network, dataclasses.replace(card, provenance=provenance), folder)
    return folder


@pytest.fixture
def two(tmp_path: Path) -> list[Path]:
    return [_model(tmp_path / "a", 0, train=["a1", "a2"], validation=["v1"], run="runs/a"),
            _model(tmp_path / "b", 1, train=["a1", "a2"], validation=["v1"], run="runs/b")]


def test_the_weights_are_the_element_wise_mean(two: list[Path], tmp_path: Path) -> None:
    card = average_models(two, tmp_path / "soup", command="atriumseg average a b -o soup")
    network, loaded = load_model(tmp_path / "soup")
    (a, _), (b, _) = load_model(two[0]), load_model(two[1])
    for key, value in network.state_dict().items():
        expected = (a.state_dict()[key].double() + b.state_dict()[key].double()) / 2
        assert torch.allclose(value.double(), expected, atol=1e-7), key
        assert not torch.equal(value, a.state_dict()[key])
    assert loaded == card and card.provenance["command"] == "atriumseg average a b -o soup"


def test_the_lineage_keeps_the_shared_stages_then_each_models_own(two: list[Path], tmp_path: Path) -> None:
    card = average_models(two, tmp_path / "soup")
    *shared, averaged = lineage_of(card)
    assert shared == [PARENT]
    assert averaged["run"] == str(tmp_path / "soup")
    assert [m["model"] for m in averaged["averaged"]] == [str(p) for p in two]
    assert [[s["run"] for s in m["stages"]] for m in averaged["averaged"]] == [["runs/a"], ["runs/b"]]
    assert averaged["data"] == {"A": {"train": 2, "validation": 1}}
    assert card.provenance["averaged"] == [str(p) for p in two]


def test_models_of_one_fold_average_into_that_fold(two: list[Path], tmp_path: Path) -> None:
    average_models(two, tmp_path / "soup")
    card = fold_card(tmp_path / "soup")
    assert card.provenance["config"] == {"folds": 3, "fold": 1}
    assert card.provenance["split"] == {"A": {"train": ["a1", "a2"], "validation": ["v1"], "excluded": ["x9"]}}


def test_a_case_any_model_trained_on_is_held_out_no_longer(tmp_path: Path) -> None:
    models = [_model(tmp_path / "a", 0, train=["a1"], validation=["v1", "v2"], run="runs/a"),
              _model(tmp_path / "b", 1, train=["a1", "v2"], validation=["v1"], run="runs/b")]
    card = average_models(models, tmp_path / "soup")
    assert card.provenance["split"]["A"] == {"train": ["a1", "v2"], "validation": ["v1"], "excluded": ["x9"]}
    assert card.provenance["config"] == {}  # not one fold's split: never scored as a fold model
    with pytest.raises(ValueError, match="from one --folds K design"):
        fold_cards([tmp_path / "soup"], partial=True)


def test_models_padded_otherwise_average_with_the_first_ones_padding(two: list[Path], tmp_path: Path) -> None:
    padded = dataclasses.replace(STANDIN_CARD.preprocessing, min_slice_size=64)  # trained on larger patches
    wide = _model(tmp_path / "c", 2, train=["a1", "a2"], validation=["v1"], run="runs/c", preprocessing=padded)
    assert average_models([two[0], wide], tmp_path / "soup").preprocessing == STANDIN_CARD.preprocessing
    assert average_models([wide, two[0]], tmp_path / "soup2").preprocessing == padded


REFUSED = [
    ({"preprocessing": dataclasses.replace(STANDIN_CARD.preprocessing, plane="coronal")}, "sees other slices"),
    ({"preprocessing": dataclasses.replace(STANDIN_CARD.preprocessing, spacing=(1.0, 1.0))}, "sees other slices"),
    ({"architecture": dataclasses.replace(STANDIN_CARD.architecture, width=8)}, "another architecture"),
    ({"postprocessing": dataclasses.replace(STANDIN_CARD.postprocessing, threshold=0.4)}, "another postprocessing"),
]


@pytest.mark.parametrize(("changes", "reason"), REFUSED)
def test_models_of_another_design_are_refused_with_the_reason(
    two: list[Path], tmp_path: Path, changes: dict, reason: str
) -> None:
    other = _model(tmp_path / "other", 3, train=["a1"], validation=["v1"], run="runs/o", **changes)
    with pytest.raises(CheckpointError, match=reason):
        average_models([two[0], other], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_one_model_a_model_twice_an_ensemble_and_a_picked_model_are_refused(two: list[Path], tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="two or more models, got 1"):
        average_models(two[:1], tmp_path / "soup")
    with pytest.raises(CheckpointError, match="given twice"):
        average_models([two[0], two[0].parent / ".." / two[0].parent.name / two[0].name], tmp_path / "soup")
    assemble_ensemble(tmp_path / "ens", {"axial": two[0]})
    with pytest.raises(CheckpointError, match="is an ensemble; average its members one by one"):
        average_models([tmp_path / "ens", two[1]], tmp_path / "soup")
    network, card = load_model(two[1])
    save_model(network, dataclasses.replace(card, provenance={**card.provenance, "validation": {}}), tmp_path / "best")
    with pytest.raises(CheckpointError, match="picked on its validation cases"):
        average_models([two[0], tmp_path / "best"], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()
