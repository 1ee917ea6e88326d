"""Weight averaging: the mean of the weights, a card that keeps every model's data and stages, and models of
another design, or an output that would lose something, refused with the reason."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest
import torch
from helpers import STANDIN_CARD, standin_network

from atriumseg.models.checkpoint import STATE_NAME, CheckpointError, load_card, load_model, save_model
from atriumseg.models.ensemble import assemble_ensemble
from atriumseg.models.lineage import lineage_of
from atriumseg.pipeline.io.writing import OutputFolderError
from atriumseg.pipeline.training.average import average_models
from atriumseg.pipeline.training.validation import fold_card, fold_cards

PARENT = {"run": "runs/parent", "started_from": None, "epochs": 10, "steps": 500, "minutes": 8.0, "device": "cpu",
          "data": {"A": {"train": 3, "validation": 1}}}
DATA = {"dataset": "A", "root": "data/A", "header_orientation_fix": None, "weight": 1.0, "licence": "CC-BY"}


def _model(folder: Path, seed: int, *, train: list[str], validation: list[str], run: str, folds: int = 3,
           lineage: list[dict] | None = None, data: list[dict] | None = None, **card_changes) -> Path:
    """A random network of the stand-in's design (``card_changes`` replace card parts), its card telling one stage
    after ``PARENT`` (or ``lineage``) that trained on ``train`` of dataset A, as fold 1 of ``folds``."""
    torch.manual_seed(seed)
    card = dataclasses.replace(STANDIN_CARD, **card_changes)
    network = standin_network(card)
    with torch.no_grad():
        for p in network.parameters():
            p.normal_()
    own = {**PARENT, "run": run, "started_from": "runs/parent/last"}
    split = {"A": {"train": train, "validation": validation, "excluded": ["x9"]}}
    provenance = {"data": data or [DATA], "split": split,
                  "config": {"folds": folds, "fold": 1}, "lineage": [PARENT, own] if lineage is None else lineage}
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


def test_the_lineage_keeps_the_shared_stages_then_each_models_own(two: list[Path], tmp_path: Path, caplog) -> None:
    card = average_models(two, tmp_path / "soup", command="atriumseg average a b")
    *shared, averaged = lineage_of(card)
    assert shared == [PARENT]
    assert averaged["run"] == str(tmp_path / "soup") and averaged["command"] == "atriumseg average a b"
    assert [m["model"] for m in averaged["averaged"]] == [str(p) for p in two]
    assert [[s["run"] for s in m["stages"]] for m in averaged["averaged"]] == [["runs/a"], ["runs/b"]]
    assert averaged["data"] == {"A": {"train": 2, "validation": 1}}
    assert card.provenance["averaged"] == [str(p) for p in two]
    assert "share no training stage" not in caplog.text


def test_models_trained_apart_are_averaged_with_a_warning(tmp_path: Path, caplog) -> None:
    apart = [_model(tmp_path / name, seed, train=["a1"], validation=["v1"], run=f"runs/{name}",
                    lineage=[{**PARENT, "run": f"runs/{name}"}]) for seed, name in enumerate("ab")]
    with caplog.at_level(logging.WARNING):
        (only,) = lineage_of(average_models(apart, tmp_path / "soup"))
    assert [m["stages"][0]["run"] for m in only["averaged"]] == ["runs/a", "runs/b"]  # each story whole
    assert "share no training stage and no starting model" in caplog.text


def test_models_of_one_fold_average_into_that_fold(two: list[Path], tmp_path: Path) -> None:
    average_models(two, tmp_path / "soup")
    card = fold_card(tmp_path / "soup")
    assert card.provenance["config"] == {"folds": 3, "fold": 1}
    assert card.provenance["split"] == {"A": {"train": ["a1", "a2"], "validation": ["v1"], "excluded": ["x9"]}}
    other_k = _model(tmp_path / "k4", 2, train=["a1", "a2"], validation=["v1"], run="runs/k4", folds=4)
    assert average_models([two[0], other_k], tmp_path / "mixed").provenance["config"] == {}


def test_a_case_any_model_trained_on_is_held_out_no_longer(tmp_path: Path) -> None:
    models = [_model(tmp_path / "a", 0, train=["a1"], validation=["v1", "v2"], run="runs/a"),
              _model(tmp_path / "b", 1, train=["a1", "v2"], validation=["v1"], run="runs/b")]
    card = average_models(models, tmp_path / "soup")
    assert card.provenance["split"]["A"] == {"train": ["a1", "v2"], "validation": ["v1"], "excluded": ["x9"]}
    assert card.provenance["config"] == {}  # not one fold's split: never scored as a fold model
    with pytest.raises(ValueError, match="from one --folds K design"):
        fold_cards([tmp_path / "soup"], partial=True)


def test_every_dataset_is_kept_with_its_exclusions_and_without_one_runs_share(tmp_path: Path) -> None:
    b_data = {"dataset": "B", "root": "data/B", "header_orientation_fix": "LPS", "weight": 2.0}
    a = _model(tmp_path / "a", 0, train=["a1"], validation=["v1"], run="runs/a")
    b = _model(tmp_path / "b", 1, train=["a1"], validation=["v1"], run="runs/b", data=[DATA, b_data])
    network, card = load_model(b)
    split = {**card.provenance["split"], "B": {"train": ["b1"], "validation": [], "excluded": ["b9"]}}
    save_model(network, dataclasses.replace(card, provenance={**card.provenance, "split": split}), b)
    soup = average_models([a, b], tmp_path / "soup").provenance
    assert [d["dataset"] for d in soup["data"]] == ["A", "B"] and all("weight" not in d for d in soup["data"])
    assert soup["data"][1]["header_orientation_fix"] == "LPS"
    assert soup["split"]["A"]["excluded"] == ["x9"] and soup["split"]["B"]["excluded"] == ["b9"]
    other_fix = _model(tmp_path / "c", 2, train=["a1"], validation=["v1"], run="runs/c",
                       data=[{**DATA, "header_orientation_fix": "ASL"}])
    with pytest.raises(CheckpointError, match="read dataset A with header fix 'ASL', another model with None"):
        average_models([a, other_fix], tmp_path / "soup2")


def test_settings_changed_after_training_are_carried_with_their_model(two: list[Path], tmp_path: Path) -> None:
    network, card = load_model(two[1])
    note = {"field": "preprocessing.centre_clip", "from": 0.0, "to": 0.5, "package_version": "0.6.1"}
    save_model(network, dataclasses.replace(card, provenance={**card.provenance, "set_after_training": [note]}),
               two[1])
    notes = average_models(two, tmp_path / "soup").provenance["set_after_training"]
    assert notes == [{**note, "model": str(two[1])}]


def test_models_padded_otherwise_average_with_the_first_ones_padding(two: list[Path], tmp_path: Path) -> None:
    padded = dataclasses.replace(STANDIN_CARD.preprocessing, min_slice_size=64)  # trained on larger patches
    wide = _model(tmp_path / "c", 2, train=["a1", "a2"], validation=["v1"], run="runs/c", preprocessing=padded)
    assert average_models([two[0], wide], tmp_path / "soup").preprocessing == STANDIN_CARD.preprocessing
    assert average_models([wide, two[0]], tmp_path / "soup2").preprocessing == padded


REFUSED = [
    ({"preprocessing": dataclasses.replace(STANDIN_CARD.preprocessing, plane="coronal")},
     "another design than .* \\(preprocessing.plane 'coronal' against 'sagittal'\\)"),
    ({"preprocessing": dataclasses.replace(STANDIN_CARD.preprocessing, percentiles=(1.0, 99.0))},
     "\\(preprocessing.percentiles \\(1.0, 99.0\\) against \\(0.5, 99.5\\)\\)"),
    ({"architecture": dataclasses.replace(STANDIN_CARD.architecture, width=8)}, "\\(architecture.width 8 against 4\\)"),
    ({"postprocessing": dataclasses.replace(STANDIN_CARD.postprocessing, threshold=0.4)},
     "\\(postprocessing.threshold 0.4 against 0.5\\)"),
    ({"architecture": dataclasses.replace(STANDIN_CARD.architecture, width=8),
      "postprocessing": dataclasses.replace(STANDIN_CARD.postprocessing, largest_component=False)},
     "\\(architecture.width 8 against 4; postprocessing.largest_component False against True\\)"),
]


@pytest.mark.parametrize(("changes", "reason"), REFUSED)
def test_models_of_another_design_are_refused_naming_what_differs(
    two: list[Path], tmp_path: Path, changes: dict, reason: str
) -> None:
    other = _model(tmp_path / "other", 3, train=["a1"], validation=["v1"], run="runs/o", **changes)
    with pytest.raises(CheckpointError, match=reason):
        average_models([two[0], other], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_one_model_the_same_weights_twice_an_ensemble_and_a_picked_model_are_refused(
    two: list[Path], tmp_path: Path
) -> None:
    with pytest.raises(CheckpointError, match="two or more models, got 1"):
        average_models(two[:1], tmp_path / "soup")
    shutil.copytree(two[0], tmp_path / "copy")
    for twice in (two[0], tmp_path / "copy"):
        with pytest.raises(CheckpointError, match="have the same weights; each model counts once"):
            average_models([two[0], twice], tmp_path / "soup")
    assemble_ensemble(tmp_path / "ens", {"axial": two[0]})
    with pytest.raises(CheckpointError, match="is an ensemble; average its members one by one"):
        average_models([tmp_path / "ens", two[1]], tmp_path / "soup")
    network, card = load_model(two[1])
    save_model(network, dataclasses.replace(card, provenance={**card.provenance, "validation": {}}), tmp_path / "best")
    with pytest.raises(CheckpointError, match="picked on its validation cases"):
        average_models([two[0], tmp_path / "best"], tmp_path / "soup")
    assert not (tmp_path / "soup").exists()


def test_an_output_that_would_lose_something_is_refused_before_any_work(two: list[Path], tmp_path: Path) -> None:
    before = load_card(two[0])
    for output in (two[0], two[0] / "inner", tmp_path):
        with pytest.raises(CheckpointError, match="is, holds or lies in the folder of model"):
            average_models(two, output, overwrite=True)
    assert load_card(two[0]) == before
    average_models(two, tmp_path / "soup")
    with pytest.raises(CheckpointError, match="holds a model; replace it with --overwrite"):
        average_models(two, tmp_path / "soup")
    assert average_models(two[::-1], tmp_path / "soup", overwrite=True).provenance["averaged"] == [
        str(two[1]), str(two[0])]
    (tmp_path / "soup" / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="holds more than a model \\(notes.txt\\)"):
        average_models(two, tmp_path / "soup", overwrite=True)
    (tmp_path / "soup" / "notes.txt").unlink()
    (tmp_path / "soup" / STATE_NAME).write_bytes(b"state")
    with pytest.raises(CheckpointError, match="holds a run's training state"):
        average_models(two, tmp_path / "soup", overwrite=True)
    network, card = load_model(two[1])
    save_model(network, dataclasses.replace(card, provenance={**card.provenance, "validation": {}}), tmp_path / "best")
    with pytest.raises(CheckpointError, match="picked on its validation cases \\(a run's best/\\)"):
        average_models(two, tmp_path / "best", overwrite=True)
    assemble_ensemble(tmp_path / "ens", {"axial": two[0]})
    with pytest.raises(CheckpointError, match="holds an ensemble"):
        average_models(two, tmp_path / "ens", overwrite=True)
    with pytest.raises(CheckpointError, match="is a member of the ensemble"):
        average_models(two, tmp_path / "ens" / "axial", overwrite=True)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputFolderError, match="exists and is not a folder"):
        average_models(two, tmp_path / "afile" / "soup")


def test_an_average_with_a_model_it_already_holds_is_refused(two: list[Path], tmp_path: Path) -> None:
    average_models(two, tmp_path / "soup")
    with pytest.raises(CheckpointError, match="share a training stage after the stages all share"):
        average_models([two[0], tmp_path / "soup"], tmp_path / "again")


def test_a_model_that_does_not_say_what_it_trained_on_leaves_no_case_held_out(two: list[Path], tmp_path: Path) -> None:
    network, card = load_model(two[1])
    provenance = {key: value for key, value in card.provenance.items() if key != "split"}
    save_model(network, dataclasses.replace(card, provenance=provenance), tmp_path / "silent")
    split = average_models([two[0], tmp_path / "silent"], tmp_path / "soup").provenance["split"]
    assert split["A"]["validation"] == [] and split["A"]["train"] == ["a1", "a2"]


def test_the_python_call_is_the_command_when_none_is_given_and_one_path_is_refused(
    two: list[Path], tmp_path: Path
) -> None:
    card = average_models(two, tmp_path / "soup")
    call = f"atriumseg.average_models({[str(p) for p in two]!r}, {str(tmp_path / 'soup')!r})"
    assert card.provenance["command"] == call
    with pytest.raises(TypeError, match="a list of model folders"):
        average_models(str(two[0]), tmp_path / "soup2")
