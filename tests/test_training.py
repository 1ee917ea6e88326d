"""Training on tiny synthetic datasets: the loss falls, checkpoints load, runs resume, splits are honest."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_config, train, write_msd_dataset

from atriumseg.models.checkpoint import load_card, load_model
from atriumseg.pipeline.dataset import kfold_split, load_msd_dataset
from atriumseg.pipeline.sampling import BalancedSampler
from atriumseg.pipeline.training import STATE_NAME, split_cases, training_sets


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


def test_training_lowers_the_loss_and_writes_a_loadable_model(tiny_model: Path) -> None:
    rows = _rows(tiny_model.parent)
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert last < 0.5 * first, f"loss went from {first} to {last}"
    network, card = load_model(tiny_model)
    assert card.provenance["split"]["Synthetic"]["validation"] == ["case_103"]
    assert card.provenance["validation"]["Synthetic"]["case_103"]["dice"] > 0.8
    assert card.provenance["validation_dice"]["overall"] == card.provenance["validation_dice"]["Synthetic"]
    assert card.architecture.width == 16 and isinstance(network, torch.nn.Module)


def test_resume_continues_from_the_last_epoch(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    train(tiny_config(synthetic_dataset, run, epochs=2, steps_per_epoch=3, val_every=2), show_progress=False)
    first = torch.load(run / "last" / STATE_NAME, weights_only=True)
    assert first["epoch"] == 2 and first["step"] == 6
    train(tiny_config(synthetic_dataset, run, epochs=3, steps_per_epoch=3, val_every=2, resume=True), show_progress=False)
    state = torch.load(run / "last" / STATE_NAME, weights_only=True)
    assert state["epoch"] == 3 and state["step"] == 9
    assert [r["epoch"] for r in _rows(run)] == ["1", "2", "3"]
    assert load_card(run / "last").provenance["epochs"] == 3


def test_time_budget_stops_cleanly_with_a_checkpoint(tmp_path: Path, synthetic_dataset: Path) -> None:
    run = tmp_path / "run"
    result = train(tiny_config(synthetic_dataset, run, epochs=50, steps_per_epoch=3, max_minutes=1e-4), show_progress=False)
    assert result.epochs_done == 1
    load_model(run / "last")


def test_kfold_splits_cover_every_case_once() -> None:
    names = [f"c{i}" for i in range(7)]
    validation = [kfold_split(names, 3, fold)[1] for fold in range(3)]
    assert sorted(sum(validation, [])) == sorted(names)
    for fold in range(3):
        train_names, val_names = kfold_split(names, 3, fold)
        assert not set(train_names) & set(val_names)


def test_excluded_cases_are_never_used(tmp_path: Path) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1, 2, 3, 4, 5])
    dataset = load_msd_dataset(root)
    config = tiny_config(root, tmp_path / "run", val_cases=("case_002",), exclude=("case_005",))
    train_cases, val_cases = split_cases(dataset, config)
    assert [c.name for c in train_cases] == ["case_001", "case_003", "case_004"]
    assert [c.name for c in val_cases] == ["case_002"]


@pytest.mark.parametrize(
    ("name", "reference", "declared", "expected"),
    [
        ("LeftAtrium", "King's College London", "known", "ASL"),
        ("Synthetic", "atriumseg tests", "known", None),
        ("LeftAtrium", "King's College London", None, None),
        ("Synthetic", "atriumseg tests", "pir", "PIR"),
    ],
)
def test_header_fix_applies_only_where_declared(tmp_path: Path, name, reference, declared, expected) -> None:
    root = write_msd_dataset(tmp_path / "ds", [1])
    meta = json.loads((root / "dataset.json").read_text())
    meta.update(name=name, reference=reference)
    (root / "dataset.json").write_text(json.dumps(meta))
    assert load_msd_dataset(root, declared).orientation == expected


@pytest.mark.parametrize(("weights", "expected"), [((1.0, 1.0), (2, 2)), ((1.0, 3.0), (1, 3)), ((0.0, 1.0), (0, 4))])
def test_every_batch_draws_from_each_dataset_in_proportion(weights, expected) -> None:
    sampler = BalancedSampler(sizes=[3, 12], weights=weights, batch_size=4, batches=50, seed=0)
    indices = list(sampler)
    assert len(indices) == len(sampler) == 200
    for start in range(0, 200, 4):
        batch = indices[start:start + 4]
        assert (sum(i < 3 for i in batch), sum(i >= 3 for i in batch)) == expected, batch
    assert set(indices) <= set(range(15))


def test_fractional_shares_hold_on_average() -> None:
    counts = [sum(i < 3 for i in BalancedSampler([3, 12], [1.0, 2.0], 4, 1, seed=s)) for s in range(300)]
    assert abs(np.mean(counts) - 4 / 3) < 0.1, np.mean(counts)
    assert set(counts) == {1, 2}


def test_training_on_two_datasets_validates_each(tmp_path: Path) -> None:
    bright = write_msd_dataset(tmp_path / "bright", [1, 2, 3], name="Bright")
    dark = write_msd_dataset(tmp_path / "dark", [11, 12, 13], name="Dark", gain=40.0, offset=300.0)
    run = tmp_path / "run"
    config = tiny_config(bright, run, datasets=(bright, dark), weights=(1.0, 3.0), epochs=2, steps_per_epoch=3,
                         val_every=1, val_cases=("case_003", "case_013"))
    train(config, show_progress=False)
    rows = _rows(run)
    assert {"val_dice_Bright", "val_dice_Dark", "val_dice_mean"} <= set(rows[0])
    for row in rows:
        assert float(row["val_dice_mean"]) == pytest.approx(
            (float(row["val_dice_Bright"]) + float(row["val_dice_Dark"])) / 2, abs=1e-4)
        assert "case_003=" in row["val_dice_per_case"] and "case_013=" in row["val_dice_per_case"]
    card = load_card(run / "best")
    assert card.provenance["split"] == {
        "Bright": {"train": ["case_001", "case_002"], "validation": ["case_003"], "excluded": []},
        "Dark": {"train": ["case_011", "case_012"], "validation": ["case_013"], "excluded": []},
    }
    assert [d["weight"] for d in card.provenance["data"]] == [1.0, 3.0]
    assert set(card.provenance["validation"]) == {"Bright", "Dark"}
    assert set(card.provenance["validation_dice"]) == {"Bright", "Dark", "overall"}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"val_cases": ("case_999",)}, "in none of the datasets"),
        ({"weights": (1.0,)}, "2 datasets need 2 weights"),
        ({"weights": (0.0, 0.0)}, "positive sum"),
    ],
)
def test_bad_multi_dataset_settings_are_refused(tmp_path: Path, overrides, message) -> None:
    a = write_msd_dataset(tmp_path / "a", [1, 2], name="A")
    b = write_msd_dataset(tmp_path / "b", [3, 4], name="B")
    with pytest.raises(ValueError, match=message):
        training_sets(tiny_config(a, tmp_path / "run", datasets=(a, b), **overrides))


def test_the_same_case_name_in_two_datasets_must_be_told_apart(tmp_path: Path) -> None:
    a = write_msd_dataset(tmp_path / "a", [1, 2], name="A")
    b = write_msd_dataset(tmp_path / "b", [2, 3], name="B")
    with pytest.raises(ValueError, match="several datasets"):
        training_sets(tiny_config(a, tmp_path / "run", datasets=(a, b), val_cases=("case_002",)))
