"""The trainer on tiny synthetic datasets: runs resume and stop on time, splits are honest, several
datasets train together with their own validation."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from helpers import tiny_config, train, write_msd_dataset

from atriumseg.models.checkpoint import load_card, load_model
from atriumseg.pipeline.training.dataset import kfold_split, load_msd_dataset
from atriumseg.pipeline.training.trainer import STATE_NAME, split_cases, training_sets


def _rows(run: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((run / "metrics.csv").open()))


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
    assert card.preprocessing.min_slice_size == 40  # the 38-voxel crop of a 32 patch, on the pooling grid of 4
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
